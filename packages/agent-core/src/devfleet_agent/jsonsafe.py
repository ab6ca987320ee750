"""Find values JSON cannot carry before anything is written or published.

Python's ``json`` reads ``1e400`` as ``inf`` and writes it back as ``Infinity``,
which is not JSON: every strict reader (the console's, ``contract.decode``)
refuses it. A value like that must be refused where it enters, never stored.
"""

from __future__ import annotations

import math
from typing import Any

from devfleet_base.errors import Code, ContractError

__all__ = ["check_finite", "non_finite_path"]


def non_finite_path(value: Any, where: str = "") -> str | None:
    """The dotted path of the first NaN or infinity in ``value``, or None.

    Args:
        value: decoded JSON (dicts, lists, scalars).
        where: the path of ``value`` itself (for the message).
    """
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return path or "(the value)"
        elif isinstance(item, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(item))
    return None


def check_finite(value: Any, what: str) -> None:
    """Raise ContractError ``invalid`` when ``value`` holds a NaN or an infinity.

    Args:
        value: decoded JSON.
        what: names the value in the message (``"config"``, ``"spawn"``).
    """
    path = non_finite_path(value)
    if path is not None:
        raise ContractError(
            f"{what}: {path} is not a finite number (JSON has no NaN or Infinity; 1e400 overflows)",
            code=Code.INVALID,
        )
