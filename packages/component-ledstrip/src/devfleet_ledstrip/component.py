"""The ``ledstrip`` component: renders one effect frame per cycle onto a strip."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from devfleet_base import (
    Code,
    CommandError,
    Component,
    ComponentContext,
    ContractError,
    Field,
    Health,
    Schema,
    command,
)

from .api import INTERFACE
from .backends import Strip, downsample, select_backend
from .effects import Effect, Frame, effect_names, make_effect

__all__ = ["LedStrip"]

_PREVIEW = Schema(
    "preview",
    {
        "enabled": Field("bool", default=False, doc="publish a down-sampled preview"),
        "interval": Field("float", default=1.0, min=0.05, max=3600.0, doc="seconds between"),
        "size": Field("int", default=30, min=1, max=1024, doc="preview pixels"),
    },
)

_CONFIG = Schema(
    "ledstrip",
    {
        "backend": Field("str", default="auto", choices=("auto", "simulated", "ws281x"), doc="LED driver"),
        "led_count": Field("int", default=60, min=1, max=4096, doc="LEDs on the strip"),
        "pin": Field("int", default=18, min=0, max=53, doc="GPIO (BCM) of the data line"),
        "channel": Field("int", default=0, min=0, max=1, doc="PWM channel"),
        "dma": Field("int", default=10, min=0, max=14, doc="DMA channel"),
        "strip_type": Field(
            "str",
            default="WS2811_STRIP_GRB",
            pattern=r"[A-Z0-9_]+",
            doc="rpi_ws281x strip type constant",
        ),
        "fps": Field("float", default=30.0, min=1.0, max=240.0, doc="frames per second"),
        "brightness": Field("int", default=255, min=0, max=255, doc="initial brightness"),
        "preview": Field("dict", schema=_PREVIEW, doc="preview publishing"),
    },
)

_SET_EFFECT = Schema(
    "set_effect",
    {
        "effect": Field("str", required=True, choices=effect_names(), doc="effect name"),
        "params": Field("dict", default={}, doc="effect parameters (may also be given flat)"),
        "brightness": Field("int", min=0, max=255, doc="also set the strip brightness"),
    },
    extra="allow",  # flat effect parameters: set_effect effect=fade color=#ff0000
)

_BRIGHTNESS = Schema(
    "brightness",
    {"value": Field("int", required=True, min=0, max=255, doc="0..255")},
)

_PERSIST_KEY = "effect"


class LedStrip(Component):
    """An addressable LED strip showing one effect at a time.

    Each :meth:`process` cycle (every ``1/fps`` seconds) renders the next frame of
    the current effect and shows it. Switching effects takes effect on the next
    frame; the chosen effect is persisted and restored on restart.
    """

    name = "ledstrip"
    version = "0.1.0"
    description = "Addressable LED strip effects (WS281x, or simulated off a Pi)"
    config_schema = _CONFIG

    def __init__(self, ctx: ComponentContext, config: dict[str, Any] | None = None) -> None:
        super().__init__(ctx, config)
        cfg = self.config
        self.poll_interval = 1.0 / cfg["fps"]
        self.strip: Strip = select_backend(
            cfg["backend"],
            cfg["led_count"],
            pin=cfg["pin"],
            channel=cfg["channel"],
            strip_type=cfg["strip_type"],
            brightness=cfg["brightness"],
            dma=cfg["dma"],
        )
        self.brightness: int = cfg["brightness"]
        self.effect: Effect = make_effect("off", cfg["led_count"], cfg["fps"], {})
        self.frame_no = 0
        self.last_frame: Frame | None = None
        self._preview_every = self._preview_frames()
        self._error: str | None = None
        self._withdraw: Callable[[], None] | None = None

    # ---- lifecycle -------------------------------------------------------------------

    async def _setup(self) -> None:
        self.strip.start()
        saved = self.ctx.recall(_PERSIST_KEY)
        if isinstance(saved, dict):
            try:
                self._switch(str(saved.get("effect", "off")), dict(saved.get("params") or {}))
            except ContractError as exc:
                self.ctx.log.warning("ignoring the saved effect: %s", exc.message)
        self._report()
        self._withdraw = self.ctx.interfaces.provide(INTERFACE, self)  # fill/set_effect/state

    async def _process(self) -> None:
        effect = self.effect
        if effect.done(self.frame_no):
            self._switch("off", {})
            self._report()
            effect = self.effect
        frame = effect.render(self.frame_no)
        try:
            self.strip.show(frame)
        except Exception as exc:
            self._error = f"{type(exc).__name__}: {exc}"
            raise
        self._error = None
        self.last_frame = frame
        if self._preview_every and self.frame_no % self._preview_every == 0:
            await self.publish_preview()
        self.frame_no += 1

    async def _teardown(self) -> None:
        if self._withdraw is not None:
            self._withdraw()
            self._withdraw = None
        self.strip.stop()

    async def _health(self) -> Health:
        if self._error is not None:
            return Health(False, f"{self.strip.kind}: {self._error}")
        return Health(True, f"{self.strip.kind}, {self.effect.name}, frame {self.frame_no}")

    async def _reconfigure(self, config: dict[str, Any]) -> None:
        hardware = ("backend", "led_count", "pin", "channel", "dma", "strip_type")
        if any(config[k] != self.config[k] for k in hardware):
            raise NotImplementedError  # the agent restarts us with the new strip
        if config["fps"] != self.config["fps"]:
            self.poll_interval = 1.0 / config["fps"]
            self.effect = make_effect(
                self.effect.name, config["led_count"], config["fps"], self.effect.params
            )
            self.frame_no = 0
        self.config = config
        self._preview_every = self._preview_frames()
        self._report()

    # ---- commands ----------------------------------------------------------------------

    @command("set_effect", args=_SET_EFFECT)
    async def cmd_set_effect(self, args: dict[str, Any]) -> dict[str, Any]:
        """Switch to an effect; its parameters are given flat or under ``params``."""
        params = dict(args["params"])
        for key, value in args.items():
            if key not in _SET_EFFECT.fields:
                params[key] = value
        try:
            self._switch(args["effect"], params)
        except ContractError as exc:
            raise CommandError(exc.message, code=Code.INVALID) from None
        if "brightness" in args:
            self._set_brightness(args["brightness"])
        return self._report()

    @command("brightness", args=_BRIGHTNESS)
    async def cmd_brightness(self, args: dict[str, Any]) -> dict[str, Any]:
        """Set the strip's global brightness (0..255)."""
        self._set_brightness(args["value"])
        return self._report()

    @command("off")
    async def cmd_off(self, args: dict[str, Any]) -> dict[str, Any]:
        """Switch every LED off (the ``off`` effect)."""
        self._switch("off", {})
        return self._report()

    # ---- the in-process interface (devfleet_ledstrip.api.StripControl) ----------------

    def fill(self, color: str | list[int]) -> dict[str, Any]:
        """Every LED ``color`` (the ``solid`` effect); returns the reported state.

        Raises:
            ContractError: not a colour.
        """
        return self.set_effect("solid", {"color": color})

    def set_effect(self, effect: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Switch to ``effect``; returns the reported state.

        Raises:
            ContractError: an unknown effect or a bad parameter.
        """
        self._switch(effect, dict(params or {}))
        return self._report()

    # ---- helpers -------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The component's reported state."""
        return {
            "effect": self.effect.name,
            "params": self.effect.params,
            "brightness": self.brightness,
            "backend": self.strip.kind,
            "led_count": self.config["led_count"],
            "fps": self.config["fps"],
        }

    async def publish_preview(self) -> None:
        """Publish the current frame, down-sampled, on the ``preview`` subtopic."""
        preview = self.config["preview"]
        frame = self.last_frame if self.last_frame is not None else self.effect.render(0)
        await self.ctx.publish(
            "preview",
            {
                "frame": self.frame_no,
                "effect": self.effect.name,
                "led_count": self.config["led_count"],
                "pixels": downsample(frame, preview["size"], self.brightness),
            },
        )

    def _switch(self, name: str, params: dict[str, Any]) -> None:
        self.effect = make_effect(name, self.config["led_count"], self.config["fps"], params)
        self.frame_no = 0
        self.ctx.persist(_PERSIST_KEY, {"effect": name, "params": self.effect.params})

    def _set_brightness(self, value: int) -> None:
        self.brightness = value
        self.strip.set_brightness(value)

    def _preview_frames(self) -> int:
        preview = self.config["preview"]
        if not preview["enabled"]:
            return 0
        return max(1, round(float(preview["interval"]) * float(self.config["fps"])))

    def _report(self) -> dict[str, Any]:
        state = self.state()
        self.ctx.report_state(state)
        return state
