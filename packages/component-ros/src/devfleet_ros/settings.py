"""The ``ros`` component's settings: rosbridge URL, budget, and the bridges.

Validated before a config is accepted (the agent calls
:meth:`~devfleet_base.Component.validate_config`); a bad value is refused with
the path of the bad field, e.g. ``ros.bridges[1].ros_type: 'Twist' does not match ...``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from devfleet_base import contract
from devfleet_base.errors import ContractError
from devfleet_base.schema import Field, Schema

from .msgtypes import normalise_type

__all__ = [
    "BULK_TYPES",
    "CONFIG_SCHEMA",
    "MQTT2ROS",
    "ROS2MQTT",
    "bridge_key",
    "check_settings",
    "default_mqtt_topic",
]

ROS2MQTT = "ros2mqtt"
MQTT2ROS = "mqtt2ros"

_ROS_NAME = r"/[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*"
_ROS_TYPE = r"[A-Za-z][A-Za-z0-9_]*/(msg/)?[A-Za-z][A-Za-z0-9_]*"

BRIDGE_SCHEMA = Schema(
    "bridge",
    {
        "direction": Field("str", required=True, choices=(ROS2MQTT, MQTT2ROS), doc="which way messages flow"),
        "ros_topic": Field("str", required=True, pattern=_ROS_NAME, max=200, doc="ROS topic, e.g. /cmd_vel"),
        "ros_type": Field("str", required=True, pattern=_ROS_TYPE, max=200, doc="e.g. geometry_msgs/Twist"),
        "mqtt_topic": Field(
            "str",
            nullable=True,
            default=None,
            max=200,
            doc="subtopic under nodes/{node}/components/ros/ (default out/<ros_topic> or in/<ros_topic>)",
        ),
        "qos": Field(
            "int", default=0, choices=(0, 1, 2), doc="MQTT QoS of ros2mqtt publishes / mqtt2ros subscription"
        ),
        "retain": Field("bool", default=False, doc="publish ros2mqtt messages retained"),
        "throttle_rate_ms": Field(
            "int", default=0, min=0, max=3_600_000, doc="at most one message per this many ms"
        ),
        "queue_length": Field(
            "int", default=10, min=1, max=10_000, doc="messages queued; the oldest dropped first"
        ),
        "max_bytes": Field(
            "int", default=4_000_000, min=16, max=64_000_000, doc="larger messages are dropped"
        ),
        "bulk": Field(
            "bool",
            nullable=True,
            default=None,
            doc="ros2mqtt over a rosbridge connection of its own (default: for BULK_TYPES)",
        ),
    },
)

BULK_TYPES = frozenset(
    {
        "sensor_msgs/Image",
        "sensor_msgs/CompressedImage",
        "sensor_msgs/PointCloud",
        "sensor_msgs/PointCloud2",
        "sensor_msgs/LaserScan",
        "nav_msgs/OccupancyGrid",
    }
)
"""Types whose ros2mqtt bridges get their own rosbridge connection by default (large messages)."""

CONFIG_SCHEMA = Schema(
    "ros",
    {
        "url": Field("str", default="ws://127.0.0.1:9090", max=300, doc="the robot's rosbridge v2 server"),
        "bridges": Field(
            "list", default=[], max=200, items=Field("dict", schema=BRIDGE_SCHEMA), doc="mappings"
        ),
        "budget_bytes_per_s": Field(
            "int", default=8_000_000, min=1_000, max=1_000_000_000, doc="bytes per second over every bridge"
        ),
        "reconnect_max_s": Field(
            "float", default=1.0, min=0.05, max=60.0, doc="cap of the reconnect back-off"
        ),
        "state_interval": Field(
            "float", default=1.0, min=0.1, max=3600.0, doc="seconds between state reports"
        ),
    },
)


def default_mqtt_topic(direction: str, ros_topic: str) -> str:
    """``out/<ros topic levels>`` for ros2mqtt, ``in/<ros topic levels>`` for mqtt2ros."""
    head = contract.INPUT_LEVEL if direction == MQTT2ROS else "out"
    return f"{head}{ros_topic}"


def bridge_key(bridge: dict[str, Any]) -> tuple[str, str, str]:
    """What identifies a bridge across config changes: (direction, ros_topic, mqtt_topic)."""
    return (bridge["direction"], bridge["ros_topic"], bridge["mqtt_topic"])


def check_settings(config: dict[str, Any], path: str) -> dict[str, Any]:
    """The cross-field checks a :class:`Schema` cannot express; fills ``mqtt_topic``.

    Raises:
        ContractError: naming the bad field's path.
    """
    url = urlsplit(config["url"])
    if url.scheme not in ("ws", "wss") or not url.hostname:
        raise ContractError(f"{path}.url: must be ws://host:port or wss://host:port, got {config['url']!r}")
    try:
        url.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ContractError(f"{path}.url: bad port in {config['url']!r}") from None
    seen: dict[tuple[str, str, str], int] = {}
    ros2mqtt_topics: dict[str, int] = {}
    for i, bridge in enumerate(config["bridges"]):
        where = f"{path}.bridges[{i}]"
        if bridge["mqtt_topic"] is None:
            bridge["mqtt_topic"] = default_mqtt_topic(bridge["direction"], bridge["ros_topic"])
        if bridge["bulk"] is None:
            bridge["bulk"] = normalise_type(bridge["ros_type"]) in BULK_TYPES
        mqtt_topic = bridge["mqtt_topic"]
        try:
            contract.component_topic("n", "ros", mqtt_topic)
        except ContractError as exc:
            raise ContractError(f"{where}.mqtt_topic: {exc.message}") from None
        inbound = mqtt_topic.split("/", 1)[0] == contract.INPUT_LEVEL
        if bridge["direction"] == MQTT2ROS and not inbound:
            raise ContractError(
                f"{where}.mqtt_topic: an mqtt2ros topic must start with 'in/' (got {mqtt_topic!r})"
            )
        if bridge["direction"] == ROS2MQTT and inbound:
            raise ContractError(
                f"{where}.mqtt_topic: 'in/' is for mqtt2ros; a ros2mqtt topic would loop back"
            )
        if bridge["direction"] == ROS2MQTT:
            if mqtt_topic in ros2mqtt_topics:
                first = ros2mqtt_topics[mqtt_topic]
                raise ContractError(f"{where}.mqtt_topic: {mqtt_topic!r} is already used by bridges[{first}]")
            ros2mqtt_topics[mqtt_topic] = i
        key = bridge_key(bridge)
        if key in seen:
            raise ContractError(f"{where}: the same bridge as bridges[{seen[key]}]")
        seen[key] = i
    return config
