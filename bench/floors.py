"""Floor processes the benchmarks start: bare paho doing the same work as devfleet.

    python bench/floors.py echo HOST PORT             # one responder (round-trip floor)
    python bench/floors.py fleet HOST PORT N          # N responders (fan-out floor)
    python bench/floors.py publish HOST PORT M NODES  # M telemetry messages as fast as possible
    python bench/floors.py agent HOST PORT NAME       # paho + psutil publishing like an idle agent

Each prints ``ready`` on stdout once connected and subscribed. Every loop is
bounded (a count, or the parent closing stdin / terminating the process).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from rawmqtt import RawClient


async def echo(host: str, port: int, count: int) -> None:
    """``count`` responders on one loop: each answers a request on ``bench/req/{i}``
    or ``bench/fleet`` with two QoS 1 replies (as an agent sends ``accepted`` and
    ``ok``) to the topic named in the request."""
    clients: list[RawClient] = []
    for i in range(count):

        def on_message(topic: str, payload: bytes, retain: bool, i: int = i) -> None:
            reply_to, _, body = payload.partition(b" ")
            client = clients[i]
            client.publish(reply_to.decode(), b"accepted %d" % i, qos=1)
            client.publish(reply_to.decode(), b"ok %d " % i + body, qos=1)

        clients.append(RawClient(f"floor-echo-{i}", on_message))

    async def up(i: int) -> None:
        await clients[i].connect(host, port)
        await clients[i].subscribe([(f"bench/req/{i}", 1), ("bench/fleet", 1)])

    for first in range(0, count, 200):  # 200 connects at a time: 50,000 one by one took minutes
        await asyncio.gather(*(up(i) for i in range(first, min(count, first + 200))))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    for client in clients:
        client.close()


async def publish(host: str, port: int, total: int, nodes: int) -> None:
    """``total`` telemetry messages (QoS 0) over ``nodes`` nodes, as fast as paho goes."""
    client = await RawClient("floor-publisher").connect(host, port)
    payload = json.dumps({"value": 12.5, "unit": "%", "ts": time.time()}, separators=(",", ":")).encode()
    topics = [f"nodes/tel-{i:05d}/telemetry/cpu" for i in range(nodes)]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "go"
    for i in range(total):
        client.publish(topics[i % nodes], payload)
        if i % 200 == 199:
            await asyncio.sleep(0)  # let paho's writer drain the socket
    await client.publish_acked("bench/done", b"")
    print("done", flush=True)
    client.close()


def agent_floor(host: str, port: int, name: str) -> None:
    """What an idle agent does, with bare paho (its own network thread) and psutil:
    a retained birth, a heartbeat every 10 s, cpu/memory/disk telemetry every 30 s."""
    import paho.mqtt.client as paho
    import psutil
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"floor-{name}")
    client.will_set(f"nodes/{name}/status", b'{"status":"lost"}', qos=1, retain=True)
    client.connect(host, port, keepalive=30)
    client.loop_start()
    birth = json.dumps({"node": name, "status": "online", "ts": time.time()}).encode()
    for leaf in ("meta", "state", "cfg"):
        client.publish(f"nodes/{name}/{leaf}", birth, qos=1, retain=True)
    client.publish(f"nodes/{name}/status", birth, qos=1, retain=True).wait_for_publish(10)
    me = psutil.Process()
    psutil.cpu_percent(None)
    print("ready", flush=True)
    next_hb = next_tm = time.monotonic()
    while True:  # bounded by the parent terminating us
        now = time.monotonic()
        if now >= next_hb:
            beat = {
                "node": name,
                "timestamp": time.time(),
                "cpu": psutil.cpu_percent(None),
                "memory": psutil.virtual_memory().percent,
                "disk": psutil.disk_usage("/").percent,
                "agent": {"rss_mb": me.memory_info().rss / 1_048_576, "cpu": me.cpu_percent(None)},
            }
            client.publish(f"nodes/{name}/heartbeat", json.dumps(beat).encode())
            next_hb = now + 10
        if now >= next_tm:
            values = {
                "cpu": psutil.cpu_percent(None),
                "memory": psutil.virtual_memory().percent,
                "disk": psutil.disk_usage("/").percent,
            }
            for metric, value in values.items():
                sample = json.dumps({"value": value, "unit": "%", "ts": time.time()}).encode()
                client.publish(f"nodes/{name}/telemetry/{metric}", sample)
            next_tm = now + 30
        time.sleep(max(0.0, min(next_hb, next_tm) - time.monotonic()))


def main() -> None:
    kind, host, port, *rest = sys.argv[1:]
    if kind == "echo":
        asyncio.run(echo(host, int(port), 1))
    elif kind == "fleet":
        asyncio.run(echo(host, int(port), int(rest[0])))
    elif kind == "publish":
        asyncio.run(publish(host, int(port), int(rest[0]), int(rest[1])))
    elif kind == "agent":
        agent_floor(host, int(port), rest[0])
    else:
        raise SystemExit(f"unknown floor {kind!r}")


if __name__ == "__main__":
    main()
