"""The test kit's brokers, against real mosquitto and amqtt processes."""

from __future__ import annotations

import socket

import pytest

from devfleet_base.testing import (
    BrokerError,
    EmbeddedBroker,
    MosquittoBroker,
    MqttProbe,
    ProbeConnectError,
    ProbeError,
    start_local_broker,
)
from devfleet_base.testing.broker import amqtt_available, find_mosquitto
from devfleet_base.testing.plugin import AUTH_USERS, BrokerFactory, ProbeFactory

needs_amqtt = pytest.mark.skipif(not amqtt_available(), reason="amqtt is not installed")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# -- plain mosquitto -------------------------------------------------------


def test_mqtt_broker_listens_on_loopback_with_generated_config(
    mqtt_broker: MosquittoBroker,
) -> None:
    assert mqtt_broker.host == "127.0.0.1"
    assert mqtt_broker.port != 1883
    assert mqtt_broker.url == f"mqtt://127.0.0.1:{mqtt_broker.port}"
    assert mqtt_broker.ca_path is None
    config = mqtt_broker.config_path.read_text().splitlines()
    for line in (
        f"listener {mqtt_broker.port} 127.0.0.1",
        "allow_anonymous true",
        "set_tcp_nodelay true",
        "max_queued_messages 100000",
        "persistence false",
    ):
        assert line in config


def test_round_trip_v5(probe: MqttProbe) -> None:
    probe.subscribe("kit/rt5/#")
    probe.publish("kit/rt5/a", {"n": 1})
    msg = probe.wait_for("kit/rt5/a")
    assert msg.json() == {"n": 1}
    assert msg.qos == 1
    assert not msg.retain


def test_round_trip_v311(probe_v311: MqttProbe, probe: MqttProbe) -> None:
    assert not probe_v311.v5
    probe_v311.subscribe("kit/rt311/#")
    probe.publish("kit/rt311/x", b"\x00\x01raw")
    probe_v311.publish("kit/rt311/y", "text")
    assert probe_v311.wait_for("kit/rt311/x").payload == b"\x00\x01raw"
    assert probe_v311.wait_for("kit/rt311/y").text() == "text"


def test_restart_keeps_port_and_probe_resubscribes(
    fresh_broker: MosquittoBroker, probe_factory: ProbeFactory
) -> None:
    port = fresh_broker.port
    sub = probe_factory(fresh_broker)
    pub = probe_factory(fresh_broker, protocol="3.1.1")
    sub.subscribe("kit/restart/#")
    pub.publish("kit/restart/retained", {"birth": 1}, retain=True)
    sub.wait_for("kit/restart/retained")
    before = (sub.connect_count, pub.connect_count)

    fresh_broker.restart()

    assert fresh_broker.port == port
    assert fresh_broker.running
    sub.wait_connected(after=before[0])
    pub.wait_connected(after=before[1])
    # No persistence: a rebooted broker has forgotten retained messages.
    assert pub.retained("kit/restart/#") == {}
    mark = sub.mark()
    pub.publish("kit/restart/retained", {"birth": 2}, retain=True)
    assert sub.wait_for("kit/restart/retained", since=mark).json() == {"birth": 2}


def test_kill_then_start_on_same_port(fresh_broker: MosquittoBroker) -> None:
    port = fresh_broker.port
    pid = fresh_broker.pid
    fresh_broker.kill()
    assert not fresh_broker.running
    assert fresh_broker.pid is None
    assert not _accepts(port)
    fresh_broker.start()
    assert fresh_broker.port == port
    assert fresh_broker.pid != pid
    assert _accepts(port)


def test_stop_is_idempotent(fresh_broker: MosquittoBroker) -> None:
    fresh_broker.stop()
    fresh_broker.stop()
    assert not fresh_broker.running


def test_persistence_keeps_retained_across_restart(
    broker_factory: BrokerFactory, probe_factory: ProbeFactory
) -> None:
    broker = broker_factory(persistence=True)
    p = probe_factory(broker)
    p.publish("kit/persist/a", {"v": 1}, retain=True)
    n = p.connect_count
    broker.restart()
    p.wait_connected(after=n)
    assert p.retained("kit/persist/#")["kit/persist/a"].json() == {"v": 1}


def test_broker_that_dies_at_start_reports_its_log() -> None:
    broker = MosquittoBroker(extra_config=["no_such_option 1"])
    with pytest.raises(BrokerError, match="no_such_option"):
        broker.start()
    assert not broker.running
    broker.close()


def test_context_manager_stops_and_cleans_up() -> None:
    with MosquittoBroker() as broker:
        port = broker.port
        directory = broker.dir
        assert _accepts(port)
    assert not broker.running
    assert not _accepts(port)
    assert not directory.exists()


# -- authentication and ACL ---------------------------------------------


def test_auth_accepts_known_user(mqtt_broker_auth: MosquittoBroker, probe_factory: ProbeFactory) -> None:
    admin = probe_factory(mqtt_broker_auth, username="admin", password=AUTH_USERS["admin"])
    admin.subscribe("kit/auth/#")
    admin.publish("kit/auth/ok", 1)
    assert admin.wait_for("kit/auth/ok").json() == 1


@pytest.mark.parametrize("protocol", [5, "3.1.1"])
def test_auth_refuses_wrong_password(mqtt_broker_auth: MosquittoBroker, protocol: int | str) -> None:
    with pytest.raises(ProbeConnectError, match="refused"):
        MqttProbe.connect_to(
            mqtt_broker_auth,
            protocol=protocol,  # type: ignore[arg-type]
            username="admin",
            password="wrong",
        )


