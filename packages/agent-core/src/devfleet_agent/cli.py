"""``devfleet-agent``: parse settings, set up logging, run the agent.

The only module (with settings.py) that reads the environment or files.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Sequence

from devfleet_base.broker_url import BrokerListAction

from . import __version__

__all__ = ["build_parser", "main"]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="devfleet-agent",
        description="Run the devfleet agent of this node: connect to the broker, describe the node, obey commands.",
        epilog="Settings: flags override DEVFLEET_* environment variables, which override the config file.",
    )
    p.add_argument("--version", action="version", version=f"devfleet-agent {__version__}")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="TOML settings file (default /etc/devfleet/agent.toml when present)",
    )
    p.add_argument(
        "--broker",
        action=BrokerListAction,
        help="broker host, or mqtt://host:port / mqtts://host:port (env DEVFLEET_BROKER); several"
        " (repeated, or comma-separated): the first that answers, the next when it is lost",
    )
    p.add_argument("--port", type=int, help="broker port (default 1883)")
    p.add_argument("--name", "--node", dest="name", help="unique node name (default: the host name)")
    p.add_argument("--username", help="broker user name")
    p.add_argument("--password", help="broker password (prefer DEVFLEET_PASSWORD or the config file)")
    p.add_argument("--tls-ca", help="CA certificate file; enables TLS")
    p.add_argument("--tls-cert", help="client certificate file (mutual TLS)")
    p.add_argument("--tls-key", help="client key file (mutual TLS)")
    p.add_argument(
        "--protocol",
        choices=("auto", "5", "3.1.1"),
        help="MQTT version (default auto: 5, else 3.1.1)",
    )
    p.add_argument("--keepalive", type=int, help="keepalive seconds (default 30); the will fires after 1.5x")
    p.add_argument(
        "--persistent-session",
        action="store_const",
        const=True,
        help="ask the broker to keep this node's MQTT session across connections (use on a NATS"
        " cluster: failover to another node then works while the dead node stays down)",
    )
    p.add_argument(
        "--data-dir",
        help="where the node keeps its files: config versions, counters, actor state"
        " (default /var/lib/devfleet/NODE when writable, else ~/.local/state/devfleet/NODE)",
    )
    p.add_argument(
        "--state-dir",
        help="keep actor state here under Wactorz's names agentflow_NAME_state.json"
        " (default DATA_DIR/actors/NAME.json)",
    )
    p.add_argument("--loglevel", type=str.upper, choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.add_argument(
        "--allow-code", action="store_const", const=True, help="accept actor code in spawn commands"
    )
    p.add_argument(
        "--allow-install",
        action="store_const",
        const=True,
        help="accept pip installs of components",
    )
    p.add_argument(
        "--install-find-links",
        metavar="DIR",
        help="install components only from this local wheelhouse (pip --no-index --find-links)",
    )
    p.add_argument("--install-index", metavar="URL", help="install components from this package index")
    p.add_argument(
        "--disabled-components",
        metavar="NAMES",
        help="comma-separated components never loaded (env DEVFLEET_DISABLED_COMPONENTS)",
    )
    p.add_argument(
        "--signing-key-file",
        help="this node's signing identity (devfleet provision): require operator-signed control messages",
    )
    p.add_argument(
        "--wactorz-key-file",
        metavar="FILE",
        help="the HMAC key shared with Wactorz nodes, hex (env WACTORZ_NODE_KEY holds it inline):"
        " accept control messages a Wactorz main signed with it",
    )
    p.add_argument(
        "--test", action="store_true", help="run the supervisor self-test without a broker and exit"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.test:
        from .selftest import run_selftest

        return run_selftest()

    from devfleet_base.errors import DevfleetError

    from .settings import load_settings

    flags = {k: v for k, v in vars(args).items() if k not in ("config", "test") and not k.startswith("_")}
    try:
        settings = load_settings(flags, config_path=args.config)
    except DevfleetError as exc:
        print(f"devfleet-agent: {exc.message}", file=sys.stderr)
        return EXIT_USAGE

    from .datadirs import prepare

    try:
        data_dir = prepare(settings)  # before connecting: a setup error is one line, exit 2
    except DevfleetError as exc:
        print(f"devfleet-agent: {exc.message}", file=sys.stderr)
        return EXIT_USAGE

    console = logging.StreamHandler(sys.stderr)
    console.setLevel(settings.loglevel)
    console.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.loglevel, handlers=[console])
    if settings.loglevel == "DEBUG":
        from .diagnostics import startup_checks

        startup_checks(settings)
    logging.getLogger("devfleet.agent").info("node %s keeps its files in %s", settings.name, data_dir)

    try:
        code, restart = asyncio.run(_run(settings))
    except DevfleetError as exc:
        print(f"devfleet-agent: {exc.message}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return EXIT_OK
    if restart:
        logging.getLogger("devfleet.agent").info("re-executing the agent")
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(  # noqa: S606 - an argument list, no shell
            sys.executable,
            [sys.executable, "-m", "devfleet_agent", *(argv if argv is not None else sys.argv[1:])],
        )
    return code


async def _run(settings: object) -> tuple[int, bool]:
    from .agent import EXIT_CONFIG, Agent
    from .sdnotify import SdNotifier
    from .wiring import attach_subsystems

    agent = Agent(settings, notifier=SdNotifier.from_environ(os.environ))  # type: ignore[arg-type]
    attach_subsystems(agent)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.request_stop, f"signal {signal.Signals(sig).name}")
    # Everything imported and built so far lives as long as the process: out of the cyclic
    # collector's sight, a full collection walks only what the agent made since (one
    # took 53 ms in the round-trip benchmark; issue 20). Collected first: no garbage is kept.
    gc.collect()
    gc.freeze()
    code = await agent.run()
    if code in (EXIT_UNREACHABLE, EXIT_CONFIG):
        print(f"devfleet-agent: {agent.stop_reason}", file=sys.stderr)
    return code, agent.restart_requested
