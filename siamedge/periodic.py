"""Runs a small action at a fixed interval in a helper thread while a block of code runs.

For work that blocks the calling thread for a long time (a TensorRT engine build): the action
keeps someone informed meanwhile. Never outlives the block: the thread is stopped and joined.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def every(interval_s: float, action: Callable[[], None], name: str) -> Iterator[None]:
    """Call action every interval_s seconds (first after one interval) until the block exits."""
    stop = threading.Event()

    def repeat() -> None:
        while not stop.wait(interval_s):
            action()

    thread = threading.Thread(target=repeat, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
