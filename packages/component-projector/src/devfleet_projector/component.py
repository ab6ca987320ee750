"""The ``projector`` component: power, input, mute and status over RS-232.

Real projectors refuse most commands while warming up or cooling down. A
refused command is retried every ``retry_interval`` seconds while the projector
reports a transitional state, up to ``busy_deadline`` seconds; then it fails
with code ``busy``. A projector that does not answer gives code ``timeout``,
the component's state turns ``degraded`` and its health unhealthy; the status
poll keeps trying, and the first answer brings the state back to ``ok``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from devfleet_base import (
    Code,
    CommandError,
    Component,
    ComponentContext,
    ComponentError,
    Field,
    Health,
    Schema,
    command,
)

from .errors import ProjectorTimeout, ProtocolError, TransportError
from .protocols import PROTOCOLS, BenqProtocol, EpsonProtocol, Op, Reply, Request, get_protocol
from .transport import ProjectorClient, SerialTransport

__all__ = ["ALL_SOURCES", "Projector"]

ALL_SOURCES: tuple[str, ...] = tuple(sorted({*EpsonProtocol.sources, *BenqProtocol.sources}))
"""Every logical input name some protocol knows (each protocol supports a subset)."""

_CONFIG = Schema(
    "projector",
    {
        "protocol": Field("str", default="epson", choices=tuple(PROTOCOLS), doc="command set"),
        "port": Field("str", required=True, min=1, doc="serial device or pyserial URL"),
        "baudrate": Field(
            "int",
            default=9600,
            choices=(2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200),
            doc="line speed",
        ),
        "timeout": Field("float", default=2.0, min=0.01, max=60.0, doc="answer timeout, s"),
        "power_timeout": Field(
            "float", default=45.0, min=0.01, max=300.0, doc="answer timeout for power on/off, s"
        ),
        "busy_deadline": Field(
            "float", default=60.0, min=0.0, max=600.0, doc="retry refused commands this long, s"
        ),
        "retry_interval": Field("float", default=1.0, min=0.01, max=60.0, doc="between retries"),
        "poll_interval": Field("float", default=10.0, min=0.05, max=3600.0, doc="status poll, s"),
    },
)

_ON_OFF = Field("str", required=True, choices=("on", "off"), doc="on or off")

_TRANSITIONAL = ("warming", "cooling")


class Projector(Component):
    """A projector on a serial line, speaking Epson ESC/VP21 or BenQ RS-232."""

    name = "projector"
    version = "0.1.0"
    description = "Projector control over RS-232 (Epson ESC/VP21, BenQ)"
    config_schema = _CONFIG

    def __init__(self, ctx: ComponentContext, config: dict[str, Any] | None = None) -> None:
        super().__init__(ctx, config)
        cfg = self.config
        self.poll_interval = cfg["poll_interval"]
        self.protocol = get_protocol(cfg["protocol"])
        self.client = ProjectorClient(
            self.protocol,
            SerialTransport(cfg["port"], baudrate=cfg["baudrate"]),
            timeout=cfg["timeout"],
            power_timeout=cfg["power_timeout"],
        )
        self.status: dict[str, Any] = {
            "power": None,
            "input": None,
            "mute": None,
            "lamp_hours": None,
            "errors": None,
        }
        self.reachable: bool | None = None
        self.last_error: str | None = None
        self._reported: dict[str, Any] | None = None

    # ---- lifecycle -------------------------------------------------------------------

    async def _setup(self) -> None:
        try:
            import serial  # noqa: F401 - fail setup (fatal) if pyserial is missing
        except ImportError as exc:
            raise ComponentError("the projector component needs pyserial") from exc
        try:
            await self._refresh()
        except CommandError as exc:  # not fatal: the poll keeps trying
            self.ctx.log.warning("projector not answering at start: %s", exc.message)
        self._report()

    async def _process(self) -> None:
        try:
            await self._refresh()
        except CommandError as exc:
            self.ctx.log.debug("status poll failed: %s", exc.message)
        self._report()

    async def _teardown(self) -> None:
        await self.client.close()

    async def _health(self) -> Health:
        port = self.config["port"]
        if self.reachable is False:
            return Health(False, f"projector on {port} not answering: {self.last_error}")
        if self.reachable is None:
            return Health(True, f"projector on {port} not contacted yet")
        return Health(True, f"projector on {port}: power {self.status['power']}")

    # ---- commands ----------------------------------------------------------------------

    @command("power", args=Schema("power", {"state": _ON_OFF, "wait": Field("bool", default=False)}))
    async def cmd_power(self, args: dict[str, Any]) -> dict[str, Any]:
        """Power on or off; ``wait=true`` waits until warm-up/cool-down is over."""
        on = args["state"] == "on"
        await self._run(Request(Op.POWER_ON if on else Op.POWER_OFF), f"power {args['state']}")
        power = await self._query_power()
        if args["wait"]:
            power = await self._wait_power("on" if on else "off")
        self._report()
        return {"power": power}

    @command(
        "input",
        args=Schema(
            "input",
            {"source": Field("str", required=True, choices=ALL_SOURCES, doc="input name")},
        ),
    )
    async def cmd_input(self, args: dict[str, Any]) -> dict[str, Any]:
        """Switch the input (``hdmi``, ``computer``, ...; the protocol's subset)."""
        source = args["source"]
        if source not in self.protocol.sources:
            known = ", ".join(sorted(self.protocol.sources))
            raise CommandError(
                f"{self.protocol.name} projectors have no input {source!r} (known: {known})",
                code=Code.INVALID,
            )
        await self._run(Request(Op.SOURCE_SET, source), f"input {source}", needs_power=True)
        self.status["input"] = source
        self._report()
        return {"input": source}

    @command("mute", args=Schema("mute", {"state": _ON_OFF}))
    async def cmd_mute(self, args: dict[str, Any]) -> dict[str, Any]:
        """Mute (blank picture and sound) on or off."""
        on = args["state"] == "on"
        await self._run(Request(Op.MUTE_ON if on else Op.MUTE_OFF), f"mute {args['state']}", needs_power=True)
        self.status["mute"] = on
        self._report()
        return {"mute": on}

    @command("status")
    async def cmd_status(self, args: dict[str, Any]) -> dict[str, Any]:
        """Query power state, input, mute, lamp hours and errors now."""
        await self._refresh()
        self._report()
        return dict(self.status)

    # ---- state ---------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The component's reported state."""
        health = {None: "unknown", True: "ok", False: "degraded"}[self.reachable]
        return {
            "state": health,
            "reachable": self.reachable,
            "protocol": self.protocol.name,
            "port": self.config["port"],
            **self.status,
            "last_error": self.last_error,
        }

    def _report(self) -> None:
        state = self.state()
        if state != self._reported:
            self._reported = state
            self.ctx.report_state(state)

    # ---- talking to the projector ----------------------------------------------------

    async def _call(self, request: Request) -> Reply:
        """One exchange; maps transport failures to CommandError and tracks reachability."""
        try:
            reply = await self.client.call(request)
        except ProjectorTimeout as exc:
            self._unreachable(exc.message)
            raise CommandError(exc.message, code=Code.TIMEOUT) from None
        except TransportError as exc:
            self._unreachable(exc.message)
            raise CommandError(exc.message, code=Code.UNAVAILABLE) from None
        except ProtocolError as exc:
            # Something answered, so the line is alive; the answer is garbage.
            self._reachable_again()
            raise CommandError(f"garbled answer from projector: {exc.message}") from None
        self._reachable_again()
        return reply

    def _unreachable(self, message: str) -> None:
        self.reachable = False
        self.last_error = message
        self._report()

    def _reachable_again(self) -> None:
        if self.reachable is not True:
            self.reachable = True
            self.last_error = None
            self._report()

    async def _query_power(self) -> str:
        reply = await self._call(Request(Op.POWER))
        if reply.refused:
            raise CommandError(f"projector refused the power query ({reply.reason})")
        self.status["power"] = reply.value
        return str(reply.value)

    async def _run(self, request: Request, what: str, *, needs_power: bool = False) -> Reply:
        """Send a command; retry refusals while the projector is in transition."""
        deadline = time.monotonic() + self.config["busy_deadline"]
        while True:
            reply = await self._call(request)
            if not reply.refused:
                return reply
            power = await self._query_power()
            if needs_power and power == "off":
                raise CommandError(
                    f"projector refused {what}: it is off (standby); power it on first",
                    code=Code.UNAVAILABLE,
                )
            if not (reply.transient or power in _TRANSITIONAL):
                raise CommandError(f"projector refused {what} ({reply.reason}, power {power})")
            if time.monotonic() >= deadline:
                raise CommandError(
                    f"projector refused {what} for {self.config['busy_deadline']:g} s "
                    f"(power {power}: still warming up or cooling down)",
                    code=Code.BUSY,
                )
            self._report()
            await asyncio.sleep(self.config["retry_interval"])

    async def _wait_power(self, target: str) -> str:
        deadline = time.monotonic() + self.config["busy_deadline"]
        while True:
            power = await self._query_power()
            if power == target and (target == "off" or await self._lit()):
                return power
            if time.monotonic() >= deadline:
                raise CommandError(
                    f"projector still {power} after {self.config['busy_deadline']:g} s (wanted {target})",
                    code=Code.BUSY,
                )
            self._report()
            await asyncio.sleep(self.config["retry_interval"])

    async def _lit(self) -> bool:
        """Whether a projector that says "on" has finished warming up.

        BenQ reports ``*POW=ON#`` during warm-up too; a source query is refused
        (``*Block item#``) until the lamp is lit, so it tells the two apart.
        """
        reply = await self._call(Request(Op.SOURCE))
        if reply.refused and reply.transient:
            return False
        if not reply.refused:
            self.status["input"] = reply.value
        return True

    async def _refresh(self) -> None:
        """Query everything the protocol offers; refused queries leave a field unknown."""
        power = await self._query_power()
        queries = [("lamp_hours", Op.LAMP), ("errors", Op.ERRORS)]
        if power == "on":
            queries = [("input", Op.SOURCE), ("mute", Op.MUTE), *queries]
        for key, op in queries:
            if not self.protocol.supports(op):
                continue
            reply = await self._call(Request(op))
            if not reply.refused:
                self.status[key] = reply.value