def test_auth_refuses_anonymous(mqtt_broker_auth: MosquittoBroker) -> None:
    with pytest.raises(ProbeConnectError, match="refused"):
        MqttProbe.connect_to(mqtt_broker_auth)


def test_acl_denies_reading_other_subtrees(
    mqtt_broker_auth: MosquittoBroker, probe_factory: ProbeFactory
) -> None:
    # mosquitto 2.0 grants the SUBACK but never delivers what the ACL denies.
    node = probe_factory(mqtt_broker_auth, username="node-1", password=AUTH_USERS["node-1"])
    node.subscribe("nodes/#")
    admin = probe_factory(mqtt_broker_auth, username="admin", password=AUTH_USERS["admin"])
    admin.publish("nodes/node-2/secret", "not for node-1")
    admin.publish("nodes/node-1/cmd", "for node-1")  # same publisher: ordered after
    node.wait_for("nodes/node-1/cmd")
    assert [m.topic for m in node.messages("nodes/#")] == ["nodes/node-1/cmd"]


def test_acl_refuses_publish_v5_and_drops_it_v311(
    mqtt_broker_auth: MosquittoBroker, probe_factory: ProbeFactory
) -> None:
    admin = probe_factory(mqtt_broker_auth, username="admin", password=AUTH_USERS["admin"])
    admin.subscribe("kit/acl/#")
    reader = probe_factory(mqtt_broker_auth, username="reader", password=AUTH_USERS["reader"])
    with pytest.raises(ProbeError, match="refused publish"):
        reader.publish("kit/acl/v5", "denied")
    reader311 = probe_factory(
        mqtt_broker_auth,
        protocol="3.1.1",
        username="reader",
        password=AUTH_USERS["reader"],
        client_id="reader-311",
    )
    reader311.publish("kit/acl/v311", "denied")  # 3.1.1 has no way to say no
    admin.publish("kit/acl/after", "allowed")
    admin.wait_for("kit/acl/after")
    assert admin.messages("kit/acl/#") == [admin.wait_for("kit/acl/after")]


def test_probe_retained_works_under_acl(
    mqtt_broker_auth: MosquittoBroker, probe_factory: ProbeFactory
) -> None:
    node = probe_factory(mqtt_broker_auth, username="node-1", password=AUTH_USERS["node-1"])
    node.publish("nodes/node-1/status", {"state": "online"}, retain=True)
    got = node.retained("nodes/node-1/#")
    assert got["nodes/node-1/status"].json() == {"state": "online"}


# -- TLS -------------------------------------------------------------------


def test_tls_connects_with_ca(mqtt_broker_tls: MosquittoBroker, probe_factory: ProbeFactory) -> None:
    assert mqtt_broker_tls.url.startswith("mqtts://127.0.0.1:")
    assert mqtt_broker_tls.ca_path is not None and mqtt_broker_tls.ca_path.exists()
    p = probe_factory(mqtt_broker_tls)
    p.subscribe("kit/tls/#")
    p.publish("kit/tls/a", {"secure": True})
    assert p.wait_for("kit/tls/a").json() == {"secure": True}


def test_tls_refuses_plain_tcp(mqtt_broker_tls: MosquittoBroker) -> None:
    plain = MqttProbe(mqtt_broker_tls.host, mqtt_broker_tls.port, timeout=2.0)
    with pytest.raises((ProbeConnectError, TimeoutError)):
        plain.connect()
    plain.close()


def test_mutual_tls_needs_client_cert(broker_factory: BrokerFactory, probe_factory: ProbeFactory) -> None:
    broker = broker_factory(tls=True, require_client_cert=True)
    p = probe_factory(broker, client_cert=True)
    p.publish("kit/mtls", 1)
    with pytest.raises(ProbeConnectError):
        MqttProbe.connect_to(broker)


# -- amqtt and broker selection -------------------------------------------


@needs_amqtt
def test_embedded_broker_round_trip(embedded_broker: EmbeddedBroker, probe_factory: ProbeFactory) -> None:
    assert embedded_broker.url == f"mqtt://127.0.0.1:{embedded_broker.port}"
    p = probe_factory(embedded_broker, protocol="3.1.1")
    p.subscribe("kit/amqtt/#")
    p.publish("kit/amqtt/a", {"n": 1})
    assert p.wait_for("kit/amqtt/a").json() == {"n": 1}
    p.publish("kit/amqtt/keep", {"kept": True}, retain=True)
    assert p.retained("kit/amqtt/#")["kit/amqtt/keep"].json() == {"kept": True}


@needs_amqtt
def test_embedded_broker_restarts_on_same_port(probe_factory: ProbeFactory) -> None:
    with EmbeddedBroker() as broker:
        port = broker.port
        p = probe_factory(broker, protocol="3.1.1")
        p.subscribe("kit/amqtt-restart/#")
        n = p.connect_count
        broker.restart()
        assert broker.port == port
        p.wait_connected(after=n)
        p.publish("kit/amqtt-restart/a", 1)
        assert p.wait_for("kit/amqtt-restart/a").json() == 1


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")
def test_start_local_broker_prefers_mosquitto() -> None:
    with start_local_broker() as broker:
        assert isinstance(broker, MosquittoBroker)
        assert broker.running


@needs_amqtt
def test_start_local_broker_can_prefer_amqtt() -> None:
    with start_local_broker(prefer="amqtt") as broker:
        assert isinstance(broker, EmbeddedBroker)
        assert broker.running


def test_start_local_broker_rejects_unknown_preference() -> None:
    with pytest.raises(ValueError, match="prefer"):
        start_local_broker(prefer="nats")  # type: ignore[arg-type]
