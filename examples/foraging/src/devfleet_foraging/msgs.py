"""The robot's ROS interface: topic names, message types, and their JSON (rosbridge v2) shapes.

A robot offers, on its own rosbridge endpoint:

| name | type | direction |
| --- | --- | --- |
| ``/cmd_vel`` | ``geometry_msgs/Twist`` | agent → robot, every tick |
| ``/odom`` | ``nav_msgs/Odometry`` | robot → agent, every tick; ``header.seq`` is the tick |
| ``/food_sensor`` | ``devfleet_foraging/FoodSensor`` | robot → agent: ``{header, items: [{distance, bearing}], carrying}`` |
| ``/light_sensor`` | ``devfleet_foraging/LightSensor`` | robot → agent: ``{header, in_nest, distance, bearing}`` |
| ``/proximity`` | ``devfleet_foraging/Proximity`` | robot → agent: ``{header, detected, distance, bearing}`` |
| ``/gripper`` | ``devfleet_foraging/Gripper`` (service) | ``{action: "pick"|"drop"}`` → ``{success, carrying, message}`` |

The robot publishes the sensors first and ``/odom`` last in a tick, so a
controller that acts on ``/odom`` sees the whole tick. Decoders validate what
arrives and return None for anything malformed (never raise): the network is
not trusted. Units: metres, radians, seconds.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "CMD_VEL",
    "FOOD",
    "GRIPPER",
    "LIGHT",
    "ODOM",
    "PROXIMITY",
    "TYPES",
    "decode_food",
    "decode_light",
    "decode_odom",
    "decode_proximity",
    "decode_twist",
    "food_msg",
    "light_msg",
    "odom_msg",
    "proximity_msg",
    "twist_msg",
]

CMD_VEL = "/cmd_vel"
ODOM = "/odom"
FOOD = "/food_sensor"
LIGHT = "/light_sensor"
PROXIMITY = "/proximity"
GRIPPER = "/gripper"

TYPES = {
    CMD_VEL: "geometry_msgs/Twist",
    ODOM: "nav_msgs/Odometry",
    FOOD: "devfleet_foraging/FoodSensor",
    LIGHT: "devfleet_foraging/LightSensor",
    PROXIMITY: "devfleet_foraging/Proximity",
    GRIPPER: "devfleet_foraging/Gripper",
}


def _header(tick: int, dt: float, frame: str = "odom") -> dict[str, Any]:
    t = tick * dt
    secs = int(t)
    return {"seq": tick, "stamp": {"secs": secs, "nsecs": round((t - secs) * 1e9)}, "frame_id": frame}


def _vec(x: float = 0.0, y: float = 0.0, z: float = 0.0) -> dict[str, float]:
    return {"x": x, "y": y, "z": z}


def _num(obj: Any, *keys: str) -> float | None:
    """A finite number at ``obj[k1][k2]...``, or None."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    if isinstance(obj, bool) or not isinstance(obj, (int, float)) or not math.isfinite(obj):
        return None
    return float(obj)


# ---- geometry_msgs/Twist ------------------------------------------------------------------


def twist_msg(v: float, w: float) -> dict[str, Any]:
    """A ``geometry_msgs/Twist``: forward ``v`` m/s, turn ``w`` rad/s."""
    return {"linear": _vec(v), "angular": _vec(0.0, 0.0, w)}


def decode_twist(msg: Any) -> tuple[float, float] | None:
    """``(v, w)`` from a Twist, or None."""
    v, w = _num(msg, "linear", "x"), _num(msg, "angular", "z")
    return None if v is None or w is None else (v, w)


# ---- nav_msgs/Odometry ---------------------------------------------------------------------


def odom_msg(tick: int, dt: float, x: float, y: float, theta: float, v: float, w: float) -> dict[str, Any]:
    """A ``nav_msgs/Odometry`` for the pose ``(x, y, theta)`` at ``tick``."""
    return {
        "header": _header(tick, dt),
        "child_frame_id": "base_link",
        "pose": {
            "pose": {
                "position": _vec(x, y),
                "orientation": {"x": 0.0, "y": 0.0, "z": math.sin(theta / 2), "w": math.cos(theta / 2)},
            }
        },
        "twist": {"twist": twist_msg(v, w)},
    }


def decode_odom(msg: Any) -> tuple[int, float, float, float] | None:
    """``(tick, x, y, theta)`` from an Odometry, or None."""
    if not isinstance(msg, dict):
        return None
    header, pose = msg.get("header"), msg.get("pose")
    seq = header.get("seq") if isinstance(header, dict) else None
    pose = pose.get("pose") if isinstance(pose, dict) else None
    x, y = _num(pose, "position", "x"), _num(pose, "position", "y")
    qz, qw = _num(pose, "orientation", "z"), _num(pose, "orientation", "w")
    if not isinstance(seq, int) or isinstance(seq, bool) or None in (x, y, qz, qw):
        return None
    return seq, x, y, 2 * math.atan2(qz, qw)  # type: ignore[arg-type,return-value]


# ---- the example's own sensor messages ----------------------------------------------------


def food_msg(tick: int, dt: float, items: list[tuple[float, float]], carrying: bool) -> dict[str, Any]:
    return {
        "header": _header(tick, dt, "base_link"),
        "items": [{"distance": d, "bearing": b} for d, b in items],
        "carrying": carrying,
    }


def decode_food(msg: Any) -> tuple[list[tuple[float, float]], bool] | None:
    """``(items nearest first, carrying)``, or None."""
    if not isinstance(msg, dict) or not isinstance(msg.get("items"), list):
        return None
    items = []
    for item in msg["items"][:64]:
        d, b = _num(item, "distance"), _num(item, "bearing")
        if d is None or b is None:
            return None
        items.append((d, b))
    return sorted(items), msg.get("carrying") is True


def light_msg(tick: int, dt: float, in_nest: bool, distance: float, bearing: float) -> dict[str, Any]:
    return {
        "header": _header(tick, dt, "base_link"),
        "in_nest": in_nest,
        "distance": distance,
        "bearing": bearing,
    }


def decode_light(msg: Any) -> tuple[bool, float] | None:
    """``(in_nest, bearing of the light)``, or None."""
    b = _num(msg, "bearing")
    if b is None or not isinstance(msg, dict) or not isinstance(msg.get("in_nest"), bool):
        return None
    return msg["in_nest"], b


def proximity_msg(tick: int, dt: float, obstacle: tuple[float, float] | None) -> dict[str, Any]:
    d, b = obstacle if obstacle is not None else (0.0, 0.0)
    return {
        "header": _header(tick, dt, "base_link"),
        "detected": obstacle is not None,
        "distance": d,
        "bearing": b,
    }


def decode_proximity(msg: Any) -> tuple[float, float] | bool | None:
    """``(distance, bearing)`` of the nearest obstacle, None when clear, False when malformed."""
    if not isinstance(msg, dict) or not isinstance(msg.get("detected"), bool):
        return False
    if not msg["detected"]:
        return None
    d, b = _num(msg, "distance"), _num(msg, "bearing")
    return False if d is None or b is None else (d, b)
