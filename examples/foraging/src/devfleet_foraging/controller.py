"""The foraging behaviour as a pure state machine: no I/O, no clock, one call per tick.

This is the controller of the ARGoS foraging experiment
(ilpincy/argos3-examples, ``controllers/footbot_foraging``): a robot *rests* in
the nest, leaves to *explore* for food with a probability per tick, picks up
the first item it reaches and *returns to the nest*, where it drops the item
and rests again. An explorer that has found nothing for ``give_up_time``
seconds gives up (with a probability per tick) and returns empty-handed.

The adaptive rule is Labella, Dorigo & Deneubourg (2006), "Division of labor
in a group of robots inspired by ants' foraging behavior" (ACM TAAS 1(1)): a
success raises the probability of leaving the nest by ``delta`` and lowers the
probability of giving up; a failure does the opposite; both stay within
``[prob_min, prob_max]``. Robots that are good at finding food end up foraging
more, the others rest: division of labour without communication.

Units: metres, radians (counter-clockwise, robot frame for bearings), seconds;
probabilities are per control tick, as in ARGoS.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

__all__ = [
    "COLORS",
    "Action",
    "Controller",
    "Mode",
    "Params",
    "Sensors",
    "State",
    "adapt",
]


class State(StrEnum):
    """The controller's states (ARGoS ``STATE_RESTING``, ``STATE_EXPLORING``, ``STATE_RETURN_TO_NEST``)."""

    RESTING = "resting"
    EXPLORING = "exploring"
    RETURNING = "returning"


COLORS: dict[State, str] = {
    State.RESTING: "#ff0000",
    State.EXPLORING: "#00ff00",
    State.RETURNING: "#0000ff",
}
"""The state light, the ARGoS convention: resting red, exploring green, returning blue."""


class Mode(StrEnum):
    """What the operator allows: ``held`` rests until started (also after a recall),
    ``running`` forages, ``paused`` freezes the state machine and the wheels."""

    HELD = "held"
    RUNNING = "running"
    PAUSED = "paused"


@dataclass(frozen=True)
class Params:
    """The behaviour's tunables (the foraging component's settings of the same names).

    Attributes:
        leave_prob: initial probability per tick of leaving the nest after
            ``min_rest_time`` (ARGoS ``InitialRestToExploreProb``).
        give_up_prob: initial probability per tick of giving up once
            ``give_up_time`` has passed without food (ARGoS ``ExploreToRestProb``).
        delta: the adaptive rule's step (ARGoS ``FoodRule*DeltaProb``), 0 switches it off.
        prob_min, prob_max: bounds of both probabilities.
        min_rest_time: seconds in the nest before leaving is possible (``MinimumRestingTime``).
        give_up_time: seconds of fruitless search before giving up is possible
            (``MinimumUnsuccessfulExploreTime``).
        search_nest_time: seconds driven into the nest before resting
            (``MinimumSearchForPlaceInNestTime``).
        max_speed: m/s, forward speed when the way is clear.
        max_turn: rad/s, the fastest turn.
        avoid_distance: m, an obstacle nearer than this (in front) is avoided.
        grab_distance: m, an item nearer than this is picked up.
    """

    leave_prob: float = 0.05
    give_up_prob: float = 0.05
    delta: float = 0.02
    prob_min: float = 0.005
    prob_max: float = 0.5
    min_rest_time: float = 2.0
    give_up_time: float = 10.0
    search_nest_time: float = 0.5
    max_speed: float = 0.25
    max_turn: float = 3.0
    avoid_distance: float = 0.15
    grab_distance: float = 0.1

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Params:
        """The fields of ``config`` that name a parameter (other keys are ignored)."""
        names = cls.__dataclass_fields__
        return cls(**{k: float(v) for k, v in config.items() if k in names})


