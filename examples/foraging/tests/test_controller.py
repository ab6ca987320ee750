"""The footbot_foraging state machine and the Labella 2006 adaptive rule, without a broker."""

from __future__ import annotations

import math

import pytest
from devfleet_foraging.controller import COLORS, Action, Controller, Mode, Params, Sensors, State, adapt
from hypothesis import given
from hypothesis import strategies as st

P = Params(min_rest_time=0.2, give_up_time=0.5, leave_prob=1.0, give_up_prob=1.0, prob_max=1.0)


def running(params: Params = P) -> Controller:
    c = Controller(params, seed=3)
    c.start()
    return c


def test_colours_follow_the_argos_convention() -> None:
    assert COLORS == {State.RESTING: "#ff0000", State.EXPLORING: "#00ff00", State.RETURNING: "#0000ff"}


def test_held_until_started_then_leaves_the_nest_after_the_minimum_rest() -> None:
    c = Controller(P, seed=1)
    assert (c.state, c.mode) == (State.RESTING, Mode.HELD)
    for _ in range(10):
        assert c.step(Sensors()) == Action()  # held: never leaves
    assert c.state is State.RESTING
    c.start()
    c.step(Sensors())  # 0.1 s rested: below min_rest_time
    assert c.state is State.RESTING
    c.step(Sensors())
    assert c.state is State.EXPLORING  # leave_prob 1.0 once 0.2 s have passed


def test_explorer_steers_to_food_picks_it_and_returns_with_success() -> None:
    c = running()
    while c.state is State.RESTING:
        c.step(Sensors())
    a = c.step(Sensors(food=[(0.4, 0.5)]))
    assert a.v > 0 and a.w > 0 and a.gripper is None  # turns left toward the item
    a = c.step(Sensors(food=[(0.05, 0.0)]))
    assert a.gripper == "pick" and (a.v, a.w) == (0.0, 0.0)
    assert c.step(Sensors(food=[(0.05, 0.0)])) == Action()  # waits for the gripper
    before = c.leave_prob, c.give_up_prob
    c.gripper_done("pick", True)
    assert c.state is State.RETURNING and c.successes == 1
    assert c.leave_prob >= before[0] and c.give_up_prob <= before[1]
    a = c.step(Sensors(light_bearing=-math.pi / 2, carrying=True))
    assert a.w < 0  # turns right toward the light
    a = c.step(Sensors(in_nest=True, carrying=True))
    assert a.gripper == "drop"
    c.gripper_done("drop", True)
    assert c.delivered == 1
    states = []
    for _ in range(10):
        c.step(Sensors(in_nest=True))
        states.append(c.state)
    assert State.RESTING in states  # after driving search_nest_time into the nest


def test_failed_pick_keeps_exploring() -> None:
    c = running()
    while c.state is State.RESTING:
        c.step(Sensors())
    c.step(Sensors(food=[(0.05, 0.0)]))
    c.gripper_done("pick", False)
    assert c.state is State.EXPLORING and c.successes == 0


def test_gives_up_after_the_time_without_food_and_adapts_down() -> None:
    p = Params(min_rest_time=0.0, give_up_time=0.5, leave_prob=0.3, give_up_prob=1.0, delta=0.1, prob_max=1.0)
    c = running(p)
    while c.state is State.RESTING:
        c.step(Sensors())
    ticks = 0
    while c.state is State.EXPLORING:
        c.step(Sensors())
        ticks += 1
    assert c.state is State.RETURNING and c.failures == 1
    assert ticks == 5  # 0.5 s at 10 Hz, then give_up_prob 1.0
    assert c.leave_prob == pytest.approx(0.2)  # failure: leaving less likely


def test_obstacle_in_front_is_avoided() -> None:
    c = running()
    while c.state is State.RESTING:
        c.step(Sensors())
    a = c.step(Sensors(obstacle=(0.05, 0.3)))
    assert a.v == 0.0 and a.w < 0  # obstacle front-left: turn right
    a = c.step(Sensors(obstacle=(0.05, math.pi)))  # behind: ignored
    assert a.v > 0


def test_pause_freezes_and_recall_rests_until_start() -> None:
    c = running()
    while c.state is State.RESTING:
        c.step(Sensors())
    c.pause()
    assert c.step(Sensors(food=[(0.3, 0.0)])) == Action() and c.state is State.EXPLORING
    c.recall()
    assert c.state is State.RESTING and c.mode is Mode.HELD
    for _ in range(20):
        assert c.step(Sensors()) == Action()
    assert c.state is State.RESTING
    c.start()
    assert c.mode is Mode.RUNNING


def test_the_same_seed_makes_the_same_choices() -> None:
    p = Params(min_rest_time=0.0, leave_prob=0.2)
    runs = []
    for _ in range(2):
        c = running(p)
        runs.append([(c.step(Sensors()), c.state) for _ in range(100)])
    assert runs[0] == runs[1]


def test_new_params_apply_live_and_clamp_the_probabilities() -> None:
    c = running(Params(leave_prob=0.4))
    c.set_params(Params(leave_prob=0.4, prob_max=0.1))
    assert c.leave_prob == 0.1


def test_adaptive_rule_success_and_failure() -> None:
    p = Params(delta=0.05, prob_min=0.01, prob_max=0.5)
    assert adapt(0.1, 0.1, True, p) == pytest.approx((0.15, 0.05))
    assert adapt(0.1, 0.1, False, p) == pytest.approx((0.05, 0.15))
    assert adapt(0.48, 0.02, True, p) == pytest.approx((0.5, 0.01))  # clamped both ways
    assert adapt(0.3, 0.3, True, Params(delta=0.0)) == (0.3, 0.3)  # delta 0: the rule is off


@given(
    leave=st.floats(0, 1),
    give_up=st.floats(0, 1),
    outcomes=st.lists(st.booleans(), max_size=50),
    delta=st.floats(0, 1),
)
def test_adaptive_rule_stays_within_bounds(
    leave: float, give_up: float, outcomes: list[bool], delta: float
) -> None:
    p = Params(delta=delta, prob_min=0.01, prob_max=0.6)
    leave, give_up = adapt(leave, give_up, True, p)
    for success in outcomes:
        leave, give_up = adapt(leave, give_up, success, p)
        assert 0.01 <= leave <= 0.6 and 0.01 <= give_up <= 0.6


def test_successes_raise_the_probability_of_leaving_monotonically() -> None:
    p = Params(delta=0.02)
    leave, give_up = p.leave_prob, p.give_up_prob
    seen = [leave]
    for _ in range(10):
        leave, give_up = adapt(leave, give_up, True, p)
        seen.append(leave)
    assert seen == sorted(seen) and seen[-1] > seen[0]
