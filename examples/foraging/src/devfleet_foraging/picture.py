"""Pictures of a run with Pillow: the arena with each robot's trail, and the metrics plot.

:func:`render_png` draws the arena (nest, light, items, trails, robots coloured
by their last state) beside a plot of the loop functions' metrics over time
(collected items, walking and resting robots). :func:`render_gif` animates the
arena from the trails. Pillow is imported here only (the robot nodes never need it).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .arena import Arena, TickMetrics

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = ["render_gif", "render_png"]

_SCALE = 160  # pixels per metre
_PALETTE = [
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#46f0f0",
    "#f032e6",
    "#bcf60c",
    "#008080",
    "#9a6324",
]


def _arena_image(arena: Arena, upto: int | None, colors: dict[str, str]) -> PILImage.Image:
    from PIL import Image, ImageDraw

    c = arena.config
    w, h = int(c.width * _SCALE), int(c.height * _SCALE)
    img = Image.new("RGB", (w, h), "#f4f1e8")
    d = ImageDraw.Draw(img)

    def px(x: float, y: float) -> tuple[float, float]:
        return x * _SCALE, h - y * _SCALE  # y up, as in the arena

    d.rectangle([0, 0, c.nest_width * _SCALE, h], fill="#d9d9d9")
    lx, ly = px(*c.light)
    d.ellipse([lx - 8, ly - 8, lx + 8, ly + 8], fill="#ffd700", outline="#a08000")
    for x, y in arena.items:
        ix, iy = px(x, y)
        d.ellipse([ix - 4, iy - 4, ix + 4, iy + 4], fill="#222222")
    for i, (name, robot) in enumerate(arena.robots.items()):
        trail = robot.trail[:upto] if upto is not None else robot.trail
        if len(trail) > 1:
            d.line([px(x, y) for x, y in trail], fill=_PALETTE[i % len(_PALETTE)], width=1)
        if trail:
            rx, ry = px(*trail[-1])
            r = c.robot_radius * _SCALE
            if upto is not None and upto < len(robot.trail):
                fill = "#ffffff"  # an earlier frame: its state then is not recorded
            else:
                fill = colors.get(name, "#888888") if robot.online else "#888888"
            d.ellipse(
                [rx - r, ry - r, rx + r, ry + r], fill=fill, outline=_PALETTE[i % len(_PALETTE)], width=3
            )
            d.text((rx + r + 2, ry - r), name, fill="#000000")
    d.rectangle([0, 0, w - 1, h - 1], outline="#000000", width=2)
    return img


def _plot(rows: list[TickMetrics], width: int, height: int) -> PILImage.Image:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), "#ffffff")
    d = ImageDraw.Draw(img)
    left, right, top, bottom = 50, 20, 30, 40
    pw, ph = width - left - right, height - top - bottom
    d.rectangle([left, top, left + pw, top + ph], outline="#000000")
    if not rows:
        return img
    t_max = rows[-1].clock or 1.0
    robots = max(1, max(r.walking + r.resting for r in rows))
    items = max(1, rows[-1].collected)
    series = [
        ("collected items", "#000000", [r.collected / items for r in rows], items),
        ("walking robots", "#00a000", [r.walking / robots for r in rows], robots),
        ("resting robots", "#d00000", [r.resting / robots for r in rows], robots),
    ]
    for k, (label, color, values, top_value) in enumerate(series):
        points = [
            (left + pw * r.clock / t_max, top + ph * (1 - v)) for r, v in zip(rows, values, strict=True)
        ]
        if len(points) > 1:
            d.line(points, fill=color, width=2)
        d.text((left + 8 + k * 150, 8), f"{label} (max {top_value})", fill=color)
    d.text((left, top + ph + 8), "0 s", fill="#000000")
    d.text((left + pw - 40, top + ph + 8), f"{t_max:.0f} s", fill="#000000")
    return img


def render_png(arena: Arena, rows: list[TickMetrics], path: Path, colors: dict[str, str]) -> Path:
    """The arena with trails (robots filled with their last state's colour, lost ones grey)
    beside the metrics plot; returns ``path``."""
    from PIL import Image

    field = _arena_image(arena, None, colors)
    plot = _plot(rows, 640, field.height)
    out = Image.new("RGB", (field.width + plot.width, field.height), "#ffffff")
    out.paste(field, (0, 0))
    out.paste(plot, (field.width, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)
    return path


def render_gif(arena: Arena, path: Path, colors: dict[str, str], *, frames: int = 60) -> Path:
    """The run as an animation of the trails growing (``frames`` frames; robots white until
    the last frame, which shows their final state); returns ``path``."""
    length = max((len(r.trail) for r in arena.robots.values()), default=0)
    if length == 0:
        raise ValueError("nothing to animate: the arena never ticked")
    steps = sorted({max(1, length * (k + 1) // frames) for k in range(frames)})
    images = [_arena_image(arena, upto, colors).resize((240, 240)) for upto in steps]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)
    return path
