"""Units of the fleet simulator that need no broker."""

from __future__ import annotations

import asyncio
import gc
import resource

import pytest

from devfleet_agent.config_store import MemoryConfigStore, configure_arguments
from devfleet_agent.payloads import VERSION_BLOCK, Descriptions
from devfleet_agent.sim import FleetOptions, SimFleet, cli, node_names
from devfleet_agent.sim.cli import _strip, raise_fd_limit
from devfleet_base import contract
from devfleet_base.errors import ConfigError


def test_memory_store_versions_conflict_and_rollback() -> None:
    store = MemoryConfigStore(keep=2)
    store.apply(set={"telemetry.interval": 5.0})
    store.apply(set={"telemetry.interval": 6.0}, expect_version=1)
    with pytest.raises(ConfigError) as info:
        store.apply(set={"telemetry.interval": 7.0}, expect_version=1)
    assert info.value.code == "conflict"
    store.apply(set={"description": "x"})
    assert store.versions() == [2, 3]
    store.apply(rollback_to=2)
    assert store.config["telemetry"]["interval"] == 6.0 and store.config["description"] == ""
    with pytest.raises(ConfigError):
        store.apply(rollback_to=1)


def test_configure_arguments_are_checked() -> None:
    assert configure_arguments({"set": {"a": 1}})["set"] == {"a": 1}
    with pytest.raises(ConfigError):
        configure_arguments({"bogus": 1})
    with pytest.raises(ConfigError):
        configure_arguments({"expect_version": True})


def test_will_sorts_between_births() -> None:
    d = Descriptions("n1", bd_seq=3)
    will = contract.decode(d.will().payload)
    birth = d.status("online")
    assert (birth["session"], birth["version"]) < (will["session"], will["version"])
    next_will = contract.decode(d.will().payload)
    assert d.envelope()["version"] > will["version"]
    assert next_will["version"] == 3 * VERSION_BLOCK - 1


def test_fleet_builds_cheap_nodes_without_a_broker() -> None:
    fleet = SimFleet(FleetOptions(nodes=10, prefix="u", silent=0.5, seed=3))
    assert [n.name for n in fleet] == node_names("u", 0, 10)
    configs = {id(n.store.config) for n in fleet}
    assert len(configs) == 1  # the default config is shared until a node changes its own
    assert any(n.behaviour.silent for n in fleet) and not all(n.behaviour.silent for n in fleet)


def test_fd_limit_is_raised_to_what_is_needed() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert raise_fd_limit(min(soft, 16)) == soft
    if hard != resource.RLIM_INFINITY:
        with pytest.raises(SystemExit, match="hard limit"):
            raise_fd_limit(hard + 1)


def test_parent_strips_what_it_sets_per_child() -> None:
    argv = ["--broker", "mqtt://h:1", "--nodes", "10", "--processes=2", "--json", "--fail-rate", "0.1"]
    assert _strip(argv, ("--nodes", "--processes", "--json")) == [
        "--broker",
        "mqtt://h:1",
        "--fail-rate",
        "0.1",
    ]


def test_the_cli_freezes_the_heap_once_every_node_connected(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    class Fleet:
        waits = 0

        async def wait_connected(self, timeout: float) -> float:
            self.waits += 1
            if self.waits == 1:
                raise TimeoutError  # still connecting after one wait: wait again
            return 1.0

    monkeypatch.setattr(cli, "_freeze_heap", lambda: calls.append("freeze"))
    fleet = Fleet()
    asyncio.run(cli._freeze_when_connected(fleet))
    assert calls == ["freeze"] and fleet.waits == 2
    monkeypatch.undo()
    try:
        cli._freeze_heap()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
