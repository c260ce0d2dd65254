"""argparse types of the command-line tools' numbers: each refuses what means nothing in words
that name the rule (`must be at least 1, got 0`), which argparse prints as a usage error."""

from __future__ import annotations

import argparse
import math

MAX_PORT = 65535


def _number(text: str, kind: type[float] | type[int], what: str) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None


def positive_int(text: str) -> int:
    """A count that must be at least 1."""
    value = int(_number(text, int, "a whole number"))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative(text: str) -> float:
    """A finite number of at least 0."""
    value = _number(text, float, "a number")
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of at least 0, got {text}")
    return value


def fraction(text: str) -> float:
    """A share, 0 to 1."""
    value = non_negative(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def positive_seconds(text: str) -> float:
    """A duration: a finite number above 0."""
    value = _number(text, float, "a number of seconds")
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def port_number(text: str) -> int:
    """A TCP port, 1 to 65535."""
    value = int(_number(text, int, "a port number"))
    if not 1 <= value <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_PORT}, got {value}")
    return value
