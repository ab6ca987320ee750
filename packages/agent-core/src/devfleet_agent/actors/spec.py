"""The spawn payload of a dynamic actor (Wactorz ``nodes/{node}/spawn``).

A Wactorz main machine, the devfleet console or a plain ``mosquitto_pub`` send
the same JSON object::

    {"name": "temp-sensor-agent", "node": "rpi-livingroom", "type": "dynamic",
     "description": "Reads temperature", "poll_interval": 30,
     "max_restarts": 5, "restart_delay": 3.0, "install": ["adafruit-circuitpython-dht"],
     "code": "async def setup(agent): ...\\nasync def process(agent): ...",
     "replace": false}

:func:`SpawnSpec.from_payload` validates it with the shared
:class:`~devfleet_base.schema.Schema` and returns a frozen :class:`SpawnSpec`.
Unknown keys are kept (a Wactorz main machine may send more) and travel on
with :meth:`SpawnSpec.to_payload` when the actor migrates.

Defaults, where the Wactorz docs are silent:

- ``poll_interval`` is 5.0 seconds, the default of Wactorz's own
  ``remote_runner.py``; ``null`` makes the actor event-driven (it only answers
  tasks, and its supervisor cycle is the health check).
- ``node`` defaults to ``null`` (meaning "this node"); ``type`` to ``"dynamic"``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from devfleet_base.contract import (
    ACTOR_NAME_PATTERN,
    DEFAULT_POLL_INTERVAL,
    MAX_CODE_BYTES,
    SPAWN_SCHEMA,
    check_name,
)
from devfleet_base.errors import Code, ContractError
from devfleet_base.trading import check_resume

from ..jsonsafe import check_finite
from ..supervisor import RestartPolicy

__all__ = [
    "ACTOR_NAME_PATTERN",
    "DEFAULT_POLL_INTERVAL",
    "MAX_CODE_BYTES",
    "SPAWN_SCHEMA",
    "SpawnSpec",
]


_KNOWN = frozenset(SPAWN_SCHEMA.fields)


@dataclass(frozen=True)
class SpawnSpec:
    """A validated spawn payload.

    Attributes:
        name: the actor's name.
        code: the actor's Python source.
        node: the node named in the payload (``None``: wherever it arrived).
        type: ``"dynamic"`` for code-carrying actors.
        description: free text.
        poll_interval: seconds between ``process()`` calls, ``None`` for event-driven.
        max_restarts: the restart budget.
        restart_delay: the first back-off in seconds.
        install: pip requirements to install before compiling.
        replace: stop an actor of the same name first.
        extra: unknown keys, kept as sent (read-only).
    """

    name: str
    code: str
    node: str | None = None
    type: str = "dynamic"
    description: str = ""
    poll_interval: float | None = DEFAULT_POLL_INTERVAL
    max_restarts: int = 5
    restart_delay: float = 3.0
    install: tuple[str, ...] = ()
    replace: bool = False
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    @classmethod
    def from_payload(cls, data: Any) -> SpawnSpec:
        """Validate a decoded JSON payload.

        Raises:
            ContractError: the payload is not a valid spawn (``code`` is
                ``too_large`` for oversized code, ``invalid`` otherwise).
        """
        checked = SPAWN_SCHEMA.validate(data)
        check_finite(checked, "spawn")  # kept extras travel on with a migration: they must encode
        code: str = checked["code"]
        if len(code.encode("utf-8", "surrogatepass")) > MAX_CODE_BYTES:
            raise ContractError(f"spawn.code: larger than {MAX_CODE_BYTES} bytes", code=Code.TOO_LARGE)
        extra = {k: copy.deepcopy(v) for k, v in checked.items() if k not in _KNOWN}
        _check_trading(extra)
        return cls(
            name=checked["name"],
            code=code,
            node=checked["node"],
            type=checked["type"],
            description=checked["description"],
            poll_interval=checked["poll_interval"],
            max_restarts=checked["max_restarts"],
            restart_delay=checked["restart_delay"],
            install=tuple(checked["install"]),
            replace=checked["replace"],
            extra=MappingProxyType(extra),
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> SpawnSpec:
        """Decode and validate a raw payload.

        Raises:
            ContractError: not UTF-8 JSON (``bad_json``) or not a valid spawn.
        """
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ContractError(f"spawn: not valid JSON ({exc})", code=Code.BAD_JSON) from None
        return cls.from_payload(data)

    def policy(self) -> RestartPolicy:
        """The supervisor policy this spawn asks for."""
        return RestartPolicy(max_restarts=self.max_restarts, restart_delay=self.restart_delay)

    def to_payload(self, *, node: str | None = None) -> dict[str, Any]:
        """The spawn payload again (for migration), extras included.

        Args:
            node: replace the ``node`` field (the migration target).
        """
        out: dict[str, Any] = copy.deepcopy(dict(self.extra))
        out.update(
            {
                "name": self.name,
                "node": node if node is not None else self.node,
                "type": self.type,
                "description": self.description,
                "poll_interval": self.poll_interval,
                "max_restarts": self.max_restarts,
                "restart_delay": self.restart_delay,
                "install": list(self.install),
                "code": self.code,
                "replace": self.replace,
            }
        )
        return out


def _check_trading(extra: dict[str, Any]) -> None:
    """Refuse a spawn whose work-trading keys (``resume``, ``pool``) are malformed."""
    if "resume" in extra:
        extra["resume"] = check_resume(extra["resume"])
    pool = extra.get("pool")
    if pool is not None:
        try:
            check_name(pool, "pool")
        except ContractError as exc:
            raise ContractError(f"spawn.pool: {exc.message}") from None
