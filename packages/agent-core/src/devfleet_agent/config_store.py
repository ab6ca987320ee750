"""The node's config on disk: versioned, validated, atomic, with history.

Each applied version is its own file ``config/v{N}.json``; the newest file
that parses and validates is the current config, so a file truncated by a
power cut is detected and the previous good version is used instead. The last
``keep`` versions are kept for rollback.
"""

from __future__ import annotations

import copy
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devfleet_base.errors import Code, ConfigError, ContractError
from devfleet_base.node_config import NODE_CONFIG_SCHEMA, apply_dotted, default_node_config

from .jsonsafe import check_finite
from .storage import atomic_write_json, read_json, remove_orphans

__all__ = ["ConfigStore", "MemoryConfigStore", "apply_dotted", "configure_arguments"]

log = logging.getLogger("devfleet.config")

_FILE_RE = re.compile(r"v(\d+)\.json")


def configure_arguments(args: dict[str, Any]) -> dict[str, Any]:
    """Check the arguments of a ``configure`` command; return the keyword arguments
    of :meth:`ConfigStore.apply` (without ``applied_id``).

    Raises:
        ConfigError: an unknown argument or one of the wrong type.
    """
    allowed = {"set", "replace", "rollback_to", "expect_version"}
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise ConfigError(f"configure: unknown argument(s) {', '.join(unknown)}")
    for key, kind in (("set", dict), ("replace", dict), ("rollback_to", int), ("expect_version", int)):
        value = args.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise ConfigError(f"configure: {key} must be {'an object' if kind is dict else 'an integer'}")
    return {key: args.get(key) for key in sorted(allowed)}


