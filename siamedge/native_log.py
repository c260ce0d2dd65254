"""What native libraries write to stdout and stderr, through logging, each line once.

FFmpeg, OpenCV, GStreamer and JetPack's decoders write straight to file descriptors 1 and 2,
which systemd hands to journald line by line: a camera that is down made them write 2 (FFmpeg)
to about 40 (OpenCV's GStreamer backend) raw lines per reopen attempt, for ever, and a lossy
RTSP link an FFmpeg line per damaged frame. NativeOutput points both descriptors at a pipe that
one thread reads: each line goes to the `siamedge.native` logger, at a level read off the line
(OpenCV's `[ WARN`, GLib's `-CRITICAL **`, FFmpeg's `[tcp @ 0x...]` ...), the first time it
comes; the same line again (addresses, process ids and clock times aside) comes at DEBUG,
and at its level again every REMINDER_S with how often it came meanwhile. Python's own output
(sys.stdout, sys.stderr: logging, tracebacks, faulthandler) keeps the original descriptors.
A full pipe drops native lines rather than block the library writing them.
"""

from __future__ import annotations

import contextlib
import faulthandler
import fcntl
import logging
import os
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from types import TracebackType
from typing import TextIO

log = logging.getLogger("siamedge.native")

REMINDER_S = 600.0
"""A line said again this long after it was last logged at its level is logged so again."""
KEYS_KEPT = 1000
"""Distinct lines remembered (least recently seen forgotten first)."""
JOIN_TIMEOUT_S = 2.0
"""How long close() waits for the reader to log what is left in the pipe."""
READ_SIZE = 65536

_VARYING = (
    (re.compile(r"0x[0-9a-fA-F]+"), "0x…"),  # FFmpeg's `[tcp @ 0x55d1c0a0]`, GLib's pointers
    (re.compile(r"^\[ ?(\w+):\d+@[\d.]+\]"), r"[\1]"),  # OpenCV's `[ WARN:0@12.345]`
    (re.compile(r"^\(([^:()]+):\d+\)"), r"(\1)"),  # GLib's `(python3:4242)`
    (re.compile(r"\b\d\d:\d\d:\d\d\.\d+\b"), "hh:mm:ss"),  # GLib's clock time
)
_LEVELS = (
    (re.compile(r"^\[ ?(ERROR|FATAL)|-ERROR \*\*|\bERROR\b"), logging.ERROR),
    # GLib's CRITICAL is a warning: something went wrong that the program may recover from.
    (
        re.compile(r"^\[ ?WARN|-(CRITICAL|WARNING) \*\*|^\[[\w.-]+ @ 0x|\bWARNING\b"),
        logging.WARNING,
    ),
)


def line_key(line: str) -> str:
    """The line without what changes from one occurrence to the next: addresses, process
    ids, OpenCV's and GLib's timestamps (ports, paths and reasons stay)."""
    for pattern, replacement in _VARYING:
        line = pattern.sub(replacement, line)
    return line


def line_level(line: str) -> int:
    """The logging level a native line reads as: ERROR, WARNING, else INFO."""
    for pattern, level in _LEVELS:
        if pattern.search(line):
            return level
    return logging.INFO


class RepeatFilter:
    """Decides the level of each line: its own the first time and every REMINDER_S, DEBUG
    between; remembers KEYS_KEPT distinct lines."""

    def __init__(self, reminder_s: float = REMINDER_S, keys_kept: int = KEYS_KEPT) -> None:
        self._reminder_s = reminder_s
        self._keys_kept = keys_kept
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()
        """key -> (when last logged at its level, times said since)."""

    def admit(self, line: str, now: float) -> tuple[int, int]:
        """(level to log the line at, times it was said since it was last logged so)."""
        key = line_key(line)
        last = self._seen.pop(key, None)
        if last is not None and now - last[0] < self._reminder_s:
            self._seen[key] = (last[0], last[1] + 1)
            return logging.DEBUG, 0
        self._seen[key] = (now, 0)
        if len(self._seen) > self._keys_kept:
            self._seen.popitem(last=False)
        return line_level(line), 0 if last is None else last[1]


