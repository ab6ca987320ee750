"""The console tour: a broker, a few real agents, and the console's live view of them.

    python3 dev.py tour                      # via nox: installs everything, then runs this
    python devfleet_demo.py --nodes 5 --duration 30
    python devfleet_demo.py --broker-kind amqtt   # the embedded broker (MQTT 3.1.1)

It starts a private broker on a free loopback port (mosquitto when installed,
else the embedded amqtt), starts agents as real subprocesses, then takes a short
tour through the console library: discovery from retained messages, a
fleet-wide ping with receipts, a versioned config change, a group command, the
live table with telemetry, and finally a clean stop (every node goes offline).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live

from devfleet_agent.testing import AgentProcess
from devfleet_base.testing.broker import BrokerError, start_local_broker
from devfleet_command.aio import AsyncFleet
from devfleet_command.commands.nodes import table

console = Console(highlight=False)

GREETER = """
async def setup(agent):
    await agent.log('greeter ready')

async def process(agent):
    agent.state['ticks'] = agent.state.get('ticks', 0) + 1

async def handle_task(agent, payload):
    return {'greeting': f"hello {payload.get('name', 'there')} from {agent.node}"}
"""


def _component_state(model: Any, node: str, component: str) -> Any:
    view = model.get(node)
    return ((view.state or {}).get("components") or {}).get(component, {}).get("state") if view else None


def say(step: str, text: str) -> None:
    console.print(f"[bold cyan]{step}[/] {text}")


async def tour(url: str, names: list[str], duration: float, live: bool) -> int:
    async with AsyncFleet.connect(url) as fleet:
        say("1.", f"discovering {len(names)} nodes from their retained birth messages")
        await fleet.wait_for(
            lambda m: all(n in m and m.get(n).online and m.get(n).config_version is not None for n in names),  # type: ignore[union-attr]
            timeout=60,
        )
        console.print(table(fleet.nodes()))

        say("2.", "a fleet-wide ping: one message, a receipt from every node")
        bc = await fleet.broadcast("ping", timeout=10)
        await bc.wait()
        console.print(f"   succeeded: {', '.join(bc.succeeded)}; failed: {bc.failed or 'none'}")

        say("3.", f"config: telemetry every 2 s, and {names[0]} joins group 'lobby' (versioned writes)")
        for name in names:
            before = fleet.node(name).config_version
            version = await fleet.config_set(
                name,
                {
                    "telemetry.interval": 2,
                    "heartbeat.interval": 2,
                    **({"groups": ["lobby"]} if name == names[0] else {}),
                },
                expect_version=before,
            )
            console.print(f"   {name}: config version {before} -> {version}")

        say("4.", "a command to group 'lobby' only")
        await fleet.wait_for(
            lambda m: "lobby" in (m.get(names[0]).groups if m.get(names[0]) else []), timeout=10
        )  # type: ignore[union-attr]
        bc = await fleet.broadcast("ping", group="lobby", timeout=10)
        await bc.wait()
        console.print(f"   answered: {', '.join(bc.succeeded)}")

        say("5.", f"a component: the LED strip (simulated backend) on {names[0]}")
        strip = {"backend": "simulated", "led_count": 60, "fps": 30}
        await fleet.config_set(names[0], {"components.ledstrip": {"enabled": True, "settings": strip}})
        await fleet.wait_for(lambda m: _component_state(m, names[0], "ledstrip") == "running", timeout=30)
        await fleet.component_command(names[0], "ledstrip", "set_effect", {"effect": "rainbow"})
        console.print(f"   {names[0]}: ledstrip running, effect rainbow")

        actor_node = names[-1]
        say("6.", f"a dynamic actor (Wactorz spawn) on {actor_node}, then a task for it by name")
        await fleet.spawn(actor_node, {"name": "greeter", "code": GREETER, "poll_interval": 1.0})
        answer = await fleet.task("greeter", {"name": "operator"})
        console.print(f"   greeter answered: {answer}")
        for row in fleet.actors():
            console.print(f"   actor {row['name']} on {row['node']}: {row.get('state')}")

        say("7.", f"the live fleet view for {duration:g} s (devfleet watch); Ctrl-C ends it early")
        deadline = time.monotonic() + duration
        if live:
            with Live(table(fleet.nodes()), console=console, auto_refresh=False) as view:
                while time.monotonic() < deadline:
                    await asyncio.sleep(0.5)  # redraw pace of the view, not a wait for an outcome
                    view.update(table(fleet.nodes()), refresh=True)
        else:
            await fleet.wait_for(
                lambda m: all(m.get(n) is not None and m.get(n).telemetry for n in names),  # type: ignore[union-attr]
                timeout=max(duration, 10),
            )
            console.print(table(fleet.nodes()))
    return 0


async def wait_offline(url: str, names: list[str]) -> None:
    async with AsyncFleet.connect(url) as fleet:
        await fleet.wait_for(
            lambda m: all(m.get(n) is not None and m.get(n).health == "offline" for n in names),  # type: ignore[union-attr]
            timeout=30,
        )
        console.print(table(fleet.nodes()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="devfleet-demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=3, help="how many agents (default 3)")
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds of live view (default: 20 on a terminal, 2 otherwise)",
    )
    p.add_argument("--broker-kind", choices=("auto", "mosquitto", "amqtt"), default="auto")
    args = p.parse_args(argv)
    if not 1 <= args.nodes <= 50:
        p.error("--nodes must be between 1 and 50")
    live = console.is_terminal
    duration = args.duration if args.duration is not None else (20.0 if live else 2.0)
    prefer = "amqtt" if args.broker_kind == "amqtt" else "mosquitto"
    try:
        broker: Any = start_local_broker(prefer=prefer)
    except BrokerError as exc:
        console.print(f"[red]demo: cannot start a broker: {exc}[/]")
        return 3
    kind = type(broker).__name__.replace("Broker", "").lower() or "broker"
    say("0.", f"broker: {kind} on {broker.url}")
    names = [f"demo-{i + 1}" for i in range(args.nodes)]
    with tempfile.TemporaryDirectory(prefix="devfleet-demo-") as tmp:
        agents = [
            AgentProcess(
                broker=broker.host,
                port=broker.port,
                name=n,
                data_dir=Path(tmp) / n,
                extra=["--allow-code", "--state-dir", str(Path(tmp) / n)],  # the demo spawns an actor
            ).start()
            for n in names
        ]
        try:
            code = asyncio.run(tour(broker.url, names, duration, live))
            say("8.", "stopping the agents (SIGTERM): each says 'offline' before it disconnects")
            for agent in agents:
                agent.terminate()
            asyncio.run(wait_offline(broker.url, names))
            say(
                "done.",
                "with your own broker and agents: devfleet --broker mqtt://HOST:1883 ls | watch | ping --all",
            )
            return code
        except KeyboardInterrupt:
            console.print("\n[bold cyan]interrupted.[/] stopping the agents and the broker")
            return 130
        finally:
            for agent in agents:
                agent.__exit__()
            broker.close()


if __name__ == "__main__":
    sys.exit(main())
