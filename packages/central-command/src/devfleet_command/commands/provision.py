"""``devfleet provision``: credentials and signing identities for nodes and consoles."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: keep typing off the --help path
if TYPE_CHECKING:
    from typing import Any

    from .context import Context

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``provision``."""
    p = sub.add_parser(
        "provision",
        description=(
            "devfleet provision NODE --out DIR: the node's signing identity (certified with this "
            "console's --signing-key-file), its mosquitto password-file line, agent.toml and, with "
            "--ca-cert/--ca-key, a client certificate. devfleet provision --console NAME --out DIR: "
            "this console's own identity. Files are 0600; running it again rotates them."
        ),
        examples=[
            "devfleet provision --console op-console --out ~/.config/devfleet",
            "devfleet --signing-key-file ~/.config/devfleet/op-console.json --broker mqtts://broker.lan:8883"
            " --tls-ca ca.crt provision rpi-livingroom --out ./provision/rpi-livingroom",
        ],
    )
    p.add_argument("node", nargs="?", help="the node to provision (its name, also its broker user)")
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write (created)")
    p.add_argument("--console", metavar="NAME", help="make a console identity NAME instead of a node's")
    p.add_argument(
        "--ca-cert", metavar="FILE", help="the fleet CA certificate (PEM), for a client certificate"
    )
    p.add_argument("--ca-key", metavar="FILE", help="the fleet CA private key (PEM)")
    p.add_argument(
        "--install-dir", default="/etc/devfleet", metavar="DIR", help="where the files go on the node"
    )
    p.set_defaults(handler=cmd_provision)


async def cmd_provision(ctx: Context) -> int:
    """Provision a node (or a console) and say what to do with the files."""
    return _provision(ctx)  # local files only: nothing to await


def _provision(ctx: Context) -> int:
    from pathlib import Path

    from devfleet_base.broker_url import parse_broker_url

    from ..errors import UsageError
    from ..provision import provision_console, provision_node

    args = ctx.args
    out = Path(args.out).expanduser()
    if args.console:
        if args.node:
            raise UsageError("give a NODE or --console NAME, not both")
        done = provision_console(args.console, out)
        hint = f"export DEVFLEET_SIGNING_KEY_FILE={done.files['identity']}"
    else:
        if not args.node:
            raise UsageError("name the NODE to provision (or --console NAME for this console)")
        if (args.ca_cert is None) != (args.ca_key is None):
            raise UsageError("give both --ca-cert and --ca-key for a client certificate, or neither")
        operator = ctx.identity()
        if operator is None:
            raise UsageError(
                "provisioning a node needs this console's identity: --signing-key-file FILE "
                "(make one with: devfleet provision --console NAME --out DIR)"
            )
        ca = (Path(args.ca_cert).expanduser(), Path(args.ca_key).expanduser()) if args.ca_cert else None
        try:
            done = provision_node(
                operator,
                args.node,
                out,
                broker=parse_broker_url(ctx.broker),
                install_dir=args.install_dir,
                ca=ca,
                broker_ca=Path(ctx.tls_ca).expanduser() if ctx.tls_ca else None,
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        hint = f"copy {out}/ to {args.install_dir}/ on {args.node}; append {done.files['passwd']} to the broker's password_file"
    if ctx.json:
        ctx.emit_json({**done.to_dict(), "next": hint})
        return 0
    con = ctx.console()
    for role, path in done.files.items():
        con.print(f"{role:12} {path}")
    con.print(hint)
    return 0
