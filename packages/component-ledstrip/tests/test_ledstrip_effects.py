from __future__ import annotations

import pytest

from devfleet_base import ContractError
from devfleet_ledstrip import EFFECTS, effect_names, make_effect, pack, parse_colour, to_hex
from devfleet_ledstrip.colour import blend, scale, unpack, wheel

N = 30
FPS = 30.0


@pytest.mark.parametrize("name", effect_names())
def test_every_effect_renders_full_frames_of_24_bit_ints(name: str) -> None:
    effect = make_effect(name, N, FPS, {})
    for n in range(0, 200, 7):
        frame = effect.render(n)
        assert len(frame) == N
        assert all(isinstance(c, int) and 0 <= c <= 0xFFFFFF for c in frame)


def test_all_required_effects_exist() -> None:
    assert set(EFFECTS) == {
        "solid",
        "fade",
        "wipe",
        "rainbow",
        "rainbow_cycle",
        "sparkle",
        "theatre_chase",
        "off",
    }


def test_colour_parsing() -> None:
    assert parse_colour("#ff8000") == 0xFF8000
    assert parse_colour([1, 2, 3]) == pack(1, 2, 3)
    assert to_hex(0x0A0B0C) == "#0a0b0c"
    assert unpack(0x102030) == (0x10, 0x20, 0x30)
    for bad in ("red", "#ff80", [1, 2], [1, 2, 256], [1, 2, True], 7, None):
        with pytest.raises(ContractError):
            parse_colour(bad)


def test_scale_and_blend() -> None:
    assert scale(0xFF8040, 255) == 0xFF8040
    assert scale(0xFF8040, 0) == 0
    assert scale(0xFF0000, 128) == pack(128, 0, 0)
    assert blend(0x000000, 0xFFFFFF, 0.0) == 0
    assert blend(0x000000, 0xFFFFFF, 1.0) == 0xFFFFFF
    assert wheel(0) == pack(255, 0, 0)


def test_solid_and_off() -> None:
    assert make_effect("solid", N, FPS, {"color": "#00ff00"}).render(5) == [0x00FF00] * N
    assert make_effect("off", N, FPS, {}).render(0) == [0] * N


def test_fade_goes_from_colour_to_target_and_back() -> None:
    fade = make_effect("fade", N, FPS, {"color": [255, 0, 0], "to": "#0000ff", "period": 1.0})
    assert fade.render(0)[0] == 0xFF0000
    assert fade.render(30)[0] == 0x0000FF  # one period at 30 fps
    assert fade.render(60)[0] == 0xFF0000  # loop: back again
    once = make_effect("fade", N, FPS, {"color": "#ff0000", "to": "#0000ff", "loop": False})
    assert once.render(10_000)[0] == 0x0000FF


def test_speed_scales_the_pace() -> None:
    slow = make_effect("fade", N, FPS, {"period": 1.0})
    fast = make_effect("fade", N, FPS, {"period": 1.0, "speed": 2.0})
    assert fast.render(15) == slow.render(30)


def test_wipe_lights_leds_in_order() -> None:
    wipe = make_effect("wipe", 10, 10.0, {"color": "#ffffff", "period": 1.0, "loop": False})
    assert wipe.render(0) == [0] * 10
    assert wipe.render(5) == [0xFFFFFF] * 5 + [0] * 5
    assert wipe.render(10) == [0xFFFFFF] * 10
    assert wipe.render(99) == [0xFFFFFF] * 10


def test_rainbow_cycle_spreads_and_rotates_the_wheel() -> None:
    effect = make_effect("rainbow_cycle", 256, FPS, {"period": 256 / FPS})
    first = effect.render(0)
    assert first == [wheel(i) for i in range(256)]
    assert effect.render(1) == [wheel(i + 1) for i in range(256)]
    assert len(make_effect("rainbow_cycle", 1, FPS, {}).render(3)) == 1


def test_rainbow_is_uniform_and_changes() -> None:
    effect = make_effect("rainbow", N, FPS, {})
    assert len(set(effect.render(0))) == 1
    assert effect.render(0) != effect.render(30)


def test_sparkle_is_reproducible_with_a_seed() -> None:
    params = {"seed": 42, "density": 0.2, "color": "#ffffff"}
    a = make_effect("sparkle", N, FPS, params)
    b = make_effect("sparkle", N, FPS, params)
    frames_a = [list(a.render(n)) for n in range(20)]
    frames_b = [list(b.render(n)) for n in range(20)]
    assert frames_a == frames_b
    assert all(f.count(0xFFFFFF) == 6 for f in frames_a)
    assert len({tuple(f) for f in frames_a}) > 1


def test_theatre_chase_lights_every_third_led_and_crawls() -> None:
    chase = make_effect("theatre_chase", 9, 10.0, {"color": "#ff0000"})
    assert chase.render(0) == [0xFF0000, 0, 0] * 3
    assert chase.render(1) == [0, 0xFF0000, 0] * 3


def test_duration_ends_the_effect() -> None:
    effect = make_effect("solid", N, 10.0, {"duration": 2.0})
    assert not effect.done(19)
    assert effect.done(20)
    assert not make_effect("solid", N, 10.0, {}).done(10**9)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("nope", {}, "unknown effect"),
        ("solid", {"color": "blue"}, "solid.color"),
        ("solid", {"bogus": 1}, "unknown key"),
        ("fade", {"speed": 0}, "speed"),
        ("sparkle", {"density": 2}, "density"),
        ("theatre_chase", {"spacing": 1}, "spacing"),
    ],
)
def test_invalid_params_are_refused(name: str, params: dict[str, object], message: str) -> None:
    with pytest.raises(ContractError, match=message):
        make_effect(name, N, FPS, params)
