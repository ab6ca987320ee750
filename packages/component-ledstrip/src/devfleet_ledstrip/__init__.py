"""devfleet LED strip component: pure effect generators, simulated and WS281x backends."""

from __future__ import annotations

from .api import StripControl
from .backends import (
    SimulatedStrip,
    Strip,
    Ws281xStrip,
    downsample,
    is_raspberry_pi,
    select_backend,
)
from .colour import pack, parse_colour, to_hex, unpack
from .component import LedStrip
from .effects import EFFECTS, Effect, Frame, effect_names, make_effect

__version__ = "0.1.0"

__all__ = [
    "EFFECTS",
    "Effect",
    "Frame",
    "LedStrip",
    "SimulatedStrip",
    "Strip",
    "StripControl",
    "Ws281xStrip",
    "__version__",
    "downsample",
    "effect_names",
    "is_raspberry_pi",
    "make_effect",
    "pack",
    "parse_colour",
    "select_backend",
    "to_hex",
    "unpack",
]
