"""The ``viz`` component: the live fleet web view, run inside any agent.

It opens its own console connection to the broker (a view is a console: it
reads the whole fleet, not just its own node) and serves the page. Settings
(``components.viz.settings`` in the node's config)::

    bind: 127.0.0.1        # anything else needs a token, or the view is read-only
    port: 8766
    token: ""              # visible in the node's retained cfg: prefer token_file
    token_file: ""         # a file on the node holding the token
    broker: mqtt://127.0.0.1:1883
    username / password / tls_ca / signing_key_file: as for the console
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devfleet_base import Component, ComponentContext, ContractError, Field, Health, Schema

__all__ = ["Viz"]

_CONFIG = Schema(
    "viz",
    {
        "bind": Field("str", default="127.0.0.1", min=1, max=255, doc="listen address"),
        "port": Field("int", default=8766, min=0, max=65535, doc="TCP port (0: any free one)"),
        "token": Field("str", default="", max=256, doc="shared secret for commands (visible in cfg)"),
        "token_file": Field("str", default="", max=4096, doc="file holding the token (preferred)"),
        "broker": Field("str", default="mqtt://127.0.0.1:1883", max=1024, doc="broker URL for the view"),
        "username": Field("str", nullable=True, default=None, max=256, doc="broker user name"),
        "password": Field("str", nullable=True, default=None, max=1024, doc="broker password"),
        "tls_ca": Field("str", nullable=True, default=None, max=4096, doc="CA file (enables TLS)"),
        "signing_key_file": Field(
            "str", default="", max=4096, doc="a console identity file: the page's commands are signed with it"
        ),
    },
)


class Viz(Component):
    """Serves the live fleet view while it runs; reports its address in the node's state."""

    name = "viz"
    version = "0.1.0"
    description = "live fleet web view"
    config_schema = _CONFIG
    poll_interval = None

    def __init__(self, ctx: ComponentContext, config: dict[str, Any] | None = None) -> None:
        super().__init__(ctx, config)
        self.view: Any = None

    async def _setup(self) -> None:
        from devfleet_command import AsyncFleet

        from .view import FleetView

        cfg = self.config
        token = cfg["token"] or _read_secret(cfg["token_file"], "token_file")
        identity = None
        if cfg["signing_key_file"]:
            from devfleet_base.signing import Identity

            identity = Identity.load(cfg["signing_key_file"])  # a console identity (devfleet provision)
        fleet = AsyncFleet(
            cfg["broker"],
            username=cfg["username"],
            password=cfg["password"],
            tls_ca=cfg["tls_ca"],
            identity=identity,
            client_id=f"devfleet-viz-{self.ctx.node}",
            history=10,  # the view keeps its own downsampled series
        )
        self.view = FleetView(fleet, bind=cfg["bind"], port=cfg["port"], token=token)
        await self.view.start()
        if self.view.readonly:
            self.ctx.log.warning(
                "viz listens on %s without a token: read-only, commands refused", cfg["bind"]
            )
        self.ctx.log.info("viz serving on %s", self.view.url.split("?", 1)[0])
        self.ctx.report_state(self.state())

    async def _teardown(self) -> None:
        if self.view is not None:
            await self.view.close()
            self.view = None

    async def _health(self) -> Health:
        if self.view is None:
            return Health(False, "not serving")
        return Health(True, f"{len(self.view.hub.pages)} page(s) open")

    def state(self) -> dict[str, Any]:
        """The component's reported state: where it listens (never the token)."""
        view = self.view
        return {
            "url": view.url.split("?", 1)[0] if view else None,
            "readonly": view.readonly if view else None,
            "pages": len(view.hub.pages) if view else 0,
        }


def _read_secret(path: str, what: str) -> str:
    if not path:
        return ""
    try:
        return Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise ContractError(f"{what}: cannot read {path}: {exc.strerror}") from None
