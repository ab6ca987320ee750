"""The base class every component implements, and the context it is given.

Two layers of contract (see STYLE.md): a ``register`` hook for discovery
(:mod:`devfleet_base.hookspecs`) and this base class for behaviour. The public
methods (:meth:`Component.start`, :meth:`Component.process`, ...) live here and
own the guards; a component implements the underscore template methods.

A component never imports paho: it talks to the world through its
:class:`ComponentContext` (publish under its own topics, log, its config
section, retained state, small persisted JSON values).
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

from .errors import Code, CommandError, ComponentError, ContractError
from .schema import Schema

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .interfaces import Interfaces

__all__ = [
    "CommandSpec",
    "Component",
    "ComponentContext",
    "Health",
    "InputCallback",
    "command",
]

_F = TypeVar("_F", bound=Callable[..., Awaitable[Any]])
_POOL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

InputCallback = Callable[[str, bytes], None]
"""Called with (leaf under ``in/``, raw payload) for each message a component subscribed to."""


@runtime_checkable
class ComponentContext(Protocol):
    """What the agent (or the test kit's fake) hands a component."""

    @property
    def node(self) -> str:
        """The node this component runs on."""
        ...

    @property
    def name(self) -> str:
        """This component's name on the node."""
        ...

    @property
    def log(self) -> logging.Logger:
        """A logger whose records are shipped with the node's logs."""
        ...

    async def publish(self, subtopic: str, payload: Any, *, retain: bool = False, qos: int = 0) -> None:
        """Publish JSON under ``nodes/{node}/components/{name}/{subtopic}``."""
        ...

    async def subscribe(
        self, leaf: str, callback: InputCallback, *, qos: int = 1
    ) -> Callable[[], Awaitable[None]]:
        """Receive messages on ``nodes/{node}/components/{name}/in/{leaf}``.

        ``leaf`` may hold ``+`` levels and a final ``#``; a component may
        subscribe to its own input subtree only
        (:func:`~devfleet_base.contract.component_input_filter`). ``callback(leaf,
        payload)`` runs on the event loop with the topic's leaf under ``in/``
        and the raw payload bytes; it must not block. The subscription is
        re-sent on every reconnect.

        Returns:
            An async function that ends the subscription (idempotent).

        Raises:
            ContractError: ``leaf`` is not a valid input filter.
        """
        ...

    def report_state(self, state: dict[str, Any]) -> None:
        """Replace this component's part of the node's retained state."""
        ...

    def persist(self, key: str, value: Any) -> None:
        """Store a small JSON value that survives restarts."""
        ...

    def recall(self, key: str, default: Any = None) -> Any:
        """Read a value stored with :meth:`persist`."""
        ...

    @property
    def interfaces(self) -> Interfaces:
        """The node's in-process interfaces, shared with the other components
        (:class:`~devfleet_base.interfaces.Interfaces`)."""
        ...


@dataclass(frozen=True)
class Health:
    """The answer of a health check."""

    ok: bool
    detail: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class CommandSpec:
    """A command a component declares with :func:`command`."""

    verb: str
    args: Schema
    doc: str
    method: str


def command(verb: str, *, args: Schema | None = None, doc: str = "") -> Callable[[_F], _F]:
    """Declare an ``async def`` method of a component as a remote command.

    The method receives the validated argument dict and returns a JSON-able
    result (or ``None``). Raise :class:`~devfleet_base.errors.CommandError` for an
    error receipt with a clear message.
    """

    def mark(fn: _F) -> _F:
        is_async = inspect.iscoroutinefunction(fn)  # not in the if: keep fn's type unnarrowed
        if not is_async:
            raise TypeError(f"command {verb!r} must be an async def")
        spec = CommandSpec(
            verb=verb,
            args=args or Schema(f"{verb}.args"),
            doc=doc or (inspect.getdoc(fn) or "").split("\n")[0],
            method=fn.__name__,
        )
        setattr(fn, "__devfleet_command__", spec)  # noqa: B010 - typed attribute on a function
        return fn

    return mark


class Component:
    """Base class of every component.

    Subclasses set the class attributes and implement the template methods:

    - ``_setup()``: acquire resources; an exception here is fatal (no restart).
    - ``_process()``: one cycle of work, called every :attr:`poll_interval`
      seconds; an exception here is a crash, and the supervisor restarts.
    - ``_teardown()``: release resources; always called after a successful setup.
    - ``_health()``: return a :class:`Health`; the default is healthy.
    - ``_reconfigure(config)``: apply new settings in place; the default
      raises ``NotImplementedError``, which makes the agent restart the
      component with the new settings instead.
    - ``_bid_task(request)`` / ``_run_task(assignment)``: work trading (docs/trading.md),
      for a component whose settings declare a ``resume`` or a ``pool``.

    Attributes:
        name: the registry name (entry-point name by convention).
        version: shown in the node's meta.
        description: one line for listings.
        config_schema: the component's settings; unknown keys are refused.
        poll_interval: seconds between ``_process`` calls, ``None`` for an
            event-driven component (then the supervisor's cycle is the health check).
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    description: ClassVar[str] = ""
    config_schema: ClassVar[Schema] = Schema("config")
    poll_interval: float | None = None

    def __init__(self, ctx: ComponentContext, config: dict[str, Any] | None = None) -> None:
        self.ctx = ctx
        self.config: dict[str, Any] = self.validate_config(config or {})
        self._started = False

    # ---- class-level introspection -------------------------------------------------

    @classmethod
    def validate_config(cls, config: Any) -> dict[str, Any]:
        """Validate settings against :attr:`config_schema`; raise ContractError.

        Every component also accepts ``resume`` (a :data:`~devfleet_base.trading.RESUME_SCHEMA`
        object: the agent publishes it on ``agents/{id}/resume`` and lets the component bid)
        and ``pool`` (a worker pool to join); they are kept in the result as given.
        """
        from .trading import TRADING_KEYS, check_resume

        trading = {}
        if isinstance(config, dict) and any(k in config for k in TRADING_KEYS):
            config = dict(config)
            trading = {k: config.pop(k) for k in TRADING_KEYS if k in config}
            if "resume" in trading:
                trading["resume"] = check_resume(trading["resume"])
            if "pool" in trading and not (
                isinstance(trading["pool"], str) and _POOL_RE.fullmatch(trading["pool"])
            ):
                raise ContractError(f"{cls.name or 'config'}.pool: must be a pool name")
        return {**cls.config_schema.validate(config, path=cls.name or "config"), **trading}

    @classmethod
    def command_specs(cls) -> dict[str, CommandSpec]:
        """Every command the component declares, by verb."""
        specs: dict[str, CommandSpec] = {}
        for klass in reversed(cls.__mro__):
            for attr in vars(klass).values():
                spec = getattr(attr, "__devfleet_command__", None)
                if isinstance(spec, CommandSpec):
                    specs[spec.verb] = spec
        return specs

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """The component's entry in the node's meta."""
        return {
            "name": cls.name,
            "version": cls.version,
            "description": cls.description,
            "commands": sorted(cls.command_specs()),
        }

    # ---- lifecycle (public, guarded) -----------------------------------------------

    @property
    def started(self) -> bool:
        return self._started

    async def start(self) -> None:
        """Run ``_setup`` once; a second call is an error."""
        if self._started:
            raise ComponentError(f"{self.name}: already started")
        await self._setup()
        self._started = True

    async def process(self) -> None:
        """Run one cycle of ``_process``."""
        if not self._started:
            raise ComponentError(f"{self.name}: process() before start()")
        await self._process()

    async def stop(self) -> None:
        """Run ``_teardown`` if the component was started; idempotent."""
        if not self._started:
            return
        self._started = False
        await self._teardown()

    async def health(self) -> Health:
        """The component's health; an exception counts as unhealthy."""
        try:
            result = await self._health()
        except Exception as exc:  # a broken health check is itself unhealthy
            return Health(False, f"health check raised {type(exc).__name__}: {exc}")
        return result

    async def reconfigure(self, config: dict[str, Any]) -> None:
        """Validate, then apply new settings (``NotImplementedError`` → restart)."""
        validated = self.validate_config(config)
        await self._reconfigure(validated)
        self.config = validated

    async def handle_command(self, verb: str, args: Any) -> Any:
        """Validate ``args`` for ``verb`` and run the command method."""
        spec = self.command_specs().get(verb)
        if spec is None:
            known = ", ".join(sorted(self.command_specs())) or "none"
            raise CommandError(
                f"{self.name} has no command {verb!r} (known: {known})",
                code=Code.UNKNOWN_COMMAND,
            )
        try:
            checked = spec.args.validate(args if args is not None else {}, path=verb)
        except ContractError as exc:
            raise CommandError(exc.message, code=Code.INVALID) from None
        if not self._started:
            raise CommandError(f"{self.name} is not running", code=Code.UNAVAILABLE)
        return await getattr(self, spec.method)(checked)

    async def bid_task(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """Answer a task request for a skill in this component's ``resume``: ``None``
        declines, a dict (``cost``, ``eta``, ``plan``) overrides the résumé's prices."""
        if not self._started:
            return None
        return await self._bid_task(request)

    async def run_task(self, assignment: dict[str, Any]) -> Any:
        """Run an assigned task or a pool job; the JSON result becomes the output.

        Raises:
            CommandError: the component does not run tasks, or is not running.
        """
        if not self._started:
            raise CommandError(f"{self.name} is not running", code=Code.UNAVAILABLE)
        return await self._run_task(assignment)

    # ---- template methods ------------------------------------------------------------

    async def _bid_task(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """Decide on a task request. Override; the default bids the résumé's prices."""
        return {}

    async def _run_task(self, assignment: dict[str, Any]) -> Any:
        """Do an assigned task or pool job (``inputs`` in ``assignment``). Override."""
        raise CommandError(f"{self.name} does not run tasks", code=Code.UNKNOWN_COMMAND)

    async def _setup(self) -> None:
        """Acquire resources. Override."""

    async def _process(self) -> None:
        """One cycle of work. Override when :attr:`poll_interval` is set."""

    async def _teardown(self) -> None:
        """Release resources. Override."""

    async def _health(self) -> Health:
        """Report health. Override."""
        return Health(True)

    async def _reconfigure(self, config: dict[str, Any]) -> None:
        """Apply new settings in place. Override to avoid a restart."""
        raise NotImplementedError
