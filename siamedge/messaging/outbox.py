"""A bounded outbox: what waits for the broker link, the oldest dropped first and counted.

Pure bookkeeping, safe from any thread; never talks to the broker, never blocks, never grows
beyond its capacity.
"""

from __future__ import annotations

import collections
import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Outbox(Generic[T]):
    """Up to `capacity` items, oldest first; `put` on a full outbox drops the oldest."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"an outbox holds at least one item, not {capacity}")
        self._items: collections.deque[T] = collections.deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._dropped = 0

    def put(self, item: T) -> bool:
        """Add the newest item; False when that dropped the oldest."""
        with self._lock:
            full = len(self._items) == self._items.maxlen
            if full:
                self._dropped += 1
            self._items.append(item)  # the deque's maxlen drops the oldest
            return not full

    def take(self) -> T | None:
        """The oldest item, removed; None when empty."""
        with self._lock:
            return self._items.popleft() if self._items else None

    def put_back(self, item: T) -> None:
        """Return a taken item to the front (the link refused it); dropped if newer ones
        filled the outbox meanwhile."""
        with self._lock:
            if len(self._items) == self._items.maxlen:
                self._dropped += 1
            else:
                self._items.appendleft(item)

    def clear(self) -> int:
        """Drop everything waiting (counted); how many that was."""
        with self._lock:
            count = len(self._items)
            self._items.clear()
            self._dropped += count
            return count

    def drop(self, count: int = 1) -> None:
        """Count items lost after they were taken (the link took them, then lost them)."""
        with self._lock:
            self._dropped += count

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def dropped(self) -> int:
        """Items dropped since the outbox was made."""
        with self._lock:
            return self._dropped