class NativeOutput:
    """While open, descriptors 1 and 2 lead to a pipe whose lines are logged (see the module).

    sys.stdout and sys.stderr are replaced by streams on copies of the original descriptors
    (configure logging after open(), so that its handler writes to the original), and
    faulthandler, if enabled, is enabled again on the copy of stderr. close() restores all.
    """

    def __init__(self, repeats: RepeatFilter | None = None) -> None:
        self._repeats = repeats or RepeatFilter()
        self._saved: dict[int, int] = {}
        self._streams: dict[int, TextIO] = {}
        self._python: tuple[TextIO, TextIO] | None = None
        self._read_fd: int | None = None
        self._thread: threading.Thread | None = None

    def open(self) -> NativeOutput:
        """Redirect; a no-op (with a debug line) where the descriptors cannot be copied."""
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        try:
            saved = {fd: os.dup(fd) for fd in (1, 2)}
        except OSError as exc:
            log.debug("native output left as it is: %s", exc)
            return self
        read_fd, write_fd = os.pipe()
        # Never block a library on our reader: a full pipe fails its write instead.
        flags = fcntl.fcntl(write_fd, fcntl.F_GETFL)
        fcntl.fcntl(write_fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self._saved, self._read_fd = saved, read_fd
        self._python = (sys.stdout, sys.stderr)
        self._streams = {fd: _text_stream(os.dup(copy)) for fd, copy in saved.items()}
        sys.stdout, sys.stderr = self._streams[1], self._streams[2]
        # A handler still writing to the old streams would feed its lines back to the reader.
        _repoint_handlers(dict(zip(self._python, (sys.stdout, sys.stderr), strict=True)))
        if faulthandler.is_enabled():
            faulthandler.enable(file=sys.stderr)
        for fd in (1, 2):
            os.dup2(write_fd, fd)
        os.close(write_fd)
        self._thread = threading.Thread(target=self._read, name="native-output", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Restore the descriptors and Python's streams; log what is left in the pipe."""
        if self._python is None:
            return
        for fd, copy in self._saved.items():
            os.dup2(copy, fd)  # the pipe's last write ends: the reader reads to its end
            os.close(copy)
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT_S)
        _repoint_handlers(dict(zip((sys.stdout, sys.stderr), self._python, strict=True)))
        sys.stdout, sys.stderr = self._python
        if faulthandler.is_enabled():
            faulthandler.enable(file=sys.stderr)
        for stream in self._streams.values():
            with contextlib.suppress(OSError):
                stream.close()
        self._python, self._saved, self._streams = None, {}, {}

    def __enter__(self) -> NativeOutput:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _read(self) -> None:
        """The reader thread: log each line until the pipe's write ends are all closed."""
        assert self._read_fd is not None
        pending = b""
        try:
            for chunk in _chunks(self._read_fd):
                *lines, pending = (pending + chunk).split(b"\n")
                if len(pending) > READ_SIZE:  # no line end in sight: log what there is
                    lines.append(pending)
                    pending = b""
                for line in lines:
                    self._log(line)
            self._log(pending)
        finally:
            os.close(self._read_fd)

    def _log(self, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip()
        if not line.strip():
            return
        try:
            level, said = self._repeats.admit(line, time.monotonic())
            if said:
                log.log(level, "%s (said %d more times since)", line, said)
            else:
                log.log(level, "%s", line)
        except Exception:  # the reader must outlive any one line, or the pipe would fill
            log.debug("could not log a native line", exc_info=True)


def _repoint_handlers(replacements: dict[TextIO, TextIO]) -> None:
    """Point the root logger's stream handlers at the replacement of their stream."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream in replacements:
            handler.setStream(replacements[handler.stream])


def _chunks(fd: int) -> Iterator[bytes]:
    while True:
        try:
            chunk = os.read(fd, READ_SIZE)
        except InterruptedError:
            continue
        if not chunk:
            return
        yield chunk


def _text_stream(fd: int) -> TextIO:
    """A line-buffered text stream on fd: each line reaches journald as it is written."""
    return open(fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace")
