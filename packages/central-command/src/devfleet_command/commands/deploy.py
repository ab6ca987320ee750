"""``devfleet deploy`` and ``devfleet undeploy``: bootstrap nodes over SSH (docs/deploy.md).

The SSH work is in :mod:`devfleet_command.deploy_run`; this module parses the
flags, provisions the node (:func:`devfleet_command.provision.provision_node`),
shows progress and the summary, and waits for the node's birth on the broker.
asyncssh (the ``deploy`` extra) is imported only when a deploy runs.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: keep typing off the --help path
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from ..deploy_plan import Layout, Options
    from ..deploy_run import Outcome
    from .context import Context

__all__ = ["register"]

PROVISIONED = "~/.local/share/devfleet/nodes"


def _ssh_flags(p: Any) -> None:
    p.add_argument("--ssh-port", type=int, default=22, metavar="N", help="SSH port (default 22)")
    p.add_argument("--identity", metavar="FILE", help="SSH private key (default: your keys and ssh-agent)")
    p.add_argument(
        "--known-hosts", default="~/.ssh/known_hosts", metavar="FILE", help="host keys to check against"
    )
    p.add_argument(
        "--accept-new-host-key",
        action="store_true",
        help="trust and record the key of a host not yet in known_hosts (OpenSSH accept-new); "
        "a changed key is always refused",
    )
    p.add_argument("--prefix", metavar="DIR", help="install here, run as a supervised background process")
    p.add_argument(
        "--python", default="python3", metavar="PATH", help="the target's Python (default python3)"
    )
    p.add_argument("--dry-run", action="store_true", help="connect and check, print the plan, change nothing")


def register(sub: Any) -> None:
    """Add ``deploy`` and ``undeploy``."""
    p = sub.add_parser(
        "deploy",
        description=(
            "devfleet deploy [USER@]HOST --name NODE: connect over SSH (host key checked against "
            "known_hosts), check the target, create a venv, install the agent and --components from "
            "--wheelhouse or --index-url, write the node's provisioned agent.toml and keys (0600), "
            "start it (systemd where it runs with root/sudo, else a supervised background process) "
            "and wait for its birth. Re-running upgrades in place and keeps the node's data and "
            "credentials. Needs this console's identity (--signing-key-file)."
        ),
        examples=[
            "devfleet deploy pi@rpi-livingroom.local --name rpi-livingroom --wheelhouse wheelhouse --dry-run",
            "devfleet deploy pi@rpi-livingroom.local --name rpi-livingroom --wheelhouse wheelhouse "
            "--components devfleet-component-ledstrip",
            "devfleet deploy --hosts fleet.txt --index-url https://pypi.org/simple --json",
        ],
    )
    p.add_argument("target", nargs="?", metavar="[USER@]HOST", help="the device")
    p.add_argument("--name", metavar="NODE", help="the node name")
    p.add_argument("--hosts", metavar="FILE", help="many devices: one '[USER@]HOST NAME' per line")
    p.add_argument("--parallel", type=int, default=4, metavar="N", help="devices at once (default 4)")
    _ssh_flags(p)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--wheelhouse", metavar="DIR", help="upload and install from these wheels only")
    src.add_argument("--index-url", metavar="URL", help="install from this package index")
    p.add_argument("--components", nargs="+", default=[], metavar="PKG", help="component packages to install")
    p.add_argument("--allow-install", action="store_true", help="let the node install components later")
    p.add_argument(
        "--provisioned",
        default=PROVISIONED,
        metavar="DIR",
        help=f"where each node's credentials are kept on this machine, DIR/NODE (default {PROVISIONED})",
    )
    p.add_argument("--wait", type=float, default=120.0, metavar="S", help="seconds to wait for the birth")
    p.set_defaults(handler=cmd_deploy)

    u = sub.add_parser(
        "undeploy",
        description=(
            "devfleet undeploy [USER@]HOST: stop the agent, remove its unit or background process, "
            "venv, config and data (only where devfleet deploy left its deploy.json), then clear "
            "the node's retained topics on the broker."
        ),
        examples=[
            "devfleet undeploy pi@rpi-livingroom.local",
            "devfleet undeploy pi@rpi-livingroom.local --prefix /home/pi/devfleet --dry-run",
        ],
    )
    u.add_argument("target", metavar="[USER@]HOST", help="the device")
    _ssh_flags(u)
    u.set_defaults(handler=cmd_undeploy)


def _target(ctx: Context, text: str) -> Any:
    from pathlib import Path

    from ..deploy_plan import parse_target
    from ..deploy_ssh import SshTarget
    from ..errors import UsageError

    a = ctx.args
    if not 0 < a.ssh_port < 65536:
        raise UsageError(f"--ssh-port {a.ssh_port} is not a port")
    user, host = parse_target(text)
    return SshTarget(
        host,
        user=user,
        port=a.ssh_port,
        identity=Path(a.identity) if a.identity else None,
        known_hosts=Path(a.known_hosts),
        accept_new=a.accept_new_host_key,
        timeout=ctx.timeout_or(10.0),
    )


def _progress(ctx: Context) -> Any:
    import sys

    quiet = ctx.json

    def report(host: str, step: str, detail: str) -> None:
        if not quiet:
            print(f"{host:24} {step:10} {detail}", file=ctx.err if ctx.err is not sys.stdout else sys.stderr)

    return report


def _node_files(ctx: Context, opts: Options, root: Path, dry_run: bool, notes: list[str]) -> Any:
    """``files(layout)`` for deploy_run: provision the node once (kept in root/NODE and
    reused by later runs, so a re-deploy keeps its credentials), add the deploy's settings."""
    from devfleet_base.broker_url import parse_broker_url

    from ..deploy_plan import toml_settings
    from ..errors import UsageError
    from ..provision import provision_node

    def files(layout: Layout) -> dict[str, bytes]:
        out = root.expanduser() / opts.name
        toml = out / "agent.toml"
        current = toml.read_text() if toml.exists() else ""
        if f'"{layout.etc}/identity.json"' not in current:
            if dry_run:
                return {"agent.toml": b"", "identity.json": b""}
            operator = ctx.identity()
            if operator is None:
                raise UsageError(
                    "deploy provisions the node with this console's identity: --signing-key-file FILE "
                    "(make one with: devfleet provision --console NAME --out DIR)"
                )
            from pathlib import Path

            provision_node(
                operator,
                opts.name,
                out,
                broker=parse_broker_url(ctx.broker),
                install_dir=layout.etc,
                broker_ca=Path(ctx.tls_ca).expanduser() if ctx.tls_ca else None,
            )
            notes.append(
                f"{opts.name}: new broker credentials; add {out / 'passwd'} to the broker's password_file"
            )
        extra: dict[str, object] = {"data_dir": layout.data}
        if opts.allow_install:
            extra["allow_install"] = True
            if opts.wheelhouse is not None:
                extra["install_find_links"] = layout.wheelhouse
            elif opts.index_url:
                extra["install_index"] = opts.index_url
        names = ("identity.json", "ca.pem", "client.crt", "client.key")
        result = {name: (out / name).read_bytes() for name in names if (out / name).exists()}
        result["agent.toml"] = toml.read_bytes() + toml_settings(extra)
        return result

    return files


