"""What native libraries write to stdout and stderr, through logging, each line once.

FFmpeg, OpenCV, GStreamer and JetPack's decoders write straight to file descriptors 1 and 2,
which systemd hands to journald line by line: a camera that is down made them write 2 (FFmpeg)
to about 40 (OpenCV's GStreamer backend) raw lines per reopen attempt, for ever, and a lossy
RTSP link an FFmpeg line per damaged frame. NativeOutput points both descriptors at a pipe that
a small relay process (`python -m siamedge.native_log`) reads: each line goes to its
`siamedge.native` logger, at a level read off the line (OpenCV's `[ WARN`, GLib's
`-CRITICAL **`, FFmpeg's `[tcp @ 0x...]`, C++'s `terminate called` ...), the first time it
comes; the same line again (addresses, process ids and clock times aside) comes at DEBUG, and
at its level again every REMINDER_S with how often it came meanwhile. A process of its own, not
a thread: what a library writes just before it aborts the daemon (`terminate called after
throwing ...`, `what(): CUDA failure ...`) is still in the pipe when the daemon is gone, and
the relay logs it before it exits. Python's own output (sys.stdout, sys.stderr: logging,
tracebacks, faulthandler) keeps the original descriptors. A full pipe drops native lines rather
than block the library writing them.
"""

from __future__ import annotations

import contextlib
import faulthandler
import fcntl
import logging
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections import OrderedDict
from types import TracebackType
from typing import TextIO

from siamedge.systemd import configure_logging

log = logging.getLogger("siamedge.native")

REMINDER_S = 600.0
"""A line said again this long after it was last logged at its level is logged so again."""
KEYS_KEPT = 1000
"""Distinct lines remembered (least recently seen forgotten first)."""
JOIN_TIMEOUT_S = 2.0
"""How long close() waits for the relay to log what is left in the pipe."""
READ_SIZE = 65536
LEFT_AS_IT_IS = "native library output goes to stdout and stderr as it is: %s"
"""Said when the descriptors cannot be copied or the relay cannot start."""

