"""LED effects as pure frame generators: no hardware, no clock, no I/O.

An effect is built for a strip length and a frame rate, then asked for frame
``n`` (``render(n)``); time is ``n / fps``, so an effect is deterministic and a
test can render any frame directly. A frame is a ``list[int]`` of packed
``0xRRGGBB`` colours, one per LED. Frames returned by :meth:`Effect.render` may be
cached and shared: treat them as read-only.

Brightness is not an effect parameter: the backend applies it (the WS281x
driver does it in C for free), so effects never rescale per frame.

Common parameters of every effect (validated with :class:`devfleet_base.Schema`):

- ``speed``: pace multiplier, ``1.0`` is the effect's natural pace.
- ``duration``: seconds before the effect ends (the strip then goes off);
  ``null`` runs forever.
- ``loop``: finite animations (fade, wipe) repeat when true, hold their last
  frame when false.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, ClassVar

from devfleet_base import ContractError, Field, Schema

from .colour import BLACK, blend, parse_colour, wheel_table

__all__ = [
    "EFFECTS",
    "ColourWipe",
    "Effect",
    "Fade",
    "Frame",
    "Off",
    "Rainbow",
    "RainbowCycle",
    "Solid",
    "Sparkle",
    "TheatreChase",
    "effect_names",
    "make_effect",
]

Frame = list[int]

_COMMON: dict[str, Field] = {
    "speed": Field("float", default=1.0, min=0.01, max=100.0, doc="pace multiplier"),
    "duration": Field("float", default=None, nullable=True, min=0.0, doc="seconds to run, null = forever"),
    "loop": Field("bool", default=True, doc="repeat finite animations"),
}


def _colour_field(default: str, doc: str) -> Field:
    return Field("any", default=default, doc=f"{doc}: '#rrggbb' or [r, g, b]")


def _schema(name: str, **fields: Field) -> Schema:
    return Schema(f"{name}.params", {**_COMMON, **fields})


class Effect:
    """Base of every effect.

    Args:
        led_count: number of LEDs in a frame.
        fps: frames per second the effect is rendered at.
        params: parameters already validated by :attr:`params_schema`
            (use :func:`make_effect` to validate and build in one step).
    """

    name: ClassVar[str] = ""
    params_schema: ClassVar[Schema] = _schema("effect")
    colour_params: ClassVar[tuple[str, ...]] = ()

    def __init__(self, led_count: int, fps: float, params: dict[str, Any]) -> None:
        self.led_count = led_count
        self.fps = fps
        self.params = params
        self.speed: float = params["speed"]
        self.loop: bool = params["loop"]
        duration = params["duration"]
        self._end_frame: int | None = None if duration is None else round(duration * fps)

    @classmethod
    def validate(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Validate and normalise parameters; colours are checked too.

        Raises:
            ContractError: naming the offending parameter.
        """
        checked = cls.params_schema.validate(params, path=cls.name)
        for key in cls.colour_params:
            parse_colour(checked[key], f"{cls.name}.{key}")
        return checked

    def colour(self, key: str) -> int:
        """A colour parameter as a packed int."""
        return parse_colour(self.params[key], key)

    def frames_for(self, seconds: float) -> int:
        """Frames that ``seconds`` of natural pace take at the current speed (>= 1)."""
        return max(1, round(seconds * self.fps / self.speed))

    def done(self, n: int) -> bool:
        """True when frame ``n`` is past the effect's ``duration``."""
        return self._end_frame is not None and n >= self._end_frame

    def render(self, n: int) -> Frame:
        """Frame number ``n`` (0-based)."""
        raise NotImplementedError


class Off(Effect):
    """Every LED dark."""

    name = "off"
    params_schema = _schema("off")

    def __init__(self, led_count: int, fps: float, params: dict[str, Any]) -> None:
        super().__init__(led_count, fps, params)
        self._frame = [BLACK] * led_count

    def render(self, n: int) -> Frame:
        return self._frame


class Solid(Effect):
    """One colour on every LED."""

    name = "solid"
    params_schema = _schema("solid", color=_colour_field("#ffffff", "the colour"))
    colour_params = ("color",)

    def __init__(self, led_count: int, fps: float, params: dict[str, Any]) -> None:
        super().__init__(led_count, fps, params)
        self._frame = [self.colour("color")] * led_count

    def render(self, n: int) -> Frame:
        return self._frame


class Fade(Effect):
    """The whole strip fades from ``color`` to ``to`` in ``period`` seconds.

    With ``loop`` it fades back and forth; without, it holds ``to``.
    """

    name = "fade"
    params_schema = _schema(
        "fade",
        color=_colour_field("#ffffff", "start colour"),
        to=_colour_field("#000000", "end colour"),
        period=Field("float", default=2.0, min=0.05, max=3600.0, doc="seconds per fade"),
    )
    colour_params = ("color", "to")

    def __init__(self, led_count: int, fps: float, params: dict[str, Any]) -> None:
        super().__init__(led_count, fps, params)
        self._a = self.colour("color")
        self._b = self.colour("to")
        self._steps = self.frames_for(params["period"])
        self._last: tuple[int, Frame] = (-1, [])

    def render(self, n: int) -> Frame:
        steps = self._steps
        if not self.loop and n >= steps:
            t = 1.0
        else:
            phase = n % (2 * steps)
            t = phase / steps if phase <= steps else (2 * steps - phase) / steps
        c = blend(self._a, self._b, t)
        if self._last[0] != c:  # consecutive frames often share a colour at slow fades
            self._last = (c, [c] * self.led_count)
        return self._last[1]