class ConfigStore:
    """Versioned node config persisted under ``directory``.

    Args:
        directory: where ``v{N}.json`` files live (created when missing).
        keep: how many versions to keep.
        validate_extra: an extra check run after the schema (e.g. component
            settings); it raises ContractError/ConfigError to refuse. More are
            added with :meth:`add_validator`.
    """

    def __init__(self, directory: Path, *, keep: int = 5, validate_extra: Any = None) -> None:
        self.directory = directory
        self.keep = keep
        self._validators: list[Callable[[dict[str, Any]], None]] = [validate_extra] if validate_extra else []
        self.version = 0
        self.config: dict[str, Any] = default_node_config()
        self.applied_id: str | None = None
        self.updated_at: float | None = None
        self.recovered_from: str | None = None
        self.highest = 0
        """The highest version number ever seen, damaged files included: the next
        write takes the number above it, so a number names one content forever."""

    def load(self) -> None:
        """Load the newest good version; note a corrupt newer one in ``recovered_from``.

        Temporary files left by a write that was killed are removed first.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        removed = remove_orphans(self.directory)
        if removed:
            log.info("removed %d temporary file(s) left by interrupted config writes", removed)
        files = sorted(self._files(), reverse=True)
        self.highest = files[0][0] if files else 0
        for version, path in files:
            try:
                doc = read_json(path)
                if not isinstance(doc, dict) or doc.get("version") != version:
                    raise ValueError(f"{path} does not hold version {version}")
                config = NODE_CONFIG_SCHEMA.validate(doc.get("config"))
            except (ValueError, ContractError) as exc:
                log.error("config version %d is unusable (%s); trying the previous one", version, exc)
                self.recovered_from = f"v{version}: {exc}"
                continue
            self.version = version
            self.config = config
            self.applied_id = doc.get("applied_id")
            self.updated_at = doc.get("updated_at")
            return
        # Nothing usable: defaults, version 0 (not written until the first change).

    def _files(self) -> list[tuple[int, Path]]:
        out = []
        for path in self.directory.glob("v*.json"):
            m = _FILE_RE.fullmatch(path.name)
            if m:
                out.append((int(m.group(1)), path))
        return out

    def versions(self) -> list[int]:
        """The versions kept on disk, oldest first."""
        return sorted(v for v, _ in self._files())

    def add_validator(self, validator: Callable[[dict[str, Any]], None]) -> None:
        """Run ``validator(config)`` after the schema on every config (it raises
        ContractError to refuse)."""
        self._validators.append(validator)

    def validate(self, config: Any) -> dict[str, Any]:
        try:
            check_finite(config, "config")  # what cannot be sent or stored is refused first
            checked = NODE_CONFIG_SCHEMA.validate(config)
            for validator in self._validators:
                validator(checked)
        except ContractError as exc:
            raise ConfigError(exc.message, code=Code.INVALID) from None
        return checked

    def apply(
        self,
        *,
        set: dict[str, Any] | None = None,
        replace: dict[str, Any] | None = None,
        rollback_to: int | None = None,
        expect_version: int | None = None,
        applied_id: str | None = None,
    ) -> dict[str, Any]:
        """Validate and persist a change; return the new config. Exactly one of
        ``set``/``replace``/``rollback_to``. Raises ConfigError (``conflict`` on a
        stale ``expect_version``, ``invalid`` on a bad value, ``not_found``)."""
        if sum(x is not None for x in (set, replace, rollback_to)) != 1:
            raise ConfigError("give exactly one of set, replace, rollback_to")
        if expect_version is not None and expect_version != self.version:
            raise ConfigError(
                f"config is at version {self.version}, not {expect_version}; re-read and retry",
                code=Code.CONFLICT,
            )
        if set is not None:
            candidate = apply_dotted(self.config, set)
        elif replace is not None:
            candidate = replace
        else:
            assert rollback_to is not None
            try:
                candidate = self._read_version(rollback_to)["config"]
            except (FileNotFoundError, ValueError, KeyError, TypeError):
                kept = ", ".join(map(str, self.versions())) or "none"
                raise ConfigError(
                    f"version {rollback_to} is not kept (kept: {kept})", code=Code.NOT_FOUND
                ) from None
        config = self.validate(candidate)
        version = max(self.version, self.highest) + 1
        now = time.time()
        self._write_version(
            version, {"version": version, "config": config, "applied_id": applied_id, "updated_at": now}
        )
        self.highest = version
        self.version, self.config, self.applied_id, self.updated_at = (
            version,
            config,
            applied_id,
            now,
        )
        self.recovered_from = None
        self._prune()
        return copy.deepcopy(config)

    # ---- storage (overridden by MemoryConfigStore) ------------------------------------

    def _read_version(self, version: int) -> Any:
        return read_json(self.directory / f"v{version}.json")

    def _write_version(self, version: int, doc: dict[str, Any]) -> None:
        atomic_write_json(self.directory / f"v{version}.json", doc)

    def _prune(self) -> None:
        for old, path in sorted(self._files())[: -self.keep]:
            path.unlink(missing_ok=True)
            log.debug("pruned config version %d", old)


class MemoryConfigStore(ConfigStore):
    """A :class:`ConfigStore` that keeps its versions in memory (no disk).

    For the fleet simulator, where thousands of nodes share one process: same
    validation, versions, optimistic concurrency and rollback, nothing persisted.
    """

    def __init__(self, *, keep: int = 5, validate_extra: Any = None) -> None:
        super().__init__(Path("/nonexistent"), keep=keep, validate_extra=validate_extra)
        self._docs: dict[int, dict[str, Any]] = {}

    def load(self) -> None:
        """Nothing to load: a fresh store starts at version 0 with the defaults."""

    def versions(self) -> list[int]:
        """The versions kept, oldest first."""
        return sorted(self._docs)

    def _read_version(self, version: int) -> Any:
        try:
            return self._docs[version]
        except KeyError:
            raise FileNotFoundError(version) from None

    def _write_version(self, version: int, doc: dict[str, Any]) -> None:
        self._docs[version] = doc

    def _prune(self) -> None:
        for old in sorted(self._docs)[: -self.keep]:
            del self._docs[old]
