"""Known ROS message types, and the check that a JSON message fits one.

rosbridge refuses a publish whose fields do not match the topic's type with a
``status`` error and publishes nothing; the bridges this package replaces
(mqtt_bridge, mqtt_client) drop such a message silently. Checking on our side
turns a mismatch into a counted, logged error before it reaches the robot.

Only the common types are known here (the ones robots drive and report with);
a message of an unknown type passes unchecked, as rosbridge would decide.
Field types follow the ROS ``.msg`` grammar: primitives, ``pkg/Type`` nested
messages and ``T[]`` arrays. Type names are accepted in the ROS 1 form
(``geometry_msgs/Twist``) and the ROS 2 form (``geometry_msgs/msg/Twist``).
"""

from __future__ import annotations

import math
from typing import Any

from devfleet_base.errors import ContractError

__all__ = ["KNOWN_TYPES", "check_message", "is_known", "normalise_type"]

_HEADER = {"seq": "uint32", "stamp": "time", "frame_id": "string"}
_VECTOR3 = {"x": "float64", "y": "float64", "z": "float64"}
_QUATERNION = {"x": "float64", "y": "float64", "z": "float64", "w": "float64"}
_POSE = {"position": "geometry_msgs/Point", "orientation": "geometry_msgs/Quaternion"}
_TWIST = {"linear": "geometry_msgs/Vector3", "angular": "geometry_msgs/Vector3"}

KNOWN_TYPES: dict[str, dict[str, str]] = {
    "std_msgs/Header": _HEADER,
    "std_msgs/String": {"data": "string"},
    "std_msgs/Bool": {"data": "bool"},
    "std_msgs/Int32": {"data": "int32"},
    "std_msgs/Int64": {"data": "int64"},
    "std_msgs/UInt8": {"data": "uint8"},
    "std_msgs/Float32": {"data": "float32"},
    "std_msgs/Float64": {"data": "float64"},
    "std_msgs/Empty": {},
    "geometry_msgs/Vector3": _VECTOR3,
    "geometry_msgs/Point": _VECTOR3,
    "geometry_msgs/Quaternion": _QUATERNION,
    "geometry_msgs/Pose": _POSE,
    "geometry_msgs/Pose2D": {"x": "float64", "y": "float64", "theta": "float64"},
    "geometry_msgs/PoseStamped": {"header": "std_msgs/Header", "pose": "geometry_msgs/Pose"},
    "geometry_msgs/Twist": _TWIST,
    "geometry_msgs/TwistStamped": {"header": "std_msgs/Header", "twist": "geometry_msgs/Twist"},
    "sensor_msgs/Image": {
        "header": "std_msgs/Header",
        "height": "uint32",
        "width": "uint32",
        "encoding": "string",
        "is_bigendian": "uint8",
        "step": "uint32",
        "data": "uint8[]",  # rosbridge sends uint8[] as a base64 string
    },
    "sensor_msgs/BatteryState": {
        "header": "std_msgs/Header",
        "voltage": "float32",
        "percentage": "float32",
        "power_supply_status": "uint8",
    },
    "sensor_msgs/Range": {
        "header": "std_msgs/Header",
        "radiation_type": "uint8",
        "field_of_view": "float32",
        "min_range": "float32",
        "max_range": "float32",
        "range": "float32",
    },
    "nav_msgs/Odometry": {
        "header": "std_msgs/Header",
        "child_frame_id": "string",
        "pose": "geometry_msgs/PoseWithCovariance",
        "twist": "geometry_msgs/TwistWithCovariance",
    },
    "geometry_msgs/PoseWithCovariance": {"pose": "geometry_msgs/Pose", "covariance": "float64[]"},
    "geometry_msgs/TwistWithCovariance": {"twist": "geometry_msgs/Twist", "covariance": "float64[]"},
}
"""Fields of every type this module can check, by normalised type name."""

_INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "uint8": (0, 2**8 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}


def normalise_type(name: str) -> str:
    """``pkg/msg/Type`` (ROS 2) → ``pkg/Type``; other names unchanged."""
    parts = name.split("/")
    if len(parts) == 3 and parts[1] == "msg":
        return f"{parts[0]}/{parts[2]}"
    return name


def is_known(type_name: str) -> bool:
    """Whether :func:`check_message` can check messages of ``type_name``."""
    return normalise_type(type_name) in KNOWN_TYPES


def check_message(type_name: str, msg: Any, path: str = "msg") -> None:
    """Raise :class:`ContractError` naming the bad field if ``msg`` does not fit ``type_name``.

    Missing fields are allowed (rosbridge fills them with defaults); unknown
    fields, wrong JSON types and out-of-range integers are not. A message of
    an unknown type only has to be a JSON object.

    Raises:
        ContractError: e.g. ``msg.linear.x: expected float64, got str``.
    """
    if not isinstance(msg, dict):
        raise ContractError(f"{path}: expected a JSON object for {type_name}, got {_kind(msg)}")
    fields = KNOWN_TYPES.get(normalise_type(type_name))
    if fields is None:
        return
    for key, value in msg.items():
        field_type = fields.get(key)
        if field_type is None:
            raise ContractError(f"{path}: {type_name} has no field {key!r}")
        _check_field(field_type, value, f"{path}.{key}")


def _check_field(field_type: str, value: Any, path: str) -> None:
    if field_type.endswith("[]"):
        item = field_type[:-2]
        if item == "uint8" and isinstance(value, str):
            return  # rosbridge's base64 form of a byte array
        if not isinstance(value, list):
            raise ContractError(f"{path}: expected {field_type}, got {_kind(value)}")
        for i, v in enumerate(value):
            _check_field(item, v, f"{path}[{i}]")
        return
    if "/" in field_type:
        check_message(field_type, value, path)
        return
    if not _primitive_ok(field_type, value):
        raise ContractError(f"{path}: expected {field_type}, got {_kind(value)} {_short(value)}")


def _primitive_ok(field_type: str, value: Any) -> bool:
    if field_type == "string":
        return isinstance(value, str)
    if field_type == "bool":
        return isinstance(value, bool)
    if field_type in ("float32", "float64"):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if field_type in _INT_RANGES:
        low, high = _INT_RANGES[field_type]
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    if field_type in ("time", "duration"):
        return isinstance(value, dict) and set(value) <= {"secs", "nsecs", "sec", "nanosec"}
    return True  # a primitive this module does not model: leave it to rosbridge


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "str", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
