"""systemd integration: sd_notify messages, the frame-driven watchdog, journald-aware logging.

The only module that imports systemd-python; it must never raise on a failed notify send, and
outside systemd (no NOTIFY_SOCKET) every notify call is a silent no-op.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Literal, TextIO

from siamedge import periodic

_sd_daemon: ModuleType | None
_sd_journal: ModuleType | None
try:
    # import_module, not `from systemd import ...`: in a checkout, the systemd/ folder of unit
    # files looks like a namespace package named systemd to mypy.
    _sd_daemon = importlib.import_module("systemd.daemon")
    _sd_journal = importlib.import_module("systemd.journal")
except ImportError:  # systemd-python is optional: the stdlib code below covers both jobs
    _sd_daemon = None
    _sd_journal = None

logger = logging.getLogger(__name__)

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV = "WATCHDOG_USEC"
WATCHDOG_PID_ENV = "WATCHDOG_PID"
JOURNAL_STREAM_ENV = "JOURNAL_STREAM"
SYSLOG_IDENTIFIER = "siamedge"
USEC_PER_S = 1_000_000

WATCHDOG_PING_FRACTION = 0.5
"""Ping at this fraction of WatchdogSec, as sd_watchdog_enabled(3) recommends."""
EXTEND_REFRESH_FRACTION = 0.5
"""Re-send EXTEND_TIMEOUT_USEC at this fraction of the window, so one late wake-up is harmless."""

ABSTRACT_PREFIX = "@"
"""NOTIFY_SOCKET names starting with '@' live in the abstract namespace (leading NUL byte)."""

NotifyBackend = Literal["auto", "libsystemd", "socket"]
"""`auto`: systemd-python when installed, else the stdlib socket code. The others force one.

libsystemd's sd_notify blocks while the manager's queue is full (PID 1 drains it at once in
practice); the socket code never blocks and reports EAGAIN as a failed send instead."""

HANDLER_NAME = "siamedge"
"""Name of the root handler configure_logging installs; a second call replaces it."""
CONSOLE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(name)s: %(message)s"
"""No timestamp and no level: journald records both itself."""

# Python logging levels -> syslog priorities (sd-daemon(3) "<N>" line prefixes).
_SYSLOG_PRIORITY = (
    (logging.DEBUG, 7),
    (logging.INFO, 6),
    (logging.WARNING, 4),
    (logging.ERROR, 3),
)
_SYSLOG_CRIT = 2


def _send_with_libsystemd(message: str) -> None:
    """sd_notify(3) through systemd-python; it reads NOTIFY_SOCKET itself."""
    if _sd_daemon is None:
        raise OSError("systemd-python is not installed")
    if not _sd_daemon.notify(message):
        raise OSError(f"sd_notify found no {NOTIFY_SOCKET_ENV}")


def _socket_address(value: str) -> str:
    """NOTIFY_SOCKET value -> the address socket.sendto takes."""
    if value.startswith(ABSTRACT_PREFIX):
        return "\0" + value[len(ABSTRACT_PREFIX) :]
    return value


def _send_with_socket(address: str, message: str) -> None:
    """One datagram to the notify socket; a fresh socket each time, as pings are seconds apart.

    MSG_DONTWAIT: a service manager that stops reading (a full queue) must not stall the
    frame loop; the send fails with EAGAIN instead and is logged.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto(message.encode("utf-8"), socket.MSG_DONTWAIT, address)


def _one_line(text: str) -> str:
    """Notify messages are newline-separated assignments, so a value must stay on one line."""
    return " ".join(text.splitlines())


