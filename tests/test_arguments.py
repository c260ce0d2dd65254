"""The command-line tools' number types: what they take, and the words for what they refuse."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

from siamedge.arguments import fraction, non_negative, port_number, positive_int, positive_seconds


@pytest.mark.parametrize(
    ("parse", "text", "value"),
    [
        (positive_int, "1", 1),
        (positive_int, "30", 30),
        (non_negative, "0", 0.0),
        (non_negative, "0.25", 0.25),
        (fraction, "1", 1.0),
        (fraction, "0.9", 0.9),
        (positive_seconds, "0.5", 0.5),
        (port_number, "1", 1),
        (port_number, "65535", 65535),
    ],
)
def test_sensible_values_are_taken(parse: Callable[[str], float], text: str, value: float) -> None:
    assert parse(text) == value


@pytest.mark.parametrize(
    ("parse", "text", "reason"),
    [
        (positive_int, "0", "must be at least 1, got 0"),
        (positive_int, "2.5", "must be a whole number, got '2.5'"),
        (positive_int, "ten", "must be a whole number, got 'ten'"),
        (non_negative, "-0.1", "must be a number of at least 0, got -0.1"),
        (non_negative, "nan", "must be a number of at least 0, got nan"),
        (non_negative, "inf", "must be a number of at least 0, got inf"),
        (non_negative, "x", "must be a number, got 'x'"),
        (fraction, "1.5", "must be between 0 and 1, got 1.5"),
        (positive_seconds, "0", "must be a finite number above 0, got 0"),
        (positive_seconds, "soon", "must be a number of seconds, got 'soon'"),
        (port_number, "0", "must be between 1 and 65535, got 0"),
        (port_number, "65536", "must be between 1 and 65535, got 65536"),
        (port_number, "http", "must be a port number, got 'http'"),
    ],
)
def test_meaningless_values_are_refused_in_words(
    parse: Callable[[str], float], text: str, reason: str
) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        parse(text)
    assert str(refused.value) == reason
