"""A counter component: counts every poll, ``bump`` adds to it, the total survives restarts."""

from __future__ import annotations

from typing import Any

from devfleet_base import Component, Field, Schema, command, hookimpl

__all__ = ["Counter", "devfleet_register_components"]


class Counter(Component):
    name = "counter"
    version = "0.1.0"
    description = "Counts; bump it remotely."
    config_schema = Schema("counter", {"interval": Field("float", default=5.0, min=0.01)})

    async def _setup(self) -> None:
        self.poll_interval = self.config["interval"]
        self.count: int = self.ctx.recall("count", 0)

    async def _process(self) -> None:
        self.count += 1
        self.ctx.report_state({"count": self.count})

    @command("bump", args=Schema("bump", {"by": Field("int", default=1, min=1)}))
    async def bump(self, args: dict[str, Any]) -> dict[str, int]:
        """Add ``by`` to the count and remember it."""
        self.count += args["by"]
        self.ctx.persist("count", self.count)
        await self.ctx.publish("bumped", {"count": self.count})
        return {"count": self.count}


@hookimpl
def devfleet_register_components(register: Any) -> None:
    register(Counter)
