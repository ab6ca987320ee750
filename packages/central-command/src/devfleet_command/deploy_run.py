"""Deploy to and undeploy from one target: connect, check, run the plan, report.

:func:`deploy` and :func:`undeploy` return a :class:`Outcome` and never raise for
a target's failure: the outcome names the failed step, the error (one line), what
was left on the target and the command that removes it. ``report(host, step,
detail)`` is called as each step starts and ends (the CLI's progress display).
"""

from __future__ import annotations

import posixpath
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devfleet_base.contract import check_name
from devfleet_base.errors import DevfleetError

from . import deploy_supervise
from .deploy_plan import (
    PROBE,
    SYSTEM_PREFIX,
    Action,
    Facts,
    Layout,
    Options,
    check_facts,
    choose_layout,
    deploy_actions,
    undeploy_actions,
)
from .deploy_ssh import DeployError, Remote, SshTarget

__all__ = ["Outcome", "Reporter", "deploy", "plan_lines", "probe", "undeploy"]

Reporter = Callable[[str, str, str], None]
"""``report(target label, step, detail)``."""


@dataclass
class Outcome:
    """How one target went.

    Attributes:
        target: ``user@host[:port]``.
        node: the node name.
        ok: every step succeeded.
        step: the step that failed (or the last one).
        error: one line, when not ok.
        left: paths left on the target after a failure.
        undo: the command that removes them.
        warnings: e.g. no systemd; the background process does not survive a reboot.
        plan: with dry_run, what would run (one line per action).
        facts: the target's facts line.
    """

    target: str
    node: str
    ok: bool = False
    step: str = "connect"
    error: str = ""
    left: list[str] = field(default_factory=list)
    undo: str = ""
    warnings: list[str] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)
    facts: str = ""
    view: Any = None  # the node as the console saw it come online (a NodeView)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; ``show`` is what ``devfleet show NODE --json`` prints."""
        out = {
            k: v
            for k, v in self.__dict__.items()
            if k != "view" and (v not in ("", [], None) or k in ("ok", "step"))
        }
        if self.view is not None:
            out["show"] = self.view.to_dict()
        return out