class ColourWipe(Effect):
    """LEDs switch to ``color`` one after another over ``period`` seconds.

    With ``loop`` the wipe restarts from ``background``; without, it holds.
    """

    name = "wipe"
    params_schema = _schema(
        "wipe",
        color=_colour_field("#ffffff", "wipe colour"),
        background=_colour_field("#000000", "colour before the wipe"),
        period=Field("float", default=2.0, min=0.05, max=3600.0, doc="seconds per wipe"),
    )
    colour_params = ("color", "background")

    def __init__(self, led_count: int, fps: float, params: dict[str, Any]) -> None:
        super().__init__(led_count, fps, params)
        self._fg = self.colour("color")
        self._bg = self.colour("background")
        self._steps = self.frames_for(params["period"])

    def render(self, n: int) -> Frame:
        count = self.led_count
        lit = count if not self.loop and n >= self._steps else n % (self._steps + 1) * count // self._steps
        return [self._fg] * lit + [self._bg] * (count - lit)


class Rainbow(Effect):
    """The whole strip cycles through the colour wheel every ``period`` seconds."""

    name = "rainbow"
    params_schema = _schema(
        "rainbow",
        period=Field("float", default=5.0, min=0.05, max=3600.0, doc="seconds per cycle"),
    )

    def __init__(self, led_count: int, fps: float, params: dict[str, Any]) -> None:
        super().__init__(led_count, fps, params)
        self._steps = self.frames_for(params["period"])
        self._wheel = wheel_table()

    def render(self, n: int) -> Frame:
        return [self._wheel[(n % self._steps) * 256 // self._steps]] * self.led_count


class RainbowCycle(Effect):
    """The colour wheel spread along the strip, rotating every ``period`` seconds."""

    name = "rainbow_cycle"
    params_schema = _schema(
        "rainbow_cycle",
        period=Field("float", default=5.0, min=0.05, max=3600.0, doc="seconds per rotation"),
    )

    def __init__(self, led_count: int, fps: float, params: dict[str, Any]) -> None:
        super().__init__(led_count, fps, params)
        self._steps = self.frames_for(params["period"])
        self._double = wheel_table() * 2
        offsets = [i * 256 // led_count for i in range(led_count)]
        # itemgetter picks every LED's wheel slot in one C call; it returns a bare
        # item (not a tuple) for a single index, so a 1-LED strip gets a wrapper.
        self._pick: Callable[[Sequence[int]], Sequence[int]] = (
            _first if led_count == 1 else itemgetter(*offsets)
        )

    def render(self, n: int) -> Frame:
        shift = (n % self._steps) * 256 // self._steps
        return list(self._pick(self._double[shift : shift + 256]))


def _first(seq: Sequence[int]) -> Sequence[int]:
    return (seq[0],)


class Sparkle(Effect):
    """Random LEDs flash ``color`` over ``background``.

    ``density`` is the fraction of LEDs lit in each pattern; the pattern changes
    20 times a second at speed 1. Give ``seed`` for a reproducible sequence.
    """

    name = "sparkle"
    params_schema = _schema(
        "sparkle",
        color=_colour_field("#ffffff", "sparkle colour"),
        background=_colour_field("#000000", "background colour"),
        density=Field("float", default=0.03, min=0.0, max=1.0, doc="fraction of LEDs lit"),
        seed=Field("int", default=None, nullable=True, doc="random seed for a fixed sequence"),
    )
    colour_params = ("color", "background")

    def __init__(self, led_count: int, fps: float, params: dict[str, Any]) -> None:
        super().__init__(led_count, fps, params)
        self._fg = self.colour("color")
        self._bg = self.colour("background")
        self._lit = round(params["density"] * led_count)
        self._rng = random.Random(params["seed"])
        self._every = self.frames_for(1 / 20)
        self._pattern = -1
        self._frame: Frame = [self._bg] * led_count
        self._indices = range(led_count)

    def render(self, n: int) -> Frame:
        pattern = n // self._every
        if pattern != self._pattern:
            self._pattern = pattern
            frame = [self._bg] * self.led_count
            fg = self._fg
            for i in self._rng.sample(self._indices, self._lit):
                frame[i] = fg
            self._frame = frame
        return self._frame


class TheatreChase(Effect):
    """Every ``spacing``-th LED lit, the pattern crawling 10 steps a second at speed 1."""

    name = "theatre_chase"
    params_schema = _schema(
        "theatre_chase",
        color=_colour_field("#ffffff", "chase colour"),
        background=_colour_field("#000000", "background colour"),
        spacing=Field("int", default=3, min=2, max=64, doc="one LED lit in every N"),
    )
    colour_params = ("color", "background")

    def __init__(self, led_count: int, fps: float, params: dict[str, Any]) -> None:
        super().__init__(led_count, fps, params)
        fg, bg, spacing = self.colour("color"), self.colour("background"), params["spacing"]
        self._every = self.frames_for(1 / 10)
        self._frames = [
            [fg if i % spacing == offset else bg for i in range(led_count)] for offset in range(spacing)
        ]

    def render(self, n: int) -> Frame:
        return self._frames[(n // self._every) % len(self._frames)]


EFFECTS: dict[str, type[Effect]] = {
    cls.name: cls for cls in (Solid, Fade, ColourWipe, Rainbow, RainbowCycle, Sparkle, TheatreChase, Off)
}
"""Every effect by name."""


def effect_names() -> tuple[str, ...]:
    """The effect names, in a stable order."""
    return tuple(EFFECTS)


def make_effect(name: str, led_count: int, fps: float, params: dict[str, Any]) -> Effect:
    """Validate ``params`` for effect ``name`` and build it.

    Raises:
        ContractError: unknown effect or invalid parameters.
    """
    cls = EFFECTS.get(name)
    if cls is None:
        known = ", ".join(EFFECTS)
        raise ContractError(f"effect: unknown effect {name!r} (known: {known})")
    return cls(led_count, fps, cls.validate(params))
