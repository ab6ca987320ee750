"""The devfleet test kit: fixtures and fakes for component authors and for us.

Installed as a pytest plugin (entry point ``pytest11``: ``devfleet``), so the
fixtures are available in any project that installs
``devfleet-component-base[testing]``. The brokers and the probe can also be
used directly (paho is imported only when a probe is created).
"""

from __future__ import annotations

from .broker import (
    BrokerError,
    BrokerNotInstalled,
    EmbeddedBroker,
    LocalBroker,
    MosquittoBroker,
    TlsFiles,
    start_local_broker,
)
from .fake_context import FakeContext, Published
from .injector import inject
from .mqtt_probe import Message, MqttProbe, ProbeConnectError, ProbeError, ProbeTimeout
from .nats import NatsCluster, NatsNode, find_nats_server

__all__ = [
    "BrokerError",
    "BrokerNotInstalled",
    "EmbeddedBroker",
    "FakeContext",
    "LocalBroker",
    "Message",
    "MosquittoBroker",
    "MqttProbe",
    "NatsCluster",
    "NatsNode",
    "ProbeConnectError",
    "ProbeError",
    "ProbeTimeout",
    "Published",
    "TlsFiles",
    "find_nats_server",
    "inject",
    "start_local_broker",
]