def _unit(name: str = "devfleet-agent.service") -> bytes | None:
    """deploy/systemd/devfleet-agent.service, as packaged (``data/`` links to it);
    ``_unit(USER_UNIT)``: deploy/systemd/user/devfleet-agent.service."""
    from importlib import resources

    packaged = resources.files("devfleet_command").joinpath(f"data/{name}")
    return packaged.read_bytes() if packaged.is_file() else None


USER_UNIT = "devfleet-agent.user.service"


async def _wait_online(ctx: Context, node: str, seconds: float) -> Any:
    """Wait for the node's birth; return its view (what ``devfleet show`` prints).

    Raises:
        ConsoleTimeout: not online within ``seconds`` (the message says what to check).
    """
    from ..errors import ConsoleTimeout

    async with ctx.fleet() as fleet:
        try:
            await fleet.wait_for(lambda m: (v := m.get(node)) is not None and v.online, timeout=seconds)
            return fleet.model.get(node)
        except ConsoleTimeout:
            raise ConsoleTimeout(
                f"{node} is installed and started but not online within {seconds:g} s "
                "(is its password in the broker's password_file? see the agent's log)"
            ) from None


def _jobs(ctx: Context) -> tuple[list[tuple[Any, str]], Path | None, list[str]]:
    """The targets with their node names, the wheelhouse and the components, checked.

    Raises:
        UsageError: bad or conflicting flags, an unreadable --hosts file, no wheels.
    """
    from pathlib import Path

    from devfleet_base.contract import check_name

    from ..deploy_plan import check_requirements, parse_hosts_file
    from ..errors import UsageError

    a = ctx.args
    if a.hosts:
        if a.target or a.name:
            raise UsageError("give [USER@]HOST --name NODE or --hosts FILE, not both")
        try:
            text = Path(a.hosts).expanduser().read_text()
        except OSError as exc:
            raise UsageError(f"cannot read {a.hosts}: {exc.strerror}") from None
        jobs = parse_hosts_file(text, a.hosts)
    else:
        if not a.target or not a.name:
            raise UsageError("name the device and the node: devfleet deploy [USER@]HOST --name NODE")
        jobs = [(a.target, a.name)]
    for _, name in jobs:
        check_name(name, "node")
    if not 1 <= a.parallel <= 64:
        raise UsageError("--parallel must be between 1 and 64")
    wheelhouse = Path(a.wheelhouse).expanduser() if a.wheelhouse else None
    if wheelhouse is not None and not any(wheelhouse.glob("*.whl")):
        raise UsageError(f"--wheelhouse {a.wheelhouse}: no wheels there (python3 dev.py build makes them)")
    components = check_requirements(list(a.components))
    if not a.dry_run and ctx.identity() is None:
        raise UsageError(
            "deploy provisions the node with this console's identity: --signing-key-file FILE "
            "(make one with: devfleet provision --console NAME --out DIR)"
        )
    return [(_target(ctx, t), n) for t, n in jobs], wheelhouse, components


