"""Time frame computation per effect for a 300-LED strip against the 60 fps budget.

Not a test. Run: ``python packages/component-ledstrip/bench/bench_effects.py``
Prints a text table, then one JSON document with the same numbers.

Two costs are measured per effect: ``render`` (the effect alone) and ``pipeline``
(render + SimulatedStrip.show, i.e. what one ``LedStrip._process`` costs minus
the event loop). The budget at 60 fps is 16.7 ms per frame.
"""

from __future__ import annotations

import json
import platform
import sys
import time

from devfleet_ledstrip import SimulatedStrip, effect_names, make_effect

LEDS = 300
FPS = 60.0
BUDGET_MS = 1000.0 / FPS
FRAMES = 3000


def _time(fn: object, frames: int) -> float:
    """Best-of-5 mean milliseconds per call of ``fn(n)``."""
    call = fn  # type: ignore[assignment]
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for n in range(frames):
            call(n)  # type: ignore[operator]
        best = min(best, (time.perf_counter() - start) / frames)
    return best * 1000.0


def main() -> None:
    rows = []
    for name in effect_names():
        params = {"seed": 1} if name == "sparkle" else {}
        effect = make_effect(name, LEDS, FPS, params)
        strip = SimulatedStrip(LEDS)
        strip.start()

        def pipeline(n: int, effect=effect, strip=strip) -> None:
            strip.show(effect.render(n))

        render_ms = _time(effect.render, FRAMES)
        pipeline_ms = _time(pipeline, FRAMES)
        rows.append(
            {
                "effect": name,
                "render_us": round(render_ms * 1000, 2),
                "pipeline_us": round(pipeline_ms * 1000, 2),
                "budget_pct": round(100 * pipeline_ms / BUDGET_MS, 3),
            }
        )

    # The Python side of Ws281xStrip.show: one setPixelColor call per LED into a
    # stand-in with the same call shape (the C show() itself is not measured here).
    class _FakePixelStrip:
        def setPixelColor(self, i: int, c: int) -> None:
            pass

        def show(self) -> None:
            pass

    from devfleet_ledstrip import Ws281xStrip

    hw = Ws281xStrip(LEDS)
    hw._strip = _FakePixelStrip()
    frame = make_effect("rainbow_cycle", LEDS, FPS, {}).render(0)
    ws_ms = _time(lambda n: hw.show(frame), FRAMES // 3)
    rows.append(
        {
            "effect": "(ws281x show loop)",
            "render_us": 0.0,
            "pipeline_us": round(ws_ms * 1000, 2),
            "budget_pct": round(100 * ws_ms / BUDGET_MS, 3),
        }
    )
    print(
        f"{LEDS} LEDs, budget {BUDGET_MS:.1f} ms/frame at {FPS:g} fps, "
        f"python {platform.python_version()} on {platform.machine()}"
    )
    print(f"{'effect':<20}{'render µs':>12}{'pipeline µs':>14}{'% budget':>10}")
    for row in rows:
        print(
            f"{row['effect']:<20}{row['render_us']:>12.2f}{row['pipeline_us']:>14.2f}"
            f"{row['budget_pct']:>10.3f}"
        )
    json.dump(
        {
            "leds": LEDS,
            "fps": FPS,
            "budget_ms": round(BUDGET_MS, 3),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "results": rows,
        },
        sys.stdout,
        indent=1,
    )
    print()


if __name__ == "__main__":
    main()
