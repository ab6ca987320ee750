"""Colours as packed 24-bit ints (``0xRRGGBB``), the representation every frame uses.

A packed int is the cheapest pure-Python pixel: a frame is a plain ``list[int]``,
copying or filling one is a C-level list operation, and the WS281x driver takes
the same packed value without conversion.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from devfleet_base import ContractError

__all__ = [
    "BLACK",
    "WHITE",
    "blend",
    "pack",
    "parse_colour",
    "scale",
    "to_hex",
    "unpack",
    "wheel",
    "wheel_table",
]

BLACK = 0x000000
WHITE = 0xFFFFFF

_HEX = re.compile(r"#?([0-9a-fA-F]{6})")


def pack(r: int, g: int, b: int) -> int:
    """Pack three 0..255 channels into one ``0xRRGGBB`` int."""
    return (r << 16) | (g << 8) | b


def unpack(colour: int) -> tuple[int, int, int]:
    """Split a packed colour into ``(r, g, b)``."""
    return (colour >> 16) & 0xFF, (colour >> 8) & 0xFF, colour & 0xFF


def to_hex(colour: int) -> str:
    """Format a packed colour as ``#rrggbb``."""
    return f"#{colour & 0xFFFFFF:06x}"


def parse_colour(value: Any, path: str = "colour") -> int:
    """Parse ``"#rrggbb"`` (the ``#`` optional) or ``[r, g, b]`` into a packed int.

    Raises:
        ContractError: the value is neither form, or a channel is out of 0..255.
    """
    if isinstance(value, str):
        match = _HEX.fullmatch(value.strip())
        if match is None:
            raise ContractError(f"{path}: {value[:20]!r} is not a colour (use '#rrggbb')")
        return int(match.group(1), 16)
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        if len(value) != 3:
            raise ContractError(f"{path}: a colour list needs exactly 3 channels [r, g, b]")
        channels: list[int] = []
        for i, c in enumerate(value):
            if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= 255:
                raise ContractError(f"{path}[{i}]: must be an integer 0..255")
            channels.append(c)
        return pack(*channels)
    raise ContractError(f"{path}: expected '#rrggbb' or [r, g, b]")


def scale(colour: int, brightness: int) -> int:
    """Scale a packed colour by ``brightness/255`` (0..255)."""
    if brightness >= 255:
        return colour
    r, g, b = unpack(colour)
    return pack(r * brightness // 255, g * brightness // 255, b * brightness // 255)


def blend(a: int, b: int, t: float) -> int:
    """Linear blend from ``a`` (t=0) to ``b`` (t=1)."""
    ar, ag, ab = unpack(a)
    br, bg, bb = unpack(b)
    return pack(
        int(ar + (br - ar) * t + 0.5),
        int(ag + (bg - ag) * t + 0.5),
        int(ab + (bb - ab) * t + 0.5),
    )


def wheel(pos: int) -> int:
    """The classic 0..255 colour wheel: red → green → blue → red."""
    pos = 255 - (pos & 0xFF)
    if pos < 85:
        return pack(255 - pos * 3, 0, pos * 3)
    if pos < 170:
        pos -= 85
        return pack(0, pos * 3, 255 - pos * 3)
    pos -= 170
    return pack(pos * 3, 255 - pos * 3, 0)


_WHEEL: tuple[int, ...] = tuple(wheel(i) for i in range(256))


def wheel_table() -> tuple[int, ...]:
    """The 256 wheel colours, precomputed once."""
    return _WHEEL
