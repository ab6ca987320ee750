"""How the CLI prints: JSON an operator can paste back, dates instead of epoch
floats, and no hard wrap when stdout is a pipe.

Every answer the CLI prints is JSON (one document, or one line per record for
streams: JSON Lines, https://jsonlines.org) or a table, never a Python repr, so
``devfleet config get n1`` shows values that ``devfleet config set n1 key=VALUE``
takes back as they are.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["console", "dated", "json_line", "json_text", "shown_url", "when"]

# Keys whose number is a Unix time: ``ts``, ``*_at``, and a few agent fields.
_TIME_KEYS = frozenset({"ts", "time", "since", "boot_time", "started", "expires_at"})
# 2001-09-09 .. 2100-01-01: a number in this range under a time key is a date, not a count.
_EPOCH_RANGE = (1e9, 4.1e9)

WIDE = 10_000
"""Console width when stdout is not a terminal: tables and lines are never wrapped
for a pipe or a file (rich would otherwise assume 80 columns)."""


def json_text(obj: Any, *, indent: int | None = 2) -> str:
    """``obj`` as JSON (keys sorted, non-JSON values as strings, non-ASCII kept).

    Never raises for what a node may send: a non-finite float becomes the string
    ``"nan"``/``"inf"``, an int too long for ``str()`` ``"<number too long>"``.

    Args:
        obj: any JSON-able value; others (``bytes``, ``datetime``) become ``str(obj)``.
        indent: spaces per level, or None for one line.
    """
    return _dumps(obj, indent=indent)


def json_line(obj: Any) -> str:
    """One JSON Lines record: compact JSON without a newline inside, plus ``\\n``."""
    return _dumps(obj, separators=(",", ":")) + "\n"


def _dumps(obj: Any, **kwargs: Any) -> str:
    kwargs.update(sort_keys=True, ensure_ascii=False, default=str, allow_nan=False)
    try:
        return json.dumps(obj, **kwargs)
    except (ValueError, TypeError):  # nan, a 5,000-digit int, keys that do not sort together
        return json.dumps(_plain(obj), **kwargs)


def _plain(obj: Any) -> Any:
    """``obj`` with what JSON cannot carry as strings (see :func:`json_text`)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, int) and not isinstance(obj, bool):
        try:
            str(obj)
        except ValueError:
            return "<number too long>"
    return obj


def when(ts: float) -> str:
    """A Unix time (seconds) as a local ISO 8601 date with its UTC offset,
    ``2026-11-30T09:41:25+00:00``."""
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def _is_time(key: str, value: Any) -> bool:
    return (
        (key in _TIME_KEYS or key.endswith("_at"))
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (not isinstance(value, float) or math.isfinite(value))  # a huge int: no float()
        and _EPOCH_RANGE[0] <= value <= _EPOCH_RANGE[1]
    )


def dated(obj: Any) -> Any:
    """A copy of ``obj`` with every Unix time under a time key (``ts``, ``*_at``,
    ``boot_time``...) written as :func:`when` does. Other values are unchanged."""
    if isinstance(obj, dict):
        return {k: when(v) if isinstance(k, str) and _is_time(k, v) else dated(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [dated(v) for v in obj]
    return obj


def shown_url(url: str) -> str:
    """A broker URL fit to print: ``mqtt://user:secret@host:1883`` → ``mqtt://host:1883``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url.rpartition("@")[2]
    return f"{scheme}://{rest.rpartition('@')[2]}"


def console(file: TextIO) -> Console:
    """A rich console on ``file``: the terminal's width on a terminal, else
    :data:`WIDE` columns and no markup colours (a pipe gets whole lines)."""
    from rich.console import Console

    tty = file.isatty() if hasattr(file, "isatty") else False
    if tty:
        return Console(file=file, highlight=False)
    return Console(file=file, highlight=False, width=WIDE, soft_wrap=True)
