"""``devfleet rollout ...`` and ``devfleet job ls|show|watch|abort|resume``: staged
fleet jobs (see docs/jobs.md)."""

from __future__ import annotations

from . import parse_assignments
from .argtypes import non_negative_int, seconds, seconds_at_least

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: keep typing off the --help path
if TYPE_CHECKING:
    from typing import Any

    from ..jobs import JobState, JobView
    from .context import Context

__all__ = ["register"]

EXIT_BY_STATE = {"completed": 0, "aborted": 1, "incomplete": 3}


def register(sub: Any) -> None:
    """Add ``rollout`` and ``job``."""
    p = sub.add_parser(
        "rollout",
        description="OPERATION is install|upgrade|uninstall SPEC, configure key=value..., spawn FILE.json,"
        " or any command VERB key=value... (give --revert VERB key=value to make it revertible).",
        examples=[
            "devfleet rollout upgrade devfleet-component-ledstrip==1.2 --select arch=armv7l --canary 5% --batch 25%",
            "devfleet rollout upgrade ledstrip==1.2 --all --select 'components.ledstrip.version<1.2' --soak 300",
            "devfleet rollout configure telemetry.interval=5 --group lobby --canary 1 --health ping",
            "devfleet rollout led_test on=1 --all --revert led_test on=0",
        ],
    )
    p.add_argument(
        "operation", metavar="OPERATION", help="install, upgrade, uninstall, configure, spawn or a VERB"
    )
    p.add_argument("arguments", nargs="*", metavar="ARG", help="SPEC, key=value pairs, or FILE.json (spawn)")
    p.add_argument("--all", action="store_true", help="every node of the fleet")
    p.add_argument(
        "--group", action="append", default=[], metavar="G", help="every node of group G (repeatable)"
    )
    p.add_argument("--nodes", default="", metavar="A,B", help="these nodes")
    p.add_argument(
        "--select",
        action="append",
        default=[],
        metavar="EXPR",
        help="keep nodes where EXPR holds: arch=armv7l,"
        " components.ledstrip.version<1.2 (repeatable: all must hold)",
    )
    p.add_argument(
        "--canary",
        default="1",
        metavar="AMOUNT",
        help="nodes in the first stage: a count or a percentage such as 5%% (default 1)",
    )
    p.add_argument(
        "--batch",
        default="100%",
        metavar="AMOUNT",
        help="nodes per later stage: a count or a percentage (default: the rest)",
    )
    p.add_argument(
        "--soak",
        type=seconds_at_least(0),
        default=60.0,
        metavar="S",
        help="seconds a changed node must stay healthy",
    )
    p.add_argument(
        "--max-failures",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="abort when more nodes fail (default 0)",
    )
    p.add_argument(
        "--max-failure-percent", type=_percent, default=None, metavar="P", help="abort past P %% failed"
    )
    p.add_argument(
        "--health",
        default=None,
        metavar="VERB",
        help="a read-only command that must answer ok after the soak",
    )
    p.add_argument("--no-component-health", action="store_true", help="do not judge component states")
    p.add_argument(
        "--revert", nargs="+", default=None, metavar="VERB", help="undo command for a generic VERB"
    )
    p.add_argument(
        "--expire",
        type=seconds_at_least(1, 30 * 86400),
        default=3600.0,
        metavar="S",
        help="seconds offline nodes are waited for",
    )
    p.add_argument(
        "--step-timeout", type=seconds, default=None, metavar="S", help="seconds one node's step may take"
    )
    p.add_argument("--detach", action="store_true", help="print the job id once it is retained and stop")
    p.set_defaults(handler=cmd_rollout)

    job = sub.add_parser(
        "job",
        description="Fleet jobs retained on the broker (made by `devfleet rollout`): list, show,"
        " follow, abort (the nodes it changed are reverted) or resume one whose console is gone.",
        examples=["devfleet job ls", "devfleet job watch j3f2a9c1d7b0e"],
    )
    jobs = sub.nested(job, "job_command")
    p = jobs.add_parser("ls", help="every job retained on the broker", examples=["devfleet job ls --json"])
    p.set_defaults(handler=cmd_ls)
    for name, text, handler in (
        ("show", "a job's stages and nodes", cmd_show),
        ("watch", "follow a job until it ends", cmd_watch),
        ("abort", "stop a job and revert the nodes it changed", cmd_abort),
        ("resume", "run a job whose console is gone (no step runs twice)", cmd_resume),
    ):
        p = jobs.add_parser(name, help=text, examples=[f"devfleet job {name} j3f2a9c1d7b0e"])
        p.add_argument("job", help="the job id (devfleet job ls)")
        p.set_defaults(handler=handler)