_VARYING = (
    (re.compile(r"0x[0-9a-fA-F]+"), "0x…"),  # FFmpeg's `[tcp @ 0x55d1c0a0]`, GLib's pointers
    (re.compile(r"^\[ ?(\w+):\d+@[\d.]+\]"), r"[\1]"),  # OpenCV's `[ WARN:0@12.345]`
    (re.compile(r"^\(([^:()]+):\d+\)"), r"(\1)"),  # GLib's `(python3:4242)`
    (re.compile(r"\b\d\d:\d\d:\d\d\.\d+\b"), "hh:mm:ss"),  # GLib's clock time
)
_LEVELS = (
    # C++'s last words before an abort: `terminate called after throwing ...`, `  what(): ...`
    (
        re.compile(r"^\[ ?(ERROR|FATAL)|-ERROR \*\*|\bERROR\b|^terminate called|^\s*what\(\):"),
        logging.ERROR,
    ),
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
    """While open, descriptors 1 and 2 lead to a pipe whose lines the relay process logs (see
    the module) at `level` and above.

    sys.stdout and sys.stderr are replaced by streams on copies of the original descriptors
    (configure logging after open(), so that its handler writes to the original), and
    faulthandler, if enabled, is enabled again on the copy of stderr. close() restores all and
    waits for the relay to log what is left.
    """

    def __init__(self, level: str = "INFO") -> None:
        self._level = level
        self._saved: dict[int, int] = {}
        self._streams: dict[int, TextIO] = {}
        self._python: tuple[TextIO, TextIO] | None = None
        self._relay: subprocess.Popen[bytes] | None = None
        self._lifeline: int | None = None

    @property
    def relay_pid(self) -> int | None:
        """The relay process's id while open."""
        return None if self._relay is None else self._relay.pid

    def open(self) -> NativeOutput:
        """Redirect; a no-op (with a warning) where the descriptors cannot be copied or the
        relay cannot start."""
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        made: list[int] = []  # closed again when a step fails
        try:
            saved = {}
            for fd in (1, 2):
                saved[fd] = os.dup(fd)
                made.append(saved[fd])
            read_fd, write_fd = os.pipe()
            made += (read_fd, write_fd)
            lifeline_read, lifeline_write = os.pipe()
            made += (lifeline_read, lifeline_write)
        except OSError as exc:
            for fd in made:
                os.close(fd)
            log.warning(LEFT_AS_IT_IS, exc)
            return self
        try:
            self._relay = subprocess.Popen(
                [sys.executable, "-m", __name__, self._level, str(lifeline_read)],
                stdin=read_fd,
                stdout=saved[1],
                stderr=saved[2],
                pass_fds=(lifeline_read,),
                start_new_session=True,  # a terminal's Ctrl-C is for the daemon alone
            )
        except OSError as exc:
            log.warning(LEFT_AS_IT_IS, exc)
        finally:
            os.close(read_fd)
            os.close(lifeline_read)
        if self._relay is None:
            for fd in (write_fd, lifeline_write, *saved.values()):
                os.close(fd)
            return self
        # Never block a library on the relay: a full pipe fails its write instead.
        flags = fcntl.fcntl(write_fd, fcntl.F_GETFL)
        fcntl.fcntl(write_fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self._saved, self._lifeline = saved, lifeline_write
        self._python = (sys.stdout, sys.stderr)
        self._streams = {fd: _text_stream(os.dup(copy)) for fd, copy in saved.items()}
        sys.stdout, sys.stderr = self._streams[1], self._streams[2]
        # A handler still writing to the old streams would feed its lines to the relay.
        _repoint_handlers(dict(zip(self._python, (sys.stdout, sys.stderr), strict=True)))
        if faulthandler.is_enabled():
            faulthandler.enable(file=sys.stderr)
        for fd in (1, 2):
            os.dup2(write_fd, fd)
        os.close(write_fd)
        return self

    def close(self) -> None:
        """Restore the descriptors and Python's streams; the relay logs what is left."""
        if self._python is None or self._relay is None or self._lifeline is None:
            return
        for fd, copy in self._saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        os.close(self._lifeline)  # the relay logs what the pipe holds and exits
        try:
            status = self._relay.wait(JOIN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._relay.kill()
            status = self._relay.wait()
        if status:
            log.warning("the native output relay ended with status %d", status)
        _repoint_handlers(dict(zip((sys.stdout, sys.stderr), self._python, strict=True)))
        sys.stdout, sys.stderr = self._python
        if faulthandler.is_enabled():
            faulthandler.enable(file=sys.stderr)
        for stream in self._streams.values():
            with contextlib.suppress(OSError):
                stream.close()
        self._python, self._saved, self._streams = None, {}, {}
        self._relay = self._lifeline = None

    def __enter__(self) -> NativeOutput:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def relay(source: int, lifeline: int, repeats: RepeatFilter | None = None) -> None:
    """Log each line read from `source` until its write ends are all closed, or until the
    `lifeline` pipe's one write end is closed (the daemon closed NativeOutput, or ended): then
    what the pipe holds is logged and the relay returns, even while a process the daemon
    started holds a write end still."""
    repeats = repeats or RepeatFilter()
    pending = b""
    draining = False
    while True:
        if not draining:
            ready, _, _ = select.select([source, lifeline], [], [])
            if lifeline in ready:
                draining = True
                os.set_blocking(source, False)
        try:
            chunk = os.read(source, READ_SIZE)
        except BlockingIOError:
            chunk = b""  # drained
        except InterruptedError:
            continue
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        if len(pending) > READ_SIZE:  # no line end in sight: log what there is
            lines.append(pending)
            pending = b""
        for line in lines:
            _log(repeats, line)
    _log(repeats, pending)


def _log(repeats: RepeatFilter, raw: bytes) -> None:
    line = raw.decode("utf-8", errors="replace").rstrip()
    if not line.strip():
        return
    try:
        level, said = repeats.admit(line, time.monotonic())
        if said:
            log.log(level, "%s (said %d more times since)", line, said)
        else:
            log.log(level, "%s", line)
    except Exception:  # the relay must outlive any one line, or the pipe would fill
        log.debug("could not log a native line", exc_info=True)


def _repoint_handlers(replacements: dict[TextIO, TextIO]) -> None:
    """Point the root logger's stream handlers at the replacement of their stream."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream in replacements:
            handler.setStream(replacements[handler.stream])


def _text_stream(fd: int) -> TextIO:
    """A line-buffered text stream on fd: each line reaches journald as it is written."""
    return open(fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace")


def main(argv: list[str]) -> None:
    """The relay process: `python -m siamedge.native_log LEVEL LIFELINE_FD`, the pipe on
    stdin, logging configured as the daemon's (the journal, or lines on stderr)."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        # systemd's SIGTERM goes to the whole unit: the relay ends when the daemon has.
        signal.signal(signum, signal.SIG_IGN)
    level, lifeline = argv
    configure_logging(level)
    relay(sys.stdin.fileno(), int(lifeline))


if __name__ == "__main__":
    main(sys.argv[1:])
