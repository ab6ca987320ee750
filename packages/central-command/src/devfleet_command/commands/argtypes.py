"""Argument types for the parser: each refuses a bad value as a usage error (exit 2)
with a message that says what is wanted. No imports: ``devfleet --help`` loads this."""

from __future__ import annotations

import argparse

__all__ = ["non_negative_int", "seconds", "seconds_at_least"]


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def seconds_at_least(low: float, high: float = 86400.0) -> object:
    """A type for a number of seconds in ``[low, high]``."""

    def parse(text: str) -> float:
        value = _number(text)
        if not low <= value <= high:  # also refuses nan
            raise argparse.ArgumentTypeError(
                f"must be a number of seconds from {low:g} to {high:g}, got {text!r}"
            )
        return value

    parse.__name__ = "seconds"  # argparse names the type in its own messages
    return parse


def seconds(text: str) -> float:
    """A number of seconds, more than 0 and at most a day."""
    value = _number(text)
    if not 0 < value <= 86400:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 86400 seconds, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """A whole number, 0 or more (a config version)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number, 0 or more, got {text!r}")
    return value
