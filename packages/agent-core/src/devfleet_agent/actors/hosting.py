"""What the actor host's parts share: the record of one hosted actor, and the host as
its parts see it (:class:`Host`), so no part imports :mod:`.host` (no import circle)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from devfleet_base import contract
from devfleet_base.contract import Command
from devfleet_base.errors import ContractError, DevfleetError
from devfleet_base.mqtt import MqttMessage
from devfleet_base.signing import NodeVerifier

from ..supervisor import ChildInfo, Supervisor
from .dynamic import ActorBus
from .spec import SpawnSpec

if TYPE_CHECKING:
    from ..commands import ControlHandler, ControlHook
    from ..services import NodeServices

__all__ = ["Host", "Hosted", "MigrationReports", "Starter", "valid_name"]


@dataclass(eq=False)
class Hosted:
    """One actor this node runs (or ran and failed)."""

    spec: SpawnSpec
    info: ChildInfo
    migration: str | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    origin: dict[str, Any] | None = None
    """On a signed node: the operator-signed spawn (``{"topic", "payload"}``) this actor's
    code came from; a migration carries it so the target can check the code."""


def valid_name(name: object) -> bool:
    """Whether ``name`` is a valid actor name."""
    try:
        contract.check_name(name, "actor name")
    except ContractError:
        return False
    return True


class Starter(Protocol):
    """Starts actors (:class:`.control.ActorControl`)."""

    async def start(
        self,
        spec: SpawnSpec,
        *,
        state: dict[str, Any] | None,
        migration: str | None,
        origin: dict[str, Any] | None = None,
    ) -> ChildInfo: ...

    async def on_spawn(self, command: Command, msg: MqttMessage) -> dict[str, Any]: ...


class MigrationReports(Protocol):
    """Answers migrations (:class:`.migration.Migrations`)."""

    async def failed(self, name: str | None, error: str) -> None: ...


class Host(ActorBus, Protocol):
    """The actor host (:class:`.host.ActorHost`) as its parts use it."""

    @property
    def services(self) -> NodeServices: ...

    @property
    def supervisor(self) -> Supervisor: ...

    @property
    def hosted(self) -> dict[str, Hosted]:
        """The actors this node runs or ran and failed, by name (changed under :attr:`lock`)."""
        ...

    @property
    def lock(self) -> asyncio.Lock: ...

    @property
    def peers(self) -> NodeVerifier | None: ...

    @property
    def start_timeout(self) -> float: ...

    @property
    def control(self) -> Starter: ...

    @property
    def migrations(self) -> MigrationReports: ...

    def serve(
        self,
        kind: str,
        handler: ControlHandler,
        *,
        skip_empty: bool = False,
        clear_retained: bool = False,
        on_error: ControlHook | None = None,
        **options: Any,
    ) -> None: ...

    async def refused(self, command: Command, error: DevfleetError) -> None: ...

    async def record(self, name: str, kind: str, level: str, message: str, **extra: Any) -> None: ...

    def state_path(self, name: str) -> Path: ...

    def children(self) -> dict[str, ChildInfo]: ...

    def names(self) -> list[str]: ...

    async def stop_actors(self) -> None: ...
