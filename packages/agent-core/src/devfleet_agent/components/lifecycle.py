"""The life of a component distribution: ``install``, ``upgrade`` and ``uninstall``
commands, with verification and rollback (pip itself runs in :mod:`devfleet_agent.pip_runner`).

Flow of ``install``/``upgrade`` (args ``{"spec": "name[extras]<specifier>"}``):

1. Refused unless the agent runs with ``allow_install`` (``forbidden``), the spec
   is a plain requirement (``invalid``) and its distribution name matches a
   pattern of the node config's ``components_allowed`` (``forbidden``). One
   install runs at a time (``busy``).
2. The distribution's running components are stopped; pip runs
   (:func:`devfleet_agent.pip_runner.pip_install`).
3. The registry re-reads the entry points; the distribution's modules are
   purged from ``sys.modules`` and imported afresh; its enabled components start.
4. Verification: the distribution's plugin must load, and each of its enabled
   components must set up and answer ``component_verify_cycles`` healthy checks
   in a row, ``component_verify_interval`` seconds apart, within
   ``component_verify_timeout`` seconds.
5. If pip fails or verification fails, the version that worked is put back
   (``pip install name==previous``, or ``pip uninstall`` after a first install),
   the components restart, and the error receipt (code ``failed``) carries
   ``result: {installed: false, version, previous, attempted, rolled_back, reason}``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import importlib
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from devfleet_base.component import Health
from devfleet_base.contract import Command
from devfleet_base.errors import Code

from ..commands import Dispatcher
from ..pip_runner import InstallError, check_requirement, pip_install, pip_uninstall, requirement_name
from ..services import NodeServices
from ..settings import Settings
from .registry import ComponentRegistry, canonical_name
from .status import ComponentStatus

__all__ = ["PROTECTED_DISTS", "DistributionLifecycle", "RunningComponents", "installed_version"]

log = logging.getLogger("devfleet.components")

PROTECTED_DISTS = frozenset({"devfleet-agent-core", "devfleet-component-base", "pip"})
"""Never installed over or removed by a remote command."""


def installed_version(dist: str) -> str | None:
    """The installed version of ``dist``, or ``None``."""
    import importlib.metadata as md  # on first use: keeps the idle agent small (Pi Zero; issue 20)

    importlib.invalidate_caches()
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _has_extension_modules(dist: str) -> bool:
    import importlib.metadata as md  # on first use: keeps the idle agent small (Pi Zero; issue 20)

    try:
        files = md.distribution(dist).files or []
    except md.PackageNotFoundError:
        return False
    return any(str(f).endswith((".so", ".pyd")) for f in files)


class RunningComponents(Protocol):
    """What the lifecycle needs of the component host (:class:`~.host.ComponentHost`)."""

    @property
    def registry(self) -> ComponentRegistry: ...

    @property
    def status(self) -> Mapping[str, ComponentStatus]: ...

    async def stop_component(self, name: str) -> None: ...

    async def reconcile(self, *, force: frozenset[str] = ...) -> None: ...

    async def wait_settled(self, name: str, timeout: float) -> ComponentStatus | None: ...

    async def check_health(self, name: str) -> Health: ...


class DistributionLifecycle:
    """Runs install, upgrade and uninstall of component distributions.

    Args:
        services: the node (settings, config, meta).
        host: the components that run (stopped, reloaded and verified around pip).
    """

    def __init__(self, services: NodeServices, host: RunningComponents) -> None:
        self.services = services
        self.host = host
        self._lock = asyncio.Lock()

    def register(self, dispatcher: Dispatcher) -> None:
        dispatcher.register("install", self._cmd_install, doc="pip install a component: {spec}.")
        dispatcher.register("upgrade", self._cmd_upgrade, doc="pip install --upgrade a component: {spec}.")
        dispatcher.register("uninstall", self._cmd_uninstall, doc="pip uninstall a component: {spec}.")

    @property
    def settings(self) -> Settings:
        return self.services.settings

    # ---- checks ----------------------------------------------------------------------

    def _spec(self, cmd: Command) -> tuple[str, str]:
        unknown = sorted(set(cmd.args) - {"spec"})
        if unknown:
            raise InstallError(f"{cmd.verb}: unknown argument(s) {', '.join(unknown)}", code=Code.INVALID)
        if not self.settings.allow_install:
            raise InstallError(
                "installing components is switched off on this node (start the agent with --allow-install)",
                code=Code.FORBIDDEN,
            )
        spec = check_requirement(cmd.args.get("spec"))
        dist = canonical_name(requirement_name(spec))
        if dist in PROTECTED_DISTS:
            raise InstallError(
                f"{dist} is part of the agent and cannot be changed remotely", code=Code.FORBIDDEN
            )
        return spec, dist

    def _check_allowed(self, dist: str) -> None:
        patterns = self.services.config.get("components_allowed", [])
        if not any(fnmatch.fnmatchcase(dist, canonical_name(p)) for p in patterns):
            shown = ", ".join(patterns) or "none"
            raise InstallError(
                f"{dist} is not in this node's components_allowed (patterns: {shown})", code=Code.FORBIDDEN
            )

    # ---- commands --------------------------------------------------------------------

    async def _cmd_install(self, cmd: Command) -> dict[str, Any]:
        return await self._guarded(cmd, upgrade=False)

    async def _cmd_upgrade(self, cmd: Command) -> dict[str, Any]:
        return await self._guarded(cmd, upgrade=True)

    async def _guarded(self, cmd: Command, *, upgrade: bool) -> dict[str, Any]:
        spec, dist = self._spec(cmd)
        self._check_allowed(dist)
        if self._lock.locked():
            raise InstallError("another install is running; retry when it is done", code=Code.BUSY)
        async with self._lock:
            return await self.install(spec, dist, upgrade=upgrade)

    async def install(self, spec: str, dist: str, *, upgrade: bool) -> dict[str, Any]:
        """Install ``spec``, verify, and roll back on failure (see the module docs)."""
        previous = installed_version(dist)
        await self._stop_components(dist)
        result = await pip_install([spec], settings=self.settings, upgrade=upgrade)
        if not result.ok:
            rolled = False
            if installed_version(dist) != previous:
                rolled = await self._restore(dist, previous)
            await self._reload(dist)
            raise _not_installed(
                f"pip could not install {spec}: {_last_line(result.output_tail)}",
                dist,
                previous,
                rolled,
                output_tail=result.output_tail,
            )
        new = installed_version(dist)
        await self._reload(dist)
        problem = await self.verify(dist)
        if problem is not None:
            log.error("%s %s failed verification: %s; rolling back to %s", dist, new, problem, previous)
            rolled = await self._restore(dist, previous)
            await self._reload(dist)
            back = f"rolled back to {previous}" if previous else "uninstalled again"
            raise _not_installed(
                f"{dist} {new} {problem}; " + (back if rolled else "ROLLBACK FAILED, see the node's logs"),
                dist,
                previous,
                rolled,
                attempted=new,
                reason=problem,
            )
        log.info("%s %s installed (was %s)", dist, new, previous)
        return {
            "installed": True,
            "dist": dist,
            "version": new,
            "previous": previous,
            "rolled_back": False,
            "components": self.host.registry.components_of(dist),
            "restart_required": _has_extension_modules(dist),
        }

    async def _cmd_uninstall(self, cmd: Command) -> dict[str, Any]:
        spec, dist = self._spec(cmd)
        if spec != requirement_name(spec):
            raise InstallError("uninstall takes a bare distribution name", code=Code.INVALID)
        version = installed_version(dist)
        if version is None:
            raise InstallError(f"{dist} is not installed", code=Code.NOT_FOUND)
        self.host.registry.load()
        if dist not in self.host.registry.dists():
            raise InstallError(f"{dist} provides no devfleet component; not removed", code=Code.FORBIDDEN)
        if self._lock.locked():
            raise InstallError("another install is running; retry when it is done", code=Code.BUSY)
        async with self._lock:
            components = self.host.registry.components_of(dist)
            await self._stop_components(dist)
            result = await pip_uninstall([dist], settings=self.settings)
            await self._reload(dist)
            if not result.ok:
                raise InstallError(
                    f"pip could not uninstall {dist}: {_last_line(result.output_tail)}",
                    code=Code.FAILED,
                    result={"uninstalled": False, "output_tail": result.output_tail},
                )
        return {"uninstalled": True, "dist": dist, "version": version, "components": components}

    # ---- steps -----------------------------------------------------------------------

    async def _stop_components(self, dist: str) -> None:
        for name in self.host.registry.components_of(dist):
            await self.host.stop_component(name)

    async def _reload(self, dist: str) -> None:
        before = set(self.host.registry.components_of(dist))
        self.host.registry.refresh(reload_dists=[dist])
        after = set(self.host.registry.components_of(dist))
        await self.host.reconcile(force=frozenset(before | after))
        await self.services.publish_meta()

    async def _restore(self, dist: str, previous: str | None) -> bool:
        if previous is None:
            result = await pip_uninstall([dist], settings=self.settings)
        else:
            result = await pip_install([f"{dist}=={previous}"], settings=self.settings)
        if not result.ok:
            log.error("rollback of %s to %s failed: %s", dist, previous, result.output_tail[-400:])
        return result.ok

    async def verify(self, dist: str) -> str | None:
        """``None`` when ``dist`` loaded and its enabled components are healthy; else why not."""
        errors = self.host.registry.errors_of(dist)
        if errors:
            return f"failed to load: {errors[-1].error}"
        s = self.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.component_verify_timeout
        for name in self.host.registry.components_of(dist):
            status = self.host.status.get(name)
            if status is None or not status.enabled:
                continue
            settled = await self.host.wait_settled(name, max(0.0, deadline - loop.time()))
            if settled is None:
                return f"{name} did not finish setup within {s.component_verify_timeout:g} s"
            if settled.state != "running":
                return f"{name} is {settled.state}: {settled.last_error}"
            healthy = 0
            detail = ""
            while healthy < s.component_verify_cycles:
                health = await self.host.check_health(name)
                if health.ok:
                    healthy += 1
                else:
                    healthy, detail = 0, health.detail
                if healthy >= s.component_verify_cycles:
                    break
                if loop.time() + s.component_verify_interval > deadline:
                    return f"{name} failed its health check: {detail or 'not healthy in time'}"
                await asyncio.sleep(s.component_verify_interval)
        return None


def _not_installed(message: str, dist: str, previous: str | None, rolled: bool, **more: Any) -> InstallError:
    """The ``failed`` error of an install that did not stick; ``result`` says what is left."""
    result = {
        "installed": False,
        "version": installed_version(dist),
        "previous": previous,
        "rolled_back": rolled,
    }
    return InstallError(message, code=Code.FAILED, result={**result, **more})


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"
