"""``devfleet resumes``, ``devfleet task submit`` and ``devfleet acl generate`` (work trading)."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: keep typing off the --help path
if TYPE_CHECKING:
    from typing import Any

    from .context import Context

__all__ = ["add_submit_options", "cmd_submit", "register"]


def register(sub: Any) -> None:
    """Add ``resumes`` and ``acl generate`` (``task submit`` rides on ``task``, see actors)."""
    p = sub.add_parser(
        "resumes",
        description="The retained résumés of actors and components that trade work, joined with"
        " their node's liveness (available: no when the node is lost or offline).",
        examples=["devfleet resumes --skill sql-optimiser", "devfleet resumes --region eu-central-1 --json"],
    )
    p.add_argument("--skill", help="only actors offering this skill")
    p.add_argument("--region", help="only actors in this region")
    p.set_defaults(handler=cmd_resumes)
    p = sub.add_parser(
        "acl",
        description="Broker policy from accreditations (docs/trading.md).",
        examples=["devfleet acl generate --template deploy/mosquitto/acl"],
    )
    nested = sub.nested(p, "acl_command")
    g = nested.add_parser(
        "generate",
        help="print the mosquitto ACL: the template plus accreditation rules",
        description="Print the ACL template followed by one user section per node whose actors hold"
        " an accreditation (gdpr: patient-data/#), from the live résumés or a node-config file.",
        examples=[
            "devfleet acl generate --template deploy/mosquitto/acl > /etc/devfleet/mosquitto/acl",
            "devfleet acl generate --node-config accredit.json",
        ],
    )
    g.add_argument("--template", metavar="FILE", help="the ACL template (default: none)")
    g.add_argument(
        "--node-config", metavar="FILE", help='JSON {"node": {"accredit": [...]}} instead of résumés'
    )
    g.set_defaults(handler=cmd_acl_generate)


def add_submit_options(p: Any) -> None:
    """The options of ``devfleet task submit``."""
    p.add_argument("--skill", help="task submit: the skill asked for")
    p.add_argument("--inputs", default="null", help="task submit: JSON inputs")
    p.add_argument("--deadline", type=float, default=2.0, help="task submit: seconds bids are taken")
    p.add_argument("--accredit", action="append", default=[], help="task submit: required accreditation")
    p.add_argument("--region", dest="task_region", help="task submit: required region")
    p.add_argument("--max-usd", type=float, help="task submit: highest acceptable cost")


async def cmd_resumes(ctx: Context) -> int:
    from rich.table import Table

    from ..cli import EXIT_OK
    from .render import cell

    async with ctx.fleet() as fleet:
        rows = fleet.resumes(ctx.args.skill, ctx.args.region)
    if ctx.args.json:
        ctx.emit_json(rows)
        return EXIT_OK
    table = Table("actor", "node", "skills", "cost", "region", "accredit", "available")
    for r in rows:
        cost = ", ".join(f"{k} {v:g}" for k, v in sorted(r.get("cost", {}).items()))
        state = "yes" if r["available"] else f"no ({r['node_status']})"
        table.add_row(
            *(
                cell(v)
                for v in (r.get("name"), r["node"], ", ".join(r["skills"]), cost, r.get("region") or "")
            ),
            cell(", ".join(r.get("accredit", []))),
            cell(state),
        )
    ctx.console().print(table if rows else cell("no résumés"))
    return EXIT_OK


async def cmd_submit(ctx: Context) -> int:
    import json

    from ..cli import EXIT_FAILED, EXIT_OK
    from ..errors import UsageError

    a = ctx.args
    if not a.skill:
        raise UsageError("task submit: --skill is required")
    try:
        inputs = json.loads(a.inputs)
    except ValueError as exc:
        raise UsageError(f"task submit: --inputs is not JSON: {exc}") from None
    constraints: dict[str, Any] = {"accredit": a.accredit, "region": a.task_region, "max_usd": a.max_usd}
    from ..trading import build_request

    build_request(a.skill, inputs, deadline=a.deadline, constraints=constraints)  # refuse before connecting
    async with ctx.fleet() as fleet:
        outcome = await fleet.auction(a.skill, inputs, deadline=a.deadline, constraints=constraints)
    if a.json:
        ctx.emit_json(outcome)
    elif outcome["status"] == "ok":
        ctx.out.write(f"{outcome['name']} on {outcome['node']}: {json.dumps(outcome['result'])}\n")
    else:
        detail = outcome["error"] or outcome["attempts"]
        ctx.err.write(f"task {outcome['task']}: {outcome['status']} {json.dumps(detail)}\n")
    return EXIT_OK if outcome["status"] == "ok" else EXIT_FAILED


async def cmd_acl_generate(ctx: Context) -> int:
    import json

    from ..acl import generate_acl
    from ..cli import EXIT_OK
    from ..errors import UsageError

    a = ctx.args
    try:
        template = _read(a.template) if a.template else ""
        if a.node_config:
            accredit = _node_accreditations(json.loads(_read(a.node_config)))
        else:
            async with ctx.fleet() as fleet:
                accredit = {}
                for r in fleet.resumes():
                    accredit.setdefault(r["node"], set()).update(r.get("accredit", []))
    except (OSError, ValueError) as exc:
        raise UsageError(f"acl generate: {exc}") from None
    ctx.out.write(generate_acl(accredit, template=template))
    return EXIT_OK


def _read(path: str) -> str:
    from pathlib import Path

    return Path(path).read_text()


def _node_accreditations(doc: Any) -> dict[str, set[str]]:
    from ..errors import UsageError

    if not isinstance(doc, dict):
        raise UsageError('acl generate: --node-config must hold {"node": {"accredit": [...]}}')
    out = {}
    for node, cfg in doc.items():
        tags = cfg.get("accredit") if isinstance(cfg, dict) else None
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise UsageError(f"acl generate: node {node!r} needs an accredit list of strings")
        out[str(node)] = set(tags)
    return out
