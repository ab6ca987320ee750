"""The component host: runs the components the node config asks for.

- The node config's ``components`` section (name → ``{enabled, settings}``)
  chooses what runs; settings are validated by the component's
  ``config_schema`` before a config is accepted (``add_config_validator``).
- Each running component is a child ``component:{name}`` of the agent's one
  shared :class:`~devfleet_agent.supervisor.Supervisor`, with Wactorz semantics.
- Its supervisor state (``starting``, ``running``, ``restarting``, ``failed``,
  ``stopped``; also ``disabled`` and ``not_installed``), last health and
  reported state are in the node's retained ``state`` under ``components``.
- Commands: ``component`` (route a command to a component), ``components``
  (list), ``install``, ``upgrade``, ``uninstall`` (see :mod:`.lifecycle`).

The host is written against :class:`~devfleet_agent.services.NodeServices`, not
the agent itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from typing import Any

from devfleet_base import contract
from devfleet_base.component import Health
from devfleet_base.contract import Command
from devfleet_base.errors import Code, CommandError, ContractError
from devfleet_base.interfaces import Interfaces
from devfleet_base.schema import Field, Schema

from ..clock import wait_event
from ..services import NodeServices
from ..supervisor import ChildNotFoundError, RestartPolicy, SupervisorEvent
from .context import AgentComponentContext, ComponentRunnable
from .inputs import ComponentInputs
from .lifecycle import DistributionLifecycle
from .registry import ComponentRegistry
from .status import ComponentStatus

__all__ = ["CHILD_PREFIX", "COMPONENT_COMMAND_SCHEMA", "ComponentHost", "ComponentStatus"]

log = logging.getLogger("devfleet.components")

CHILD_PREFIX = "component:"
"""Supervisor children of components are named ``component:{name}`` (``:`` never
occurs in an actor name, so components and dynamic actors cannot collide)."""

COMPONENT_COMMAND_SCHEMA = Schema(
    "component",
    {
        "component": Field("str", required=True, pattern=contract.NAME_PATTERN, doc="The component's name."),
        "command": Field("str", required=True, pattern=contract.NAME_PATTERN, doc="One of its commands."),
        "args": Field("dict", default={}, doc="The command's arguments."),
    },
)


class ComponentHost:
    """The components subsystem of an agent.

    Args:
        services: the node to plug into (commands, providers, config, supervisor).
        registry: the registry to use; by default a new one reading the
            ``devfleet.components`` entry points minus the disabled names.
        policy: the restart policy of every component.
    """

    def __init__(
        self,
        services: NodeServices,
        registry: ComponentRegistry | None = None,
        *,
        policy: RestartPolicy | None = None,
    ) -> None:
        self.services = services
        self.registry = registry or ComponentRegistry(disabled=services.settings.disabled_component_names)
        self.supervisor = services.supervisor
        self.policy = policy or RestartPolicy()
        self.data_dir = services.data_dir / "components"
        self.status: dict[str, ComponentStatus] = {}
        self._applied: dict[str, dict[str, Any]] = {}
        self._desired: dict[str, dict[str, Any]] = {}
        self._contexts: dict[str, AgentComponentContext] = {}
        self.interfaces = Interfaces()  # one per node: components reach each other in-process
        self.inputs = ComponentInputs(services)  # MQTT input components subscribed to
        self._settled: dict[str, asyncio.Event] = {}
        self._lock = asyncio.Lock()
        self._started = False
        self.lifecycle = DistributionLifecycle(services, self)
        services.on_supervisor_event(self._on_event)
        services.on_config(self._on_config)
        services.add_config_validator(self.validate_config)
        services.add_provider("meta", "components", self.registry.describe)
        services.add_provider("meta", "component_errors", lambda: [e.to_wire() for e in self.registry.errors])
        services.add_provider("state", "components", self.state_section)
        d = services.dispatcher
        d.register(
            "component", self._cmd_component, doc="Run a component's command: {component, command, args}."
        )
        d.register(
            "components",
            self._cmd_components,
            doc="List installed, available and configured components.",
            readonly=True,
        )
        self.lifecycle.register(d)

    # ---- subsystem -------------------------------------------------------------------

    async def start(self) -> None:
        """Load the registry and start what the config asks for."""
        self.registry.load()
        self._started = True
        await self.reconcile()
        await self.services.publish_meta()

    async def stop(self) -> None:
        """Stop every component (deliberately: no restart)."""
        self._started = False
        async with self._lock:
            for name in list(self._applied):
                await self._stop(name, "stopped")

    # ---- config ----------------------------------------------------------------------

    def validate_config(self, config: dict[str, Any]) -> None:
        """Refuse a node config whose component settings the component would refuse.

        Components that are not installed (or failed to load) are accepted as
        they are: their settings are checked when they start.
        """
        self.registry.load()
        for name, section in config.get("components", {}).items():
            contract.check_name(name, "component name")
            entry = self.registry.get(name)
            if entry is not None:
                entry.cls.validate_config(section.get("settings", {}))

    async def _on_config(self, config: dict[str, Any]) -> None:
        self._desired = copy.deepcopy(config.get("components", {}))
        if self._started:
            await self.reconcile()

    async def reconcile(self, *, force: frozenset[str] = frozenset()) -> None:
        """Bring the running components in line with the config.

        A component starts when it is enabled, installed and not running, unless
        it failed and neither its section changed nor it is in ``force``.
        Changed settings are applied in place (``_reconfigure``), or by a restart
        when the component raises ``NotImplementedError``. ``force`` restarts.
        """
        async with self._lock:
            desired = self._desired
            for name in list(self._applied):
                if name not in desired:
                    await self._stop(name, "stopped")
                    self.status.pop(name, None)
                    self._applied.pop(name, None)
                    self.services.spawn(self._clear_retained(name), f"clear {name}")
            for name, section in desired.items():
                await self._reconcile_one(name, section, name in force)
                self._applied[name] = copy.deepcopy(section)
        self.services.state_changed()

    async def _reconcile_one(self, name: str, section: dict[str, Any], force: bool) -> None:
        status = self.status.setdefault(name, ComponentStatus(name, since=time.time()))
        status.enabled = section.get("enabled", True)
        changed = self._applied.get(name) != section
        running = self.supervisor.get(CHILD_PREFIX + name) is not None
        if not status.enabled:
            await self._stop(name, "disabled")
            return
        entry = self.registry.get(name)
        if entry is None:
            await self._stop(name, "not_installed")
            errors = [e.error for e in self.registry.errors if e.name == name]
            status.last_error = errors[-1] if errors else None
            return
        settings = section.get("settings", {})
        if running and (force or self._running_class(name) is not entry.cls):
            await self._stop(name, "stopped")
            running = False
        if running and changed:
            if await self._reconfigure_in_place(name, settings):
                return
            await self._stop(name, "stopped")
            running = False
        if not running and (changed or force or status.state != "failed"):
            await self._start(name, settings)

    def _running_class(self, name: str) -> type | None:
        info = self.supervisor.get(CHILD_PREFIX + name)
        instance = info.instance if info is not None else None
        return type(instance.component) if isinstance(instance, ComponentRunnable) else None

    async def _reconfigure_in_place(self, name: str, settings: dict[str, Any]) -> bool:
        component = self.running(name)
        if component is None:
            return False
        try:
            await component.reconfigure(settings)
        except NotImplementedError:
            log.info("component %s restarts to apply new settings", name)
            return False
        except Exception as exc:
            log.warning("component %s: reconfigure failed (%s); restarting with new settings", name, exc)
            return False
        log.info("component %s reconfigured in place", name)
        return True

    # ---- running ---------------------------------------------------------------------

    def context(self, name: str) -> AgentComponentContext:
        ctx = self._contexts.get(name)
        if ctx is None:
            ctx = self._contexts[name] = AgentComponentContext(
                self.services.node,
                name,
                publish_json=self.services.publish_json,
                on_state=self._on_reported,
                data_dir=self.data_dir,
                interfaces=self.interfaces,
                subscribe_input=self.inputs.subscribe,
            )
        return ctx

    async def _start(self, name: str, settings: dict[str, Any]) -> None:
        entry = self.registry.get(name)
        if entry is None:
            return
        status = self.status.setdefault(name, ComponentStatus(name))
        status.state, status.version, status.dist = "starting", entry.cls.version, entry.dist
        status.last_error, status.health, status.since = None, None, time.time()
        ctx = self.context(name)
        child = CHILD_PREFIX + name
        cls = entry.cls
        settings = copy.deepcopy(settings)

        def record(health: Health) -> None:
            status.health = health.to_wire()

        def factory() -> ComponentRunnable:
            return ComponentRunnable(cls(ctx, copy.deepcopy(settings)), child, record)

        self._settled[name] = asyncio.Event()
        await self.supervisor.start_child(child, factory, self.policy, wait=False)

    async def stop_component(self, name: str) -> None:
        """Stop ``name`` deliberately (its state becomes ``stopped``; no restart)."""
        await self._stop(name, "stopped")

    async def _stop(self, name: str, final_state: str) -> None:
        status = self.status.get(name)
        with contextlib.suppress(ChildNotFoundError):
            await self.supervisor.stop_child(CHILD_PREFIX + name)
        if status is not None and (final_state != "stopped" or status.state != "failed"):
            status.state = final_state
            status.since = time.time()

    def running(self, name: str) -> Any:
        """The running component instance called ``name``, or ``None``."""
        info = self.supervisor.get(CHILD_PREFIX + name)
        if info is None or info.state != "running" or not isinstance(info.instance, ComponentRunnable):
            return None
        return info.instance.component

    async def wait_settled(self, name: str, timeout: float) -> ComponentStatus | None:
        """Wait until ``name``'s current run is set up or failed; ``None`` on timeout."""
        event = self._settled.get(name)
        if event is None:
            return self.status.get(name)
        if not await wait_event(event, timeout):
            return None
        return self.status.get(name)

    async def check_health(self, name: str) -> Health:
        """Ask a running component for its health now (and record it)."""
        info = self.supervisor.get(CHILD_PREFIX + name)
        if info is None or info.state != "running" or not isinstance(info.instance, ComponentRunnable):
            state = self.status[name].state if name in self.status else "not configured"
            return Health(False, f"{name} is {state}")
        if info.consecutive_failures:
            return Health(False, f"{name} cycle failing: {info.last_error}")
        return await info.instance.check_health()

    def _on_event(self, event: SupervisorEvent) -> None:
        if not event.child.startswith(CHILD_PREFIX):
            return
        name = event.child[len(CHILD_PREFIX) :]
        status = self.status.get(name)
        if status is None:
            return
        status.restarts = event.restarts
        if event.kind == "started":
            status.state, status.since = "running", event.at
            self._set_settled(name)
        elif event.kind == "crashed":
            status.last_error = event.detail
        elif event.kind == "restarting":
            status.state, status.since = "restarting", event.at
        elif event.kind == "fatal":
            status.state, status.since, status.last_error = "failed", event.at, event.detail
            self._set_settled(name)
        elif event.kind == "stopped":
            if status.state not in ("disabled", "not_installed"):
                status.state, status.since = "stopped", event.at
            self._set_settled(name)
        self.services.state_changed()

    def _set_settled(self, name: str) -> None:
        event = self._settled.get(name)
        if event is not None:
            event.set()

    def _on_reported(self, name: str, state: dict[str, Any]) -> None:
        status = self.status.setdefault(name, ComponentStatus(name))
        status.reported = state
        topic = contract.component_topic(self.services.node, name, "state")
        self.services.spawn(self.services.publish_json(topic, state, qos=1, retain=True), f"state {name}")
        self.services.state_changed()

    async def _clear_retained(self, name: str) -> None:
        topic = contract.component_topic(self.services.node, name, "state")
        await self.services.publish_raw(topic, b"", qos=1, retain=True)

    def state_section(self) -> dict[str, Any]:
        """The ``components`` part of the node's retained state."""
        return {name: s.to_wire() for name, s in sorted(self.status.items())}

    # ---- commands --------------------------------------------------------------------

    async def _cmd_component(self, cmd: Command) -> Any:
        try:
            args = COMPONENT_COMMAND_SCHEMA.validate(cmd.args, path="component")
        except ContractError as exc:
            raise CommandError(exc.message, code=Code.INVALID) from None
        name = args["component"]
        if self.registry.get(name) is None:
            raise CommandError(f"no component {name!r} is installed", code=Code.NOT_FOUND)
        component = self.running(name)
        if component is None:
            state = self.status[name].state if name in self.status else "not configured"
            raise CommandError(f"component {name!r} is {state}, not running", code=Code.UNAVAILABLE)
        return await component.handle_command(args["command"], args["args"])

    async def _cmd_components(self, cmd: Command) -> dict[str, Any]:
        return {
            "installed": [
                {"dist": dist, "version": version, "components": self.registry.components_of(dist)}
                for dist, version in sorted(self.registry.dists().items())
            ],
            "available": self.registry.describe(),
            "configured": self.state_section(),
            "errors": [e.to_wire() for e in self.registry.errors],
        }
