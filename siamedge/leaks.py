"""Notices a process running out of file descriptors or filling up with threads (a leak).

OpenCV's GStreamer backend leaks a few of both on every failed open of a pipeline (measured
with Debian 12's OpenCV 4.6: an RTSP camera that is down, reopened every 30 s, costs some 70
descriptors an hour; JetPack's OpenCV is not measured), so a camera down overnight would end in
EMFILE. Reads /proc only.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

PROC_SELF = Path("/proc/self")
DESCRIPTOR_FRACTION = 0.8
"""Open descriptors above this fraction of the soft RLIMIT_NOFILE count as a leak: well above
what the service uses (some 30 with a web view), and still leaving room to shut down cleanly."""
MAX_THREADS = 1024
"""More threads than this count as a leak (the service runs some 10 to 60: capture, MQTT,
onnxruntime's pool, web viewers)."""


@dataclass(frozen=True)
class ProcessUsage:
    """What the process holds now."""

    descriptors: int
    descriptor_limit: int
    """The soft RLIMIT_NOFILE; RLIM_INFINITY as a large number."""
    threads: int


def process_usage(proc: Path = PROC_SELF) -> ProcessUsage | None:
    """Open descriptors and threads of this process; None where /proc cannot tell."""
    try:
        descriptors = len(os.listdir(proc / "fd"))
        threads = len(os.listdir(proc / "task"))
    except OSError:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = soft if soft != resource.RLIM_INFINITY else 2**31
    return ProcessUsage(descriptors, limit, threads)


def leak_problem(usage: ProcessUsage) -> str | None:
    """What looks leaked, or None while the usage is normal."""
    if usage.descriptors > DESCRIPTOR_FRACTION * usage.descriptor_limit:
        return f"{usage.descriptors} of {usage.descriptor_limit} file descriptors open"
    if usage.threads > MAX_THREADS:
        return f"{usage.threads} threads running"
    return None