def _percent(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 100:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a percentage from 0 to 100, got {text!r}")
    return value


def _operation(ctx: Context) -> Any:
    import json
    from pathlib import Path

    from ..errors import UsageError
    from ..jobs import Operation

    a = ctx.args
    verb, rest = a.operation, list(a.arguments)
    timeout = a.step_timeout
    if verb in ("install", "upgrade", "uninstall"):
        if len(rest) != 1:
            raise UsageError(f"rollout {verb} takes one SPEC (name, name==1.2)")
        from ..aio import INSTALL_TIMEOUT

        return Operation(verb, {"spec": rest[0]}, timeout=timeout or INSTALL_TIMEOUT)
    if verb == "configure":
        from .values import config_assignments

        return Operation(verb, {"set": config_assignments(rest)}, timeout=timeout or 30.0)
    if verb == "spawn":
        if len(rest) != 1:
            raise UsageError("rollout spawn takes one FILE.json (the actor's spawn spec)")
        try:
            spec = json.loads(Path(rest[0]).read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read the spawn spec {rest[0]}: {exc}") from None
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise UsageError("the spawn spec must be an object with a name")
        return Operation(verb, spec, timeout=timeout or 60.0)
    revert = None
    if a.revert:
        revert = {"verb": a.revert[0], "args": parse_assignments(a.revert[1:])}
    return Operation(verb, parse_assignments(rest), revert=revert, timeout=timeout or 30.0)


async def cmd_rollout(ctx: Context) -> int:
    """Create a job and run it here."""
    from devfleet_base import contract

    from ..jobs import Gate, JobRunner, JobState, new_job, resolve_target

    a = ctx.args
    op = _operation(ctx)
    contract.check_name(op.verb, "command")
    gate = Gate(
        soak=a.soak,
        components=not a.no_component_health,
        health={"verb": contract.check_name(a.health, "command"), "args": {}} if a.health else None,
        max_failures=a.max_failures,
        max_failure_percent=a.max_failure_percent,
    )
    nodes_list = [n for n in a.nodes.split(",") if n]
    async with ctx.fleet() as fleet:
        await fleet.confirm_liveness(ctx.timeout / 2)
        nodes = resolve_target(
            fleet.model, everything=a.all, groups=a.group, nodes=nodes_list, selectors=a.select
        )
        target = {"all": a.all, "groups": a.group, "nodes": nodes_list, "select": a.select}
        spec = new_job(
            fleet, op, nodes, canary=a.canary, batch=a.batch, gate=gate, expires_in=a.expire, target=target
        )
        runner = JobRunner(fleet, JobState.fresh(spec))
        if a.detach:
            await runner.publish_detached()
            print(spec.job, file=ctx.out)
            return 0
        print(
            f"job {spec.job}: {op.verb} on {len(nodes)} nodes in {len(spec.stages)} stages",
            file=ctx.err,
            flush=True,
        )
        state = await _run_with_progress(ctx, runner)
    return _report(ctx, state)


async def _run_with_progress(ctx: Context, runner: Any) -> JobState:
    if ctx.json or not ctx.err.isatty():
        return await runner.run()  # type: ignore[no-any-return]
    from rich.live import Live

    with Live(
        _stage_table(runner.state), console=ctx.console(stderr=True), transient=True, refresh_per_second=4
    ) as live:
        runner.on_change = lambda state: live.update(_stage_table(state))
        return await runner.run()  # type: ignore[no-any-return]


def _report(ctx: Context, state: JobState) -> int:
    status = state.status(now=0.0, runner=None)
    status.pop("heartbeat_at", None)
    if ctx.json:
        status["progress"] = {n: p.to_dict() for n, p in sorted(state.nodes.items())}
        ctx.emit_json(status)
    else:
        con = ctx.console()
        con.print(_stage_table(state))
        failed = [
            p
            for p in state.nodes.values()
            if p.error and p.state in ("failed", "reverted", "revert_failed", "offline")
        ]
        for p in failed[:20]:
            print(f"  {p.node}: {p.state}: {p.error}", file=ctx.out)
        if len(failed) > 20:
            print(f"  ... and {len(failed) - 20} more (--json for all)", file=ctx.out)
        print(
            f"job {state.spec.job}: {state.state}" + (f" ({state.reason})" if state.reason else ""),
            file=ctx.out,
        )
    return EXIT_BY_STATE.get(state.state, 1)


_COLUMNS = ("done", "failed", "reverted", "revert_failed", "waiting", "offline", "skipped")


def _stage_table(state: Any) -> Any:
    """Rows of stages: nodes and counts per state (a JobState or a retained status dict)."""
    from rich.table import Table

    status = state if isinstance(state, dict) else state.status(now=0.0, runner=None)
    table = Table(title=f"job {status.get('job')} ({status.get('state')})", title_justify="left")
    table.add_column("stage")
    table.add_column("nodes", justify="right")
    for col in ("running", *_COLUMNS):
        table.add_column(col.replace("_", " "), justify="right")
    for stage in status.get("stages") or []:
        if not isinstance(stage, dict):
            continue
        running = sum(int(stage.get(k, 0) or 0) for k in ("sent", "soaking"))
        name = (
            "canary"
            if stage.get("index") == 0 and len(status.get("stages") or []) > 1
            else str(stage.get("index"))
        )
        table.add_row(
            name,
            str(stage.get("nodes", "")),
            str(running or ""),
            *(str(stage.get(c) or "") for c in _COLUMNS),
        )
    return table


async def cmd_ls(ctx: Context) -> int:
    """List retained jobs."""
    from ..jobs import load_jobs

    async with ctx.fleet() as fleet:
        store = await load_jobs(fleet, timeout=ctx.timeout)
    rows = [v.summary() for _, v in sorted(store.jobs.items())]
    if ctx.json:
        ctx.emit_json(rows)
        return 0
    from rich.table import Table

    table = Table()
    for col in ("job", "state", "operation", "nodes", "stage", "counts"):
        table.add_column(col)
    for r in rows:
        op = r["operation"] or {}
        counts = " ".join(f"{k} {v}" for k, v in sorted((r["counts"] or {}).items()))
        table.add_row(
            r["job"],
            r["state"],
            f"{op.get('verb', '?')} {_args_text(op.get('args'))}",
            str(r["nodes"]),
            str(r["stage"]),
            counts,
        )
    ctx.console().print(table)
    return 0


def _args_text(args: Any) -> str:
    if not isinstance(args, dict):
        return ""
    if "spec" in args and isinstance(args["spec"], str):
        return args["spec"]
    return " ".join(f"{k}={v}" for k, v in args.items())[:60]


async def _one(ctx: Context, fleet: Any) -> JobView:
    from ..errors import UsageError
    from ..jobs import load_jobs

    store = await load_jobs(fleet, ctx.args.job, timeout=ctx.timeout)
    view = store.jobs.get(ctx.args.job)
    if view is None:
        raise UsageError(f"no job {ctx.args.job} is retained on the broker")
    return view


async def cmd_show(ctx: Context) -> int:
    """A job's stages and per-node progress."""
    async with ctx.fleet() as fleet:
        view = await _one(ctx, fleet)
    if ctx.json:
        ctx.emit_json(view.to_dict())
        return 0
    con = ctx.console()
    if view.status:
        con.print(_stage_table(view.status))
    for name, rec in sorted(view.nodes.items()):
        if rec.get("error") or rec.get("state") not in ("done", "pending"):
            print(
                f"  {name}: {rec.get('state')}" + (f": {rec.get('error')}" if rec.get("error") else ""),
                file=ctx.out,
            )
    print(
        f"job {view.job}: {view.state}"
        + (f" ({view.status.get('reason')})" if view.status and view.status.get("reason") else ""),
        file=ctx.out,
    )
    return 0


async def cmd_watch(ctx: Context) -> int:
    """Follow a job's retained status until it ends."""
    from ..jobs import follow_jobs

    job = ctx.args.job
    async with ctx.fleet() as fleet:
        await _one(ctx, fleet)
        async for store, _ in follow_jobs(fleet, job):
            view = store.jobs.get(job)
            if view is None or view.status is None:
                continue
            if ctx.json:  # a stream: one JSON Lines record per change
                from ..output import json_line

                ctx.out.write(json_line(view.summary()))
                ctx.out.flush()
            else:
                ctx.console().print(_stage_table(view.status))
            if view.final:
                return EXIT_BY_STATE.get(view.state, 1)
    return 1


async def cmd_abort(ctx: Context) -> int:
    """Abort a job: its live runner reverts it, or this console does."""
    from ..jobs import abort_job

    async with ctx.fleet() as fleet:
        runner = await abort_job(fleet, ctx.args.job)
        if runner is None:
            print(
                f"job {ctx.args.job}: abort requested; its console reverts it (devfleet job watch {ctx.args.job})",
                file=ctx.out,
            )
            return 0
        state = await _run_with_progress(ctx, runner)
    return _report(ctx, state)


async def cmd_resume(ctx: Context) -> int:
    """Resume a job whose console is gone."""
    from ..jobs import resume_job

    async with ctx.fleet() as fleet:
        runner = await resume_job(fleet, ctx.args.job)
        print(f"job {ctx.args.job}: resumed at stage {runner.state.stage}", file=ctx.err, flush=True)
        state = await _run_with_progress(ctx, runner)
    return _report(ctx, state)
