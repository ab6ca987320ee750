"""The actor host needs only NodeServices (issue 19): a small stand-in, no Agent, no broker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devfleet_agent.actors import ActorHost
from devfleet_agent.commands import Dispatcher
from devfleet_agent.settings import Settings
from devfleet_agent.supervisor import Supervisor
from devfleet_base import contract
from devfleet_base.mqtt import MqttMessage


class StandIn:
    """What a test hands a subsystem instead of the agent: the seam's parts it uses."""

    def __init__(self, data_dir: Path) -> None:
        self.node = "seam-1"
        self.settings = Settings(name=self.node, data_dir=str(data_dir), allow_code=True)
        self.identity = None
        self.supervisor = Supervisor()
        self.receipts: list[dict[str, Any]] = []
        self.published: list[tuple[str, Any]] = []
        self.routes: dict[str, Any] = {}
        self.providers: dict[tuple[str, str], Any] = {}

        async def send(topic: str, receipt: dict[str, Any], correlation: bytes | None) -> None:
            self.receipts.append(receipt)

        self.dispatcher = Dispatcher(self.node, send)

    def on_supervisor_event(self, listener: Any) -> None:
        pass

    def route(self, kind: str, handler: Any) -> None:
        self.routes[kind] = handler

    def add_provider(self, section: str, key: str, provider: Any) -> None:
        self.providers[(section, key)] = provider

    async def publish_json(self, topic: str, obj: Any, **_: Any) -> bool:
        self.published.append((topic, obj))
        return True

    async def publish_raw(self, topic: str, payload: bytes, **_: Any) -> bool:
        self.published.append((topic, payload))
        return True

    def state_changed(self) -> None:
        pass


async def _deliver(services: StandIn, topic: str, payload: Any) -> None:
    match = contract.parse_topic(topic)
    assert match is not None
    await services.routes[match.kind](MqttMessage(topic, contract.encode(payload), False, 1), match)


async def test_the_actor_host_runs_on_a_stand_in_for_the_node(tmp_path: Path) -> None:
    services = StandIn(tmp_path)
    ActorHost(services)  # type: ignore[arg-type]  # the stand-in has only what the host uses
    assert {"spawn", "handoff", "stop", "stop_all", "list", "migrate", "by_name_task", "reply"} <= set(
        services.routes
    )
    assert services.providers[("state", "actors")]() == {}
    await _deliver(services, "nodes/seam-1/stop", {"name": "nobody", "_id": "s1"})
    assert [(r["id"], r["cmd"], r["code"]) for r in services.receipts] == [("s1", "stop", "not_found")]
    await _deliver(services, "nodes/seam-1/list", {})
    assert services.published[-1][0] == "nodes/seam-1/agents" and services.published[-1][1]["agents"] == []
    await _deliver(services, "nodes/other/stop", {"name": "nobody", "_id": "s2"})  # not ours
    assert len(services.receipts) == 1