async def cmd_deploy(ctx: Context) -> int:
    """Deploy to one target or a --hosts file; print progress and a summary."""
    import asyncio
    from pathlib import Path

    from ..deploy_plan import Options
    from ..deploy_run import deploy
    from ..deploy_ssh import load_asyncssh

    a = ctx.args
    targets, wheelhouse, components = _jobs(ctx)
    load_asyncssh()
    unit, user_unit = _unit(), _unit(USER_UNIT)
    report = _progress(ctx)
    notes: list[str] = []
    gate = asyncio.Semaphore(a.parallel)

    async def one(target: Any, name: str) -> Outcome:
        opts = Options(
            name=name,
            prefix=a.prefix,
            python=a.python,
            wheelhouse=wheelhouse,
            index_url=a.index_url,
            components=components,
            allow_install=a.allow_install,
        )
        async with gate:
            return await deploy(
                target,
                opts,
                files=_node_files(ctx, opts, Path(a.provisioned), a.dry_run, notes),
                unit=unit,
                report=report,
                dry_run=a.dry_run,
                online=(lambda: _wait_online(ctx, name, a.wait)),
                user_unit=user_unit,
            )

    outcomes = await asyncio.gather(*(one(t, n) for t, n in targets))
    return _summary(ctx, list(outcomes), notes, show=not a.hosts and not a.dry_run)


def _summary(ctx: Context, outcomes: list[Outcome], notes: list[str], *, show: bool) -> int:
    failed = [o for o in outcomes if not o.ok]
    if ctx.json:
        ctx.emit_json({"targets": [o.to_dict() for o in outcomes], "notes": notes})
    else:
        con = ctx.console()
        for o in outcomes:
            for w in o.warnings:
                con.print(f"warning: {o.target}: {w}", markup=False, soft_wrap=True)
            for line in o.plan:
                con.print(f"{o.target}: {line}", markup=False, soft_wrap=True)
        for note in notes:
            con.print(note, markup=False, soft_wrap=True)
        if len(outcomes) > 1:
            from rich.table import Table

            t = Table(box=None, pad_edge=False)
            for col in ("TARGET", "NODE", "RESULT", "STEP", "DETAIL"):
                t.add_column(col)
            from .render import cell

            for o in outcomes:  # the facts and errors hold the target's words: never markup
                t.add_row(o.target, o.node, "ok" if o.ok else "FAILED", o.step, cell(o.error or o.facts))
            con.print(t)
        for o in failed:
            if o.left:
                con.print(
                    f"{o.target}: left on the target: {', '.join(o.left)}", markup=False, soft_wrap=True
                )
                con.print(f"{o.target}: to undo: {o.undo}", markup=False, soft_wrap=True)
        if show and not failed and outcomes[0].view is not None:
            from .nodes import show_renderables

            for part in show_renderables(outcomes[0].view):
                con.print(part)
    if len(outcomes) == 1 and failed:
        import sys

        print(f"devfleet: {failed[0].error}", file=ctx.err if ctx.err is not sys.stdout else sys.stderr)
    if not failed:
        return 0
    return 3 if all(o.step == "connect" for o in failed) else 1


async def cmd_undeploy(ctx: Context) -> int:
    """Remove a deploy from one target and clear the node's retained topics."""
    from ..deploy_run import undeploy
    from ..deploy_ssh import load_asyncssh

    a = ctx.args
    target = _target(ctx, a.target)
    load_asyncssh()

    async def purge(node: str) -> None:
        import contextlib

        from ..errors import NodeNotFound

        # NodeNotFound: it never came online, nothing retained to clear. force: the agent
        # is stopped (its "offline" retained); it covers an agent killed before it spoke.
        async with ctx.fleet() as fleet:
            with contextlib.suppress(NodeNotFound):
                await fleet.purge(node, force=True, timeout=ctx.timeout_or(10.0))

    outcome = await undeploy(
        target, prefix=a.prefix, python=a.python, report=_progress(ctx), dry_run=a.dry_run, purge=purge
    )
    return _summary(ctx, [outcome], [], show=False)
