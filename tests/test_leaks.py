"""The leak fuse: a process near its descriptor limit, or full of threads, stops with status
70 so that systemd restarts a clean one (OpenCV's GStreamer backend leaks on failed opens)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from fixtures.daemon import daemon_config, unique_prefix
from fixtures.mosquitto import Broker

from siamedge.leaks import MAX_THREADS, ProcessUsage, leak_problem, process_usage
from siamedge.service import EX_SOFTWARE


def test_normal_usage_is_no_problem() -> None:
    assert leak_problem(ProcessUsage(descriptors=40, descriptor_limit=1024, threads=60)) is None
    assert leak_problem(ProcessUsage(819, 1024, MAX_THREADS)) is None


def test_descriptors_near_the_limit_or_too_many_threads_are_named() -> None:
    assert leak_problem(ProcessUsage(820, 1024, 12)) == "820 of 1024 file descriptors open"
    assert leak_problem(ProcessUsage(30, 1024, MAX_THREADS + 1)) == (
        f"{MAX_THREADS + 1} threads running"
    )


def test_process_usage_counts_what_this_process_holds(tmp_path: Path) -> None:
    before = process_usage()
    assert before is not None
    files = [(tmp_path / f"f{i}").open("w", encoding="utf-8") for i in range(10)]
    try:
        after = process_usage()
    finally:
        for file in files:
            file.close()
    assert after is not None
    assert after.descriptors == before.descriptors + 10
    assert after.descriptor_limit == before.descriptor_limit > 0
    assert after.threads >= 1


def test_the_daemon_stops_for_a_restart_when_descriptors_run_out(
    mosquitto: Broker, tmp_path: Path
) -> None:
    # 60 descriptors handed down stand for hours of a leak of a few per failed camera open:
    # with its own ten or so the daemon is past 80 % of a limit of 80, and still has room.
    config_path = tmp_path / "siamedge.yaml"
    config_path.write_text(yaml.safe_dump(daemon_config(mosquitto, unique_prefix())))
    command = [sys.executable, "-m", "siamedge.cli", "run", "--config", str(config_path)]
    leaked = [os.open(os.devnull, os.O_RDONLY) for _ in range(60)]
    try:
        daemon = subprocess.run(
            ["prlimit", "--nofile=80:80", *command],
            env={k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"},
            pass_fds=leaked,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        for descriptor in leaked:
            os.close(descriptor)
    assert daemon.returncode == EX_SOFTWARE, daemon.stderr[-2000:]
    assert re.search(r"\b\d+ of 80 file descriptors open: something leaks them", daemon.stderr)
    assert "exiting with status 70 so that systemd restarts the service" in daemon.stderr