def adapt(leave: float, give_up: float, success: bool, p: Params) -> tuple[float, float]:
    """The Labella-Dorigo-Deneubourg rule: new ``(leave_prob, give_up_prob)`` after a trip.

    A success raises the probability of leaving by ``delta`` and lowers the
    probability of giving up; a failure does the opposite. Both are clamped to
    ``[prob_min, prob_max]``.
    """
    step = p.delta if success else -p.delta

    def clamp(x: float) -> float:
        return min(p.prob_max, max(p.prob_min, x))

    return clamp(leave + step), clamp(give_up - step)


@dataclass
class Sensors:
    """What the robot perceives at one tick (decoded from its ROS topics).

    Attributes:
        tick: the arena's tick number (``/odom`` ``header.seq``).
        food: items in range, ``(distance m, bearing rad)``, nearest first.
        in_nest: the robot stands in the nest (the light sensor's ground reading).
        light_bearing: rad, direction of the nest's light in the robot frame.
        obstacle: nearest obstacle in range ``(distance m, bearing rad)`` or None.
        carrying: the gripper holds an item.
    """

    tick: int = 0
    food: list[tuple[float, float]] = field(default_factory=list)
    in_nest: bool = False
    light_bearing: float = 0.0
    obstacle: tuple[float, float] | None = None
    carrying: bool = False


@dataclass(frozen=True)
class Action:
    """What to do this tick: wheel command ``v`` (m/s) and ``w`` (rad/s), and the gripper."""

    v: float = 0.0
    w: float = 0.0
    gripper: Literal["pick", "drop"] | None = None


STOP = Action()


