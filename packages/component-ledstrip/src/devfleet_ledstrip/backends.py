"""Where frames go: a simulated strip in memory, or a WS281x strip on a Raspberry Pi.

Never construct a real ``rpi_ws281x.PixelStrip`` off a Pi: its exit handler
segfaults the process. :func:`select_backend` with ``"auto"`` picks WS281x only
when ``/proc/device-tree/model`` names a Raspberry Pi; ``rpi_ws281x`` itself is
imported inside :meth:`Ws281xStrip.start`, never at import time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from devfleet_base import ComponentError

from .colour import scale, to_hex

__all__ = [
    "DEVICE_TREE_MODEL",
    "SimulatedStrip",
    "Strip",
    "Ws281xStrip",
    "downsample",
    "is_raspberry_pi",
    "select_backend",
]

DEVICE_TREE_MODEL = Path("/proc/device-tree/model")


class Strip(Protocol):
    """What :class:`~devfleet_ledstrip.LedStrip` needs from a backend."""

    kind: str

    def start(self) -> None:
        """Acquire the hardware (or nothing)."""
        ...

    def show(self, frame: Sequence[int]) -> None:
        """Display one frame of packed ``0xRRGGBB`` colours."""
        ...

    def set_brightness(self, brightness: int) -> None:
        """Global brightness 0..255, applied to every following frame."""
        ...

    def stop(self) -> None:
        """Switch the LEDs off and release the hardware; idempotent."""
        ...


def downsample(frame: Sequence[int], size: int, brightness: int = 255) -> list[str]:
    """Pick ``size`` evenly spaced LEDs of ``frame`` as ``#rrggbb`` strings.

    Args:
        frame: packed colours.
        size: the number of preview pixels (at most ``len(frame)``).
        brightness: applied to the picked colours, as the strip would show them.
    """
    count = len(frame)
    if count == 0 or size <= 0:
        return []
    size = min(size, count)
    return [to_hex(scale(frame[i * count // size], brightness)) for i in range(size)]


class SimulatedStrip:
    """A strip in memory: keeps the last ``history`` frames and counts them.

    Args:
        led_count: LEDs per frame.
        history: how many recent frames to keep (the oldest drop out).
        brightness: initial global brightness 0..255.
    """

    kind = "simulated"

    def __init__(self, led_count: int, *, history: int = 120, brightness: int = 255) -> None:
        self.led_count = led_count
        self.brightness = brightness
        self.frames: deque[Sequence[int]] = deque(maxlen=history)
        self.shown = 0
        self.running = False

    def start(self) -> None:
        self.running = True

    def show(self, frame: Sequence[int]) -> None:
        if len(frame) != self.led_count:
            raise ValueError(f"frame has {len(frame)} LEDs, strip has {self.led_count}")
        self.frames.append(frame)
        self.shown += 1

    def set_brightness(self, brightness: int) -> None:
        self.brightness = brightness

    def stop(self) -> None:
        self.running = False

    @property
    def last(self) -> Sequence[int] | None:
        """The most recent frame, raw (before brightness)."""
        return self.frames[-1] if self.frames else None

    def visible(self) -> list[int]:
        """The most recent frame as the LEDs would show it (brightness applied)."""
        last = self.last
        if last is None:
            return [0] * self.led_count
        return [scale(c, self.brightness) for c in last]

    def preview(self, size: int) -> list[str]:
        """The most recent frame down-sampled to ``size`` ``#rrggbb`` pixels."""
        last = self.last
        return downsample(last if last is not None else [0] * self.led_count, size, self.brightness)


class Ws281xStrip:
    """A WS281x/SK6812 strip driven by ``rpi_ws281x`` (install the ``[pi]`` extra).

    Args:
        led_count: LEDs on the strip.
        pin: the GPIO (BCM numbering): 18 or 12 (PWM), 21 (PCM), 10 (SPI).
        channel: the PWM channel (1 for GPIO 13/19, else 0).
        strip_type: an ``rpi_ws281x`` constant name, e.g. ``WS2811_STRIP_GRB``.
        brightness: initial global brightness 0..255.
        dma: the DMA channel (10 is safe on current kernels).
        freq_hz: the LED signal frequency.
        invert: invert the signal (when driven through an inverting level shifter).
    """

    kind = "ws281x"

    def __init__(
        self,
        led_count: int,
        *,
        pin: int = 18,
        channel: int = 0,
        strip_type: str = "WS2811_STRIP_GRB",
        brightness: int = 255,
        dma: int = 10,
        freq_hz: int = 800_000,
        invert: bool = False,
    ) -> None:
        self.led_count = led_count
        self.pin = pin
        self.channel = channel
        self.strip_type = strip_type
        self.brightness = brightness
        self.dma = dma
        self.freq_hz = freq_hz
        self.invert = invert
        self._strip: Any = None

    def start(self) -> None:
        if not is_raspberry_pi():
            raise ComponentError("ws281x backend refused: this machine is not a Raspberry Pi")
        try:
            import rpi_ws281x  # lazy: a C extension, present only on a Pi with the [pi] extra
        except ImportError as exc:
            raise ComponentError(
                "ws281x backend needs rpi_ws281x: pip install 'devfleet-component-ledstrip[pi]'"
            ) from exc
        strip_type = getattr(rpi_ws281x, self.strip_type, None)
        if not isinstance(strip_type, int):
            raise ComponentError(f"unknown strip_type {self.strip_type!r} in rpi_ws281x")
        strip = rpi_ws281x.PixelStrip(
            self.led_count,
            self.pin,
            self.freq_hz,
            self.dma,
            self.invert,
            self.brightness,
            self.channel,
            strip_type,
        )
        strip.begin()
        self._strip = strip

    def show(self, frame: Sequence[int]) -> None:
        strip = self._strip
        if strip is None:
            raise ComponentError("ws281x strip is not started")
        set_pixel = strip.setPixelColor
        for i, colour in enumerate(frame):
            set_pixel(i, colour)
        strip.show()

    def set_brightness(self, brightness: int) -> None:
        self.brightness = brightness
        if self._strip is not None:
            self._strip.setBrightness(brightness)

    def stop(self) -> None:
        strip, self._strip = self._strip, None
        if strip is None:
            return
        for i in range(self.led_count):
            strip.setPixelColor(i, 0)
        strip.show()


def is_raspberry_pi(model_path: Path = DEVICE_TREE_MODEL) -> bool:
    """True when the device tree names a Raspberry Pi."""
    try:
        model = model_path.read_bytes()
    except OSError:
        return False
    return b"Raspberry Pi" in model


def select_backend(
    backend: str,
    led_count: int,
    *,
    pin: int = 18,
    channel: int = 0,
    strip_type: str = "WS2811_STRIP_GRB",
    brightness: int = 255,
    dma: int = 10,
    model_path: Path = DEVICE_TREE_MODEL,
) -> Strip:
    """Build the backend named by config (``auto``, ``simulated`` or ``ws281x``).

    ``auto`` picks WS281x only on a Raspberry Pi, else the simulated strip.
    Nothing hardware-related is imported or opened here (see ``start``).
    """
    if backend == "auto":
        backend = "ws281x" if is_raspberry_pi(model_path) else "simulated"
    if backend == "simulated":
        return SimulatedStrip(led_count, brightness=brightness)
    if backend == "ws281x":
        return Ws281xStrip(
            led_count,
            pin=pin,
            channel=channel,
            strip_type=strip_type,
            brightness=brightness,
            dma=dma,
        )
    raise ComponentError(f"unknown LED backend {backend!r}")
