"""The component registry: entry points loaded one at a time, failures isolated.

A component distribution declares an entry point in the ``devfleet.components``
group whose value is a plugin module implementing
:func:`~devfleet_base.hookspecs.devfleet_register_components`. The registry

- reads ``importlib.metadata.entry_points()`` once and caches the group
  (:meth:`ComponentRegistry.refresh` re-reads it after an install); when a scan of
  the ``sys.path`` folders finds no distribution that can declare the group,
  ``importlib.metadata`` is not imported at all (it is ~0.7 MB of an idle agent's
  heap, issue 20),
- imports each entry point on its own: an import that raises, a plugin that
  breaks the hookspec, or a registration that is not a valid component is
  recorded in :attr:`ComponentRegistry.errors` (and so in the node's ``meta``
  as ``component_errors``) and skipped; the others load normally,
- skips disabled names (entry-point or component names),
- owns a fresh :class:`pluggy.PluginManager`; pluggy's
  ``load_setuptools_entrypoints`` is not used, since it has no per-plugin isolation.

Tests register plugins or classes directly (:meth:`ComponentRegistry.register_plugin`,
:meth:`ComponentRegistry.add`) and never discover what happens to be installed.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

from devfleet_base import hookspecs
from devfleet_base.component import Component
from devfleet_base.contract import check_name
from devfleet_base.errors import ContractError

if TYPE_CHECKING:
    import importlib.metadata as md

__all__ = [
    "ComponentEntry",
    "ComponentRegistry",
    "LoadError",
    "canonical_name",
    "distribution_modules",
    "purge_modules",
]

log = logging.getLogger("devfleet.components")

_PEP503_SEPARATORS = re.compile(r"[-_.]+")

EntryPointsFn = Callable[[], Iterable["md.EntryPoint"]]


@dataclass(frozen=True)
class ComponentEntry:
    """One component class the registry knows.

    Attributes:
        name: the component's registry name (its ``name`` class attribute).
        cls: the :class:`~devfleet_base.Component` subclass.
        plugin: the entry-point (or plugin) name that registered it.
        dist: the normalised distribution name, ``None`` when registered directly.
        dist_version: the distribution's version.
    """

    name: str
    cls: type[Component]
    plugin: str
    dist: str | None = None
    dist_version: str | None = None

    def describe(self) -> dict[str, Any]:
        """The entry in ``meta.components`` and the ``components`` listing."""
        out = self.cls.describe()
        out["name"] = self.name
        out["plugin"] = self.plugin
        out["dist"] = self.dist
        out["dist_version"] = self.dist_version
        return out


@dataclass(frozen=True)
class LoadError:
    """A plugin that could not be loaded (shown in ``meta.component_errors``)."""

    name: str
    dist: str | None
    version: str | None
    error: str

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "dist": self.dist, "version": self.version, "error": self.error}


@dataclass
class _Plugin:
    name: str
    value: str
    dist: str | None
    version: str | None
    components: list[str] = field(default_factory=list)
    modules: set[str] = field(default_factory=set)


def canonical_name(name: str) -> str:
    """A distribution name normalised as PEP 503 says: runs of ``-_.`` become one ``-``,
    lower case (what ``packaging.utils.canonicalize_name`` returns; ``packaging`` is
    left unimported here: it weighs ~1 MB RSS on an idle agent, Pi Zero, issue 20)."""
    return _PEP503_SEPARATORS.sub("-", name).lower()


_EGG_OR_INFO = (".egg", ".dist-info", ".egg-info")


def may_declare(group: str) -> bool:
    """Whether an installed distribution may declare entry points in ``group``.

    ``False`` only when it surely declares none: every ``sys.path`` entry is a folder
    (or missing), none holds an ``*.egg``, and no ``*.dist-info``/``*.egg-info`` folder
    in them has an ``entry_points.txt`` with a ``[group]`` section; and no finder but
    the standard one lists distributions. Where ``importlib.metadata`` looks and this
    scan does not (a zip on the path, another finder), the answer is ``True``.
    """
    from importlib.machinery import PathFinder

    if any(getattr(f, "find_distributions", None) and f is not PathFinder for f in sys.meta_path):
        return True
    header = re.compile(rf"^\s*\[\s*{re.escape(group)}\s*\]", re.MULTILINE)
    for entry in sys.path:
        root = entry or "."
        try:
            children = os.scandir(root)
        except (FileNotFoundError, NotADirectoryError):
            if os.path.exists(root):
                return True  # a zip file (or something unreadable): importlib.metadata decides
            continue
        except OSError:
            return True
        with children:
            for child in children:
                low = child.name.lower()
                if not low.endswith(_EGG_OR_INFO):
                    continue
                if low.endswith(".egg"):
                    return True
                try:
                    with open(os.path.join(child.path, "entry_points.txt"), encoding="utf-8") as fh:
                        if header.search(fh.read()):
                            return True
                except (FileNotFoundError, NotADirectoryError):
                    continue
                except (OSError, UnicodeDecodeError):
                    return True
    return False


def _default_entry_points(group: str) -> EntryPointsFn:
    def read() -> Iterable[md.EntryPoint]:
        if not may_declare(group):
            return ()  # nothing to load; importlib.metadata stays unimported (Pi Zero; issue 20)
        import importlib.metadata as md

        return md.entry_points(group=group)

    return read


class ComponentRegistry:
    """Knows which components this agent can run.

    Args:
        disabled: entry-point or component names never loaded.
        group: the entry-point group (``devfleet.components``).
        entry_points: reads the group's entry points (injected by tests that
            want to control discovery without touching ``sys.path``).
    """

    def __init__(
        self,
        *,
        disabled: Iterable[str] = (),
        group: str = hookspecs.ENTRY_POINT_GROUP,
        entry_points: EntryPointsFn | None = None,
    ) -> None:
        self.group = group
        self.disabled = frozenset(disabled)
        self._read_entry_points = entry_points or _default_entry_points(group)
        self._cached: tuple[md.EntryPoint, ...] | None = None
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.entries: dict[str, ComponentEntry] = {}
        self.errors: list[LoadError] = []
        self._plugins: dict[str, _Plugin] = {}

    # ---- discovery -------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._cached is not None

    def load(self) -> None:
        """Load every entry point of the group once (later calls do nothing)."""
        if self._cached is None:
            self.refresh()

    def refresh(self, *, reload_dists: Iterable[str] = ()) -> None:
        """Re-read the entry points (after an install) and bring the registry up to date.

        Plugins that are gone are dropped; new ones are loaded; a plugin whose
        distribution version changed, or whose distribution is in
        ``reload_dists``, has its modules purged from ``sys.modules`` and is
        imported afresh. Errors of earlier loads are forgotten and found again.
        """
        importlib.invalidate_caches()
        force = {canonical_name(d) for d in reload_dists}
        self._cached = tuple(self._read_entry_points())
        seen: set[str] = set()
        self.errors = [e for e in self.errors if e.dist is None]  # keep errors of direct registrations
        for ep in self._cached:
            dist, version = _dist_of(ep)
            if ep.name in seen:
                self._error(ep.name, dist, version, f"duplicate entry point name {ep.name!r}; ignored")
                continue
            seen.add(ep.name)
            if ep.name in self.disabled:
                log.info("component plugin %s is disabled", ep.name)
                self._drop_plugin(ep.name)
                continue
            old = self._plugins.get(ep.name)
            if old is not None and old.value == ep.value and old.version == version and dist not in force:
                continue
            if old is not None:
                self._drop_plugin(ep.name, purge=True)
            if dist is not None and (old is not None or dist in force):
                purge_modules(_modules_of(ep, dist))
            self._load_entry_point(ep, dist, version)
        for name in [n for n, p in self._plugins.items() if p.dist is not None and n not in seen]:
            self._drop_plugin(name, purge=True)

    def _load_entry_point(self, ep: md.EntryPoint, dist: str | None, version: str | None) -> None:
        try:
            plugin = ep.load()
        except BaseException as exc:  # a plugin's import may even call sys.exit()
            if isinstance(exc, (KeyboardInterrupt, GeneratorExit)):
                raise
            self._error(ep.name, dist, version, f"import failed: {_describe(exc)}")
            return
        self.register_plugin(plugin, name=ep.name, dist=dist, version=version, value=ep.value)
        if ep.name in self._plugins and dist is not None:
            self._plugins[ep.name].modules = _modules_of(ep, dist)

    # ---- registration ----------------------------------------------------------------

    def register_plugin(
        self,
        plugin: object,
        *,
        name: str,
        dist: str | None = None,
        version: str | None = None,
        value: str = "",
    ) -> list[str]:
        """Register one plugin (a module or object with hookimpls) and its components.

        Any failure is recorded in :attr:`errors` and the plugin is left out.

        Returns:
            The names of the components it registered.
        """
        found: list[type[Component]] = []
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:
            self._error(name, dist, version, f"not a valid plugin: {_describe(exc)}")
            return []
        try:
            self.pm.check_pending()
            others = [p for p in self.pm.get_plugins() if p is not plugin]
            caller = self.pm.subset_hook_caller("devfleet_register_components", remove_plugins=others)
            caller(register=found.append)
            accepted = [self._check_class(cls, name) for cls in found]
        except Exception as exc:
            self.pm.unregister(plugin)
            self._error(name, dist, version, f"registration failed: {_describe(exc)}")
            return []
        entries = [
            ComponentEntry(cls.name, cls, name, dist, version)
            for cls in accepted
            if cls.name not in self.disabled
        ]
        self._plugins[name] = _Plugin(name, value, dist, version, [e.name for e in entries])
        for entry in entries:
            self.entries[entry.name] = entry
        if not found:
            log.warning("component plugin %s registered no components", name)
        log.info("component plugin %s loaded: %s", name, ", ".join(e.name for e in entries) or "none")
        return [e.name for e in entries]

    def add(self, cls: type[Component], *, plugin: str | None = None) -> ComponentEntry:
        """Register a component class directly (tests, embedding); raise ContractError."""
        checked = self._check_class(cls, plugin or cls.name)
        entry = ComponentEntry(checked.name, checked, plugin or checked.name)
        self.entries[entry.name] = entry
        return entry

    def _check_class(self, cls: Any, plugin: str) -> type[Component]:
        if not (isinstance(cls, type) and issubclass(cls, Component)):
            raise ContractError(f"{cls!r} is not a Component subclass")
        check_name(cls.name, "component name")
        other = self.entries.get(cls.name)
        if other is not None and other.plugin != plugin:
            raise ContractError(f"component {cls.name!r} is already provided by {other.plugin}")
        return cls

    def _drop_plugin(self, name: str, *, purge: bool = False) -> None:
        plugin = self._plugins.pop(name, None)
        if plugin is not None:
            for comp in plugin.components:
                self.entries.pop(comp, None)
            if purge:
                purge_modules(plugin.modules)
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)

    def _error(self, name: str, dist: str | None, version: str | None, error: str) -> None:
        log.error("component plugin %s (%s %s) skipped: %s", name, dist, version, error)
        self.errors.append(LoadError(name, dist, version, error[:1000]))

    # ---- queries ---------------------------------------------------------------------

    def get(self, name: str) -> ComponentEntry | None:
        return self.entries.get(name)

    def components_of(self, dist: str) -> list[str]:
        """Names of the components the distribution ``dist`` provides."""
        key = canonical_name(dist)
        return sorted(e.name for e in self.entries.values() if e.dist == key)

    def errors_of(self, dist: str) -> list[LoadError]:
        key = canonical_name(dist)
        return [e for e in self.errors if e.dist == key]

    def dists(self) -> dict[str, str | None]:
        """Distributions that provide component entry points, with their versions."""
        out: dict[str, str | None] = {}
        for ep in self._cached or ():
            dist, version = _dist_of(ep)
            if dist is not None:
                out[dist] = version
        return out

    def describe(self) -> list[dict[str, Any]]:
        return [self.entries[n].describe() for n in sorted(self.entries)]


def _dist_of(ep: md.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return canonical_name(dist.metadata["Name"] or dist.name), dist.version


def _modules_of(ep: md.EntryPoint, dist: str) -> set[str]:
    return distribution_modules(dist) | {ep.value.split(":")[0].split(".")[0]}


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def distribution_modules(dist: str) -> set[str]:
    """The top-level import names of an installed distribution (empty if unknown)."""
    import importlib.metadata as md  # on first use: keeps the idle agent small (Pi Zero; issue 20)

    try:
        files = md.distribution(dist).files or []
    except md.PackageNotFoundError:
        return set()
    names: set[str] = set()
    for path in files:
        parts = path.parts
        if not parts or parts[0].endswith((".dist-info", ".data")) or parts[0] in ("..", "__pycache__"):
            continue
        top = parts[0]
        if len(parts) == 1:
            if not top.endswith(".py"):
                continue
            top = top[:-3]
        if top.isidentifier():
            names.add(top)
    return names


def purge_modules(tops: Iterable[str]) -> list[str]:
    """Remove ``top`` and ``top.*`` from ``sys.modules`` so the next import is fresh."""
    tops = set(tops)
    gone = [m for m in list(sys.modules) if m.split(".")[0] in tops]
    for mod in gone:
        sys.modules.pop(mod, None)
    importlib.invalidate_caches()
    return gone
