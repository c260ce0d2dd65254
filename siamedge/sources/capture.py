"""The capture thread: reads a FrameSource on its own thread and keeps only the newest frame.

Never lets an exception escape the thread and never builds a backlog: a failed or ended source
is closed and reopened with bounded exponential backoff, and an unread frame is overwritten.
A read blocked longer than the stall timeout is reported as `stalled` by a watchdog thread.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from siamedge.errors import SourceError
from siamedge.sources.base import Frame, FrameSource

log = logging.getLogger(__name__)

STOP_JOIN_TIMEOUT_S = 5.0
"""How long stop() waits for the thread; a read blocked in a driver may outlast it."""
BACKOFF_FACTOR = 2.0
STABLE_STREAM_S = 5.0
"""A source that has delivered frames this long after its open is working again, and its next
failure is retried after reopen_min_s. One that fails sooner (a camera that sends a frame and
drops the connection) keeps backing off, instead of being reopened every reopen_min_s."""


REPEATED_FAILURE_LOG_EVERY_S = 600.0
"""A failure the same as the one before (the camera still unplugged) is logged again at its
level this often, at DEBUG in between: the journal keeps the reason without one line per
attempt; the status topic carries every attempt."""


class SourceState(str, enum.Enum):
    """Where the capture thread stands with its source."""

    STARTING = "starting"
    """Opening the source; no frame yet."""
    STREAMING = "streaming"
    """Frames arrive."""
    RETRYING = "retrying"
    """The source failed or ended; it is closed and will be reopened at `next_retry_at`."""
    STALLED = "stalled"
    """A read has been blocked longer than the stall timeout (connection open, no data); the
    source is reopened as soon as that read fails, or goes on streaming if a frame comes."""
    STOPPED = "stopped"
    """The thread has ended (stop() or the stop event)."""


@dataclass(frozen=True)
class SourceStatus:
    """A snapshot of the capture state, for logs and the status topic.

    source: the source's description. error: why the last attempt failed (RETRYING), or how long
    the blocked read has waited (STALLED).
    next_retry_at: unix seconds of the next reopen (RETRYING only).
    failures: consecutive failed attempts since the last delivered frame.
    """

    state: SourceState
    source: str
    error: str | None = None
    next_retry_at: float | None = None
    failures: int = 0


@dataclass(frozen=True)
class CaptureStats:
    """Frame counters since start(): captured = taken + dropped + (one waiting in the slot)."""

    captured: int
    taken: int
    dropped: int


class Backoff:
    """Delays min_s, 2*min_s, 4*min_s, ... capped at max_s; reset() starts again at min_s."""

    def __init__(self, min_s: float, max_s: float) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError(f"backoff needs 0 < min_s <= max_s, got {min_s}, {max_s}")
        self._min_s = min_s
        self._max_s = max_s
        self._next_s = min_s

    def next_delay(self) -> float:
        """The delay before the next attempt (seconds); each call doubles the following one."""
        delay = self._next_s
        self._next_s = min(self._max_s, self._next_s * BACKOFF_FACTOR)
        return delay

    def reset(self) -> None:
        """After a success: the next failure waits min_s again."""
        self._next_s = self._min_s


StateCallback = Callable[[SourceStatus], None]


class CaptureThread:
    """Owns a FrameSource and reads it on a daemon thread; get() hands out the newest frame.

    reopen_min_s / reopen_max_s: backoff bounds for reopening a failed or ended source.
    pace_fps: deliver at most this many frames per second (files, folders, synthetic clips,
        so they play in real time); None reads as fast as the source gives frames.
    stall_timeout_s: a read blocked this long is reported as `stalled` (on_state, status) while
        it goes on blocking; None: never. A source's own read timeout should end that read soon
        after (then it is reopened): a read cannot be interrupted from another thread.
    stop_event: shared with the rest of the service; one is made when None.
    on_state: called with the new SourceStatus on every state change, on the capture thread (on
        the stall watchdog's thread for `stalled`); it must return quickly, and an exception in
        it is logged, not raised.

    Frames handed out are re-indexed 0, 1, 2, ... in capture order, across reopenings;
    their timestamps are the source's capture times (unix seconds).
    """

    def __init__(
        self,
        source: FrameSource,
        *,
        reopen_min_s: float,
        reopen_max_s: float,
        pace_fps: float | None = None,
        stall_timeout_s: float | None = None,
        stop_event: threading.Event | None = None,
        on_state: StateCallback | None = None,
    ) -> None:
        if pace_fps is not None and pace_fps <= 0:
            raise ValueError(f"pace_fps must be > 0, got {pace_fps}")
        if stall_timeout_s is not None and stall_timeout_s <= 0:
            raise ValueError(f"stall_timeout_s must be > 0, got {stall_timeout_s}")
        self._source = source
        self._backoff = Backoff(reopen_min_s, reopen_max_s)
        self._period_s = None if pace_fps is None else 1.0 / pace_fps
        self._stop_event = stop_event if stop_event is not None else threading.Event()
        self._on_state = on_state
        self._lock = threading.Condition()
        self._slot: Frame | None = None
        self._captured = 0
        self._taken = 0
        self._dropped = 0
        self._status = SourceStatus(SourceState.STARTING, source.description)
        self._source_held = False
        self._next_due: float | None = None
        self._read_since: float | None = None
        """Monotonic start of the read in progress; None between reads."""
        self._open_since: float | None = None
        self._opened_at = 0.0
        """When the source last opened (monotonic s); see STABLE_STREAM_S."""
        self._logged_failure: tuple[str, float] | None = None
        """The cause (_cause) of the last failure logged at its level and when (monotonic s);
        None after a frame."""
        self._thread = threading.Thread(
            target=self._run, name=f"capture {source.description}", daemon=True
        )
        self._watchdog = (
            None
            if stall_timeout_s is None
            else threading.Thread(
                target=self._watch_stalls,
                args=(stall_timeout_s,),
                name=f"stall watchdog {source.description}",
                daemon=True,
            )
        )

    @property
    def stop_event(self) -> threading.Event:
        """Set it (or call stop()) to end the thread."""
        return self._stop_event

    @property
    def source(self) -> FrameSource:
        """The source it reads; opened and read on the capture thread only (read attributes such
        as a camera's `mode` from elsewhere, never call it)."""
        return self._source

    @property
    def status(self) -> SourceStatus:
        """The current state; safe to read from any thread at any time."""
        with self._lock:
            return self._status

    def opening_for_s(self) -> float | None:
        """How long the source's open() has been running; None when no open() is under way."""
        with self._lock:
            since = self._open_since
        return None if since is None else time.monotonic() - since

    def stats(self) -> CaptureStats:
        """The frame counters; safe to read from any thread at any time."""
        with self._lock:
            return CaptureStats(self._captured, self._taken, self._dropped)

    def is_alive(self) -> bool:
        """True while the capture thread runs."""
        return self._thread.is_alive()

    def start(self) -> None:
        """Start the thread (once); reports the `starting` state to on_state first."""
        self._notify(self.status)
        self._thread.start()
        if self._watchdog is not None:
            self._watchdog.start()

    def get(self, timeout: float) -> Frame | None:
        """The newest frame not handed out yet, waiting up to timeout seconds for one.

        None on timeout, or at once when stop was requested and no frame is waiting.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._slot is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop_event.is_set():
                    return None
                self._lock.wait(remaining)
            frame, self._slot = self._slot, None
            self._taken += 1
            return frame

    def stop(self, timeout_s: float = STOP_JOIN_TIMEOUT_S) -> bool:
        """Set the stop event, wake get(), and join; False when the thread outlived timeout_s.

        A read blocked inside a driver cannot be interrupted from here; the thread is a daemon
        and ends as soon as that read returns.
        """
        self._stop_event.set()
        with self._lock:
            self._lock.notify_all()
        if not self._thread.is_alive():
            if self._thread.ident is None:
                self._set_status(SourceStatus(SourceState.STOPPED, self._source.description))
            return True
        self._thread.join(timeout_s)
        if self._watchdog is not None and self._watchdog.ident is not None:
            self._watchdog.join(timeout_s)
        if self._thread.is_alive():
            log.warning(
                "%s: capture thread still blocked in %s after %g s; leaving it to end",
                self._source.description,
                "read()" if self.opening_for_s() is None else "open()",
                timeout_s,
            )
            return False
        return True

    def __enter__(self) -> CaptureThread:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            while not self._stop_event.is_set():
                if not self._source_held and not self._try_open():
                    continue
                frame = self._try_read()
                if frame is not None:
                    self._publish(frame)
        except BaseException:
            # Only a bug in this loop gets here; say so loudly rather than die silently.
            log.exception("%s: capture thread crashed", self._source.description)
        finally:
            self._close_source()
            self._set_status(SourceStatus(SourceState.STOPPED, self._source.description))
            with self._lock:
                self._lock.notify_all()

    def _try_open(self) -> bool:
        # Held from the attempt on, so a half-done open() is closed before the retry.
        self._source_held = True
        with self._lock:
            self._open_since = time.monotonic()
        try:
            self._source.open()
        except Exception as exc:
            failure: str | None = _reason(exc)
        else:
            failure = None
        finally:
            with self._lock:
                self._open_since = None
        if failure is not None:
            self._retry_after(failure)  # the backoff is not part of the open
            return False
        self._opened_at = time.monotonic()
        log.info("%s: opened", self._source.description)
        return True

    def _try_read(self) -> Frame | None:
        if not self._wait_for_pace():
            return None
        try:
            frame = self._watched_read()
        except Exception as exc:
            self._retry_after(_reason(exc))
            return None
        if frame is None:
            # A finite source that does not loop: expected, so not a warning.
            self._retry_after(f"{self._source.description}: ended", level=logging.INFO)
            return None
        self._schedule_next(time.monotonic())
        return frame

    def _watched_read(self) -> Frame | None:
        """source.read(), its start time visible to the stall watchdog while it blocks."""
        with self._lock:
            self._read_since = time.monotonic()
        try:
            return self._source.read()
        finally:
            with self._lock:
                self._read_since = None

    def _watch_stalls(self, timeout_s: float) -> None:
        """The stall watchdog's loop: report each read blocked for timeout_s, once."""
        reported: float | None = None
        while True:
            with self._lock:
                since = self._read_since
                status = self._status
                blocked_s = 0.0 if since is None else time.monotonic() - since
                stalled = since is not None and since != reported and blocked_s >= timeout_s
                if stalled:
                    reported = since
                    status = SourceStatus(
                        SourceState.STALLED,
                        self._source.description,
                        error=(
                            f"{self._source.description}: stalled: no frame for "
                            f"{blocked_s:.1f} s (the read is blocked: connection open, no data)"
                        ),
                        failures=status.failures,
                    )
                    self._status = status
            if stalled:
                log.warning("%s", status.error)
                self._notify(status)
            # A read starting now is due to be reported timeout_s later, or sooner for the
            # read in progress; reads end and start many times a second meanwhile.
            wait_s = timeout_s if since is None or since == reported else timeout_s - blocked_s
            if self._stop_event.wait(wait_s) or not self._thread.is_alive():
                return

    def _wait_for_pace(self) -> bool:
        """Wait until the next frame is due; False when stopped meanwhile."""
        if self._next_due is None:
            return True
        delay = self._next_due - time.monotonic()
        return delay <= 0 or not self._stop_event.wait(delay)

    def _schedule_next(self, now: float) -> None:
        if self._period_s is None:
            return
        # Keep a steady cadence; after a stall (slow read, reopen) start afresh, no burst.
        if self._next_due is None or now - self._next_due > self._period_s:
            self._next_due = now + self._period_s
        else:
            self._next_due += self._period_s

    def _publish(self, frame: Frame) -> None:
        if time.monotonic() - self._opened_at >= STABLE_STREAM_S:
            self._backoff.reset()
        streaming = SourceStatus(SourceState.STREAMING, self._source.description)
        with self._lock:
            if self._slot is not None:
                self._dropped += 1
            self._slot = dataclasses.replace(frame, index=self._captured)
            self._captured += 1
            # The state changes before the consumer wakes: a frame in hand means `streaming`.
            changed = self._status.state is not SourceState.STREAMING
            if changed:
                self._status = streaming
            self._lock.notify_all()
        self._logged_failure = None
        if changed:
            log.info("%s: streaming", self._source.description)
            self._notify(streaming)

    def _retry_after(self, reason: str, level: int = logging.WARNING) -> None:
        """Close the source, report `retrying`, and wait out the backoff (or the stop event)."""
        self._close_source()
        self._next_due = None
        delay = self._backoff.next_delay()
        failures = self.status.failures + 1
        now, cause = time.monotonic(), _cause(reason)
        if (
            self._logged_failure is not None
            and self._logged_failure[0] == cause
            and now - self._logged_failure[1] < REPEATED_FAILURE_LOG_EVERY_S
        ):
            level = logging.DEBUG
        else:
            self._logged_failure = (cause, now)
        log.log(level, "%s; reopening in %.2g s (attempt %d)", reason, delay, failures)
        self._set_status(
            SourceStatus(
                SourceState.RETRYING,
                self._source.description,
                error=reason,
                next_retry_at=time.time() + delay,
                failures=failures,
            )
        )
        self._stop_event.wait(delay)

    def _close_source(self) -> None:
        if not self._source_held:
            return
        self._source_held = False
        try:
            self._source.close()
        except Exception:
            log.exception("%s: close() failed", self._source.description)

    def _set_status(self, status: SourceStatus) -> None:
        with self._lock:
            self._status = status
        self._notify(status)

    def _notify(self, status: SourceStatus) -> None:
        if self._on_state is None:
            return
        try:
            self._on_state(status)
        except Exception:
            log.exception("%s: the state callback failed", self._source.description)


_MEASURED = re.compile(r"\d+\.\d+")


def _cause(reason: str) -> str:
    """A failure's reason without the times it measured (`failed after 3.1 s`), which differ
    from attempt to attempt for the same cause; whole numbers (an HTTP status) stay."""
    return _MEASURED.sub("#", reason)


def _reason(exc: Exception) -> str:
    """SourceError messages already name the source; anything else is an unexpected failure."""
    if isinstance(exc, SourceError):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {exc}"
