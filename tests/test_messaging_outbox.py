"""The results outbox: bounded, the oldest dropped first, every drop counted."""

from __future__ import annotations

import pytest

from siamedge.messaging.outbox import Outbox


def test_a_full_outbox_drops_the_oldest_and_counts_it() -> None:
    outbox: Outbox[int] = Outbox(3)
    assert [outbox.put(n) for n in range(5)] == [True, True, True, False, False]
    assert (len(outbox), outbox.dropped) == (3, 2)
    assert [outbox.take() for _ in range(4)] == [2, 3, 4, None]


def test_put_back_returns_to_the_front_unless_newer_ones_filled_it() -> None:
    outbox: Outbox[str] = Outbox(2)
    outbox.put("a")
    outbox.put("b")
    taken = outbox.take()
    assert taken == "a"
    outbox.put_back(taken)
    assert (outbox.take(), outbox.dropped) == ("a", 0)
    outbox.put("c")  # full again: b, c
    outbox.put_back("a")
    assert (outbox.take(), outbox.take(), outbox.dropped) == ("b", "c", 1)


def test_clear_and_drop_count_what_never_went_out() -> None:
    outbox: Outbox[int] = Outbox(4)
    for n in range(3):
        outbox.put(n)
    assert outbox.clear() == 3
    outbox.drop(2)
    assert (len(outbox), outbox.take(), outbox.dropped) == (0, None, 5)


def test_an_outbox_holds_at_least_one_item() -> None:
    with pytest.raises(ValueError, match="at least one item, not 0"):
        Outbox(0)