class Controller:
    """One robot's foraging state machine.

    Args:
        params: the tunables (replace ``controller.params`` to change them live).
        seed: the seed of this robot's random choices (the same seed, the same
            sensor readings, the same actions).
        dt: seconds per tick (ARGoS: 10 ticks per second).
    """

    def __init__(self, params: Params, seed: int, dt: float = 0.1) -> None:
        self.params = params
        self.rng = random.Random(seed)
        self.dt = dt
        self.state = State.RESTING
        self.mode = Mode.HELD
        self.leave_prob = params.leave_prob
        self.give_up_prob = params.give_up_prob
        self.time_in_state = 0.0
        self.successes = 0
        self.failures = 0
        self.delivered = 0
        self._turn = 0.0  # the random walk's current turn rate
        self._nest_time = 0.0  # seconds driven into the nest on the way to rest
        self._pending: Literal["pick", "drop"] | None = None

    # ---- operator ------------------------------------------------------------------------

    def start(self) -> None:
        """Let the robot forage (from held or paused)."""
        self.mode = Mode.RUNNING

    def pause(self) -> None:
        """Freeze: wheels stop, the state and its clock stay as they are."""
        self.mode = Mode.PAUSED

    def recall(self) -> None:
        """Rest now, where the robot is, until started again (a carried item stays held)."""
        self.mode = Mode.HELD
        self._enter(State.RESTING)

    def set_params(self, params: Params) -> None:
        """New tunables; the current probabilities are clamped into the new bounds."""
        self.params = params
        self.leave_prob = min(params.prob_max, max(params.prob_min, self.leave_prob))
        self.give_up_prob = min(params.prob_max, max(params.prob_min, self.give_up_prob))

    def reset_probabilities(self) -> None:
        """Back to the configured initial probabilities."""
        self.leave_prob = self.params.leave_prob
        self.give_up_prob = self.params.give_up_prob

    # ---- one tick --------------------------------------------------------------------------

    def step(self, s: Sensors) -> Action:
        """Advance one tick with the readings ``s``; return the wheel and gripper command."""
        if self.mode is Mode.PAUSED or self._pending is not None:
            return STOP
        if self.mode is Mode.HELD:
            if self.state is not State.RESTING:
                self._enter(State.RESTING)
            return STOP
        self.time_in_state += self.dt
        if self.state is State.RESTING:
            return self._rest()
        if self.state is State.EXPLORING:
            return self._explore(s)
        return self._return(s)

    def gripper_done(self, action: Literal["pick", "drop"], ok: bool) -> None:
        """The gripper's answer to the action :meth:`step` asked for."""
        self._pending = None
        if not ok:
            return  # the item moved out of reach (another robot took it): carry on
        if action == "pick" and self.state is State.EXPLORING:
            self.successes += 1
            self._trip_ended(success=True)
            self._enter(State.RETURNING)
        elif action == "drop":
            self.delivered += 1

    def _rest(self) -> Action:
        p = self.params
        if self.time_in_state >= p.min_rest_time and self.rng.random() < self.leave_prob:
            self._enter(State.EXPLORING)
        return STOP

    def _explore(self, s: Sensors) -> Action:
        p = self.params
        if s.carrying:  # e.g. recalled while carrying, then started again
            self._enter(State.RETURNING)
            return STOP
        if s.food:
            distance, bearing = s.food[0]
            if distance <= p.grab_distance:
                self._pending = "pick"
                return Action(gripper="pick")
            if self.time_in_state < p.give_up_time or self.rng.random() >= self.give_up_prob:
                return self._steer(bearing, s)
        elif self.time_in_state >= p.give_up_time and self.rng.random() < self.give_up_prob:
            self.failures += 1
            self._trip_ended(success=False)
            self._enter(State.RETURNING)
            return self._steer(s.light_bearing, s)
        return self._wander(s)

    def _return(self, s: Sensors) -> Action:
        if s.in_nest:
            if s.carrying:
                self._pending = "drop"
                return Action(gripper="drop")
            if self._nest_time >= self.params.search_nest_time:
                self._enter(State.RESTING)
                return STOP
            self._nest_time += self.dt
        return self._steer(s.light_bearing, s)

    # ---- motion ------------------------------------------------------------------------------

    def _avoid(self, s: Sensors) -> Action | None:
        """Turn away from an obstacle close in front (ARGoS's diffusion), else None."""
        if s.obstacle is None:
            return None
        distance, bearing = s.obstacle
        if distance < self.params.avoid_distance and abs(bearing) < math.pi / 2:
            turn = -self.params.max_turn if bearing >= 0 else self.params.max_turn
            return Action(v=0.0, w=turn)
        return None

    def _steer(self, bearing: float, s: Sensors) -> Action:
        avoid = self._avoid(s)
        if avoid is not None:
            return avoid
        p = self.params
        w = max(-p.max_turn, min(p.max_turn, 2.5 * bearing))
        v = p.max_speed * max(0.0, math.cos(bearing))
        return Action(v=v, w=w)

    def _wander(self, s: Sensors) -> Action:
        avoid = self._avoid(s)
        if avoid is not None:
            return avoid
        p = self.params
        if self.rng.random() < 0.1:  # a new random turn now and then: a correlated random walk
            self._turn = self.rng.uniform(-0.3, 0.3) * p.max_turn
        return Action(v=p.max_speed, w=self._turn)

    # ---- bookkeeping ----------------------------------------------------------------------

    def _trip_ended(self, success: bool) -> None:
        self.leave_prob, self.give_up_prob = adapt(self.leave_prob, self.give_up_prob, success, self.params)

    def _enter(self, state: State) -> None:
        self.state = state
        self.time_in_state = 0.0
        self._nest_time = 0.0
        self._pending = None

    def snapshot(self) -> dict[str, Any]:
        """The controller's state as JSON-able values (for the component's reported state)."""
        return {
            "state": self.state.value,
            "mode": self.mode.value,
            "color": COLORS[self.state],
            "leave_prob": round(self.leave_prob, 6),
            "give_up_prob": round(self.give_up_prob, 6),
            "successes": self.successes,
            "failures": self.failures,
            "delivered": self.delivered,
            "params": {"delta": self.params.delta, "give_up_time": self.params.give_up_time},
        }
