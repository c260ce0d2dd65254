"""periodic.every: the action repeats while the block runs and never after it."""

from __future__ import annotations

import threading

from siamedge import periodic


def test_the_action_repeats_until_the_block_exits_and_the_thread_is_joined() -> None:
    calls: list[int] = []
    third = threading.Event()

    def action() -> None:
        calls.append(len(calls))
        if len(calls) == 3:
            third.set()

    with periodic.every(0.001, action, "test-periodic"):
        assert third.wait(10)
    after = len(calls)
    assert after >= 3
    assert not any(t.name == "test-periodic" for t in threading.enumerate())
    assert len(calls) == after  # nothing runs once the block is left


def test_nothing_runs_before_the_first_interval() -> None:
    calls: list[None] = []
    with periodic.every(3600.0, lambda: calls.append(None), "test-periodic-idle"):
        pass
    assert calls == []
