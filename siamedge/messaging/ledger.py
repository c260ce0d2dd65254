"""What became of every command: outcome counters, recent request ids, the error-reply budget.

Pure bookkeeping on values and on clock readings passed in; never publishes, parses or sleeps.
"""

from __future__ import annotations

import collections
import threading
from typing import Literal, get_args

Outcome = Literal["accepted", "rejected", "dropped_queue_full", "expired", "stale", "duplicate"]
"""accepted: acknowledged; rejected: invalid or impossible (bad JSON, too many tracks, ...);
dropped_queue_full: the command queue overflowed; expired: its MQTT 5 message expiry passed
while it waited here; stale: its `sent_at` is too old (or too far ahead), or a start found no
frame to start on in time; duplicate: its
request_id was taken already (a QoS 1 redelivery)."""
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)

RECENT_REQUEST_IDS = 1024
"""request_ids remembered for de-duplication: far more than a QoS 1 redelivery after a
reconnect can bring back (the command queue plus the broker's in-flight window)."""


class CommandCounters:
    """How many commands ended in each outcome, since start (any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = dict.fromkeys(OUTCOMES, 0)

    def add(self, outcome: Outcome, count: int = 1) -> None:
        with self._lock:
            self._counts[outcome] += count

    def snapshot(self) -> dict[str, int]:
        """`{outcome: count}` for every outcome, in OUTCOMES order."""
        with self._lock:
            return dict(self._counts)


class RecentRequestIds:
    """The last `capacity` request_ids taken, oldest forgotten first (one thread)."""

    def __init__(self, capacity: int = RECENT_REQUEST_IDS) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._ids: collections.OrderedDict[str, None] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._ids

    def take(self, request_id: str) -> bool:
        """Remember `request_id`; False when it was remembered already (a duplicate)."""
        if request_id in self._ids:
            return False
        self._ids[request_id] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
        return True


class ErrorBudget:
    """A token bucket for error replies: `rate_per_s` a second, bursts up to `burst`.

    A reply over the budget is counted instead of sent; once a token is back the count goes
    out as one summary, and until then every later reply joins it, so replies stay in order
    and every command is either answered alone or counted in exactly one summary. Any thread.
    """

    def __init__(self, rate_per_s: float, burst: float | None = None, *, now: float) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self._rate = rate_per_s
        self._burst = max(1.0, rate_per_s if burst is None else burst)
        self._tokens = self._burst
        self._updated = now
        self._suppressed = 0
        self._lock = threading.Lock()

    @property
    def rate_per_s(self) -> float:
        return self._rate

    @property
    def suppressed(self) -> int:
        """Replies counted and not yet reported in a summary."""
        with self._lock:
            return self._suppressed

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        self._updated = now

    def admit(self, now: float) -> bool:
        """True: send this reply now. False: it was counted for the next summary."""
        with self._lock:
            self._refill(now)
            if self._suppressed == 0 and self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            self._suppressed += 1
            return False

    def take_summary(self, now: float) -> int:
        """The count to report in a summary now (0: none due, or no token yet); the caller
        sends it, or hands it back with `restore` when it could not."""
        with self._lock:
            if self._suppressed == 0:
                return 0
            self._refill(now)
            if self._tokens < 1.0:
                return 0
            self._tokens -= 1.0
            count, self._suppressed = self._suppressed, 0
            return count

    def restore(self, count: int) -> None:
        """Count again replies (or a summary of them) that could not be sent after all."""
        with self._lock:
            self._suppressed += count