async def probe(remote: Remote, python: str, prefixes: list[str]) -> Facts:
    """Run :data:`PROBE` with the target's Python.

    Raises:
        DeployError(step="check"): no such Python, or its output is not the facts.
    """
    done = await remote.run([python, "-c", PROBE, *prefixes], timeout=60)
    if done.exit_status == 127:
        raise DeployError(
            "check",
            f"{remote.target.label}: no {python} on the target (install it: sudo apt-get install python3 python3-venv)",
        )
    if done.exit_status != 0:
        raise DeployError("check", f"{remote.target.label}: {python} failed: {done.last_line()}")
    try:
        return Facts.parse(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise DeployError("check", f"{remote.target.label}: unexpected answer from {python}") from None


async def _execute(remote: Remote, act: Action, staging: str, warn: Callable[[str], None]) -> None:
    label = remote.target.label
    if act.argv:
        done = await remote.run(list(act.argv), sudo=act.sudo)
        if done.exit_status not in act.ok_codes and act.warn:
            warn(f"{act.warn} ({done.last_line()})" if done.last_line() else act.warn)
        elif done.exit_status not in act.ok_codes:
            prog = act.argv[0].rsplit("/", 1)[-1]
            if len(act.argv) > 2 and act.argv[1] == "-m":
                prog += f" -m {act.argv[2]}"
            raise DeployError(act.step, f"{label}: {act.step} failed ({prog}): {done.last_line()}")
        return
    # A file: straight over SFTP, or (with sudo, or for another owner) staged in the
    # home directory and moved into place by `install`, which sets mode and owner at once.
    staged = act.sudo or bool(act.owner)
    dest = posixpath.join(staging, uuid.uuid4().hex[:12]) if staged else act.path
    if act.local is not None:
        await remote.put(act.local, dest, act.mode)
    else:
        await remote.write(dest, act.data or b"", 0o600 if staged else act.mode)
    if staged:
        own = ["-o", act.owner, "-g", act.owner] if act.owner else []
        done = await remote.run(["install", "-m", f"{act.mode:04o}", *own, dest, act.path], sudo=act.sudo)
        await remote.run(["rm", "-f", "--", dest])
        if done.exit_status != 0:
            raise DeployError(act.step, f"{label}: cannot install {act.path}: {done.last_line()}")


def _ignore(_: str) -> None:
    pass


async def _run_actions(
    remote: Remote,
    acts: list[Action],
    host: str,
    report: Reporter,
    facts: Facts,
    warn: Callable[[str], None] = _ignore,
) -> None:
    """Run ``acts`` in order; a failed action with ``Action.warn`` calls ``warn(text)``.

    Raises:
        DeployError: the first action that failed (its step and one line).
    """
    staging = posixpath.join(facts.home, ".devfleet-staging")
    if any((a.sudo or a.owner) and not a.argv for a in acts):
        await remote.run(["mkdir", "-p", "-m", "0700", staging])
        try:
            await _steps(remote, acts, host, report, staging, warn)
        finally:
            await remote.run(["rm", "-rf", "--", staging])  # files staged for sudo install
        return
    await _steps(remote, acts, host, report, staging, warn)


async def _steps(
    remote: Remote, acts: list[Action], host: str, report: Reporter, staging: str, warn: Callable[[str], None]
) -> None:
    step, started = "", time.monotonic()
    for act in acts:
        if act.step != step:
            if step:
                report(host, step, f"done ({time.monotonic() - started:.1f} s)")
            step, started = act.step, time.monotonic()
            report(host, step, "...")
        await _execute(remote, act, staging, warn)
    if step:
        report(host, step, f"done ({time.monotonic() - started:.1f} s)")


def undo_command(target: SshTarget, layout: Layout) -> str:
    """The ``devfleet undeploy`` line that removes a (partial) deploy."""
    parts = ["devfleet", "undeploy", target.label.rsplit(":", 1)[0] if target.port != 22 else target.label]
    if target.port != 22:
        parts += ["--ssh-port", str(target.port)]
    if not layout.system:
        parts += ["--prefix", layout.prefix]
    return " ".join(parts)


async def deploy(
    target: SshTarget,
    opts: Options,
    *,
    files: Callable[[Layout], dict[str, bytes]],
    unit: bytes | None,
    report: Reporter,
    dry_run: bool = False,
    online: Callable[[], Any] | None = None,
    user_unit: bytes | None = None,
) -> Outcome:
    """Deploy the agent to one target (see the module docstring).

    Args:
        target: where to connect.
        opts: the operator's options.
        files: the node's provisioned files for a layout (``agent.toml`` and keys).
        unit: deploy/systemd/devfleet-agent.service, for targets with systemd.
        user_unit: deploy/systemd/user/devfleet-agent.service, for systemd without sudo.
        report: progress callback.
        dry_run: connect and check only, and put the plan in ``Outcome.plan``.
        online: awaited after the service step; waits for the node's birth and
            returns the node's view (raises DevfleetError on timeout).
    """
    out = Outcome(target.label, opts.name)
    layout: Layout | None = None
    try:
        report(target.label, "connect", "...")
        async with await Remote.open(target) as remote:
            if remote.new_host_key:
                out.warnings.append(f"new host key recorded in {target.known_hosts}: {remote.new_host_key}")
            out.step = "check"
            report(target.label, "check", "...")
            prefixes = [opts.prefix] if opts.prefix else ["/opt/devfleet", "~/.local/share/devfleet"]
            facts = await probe(remote, opts.python, prefixes)
            out.facts = facts.summary()
            layout, warnings = choose_layout(opts, facts)
            out.warnings += warnings
            check_facts(facts, layout, target.label)
            report(target.label, "check", out.facts)
            supervisor = Path(deploy_supervise.__file__)
            acts = deploy_actions(
                opts,
                facts,
                layout,
                files=files(layout),
                unit=unit,
                supervisor=supervisor,
                user_unit=user_unit,
            )
            if dry_run:
                out.plan = plan_lines(acts)
                out.ok, out.step = True, "plan"
                return out
            try:
                await _run_actions(
                    remote, acts, target.label, _track(out, report), facts, out.warnings.append
                )
            except DevfleetError:
                out.left = layout.removed_by_undeploy()
                out.undo = undo_command(target, layout)
                raise
        if online is not None:
            out.step = "online"
            report(target.label, "online", "waiting for the birth")
            started = time.monotonic()
            out.view = await online()
            report(target.label, "online", f"done ({time.monotonic() - started:.1f} s)")
        out.ok, out.step = True, "done"
    except DevfleetError as exc:
        out.error = exc.message
        if isinstance(exc, DeployError) and exc.step not in ("ssh",):
            out.step = exc.step
        if out.step == "online" and layout is not None:  # installed and started, not born
            out.left = layout.removed_by_undeploy()
            out.undo = undo_command(target, layout)
        report(target.label, out.step, f"FAILED: {exc.message}")
    return out


def plan_lines(acts: list[Action]) -> list[str]:
    """What ``--dry-run`` prints: ``STEP       COMMAND`` per action."""
    return [f"{a.step:10} {a.describe()}" for a in acts]


def _track(out: Outcome, report: Reporter) -> Reporter:
    def wrapped(host: str, step: str, detail: str) -> None:
        out.step = step
        report(host, step, detail)

    return wrapped


async def undeploy(
    target: SshTarget,
    *,
    prefix: str | None,
    python: str,
    report: Reporter,
    dry_run: bool = False,
    purge: Callable[[str], Any] | None = None,
) -> Outcome:
    """Stop the agent, remove the unit, venv, config and data, then ``purge(node)``
    the node's retained topics. Only a prefix holding deploy's ``deploy.json`` is removed.
    """
    out = Outcome(target.label, "")
    try:
        report(target.label, "connect", "...")
        async with await Remote.open(target) as remote:
            out.step = "check"
            prefixes = [prefix] if prefix else ["/opt/devfleet", "~/.local/share/devfleet"]
            facts = await probe(remote, python, prefixes)
            found = [
                (p, s["manifest"]) for p, s in facts.prefixes.items() if isinstance(s.get("manifest"), dict)
            ]
            if not found:
                raise DeployError(
                    "check", f"{target.label}: no devfleet deploy found at {', '.join(prefixes)}"
                )
            where, manifest = found[0]
            out.node = str(manifest.get("node", ""))
            check_name(out.node, "node")  # the target wrote it: it names topics to clear
            # The fixed system paths only where the system layout lives.
            layout = Layout(
                where,
                system=bool(manifest.get("system")) and where == SYSTEM_PREFIX,
                user=bool(manifest.get("user")),
                home=facts.home,
            )
            acts = undeploy_actions(facts, layout)
            if dry_run:
                out.plan = plan_lines(acts)
                out.ok, out.step = True, "plan"
                return out
            await _run_actions(remote, acts, target.label, _track(out, report), facts, out.warnings.append)
        if purge is not None and out.node:
            out.step = "purge"
            report(target.label, "purge", f"retained topics of {out.node}")
            await purge(out.node)
            report(target.label, "purge", "done")
        out.ok, out.step = True, "done"
    except DevfleetError as exc:
        out.error = exc.message
        report(target.label, out.step, f"FAILED: {exc.message}")
    return out