class Notifier:
    """Sends sd_notify(3) state changes to the service manager (Type=notify units).

    Reads NOTIFY_SOCKET once, at construction; without it every method is a no-op that returns
    False. A failed send is logged once as a warning (then at debug level) and never raised.
    """

    def __init__(self, backend: NotifyBackend = "auto") -> None:
        if backend == "auto":
            # Not libsystemd's sd_notify, even where systemd-python is installed: it blocks
            # while the manager's queue is full, holding the GIL, so every thread of the
            # service stops with it (capture, MQTT). The socket backend drops and logs.
            backend = "socket"
        if backend == "libsystemd" and _sd_daemon is None:
            raise ValueError("backend 'libsystemd' needs systemd-python, which is not installed")
        self.backend: NotifyBackend = backend
        self._failure_logged = False
        self.ready_sent = False
        """True once READY=1 went out: start-up is over and systemd's watchdog is armed."""
        raw = os.environ.get(NOTIFY_SOCKET_ENV, "")
        self._send: Callable[[str], None] | None = None
        if not raw:
            return
        if backend == "libsystemd":
            self._send = _send_with_libsystemd
        elif raw.startswith(("/", ABSTRACT_PREFIX)):
            address = _socket_address(raw)
            self._send = lambda message: _send_with_socket(address, message)
        else:
            logger.warning(
                "%s=%r is not a socket path or @name; not notifying", NOTIFY_SOCKET_ENV, raw
            )

    @property
    def enabled(self) -> bool:
        """True when there is a service manager to talk to."""
        return self._send is not None

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=value` assignments in one datagram; True when it was sent."""
        if self._send is None:
            return False
        try:
            self._send("\n".join(assignments))
        except OSError as exc:
            if self._failure_logged:
                logger.debug("sd_notify %s failed: %s", assignments, exc)
            else:
                self._failure_logged = True
                logger.warning(
                    "sd_notify %s failed: %s (further failures are logged at debug level)",
                    assignments,
                    exc,
                )
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Start-up is complete (READY=1); systemd arms the watchdog from here."""
        if status is None:
            sent = self.notify("READY=1")
        else:
            sent = self.notify("READY=1", f"STATUS={_one_line(status)}")
        self.ready_sent = self.ready_sent or sent
        return sent

    def status(self, text: str) -> bool:
        """Free-form status line shown by `systemctl status` (STATUS=)."""
        return self.notify(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        """One keep-alive ping (WATCHDOG=1). Use Watchdog.tick to send these in the service."""
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown has begun (STOPPING=1)."""
        if status is None:
            return self.notify("STOPPING=1")
        return self.notify("STOPPING=1", f"STATUS={_one_line(status)}")

    def reloading(self) -> bool:
        """A reload has begun (RELOADING=1); send ready() when it is done.

        MONOTONIC_USEC is what Type=notify-reload (systemd 253+) requires alongside it.
        """
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for `seconds` more before the current start/stop timeout fires.

        EXTEND_TIMEOUT_USEC: the next such message (or READY=1) must come within `seconds`.
        """
        if seconds <= 0:
            raise ValueError(f"extend_timeout needs a positive number of seconds, got {seconds}")
        return self.notify(f"EXTEND_TIMEOUT_USEC={round(seconds * USEC_PER_S)}")

    def watchdog_interval(self) -> float | None:
        """WatchdogSec= in seconds when the watchdog is on for this process, else None.

        From WATCHDOG_USEC; when WATCHDOG_PID is set it must be our pid (the variables leak
        into child processes, whose pings systemd would ignore). None without NOTIFY_SOCKET.
        """
        if not self.enabled:
            return None
        usec_text = os.environ.get(WATCHDOG_USEC_ENV)
        if not usec_text:
            return None
        try:
            usec = int(usec_text)
        except ValueError:
            usec = 0
        if usec <= 0:
            logger.warning("ignoring %s=%r: not a positive integer", WATCHDOG_USEC_ENV, usec_text)
            return None
        pid_text = os.environ.get(WATCHDOG_PID_ENV)
        if pid_text:
            try:
                pid = int(pid_text)
            except ValueError:
                logger.warning(
                    "ignoring the watchdog: %s=%r is not a pid", WATCHDOG_PID_ENV, pid_text
                )
                return None
            if pid != os.getpid():
                logger.debug("the watchdog belongs to pid %d, not to us (%d)", pid, os.getpid())
                return None
        return usec / USEC_PER_S


class Watchdog:
    """Pings systemd's watchdog only while frames are being processed.

    Create it right after ready() (the first frame gets `stall_s` from then); the service
    calls frame_processed() after each frame and tick() on every main-loop turn. tick() sends
    WATCHDOG=1 every half interval as long as the last frame is at most `stall_s` old; a
    stalled pipeline stops the pings and systemd restarts the unit.

    Ticked from the main loop, not from a thread of its own: a thread keeps pinging when the
    loop itself hangs (a deadlock, a wedged inference call), which is exactly what the watchdog
    is there to catch. The loop needs to wake at least every `seconds_until_due()`; its
    frame-wait timeout does that. The clock is injectable for tests (monotonic seconds).
    """

    def __init__(
        self,
        notifier: Notifier,
        interval_s: float | None,
        stall_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if stall_s <= 0:
            raise ValueError(f"stall_s must be positive, got {stall_s}")
        self._notifier = notifier
        self._clock = clock
        self.stall_s = stall_s
        self.ping_interval_s = None if interval_s is None else interval_s * WATCHDOG_PING_FRACTION
        # Start-up counts as progress, so the first frame has stall_s to arrive.
        self._last_frame = clock()
        self._last_ping: float | None = None
        self._stalled = False

    @classmethod
    def from_environment(
        cls, notifier: Notifier, stall_s: float, clock: Callable[[], float] = time.monotonic
    ) -> Watchdog:
        """Interval from WATCHDOG_USEC (see Notifier.watchdog_interval); disabled without it."""
        return cls(notifier, notifier.watchdog_interval(), stall_s, clock)

    @property
    def enabled(self) -> bool:
        """True when systemd expects pings from this process."""
        return self.ping_interval_s is not None

    def frame_processed(self, now: float | None = None) -> None:
        """Record progress: a frame went through the pipeline."""
        self._last_frame = self._clock() if now is None else now

    def waiting_for_source(self, now: float | None = None) -> None:
        """Record progress without a frame: a lost source is being retried on purpose.

        Call it on each reopen attempt, so a camera that is gone for a while is reported in
        the status instead of restarting the service; a loop that hangs still stops pings.
        """
        self.frame_processed(now)

    def tick(self, now: float | None = None) -> bool:
        """Ping when one is due and frames flow; True when WATCHDOG=1 was sent."""
        if self.ping_interval_s is None:
            return False
        now = self._clock() if now is None else now
        idle_s = now - self._last_frame
        if idle_s > self.stall_s:
            if not self._stalled:
                self._stalled = True
                logger.warning(
                    "no frame processed for %.1f s (stall limit %.1f s): withholding watchdog "
                    "pings so systemd restarts the service",
                    idle_s,
                    self.stall_s,
                )
            return False
        if self._stalled:
            self._stalled = False
            logger.info("frames flow again: watchdog pings resume")
        if self._last_ping is not None and now - self._last_ping < self.ping_interval_s:
            return False
        self._last_ping = now
        return self._notifier.watchdog()

    def seconds_until_due(self, now: float | None = None) -> float | None:
        """How long the main loop may wait before the next tick; None when disabled."""
        if self.ping_interval_s is None:
            return None
        if self._last_ping is None:
            return 0.0
        now = self._clock() if now is None else now
        return max(0.0, self._last_ping + self.ping_interval_s - now)


@contextlib.contextmanager
def extended_timeout(
    notifier: Notifier,
    window_s: float,
    status: str | None = None,
    *,
    stop: threading.Event | None = None,
) -> Iterator[None]:
    """Keep systemd's timers from firing while a long blocking step runs.

    For a TensorRT engine build: the main thread is blocked inside onnxruntime for minutes, so
    a small thread speaks for it until the block exits, with `status` and the elapsed seconds.
    Before READY it re-sends EXTEND_TIMEOUT_USEC=window_s every window_s/2 (the start timeout);
    after READY (a model loaded again while running) it pings the watchdog every half
    WatchdogSec. Once `stop` is set it goes quiet, so that a stop asked for during the step gets
    systemd's stop timeout, not more. No thread without NOTIFY_SOCKET.
    """
    if not notifier.enabled:
        yield
        return
    started = time.monotonic()
    running = notifier.ready_sent
    watchdog_s = notifier.watchdog_interval() if running else None
    period_s = window_s * EXTEND_REFRESH_FRACTION
    if watchdog_s is not None:
        period_s = min(period_s, watchdog_s * WATCHDOG_PING_FRACTION)

    def announce() -> None:
        if stop is not None and stop.is_set():
            return
        if not running:
            notifier.extend_timeout(window_s)
        elif watchdog_s is not None:
            notifier.watchdog()
        if status is not None:
            notifier.status(f"{status} ({time.monotonic() - started:.0f} s)")

    announce()
    with periodic.every(period_s, announce, "siamedge-extend-timeout"):
        yield


def stream_is_journal(stream: TextIO) -> bool:
    """True when `stream` is the journald stream systemd connected (JOURNAL_STREAM=dev:inode).

    Compares the stream's device and inode with the variable, as systemd.exec(5) advises: a
    child whose stderr was redirected inherits the variable but no longer writes to journald.
    """
    value = os.environ.get(JOURNAL_STREAM_ENV, "")
    device_text, _, inode_text = value.partition(":")
    try:
        device, inode = int(device_text), int(inode_text)
        info = os.fstat(stream.fileno())
    except (ValueError, OSError):  # not set or malformed; a stream without a descriptor
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


def syslog_priority(levelno: int) -> int:
    """Python logging level -> syslog priority (7 debug ... 2 critical)."""
    for level, priority in _SYSLOG_PRIORITY:
        if levelno <= level:
            return priority
    return _SYSLOG_CRIT


class _SyslogPrefixFormatter(logging.Formatter):
    """Prefixes `<priority>` so journald files each stderr line at its level (sd-daemon(3))."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{syslog_priority(record.levelno)}>{super().format(record)}"


def configure_logging(
    level: str | int, stream: TextIO | None = None, native_journal: bool | None = None
) -> logging.Handler:
    """Install the root log handler; calling again replaces the one installed before.

    `stream` (default stderr) connected to journald (JOURNAL_STREAM): systemd-python's
    JournalHandler with SYSLOG_IDENTIFIER=siamedge and structured fields (LOGGER, CODE_FILE,
    THREAD_NAME ...), or `<priority>`-prefixed lines on the stream; neither carries a timestamp.
    `native_journal`: None picks JournalHandler when systemd-python is installed, False forces
    the prefixed lines. Anywhere else: timestamped lines on the stream.
    """
    target = sys.stderr if stream is None else stream
    if native_journal and _sd_journal is None:
        raise ValueError("native_journal=True needs systemd-python, which is not installed")
    journal = _sd_journal if native_journal is not False else None
    handler: logging.Handler
    if stream_is_journal(target):
        if journal is not None:
            handler = journal.JournalHandler(SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER)
            handler.setFormatter(logging.Formatter(JOURNAL_FORMAT))
        else:
            handler = logging.StreamHandler(target)
            handler.setFormatter(_SyslogPrefixFormatter(JOURNAL_FORMAT))
    else:
        handler = logging.StreamHandler(target)
        handler.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    handler.set_name(HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
