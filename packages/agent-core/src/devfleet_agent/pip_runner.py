"""The pip runner: pip into the agent's own environment, safely.

``sys.executable -m pip`` with an argument list (never a shell string), a
timeout, the output captured and its tail reported. Requirement specs are
parsed as PEP 508 by ``packaging.requirements.Requirement`` and must be plain:
a distribution name, optional extras and an optional version specifier; no
options, URLs, paths or environment markers. (What a component install does
around pip, verification and rollback, is :mod:`devfleet_agent.components.lifecycle`.)
Where packages come from is a local setting, never part of a spec:
``install_find_links`` (a local wheelhouse: ``--no-index --find-links DIR``) or
``install_index`` (``--index-url URL``), else pip's own configuration.

Everything is refused unless the agent was started with ``allow_install``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import string
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devfleet_base.errors import Code, CommandError

from .settings import Settings

if TYPE_CHECKING:
    from packaging.requirements import Requirement

__all__ = [
    "InstallError",
    "InstallResult",
    "check_requirement",
    "pip_install",
    "pip_uninstall",
    "requirement_name",
]

log = logging.getLogger("devfleet.installer")

_PLAIN_CHARS = frozenset(string.ascii_letters + string.digits + "._-[],<>=!~*+ ")
"""Names, extras and PEP 440 specifiers need no more: ``@ ; / : ( )``, quotes, tabs,
newlines and non-ASCII never pass (URLs, markers, paths, options on a second line)."""
_LOOSE_SPACING = (" [", "[ ", " ]")  # PEP 508 allows them; a plain spec has no blank there
_TAIL_CHARS = 2000


class InstallError(CommandError):
    """An install, upgrade or uninstall that was refused or failed.

    Attributes:
        result: what was left behind (e.g. ``rolled_back``), sent in the error receipt.
    """

    def __init__(
        self, message: str, *, code: str | None = None, result: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.result = result


@dataclass(frozen=True)
class InstallResult:
    """The outcome of one pip run.

    Attributes:
        ok: pip exited with 0 within the timeout.
        returncode: pip's exit status (``None`` when it was killed on timeout).
        output_tail: the last ~2000 characters of pip's combined output.
        args: the argument list that was run.
        duration: seconds pip ran.
        timed_out: pip was killed after ``settings.install_timeout``.
    """

    ok: bool
    returncode: int | None
    output_tail: str
    args: list[str] = field(default_factory=list)
    duration: float = 0.0
    timed_out: bool = False

    def to_wire(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "returncode": self.returncode,
            "timed_out": self.timed_out,
            "duration": round(self.duration, 2),
            "output_tail": self.output_tail,
        }


def check_requirement(spec: Any) -> str:
    """Return ``spec`` stripped if it is a plain requirement, else raise InstallError (``invalid``)."""
    if not isinstance(spec, str) or not 0 < len(spec) <= 200:
        raise InstallError("a requirement spec must be a string of 1-200 characters", code=Code.INVALID)
    text = spec.strip()
    if _plain_requirement(text) is None:
        raise InstallError(
            f"requirement {spec!r} is not allowed: give a distribution name with optional extras and "
            "version specifier (e.g. 'devfleet-component-ledstrip[ws281x]>=1.2'); "
            "options, URLs, paths and markers are refused",
            code=Code.INVALID,
        )
    return text


def requirement_name(spec: str) -> str:
    """The distribution name of a checked requirement spec, as written (not normalised)."""
    req = _plain_requirement(spec.strip())
    if req is None:
        raise InstallError(f"requirement {spec!r} is not allowed", code=Code.INVALID)
    return req.name


def _plain_requirement(text: str) -> Requirement | None:
    """``text`` parsed, when it is a plain requirement; else None.

    PEP 508 parsers take more than a plain spec: a URL (``name @ url``), a marker,
    ``===`` arbitrary equality, empty extras ``[]``, a trailing comma, blanks around
    the extras' brackets, parenthesised specifiers, a name ending in ``_``. All of
    these are refused.
    """
    if not text or not _PLAIN_CHARS.issuperset(text) or any(s in text for s in _LOOSE_SPACING):
        return None
    # imported on first use: keeps the idle agent small (Pi Zero; issue 20)
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import InvalidName, canonicalize_name

    try:
        req = Requirement(text)
    except InvalidRequirement:
        return None
    if req.url is not None or req.marker is not None or text.endswith(","):
        return None
    if ("[" in text) != bool(req.extras) or len(req.name) > 100:
        return None
    try:
        for name in (req.name, *req.extras):
            canonicalize_name(name, validate=True)
    except InvalidName:
        return None
    if any(s.operator == "===" or len(s.version) > 64 for s in req.specifier):
        return None
    return req


def _source_args(settings: Settings) -> list[str]:
    if settings.install_find_links:
        return ["--no-index", "--find-links", settings.install_find_links]
    if settings.install_index:
        return ["--index-url", settings.install_index]
    return []


def _checked(specs: list[str], settings: Settings, verb: str) -> list[str]:
    """``specs`` checked, when installing is allowed and there is something to ``verb``."""
    if not settings.allow_install:
        raise InstallError(
            "installing components is switched off on this node (start the agent with --allow-install)",
            code=Code.FORBIDDEN,
        )
    if not specs:
        raise InstallError(f"nothing to {verb}", code=Code.INVALID)
    return [check_requirement(s) for s in specs]


async def pip_install(requirements: list[str], *, settings: Settings, upgrade: bool = False) -> InstallResult:
    """Install ``requirements`` into the agent's environment.

    Args:
        requirements: plain requirement specs (checked with :func:`check_requirement`).
        settings: the agent's settings (``allow_install``, the source, ``install_timeout``).
        upgrade: pass ``--upgrade``.

    Returns:
        The :class:`InstallResult`; a pip failure is ``ok=False``, not an exception.

    Raises:
        InstallError: installing is switched off (``forbidden``) or a spec is refused (``invalid``).
    """
    specs = _checked(requirements, settings, "install")
    args = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
    if upgrade:
        args.append("--upgrade")
    args += [*_source_args(settings), *specs]
    return await _run(args, settings.install_timeout)


async def pip_uninstall(names: list[str], *, settings: Settings) -> InstallResult:
    """Uninstall the distributions ``names`` (plain names, no versions).

    Raises:
        InstallError: installing is switched off (``forbidden``) or a name is refused (``invalid``).
    """
    checked = _checked(names, settings, "uninstall")
    for name in checked:
        if requirement_name(name) != name:
            raise InstallError(f"uninstall takes a bare distribution name, not {name!r}", code=Code.INVALID)
    args = [sys.executable, "-m", "pip", "uninstall", "--disable-pip-version-check", "--yes", *checked]
    return await _run(args, settings.install_timeout)


async def _run(args: Sequence[str], timeout: float) -> InstallResult:
    log.info("running %s", " ".join(args[2:]))
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    timed_out = False
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        out, _ = await proc.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    text = out.decode(errors="replace") if out else ""
    tail = text[-_TAIL_CHARS:]
    if timed_out:
        tail += f"\n[killed after {timeout:g} s]"
    result = InstallResult(
        ok=not timed_out and proc.returncode == 0,
        returncode=None if timed_out else proc.returncode,
        output_tail=tail,
        args=list(args),
        duration=time.monotonic() - started,
        timed_out=timed_out,
    )
    log.log(
        logging.INFO if result.ok else logging.ERROR,
        "pip %s: %s",
        args[3],
        "ok" if result.ok else tail[-400:],
    )
    return result
