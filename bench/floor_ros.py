"""The ROS bridge's floor: a bare roslibpy subscriber (asyncio transport) re-publishing
each message with raw paho, no validation, no queue, no budget.

    python bench/floor_ros.py MQTT_HOST MQTT_PORT ROSBRIDGE_URL ROS_TOPIC ROS_TYPE MQTT_TOPIC

Prints ``ready`` once connected to both; exits when stdin closes.
"""

from __future__ import annotations

import json
import socket
import sys
import threading

import paho.mqtt.client as paho
import roslibpy
from paho.mqtt.enums import CallbackAPIVersion


def main() -> None:
    host, port, url, ros_topic, ros_type, mqtt_topic = sys.argv[1:7]
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="ros-floor")
    client.max_queued_messages_set(0)
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p=None: connected.set()
    client.connect(host, int(port))
    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.loop_start()
    connected.wait(10)
    ros = roslibpy.Ros(url, None, transport="asyncio")
    ros.run(10)
    topic = roslibpy.Topic(ros, ros_topic, ros_type, queue_length=100)
    topic.subscribe(lambda msg: client.publish(mqtt_topic, json.dumps(msg, separators=(",", ":")), qos=0))
    print("ready", flush=True)
    sys.stdin.read()  # until the bench closes our stdin
    client.loop_stop()


if __name__ == "__main__":
    main()
