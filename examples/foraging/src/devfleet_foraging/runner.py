"""One foraging run end to end: broker, arena, robot agents, the operator's actions, the summary.

    python3 dev.py demo                                  # 6 robots, about a minute, live view
    python -m devfleet_foraging --robots 4 --duration 30 --seed 7 --headless
    python -m devfleet_foraging --gif                    # also an animation of the run

The run: a private broker (mosquitto, else the embedded amqtt), the arena with
one rosbridge endpoint per robot (:mod:`.bridge`), and one real
``devfleet-agent`` process per robot running three components: ``ros`` (its
link to its rosbridge endpoint), ``foraging`` (the behaviour) and ``ledstrip``
(the state light). The operator's actions go through the console on the
fleet's real command path: a fleet-wide ``start``; a parameter change for the
group ``team-b`` (one ``configure`` to the group); a fleet-wide ``pause`` and
``start`` again; ``kill -9`` of one robot's agent (its will shows it ``lost``,
the arena respawns what it carried); at the end a fleet-wide ``recall``
(every robot resting, with receipts). Output: the per-tick CSV, the summary
(JSON and on the terminal), a PNG of the arena with trails and the metrics
plot, and a GIF when asked. While it runs, the web view (``devfleet-component-viz``,
the ``viz`` extra; in this process, on 127.0.0.1) shows the fleet and the arena's
map; its address is printed at the start (``--viz-port``, ``--no-viz``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devfleet_base import contract

from .arena import Arena
from .bridge import ArenaBridge
from .controller import COLORS, State
from .report import MetricsCsv, summarize, summary_lines

__all__ = ["RunError", "RunOptions", "RunResult", "main", "run"]

MAP = "arena"


@dataclass
class RunOptions:
    """What to run.

    Attributes:
        robots: robot nodes (1..20).
        duration: simulated seconds of foraging, from ``start`` to ``recall``.
        seed: the arena's and the controllers' seed.
        speed: simulated seconds per real second (the demo runs in real time).
        headless: no live view (events are printed as lines).
        out: where the CSV, summary and pictures go.
        broker: ``auto`` (mosquitto, else amqtt), ``mosquitto`` or ``amqtt``.
        gif: also write an animation.
        kill: kill -9 one robot's agent halfway (needs 2+ robots).
        keepalive: the agents' MQTT keepalive (5..3600 s); the will fires after 1.5x.
        viz: serve the web view (``devfleet-component-viz``, when installed) on 127.0.0.1.
        viz_port: its TCP port (0: a free one; the address is printed at the start).
        start_timeout: seconds for the robots to come online, then again for each to be
            driven (its first tick); past it the run stops with :class:`RunError`.
    """

    robots: int = 6
    duration: float = 60.0
    seed: int = 1
    speed: float = 1.0
    headless: bool = False
    out: Path = field(default_factory=lambda: Path("foraging-run"))
    broker: str = "auto"
    gif: bool = False
    kill: bool = True
    keepalive: int = 5
    viz: bool = True
    viz_port: int = 0
    start_timeout: float = 60.0


@dataclass
class RunResult:
    """What happened, for the summary and for the tests."""

    summary: dict[str, Any] = field(default_factory=dict)
    layout: dict[str, Any] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    led_samples: list[dict[str, Any]] = field(default_factory=list)
    recall: dict[str, Any] = field(default_factory=dict)
    killed: str | None = None
    killed_status: str | None = None
    killed_carrying: bool = False
    started_at: float = 0.0
    ended_at: float = 0.0
    collected_at_kill: int | None = None
    collected_at_end: int = 0
    map_frame: dict[str, Any] | None = None
    poses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    png: Path | None = None
    gif: Path | None = None
    csv: Path | None = None
    viz_url: str | None = None


class Observer:
    """The arena's own broker connection: it follows every robot's component states
    (retained) and poses, and publishes the arena's map frame.

    Args:
        host, port: the broker.
        names: the robots (their pose topics are subscribed one by one).
    """

    def __init__(self, host: str, port: int, names: list[str]) -> None:
        from devfleet_base.mqtt import ClientOptions, MqttClient

        self.states: dict[str, dict[str, dict[str, Any]]] = {}
        self.poses: dict[str, list[dict[str, Any]]] = {}  # what a map view receives, per robot
        self.frame: dict[str, Any] | None = None  # the last maps/arena frame
        self._changed = asyncio.Event()
        subscriptions = [
            (contract.node_filter(None, "components/+/state"), 1),
            (contract.map_topic(MAP), 1),
            *[(contract.component_topic(n, "foraging", "map"), 0) for n in names],
        ]
        options = ClientOptions(
            host=host, port=port, client_id=f"foraging-arena-{os.getpid()}", subscriptions=subscriptions
        )
        self.mqtt = MqttClient(options, on_message=self.feed)
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 10.0) -> None:
        self._task = asyncio.create_task(self.mqtt.run(), name="foraging-arena-mqtt")
        await self.mqtt.wait_connected(timeout)

    async def close(self) -> None:
        await self.mqtt.close()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def feed(self, msg: Any) -> None:
        match = contract.parse_topic(msg.topic)
        if match is None or match.kind not in ("component", "map"):
            return
        try:
            body = contract.decode(msg.payload) if msg.payload else None
        except Exception:
            return  # a malformed message is not ours to crash on
        if not isinstance(body, dict):
            return
        if match.kind == "map":
            self.frame = body
        elif match.node is not None and match.component is not None and match.leaf == "state":
            self.states.setdefault(match.node, {})[match.component] = body
            self._changed.set()
        elif match.node is not None and match.leaf == "map":
            self.poses.setdefault(match.node, []).append(body)

    def component(self, node: str, name: str) -> dict[str, Any]:
        return self.states.get(node, {}).get(name, {})

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        async def _wait() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_wait(), timeout)


def _tail(path: Path, lines: int = 8) -> str:
    """The last ``lines`` lines of a log file, joined with `` | `` (a stall's diagnosis)."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(unreadable: {exc.strerror or exc})"
    return " | ".join(text.splitlines()[-lines:]) or "(empty)"


def _component_line(name: str, info: Any) -> str:
    """``ros running (degraded: connecting to ws://...)`` from a node state's component entry."""
    if not isinstance(info, dict):
        return f"{name} ?"
    reported = info.get("reported")
    if not isinstance(reported, dict):
        reported = {}
    detail = [str(x) for x in (reported.get("state"), reported.get("reason")) if x]
    if info.get("last_error"):
        detail.append(f"error: {info['last_error']}")
    return f"{name} {info.get('state')}" + (f" ({': '.join(detail)})" if detail else "")


class RunError(RuntimeError):
    """The run could not go on (robots not up or not driven in time); the message says
    what each late robot showed."""


def _led(state: dict[str, Any]) -> str | None:
    params = state.get("params") if state.get("effect") == "solid" else None
    color = params.get("color") if isinstance(params, dict) else None
    return color.lower() if isinstance(color, str) else None


class Run:
    """One run (see the module docstring); :meth:`main` does it all."""

    def __init__(
        self,
        options: RunOptions,
        broker_url: str,
        broker_host: str,
        broker_port: int,
        say: Callable[[str], None],
    ) -> None:
        self.o = options
        self.url, self.host, self.port = broker_url, broker_host, broker_port
        self.say = say
        self.names = [f"bot-{i + 1}" for i in range(options.robots)]
        self.arena = Arena(self.names, options.seed)
        self.result = RunResult(layout=self.arena.layout())
        self.csv = MetricsCsv(options.out / "metrics.csv")
        self.bridge = ArenaBridge(self.arena, speed=options.speed, on_tick=self.csv)
        self.agents: list[Any] = []
        self.command_latencies: list[float] = []
        self.start_tick = 0
        self.started = asyncio.Event()  # the fleet-wide start was acknowledged
        self.ended = asyncio.Event()  # the foraging window is over (before the recall)
        self._observer: Observer | None = None
        self.view: Any = None  # the web view (devfleet_viz.FleetView) while the run lasts

    # ---- operator actions -------------------------------------------------------------

    async def broadcast(
        self, fleet: Any, verb: str, args: dict[str, Any], *, group: str | None = None
    ) -> Any:
        sent = time.perf_counter()
        seen: set[str] = set()

        def progress(bc: Any) -> None:
            for name, outcome in bc.outcomes.items():
                if name not in seen and outcome.state in ("ok", "error", "expired"):
                    seen.add(name)
                    self.command_latencies.append(time.perf_counter() - sent)

        bc = await fleet.broadcast(verb, args, group=group, timeout=10, on_progress=progress)
        await bc.wait()
        took = (time.perf_counter() - sent) * 1000
        what = args.get("command", verb) if verb == "component" else verb
        self.event(
            f"{what} -> {'group ' + group if group else 'fleet'}: {len(bc.succeeded)} ok, "
            f"{len(bc.failed)} failed, {len(bc.timed_out)} timed out, {len(bc.offline)} offline ({took:.0f} ms)"
        )
        return bc

    def event(self, text: str) -> None:
        line = f"t={self.arena.tick * self.arena.config.dt:6.1f}s  {text}"
        self.result.events.append(line)
        self.say(line)

    def component_cmd(self, command: str) -> dict[str, Any]:
        return {"component": "foraging", "command": command, "args": {}}

    # ---- the run ----------------------------------------------------------------------

    async def main(self, live: Callable[[Run, Any, Observer], Any] | None) -> RunResult:
        from devfleet_agent.testing import AgentProcess
        from devfleet_command.aio import AsyncFleet

        o = self.o
        await self.bridge.start()
        tmp = tempfile.mkdtemp(prefix="devfleet-foraging-")
        try:
            await self._start_view()
            for name in self.names:
                self.agents.append(
                    AgentProcess(
                        broker=self.host,
                        port=self.port,
                        name=name,
                        data_dir=Path(tmp) / name,
                        extra=["--keepalive", str(o.keepalive)],
                    ).start()
                )
            observer = Observer(self.host, self.port, self.names)
            self._observer = observer
            await observer.start()
            async with AsyncFleet.connect(self.url) as fleet:
                # walking/resting by the controllers' reported states, as ARGoS's loop functions count
                self.arena.is_resting = lambda n: (
                    observer.component(n, "foraging").get("state", "resting") == "resting"
                )
                await self._configure(fleet, observer)
                frame_task = asyncio.create_task(self._publish_frames(observer))
                view = live(self, fleet, observer) if live is not None else None
                try:
                    await self._script(fleet, observer)
                finally:
                    frame_task.cancel()
                    if view is not None:
                        await view.stop()
                await self._finish(fleet, observer)
        finally:
            await self._shutdown()
            if self.view is not None:
                await self.view.close()
            shutil.rmtree(tmp, ignore_errors=True)
        return self.result

    async def _start_view(self) -> None:
        """The web view in this process, on loopback: the fleet table and the arena's map."""
        if not self.o.viz:
            return
        try:
            from devfleet_viz import FleetView
        except ImportError:  # an optional extra: the run works without it
            self.say("web view: not installed (pip install devfleet-example-foraging[viz])")
            return
        from devfleet_command.aio import AsyncFleet

        view = FleetView(AsyncFleet(self.url), bind="127.0.0.1", port=self.o.viz_port)
        try:
            await view.start()
        except OSError as exc:
            self.say(f"web view: cannot listen on 127.0.0.1:{self.o.viz_port} ({exc.strerror or exc})")
            return
        self.view = view
        self.result.viz_url = f"{view.url}#/map"
        self.say(f"web view: {self.result.viz_url}  (the fleet: {view.url})")

    async def _shutdown(self) -> None:
        """SIGTERM every agent at once (each says offline), then wait; servers and files last."""
        for agent in self.agents:
            with contextlib.suppress(Exception):
                agent.signal(signal.SIGTERM)
        for agent in self.agents:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(agent.wait, 10.0)
            agent.__exit__()  # SIGKILL if it did not stop
        if self._observer is not None:
            await self._observer.close()
        await self.bridge.stop()
        self.csv.close()

    async def _configure(self, fleet: Any, observer: Observer) -> None:
        self.event(f"{len(self.names)} robot agents starting (ros + foraging + ledstrip each)")
        wait = self.o.start_timeout

        def up(m: Any, n: str) -> bool:
            return n in m and m.get(n).online and m.get(n).config_version is not None

        try:
            await fleet.wait_for(lambda m: all(up(m, n) for n in self.names), timeout=wait)
        except TimeoutError:
            late = [n for n in self.names if not up(fleet.model, n)]
            raise RunError(f"robot agents not online after {wait:g} s: {self._diagnose(late)}") from None
        urls = self.bridge.urls
        for i, name in enumerate(self.names):
            await fleet.config_set(
                name,
                {
                    "groups": ["foraging", "team-a" if i % 2 == 0 else "team-b"],
                    "components.ros": {"enabled": True, "settings": {"url": urls[name]}},
                    "components.ledstrip": {
                        "enabled": True,
                        "settings": {"backend": "simulated", "led_count": 12, "fps": 5},
                    },
                    "components.foraging": {"enabled": True, "settings": {"seed": self.o.seed}},
                },
            )

        def ticking(n: str) -> bool:
            return (observer.component(n, "foraging").get("ticks") or 0) > 0

        try:
            await observer.wait_for(lambda: all(ticking(n) for n in self.names), timeout=wait)
        except TimeoutError:
            late = [n for n in self.names if not ticking(n)]
            raise RunError(f"robots not driven after {wait:g} s: {self._diagnose(late, fleet)}") from None
        self.event("every robot is driven by its agent over rosbridge (held in the nest, red)")

    def _diagnose(self, names: list[str], fleet: Any = None) -> str:
        """What each late robot showed, a line each: its health, its components' states and
        the last lines of its agent's log (the log is deleted with the run's folder)."""
        parts = []
        for name in names:
            node = fleet.model.get(name) if fleet is not None and name in fleet.model else None
            health = node.health if node is not None else "not seen"
            components = ", ".join(
                _component_line(c, i) for c, i in (node.components if node else {}).items()
            )
            i = self.names.index(name)
            tail = _tail(self.agents[i].log_path, 3) if i < len(self.agents) else "(not started)"
            parts.append(f"{name}: {health}; components: {components or 'none reported'}; log: {tail}")
        return "\n".join(parts)

    async def _sim_until(self, seconds: float) -> None:
        """Wait until the arena's clock, counted from start, passes ``seconds``."""
        await self.bridge.until_tick(self.start_tick + round(seconds * self.arena.config.ticks_per_second))

    async def _script(self, fleet: Any, observer: Observer) -> None:
        d = self.o.duration
        self.start_tick = self.arena.tick
        await self.broadcast(fleet, "component", self.component_cmd("start"))
        self.started.set()
        self.result.started_at = time.time()
        sampler = asyncio.create_task(self._sample_leds(observer))
        try:
            await self._sim_until(0.2 * d)
            await self.broadcast(
                fleet, "configure", {"set": {"components.foraging.settings.delta": 0.05}}, group="team-b"
            )
            await self._sim_until(0.3 * d)
            await self.broadcast(fleet, "component", self.component_cmd("pause"))
            await self._sim_until(0.33 * d)
            await self.broadcast(fleet, "component", self.component_cmd("start"))
            killer: asyncio.Task[None] | None = None
            if self.o.kill and len(self.agents) > 1:
                await self._sim_until(0.45 * d)
                # prefer a robot that carries an item: its item must respawn
                carrying = [a for a in self.agents if self.arena.robots[a.name].carrying]
                killer = asyncio.create_task(self._kill(fleet, (carrying or self.agents)[-1]))
            await self._sim_until(d)
            self.ended.set()
            self.result.ended_at = time.time()
            if killer is not None:
                await killer
        finally:
            sampler.cancel()

    async def _kill(self, fleet: Any, agent: Any) -> None:
        self.result.killed = agent.name
        self.result.collected_at_kill = self.arena.collected
        self.result.killed_carrying = self.arena.robots[agent.name].carrying
        await asyncio.to_thread(agent.kill)
        self.event(f"kill -9 {agent.name}'s agent (pid {agent.pid})")
        try:
            await fleet.wait_for(
                lambda m: m.get(agent.name) is not None and m.get(agent.name).status == "lost", timeout=15
            )
        except TimeoutError:
            self.event(f"{agent.name}: no will within 15 s")
            return
        self.result.killed_status = "lost"
        robot = self.arena.robots[agent.name]
        carried = self.result.killed_carrying
        self.event(f"{agent.name} is lost (its will, published by the broker)")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._until_lost(robot), (self.bridge.lost_after + 2) / self.o.speed)
        if not robot.online:
            self.event(
                f"{agent.name}: the arena stopped it (no cmd_vel for {self.bridge.lost_after:g} s)"
                + ("; the item it carried respawned" if carried else "; it carried nothing")
            )

    async def _until_lost(self, robot: Any) -> None:
        while robot.online:
            await self.bridge.until_tick(self.arena.tick + 1)

    async def _sample_leds(self, observer: Observer) -> None:
        """Every 2 simulated seconds: each online robot's state light against its state."""
        while True:
            await asyncio.sleep(2.0 / self.o.speed)
            for name in self.names:
                if not self.arena.robots[name].online:
                    continue
                fs, ls = observer.component(name, "foraging"), observer.component(name, "ledstrip")
                raw = fs.get("state")
                state = raw if isinstance(raw, str) else None
                self.result.led_samples.append(
                    {
                        "node": name,
                        "tick": fs.get("tick"),
                        "state": state,
                        "led": _led(ls),
                        "expected": COLORS[State(state)] if state in {x.value for x in State} else None,
                    }
                )

    async def _finish(self, fleet: Any, observer: Observer) -> None:
        self.result.collected_at_end = self.arena.collected
        self.result.map_frame, self.result.poses = observer.frame, observer.poses
        self.result.params = {n: observer.component(n, "foraging").get("params", {}) for n in self.names}
        sent = time.perf_counter()
        bc = await self.broadcast(fleet, "component", self.component_cmd("recall"))
        alive = [n for n in self.names if n != self.result.killed]
        try:
            await observer.wait_for(
                lambda: all(
                    observer.component(n, "foraging").get("state") == "resting"
                    and _led(observer.component(n, "ledstrip")) == COLORS[State.RESTING]
                    for n in alive
                ),
                timeout=5.0,
            )
            resting_after: float | None = time.perf_counter() - sent
        except TimeoutError:
            resting_after = None
        self.result.recall = {
            "succeeded": bc.succeeded,
            "failed": bc.failed,
            "timed_out": bc.timed_out,
            "offline": bc.offline,
            "receipts": {n: o.state for n, o in bc.outcomes.items()},
            "all_resting_after_s": None if resting_after is None else round(resting_after, 3),
        }
        self.event(
            "recall: every robot resting (red) after "
            + (f"{resting_after:.2f} s" if resting_after is not None else "- not within 5 s")
        )
        bridge = self.bridge
        rows = bridge.metrics
        tick_lat = [x for n, link in bridge.links.items() if n != self.result.killed for x in link.latencies]
        skipped = sum(link.skipped for n, link in bridge.links.items() if n != self.result.killed)
        summary = summarize(
            self.arena,
            [
                r
                for r in rows
                if r.tick <= self.start_tick + round(self.o.duration * self.arena.config.ticks_per_second)
            ],
            start_tick=self.start_tick,
            command_latencies=self.command_latencies,
            tick_latencies=tick_lat,
            skipped=skipped,
        )
        self.result.summary = summary
        out = self.o.out
        (out / "summary.json").write_text(json.dumps({**summary, "events": self.result.events}, indent=2))
        self.result.csv = self.csv.path
        colors = {n: str(observer.component(n, "foraging").get("color", "#888888")) for n in self.names}
        from .picture import render_gif, render_png

        self.result.png = render_png(self.arena, rows, out / "arena.png", colors)
        if self.o.gif:
            self.result.gif = render_gif(self.arena, out / "arena.gif", colors)

    async def _publish_frames(self, observer: Observer) -> None:
        """The arena's map frame, retained on ``maps/arena`` about once a second."""
        c = self.arena.config
        topic = contract.map_topic(MAP)
        while True:
            frame = contract.MAP_FRAME_SCHEMA.validate(
                {
                    "map": MAP,
                    "width": c.width,
                    "height": c.height,
                    "regions": [
                        {
                            "name": "nest",
                            "x0": 0.0,
                            "y0": 0.0,
                            "x1": c.nest_width,
                            "y1": c.height,
                            "color": "#d9d9d9",
                        }
                    ],
                    "items": [[round(x, 3), round(y, 3)] for x, y in self.arena.items],
                    "ts": time.time(),
                }
            )
            await observer.mqtt.publish(topic, contract.encode(frame), qos=1, retain=True)
            await asyncio.sleep(1.0)


# ---- the live view -------------------------------------------------------------------


class LiveView:
    """The fleet as the operator sees it, redrawn twice a second (rich)."""

    def __init__(self, run: Run, fleet: Any, observer: Observer) -> None:
        from rich.console import Console
        from rich.live import Live

        self.run, self.fleet, self.observer = run, fleet, observer
        self.live = Live(self._render(), console=Console(), auto_refresh=False)
        self.live.start()
        self.task = asyncio.create_task(self._redraw())

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table

        run = self.run
        t = Table(box=None, pad_edge=False)
        for col in ("ROBOT", "NODE", "STATE", "LED", "MODE", "ITEMS", "P(leave)", "CMD_VEL p50"):
            t.add_column(col)
        for name in run.names:
            view = self.fleet.model.get(name)
            fs = self.observer.component(name, "foraging")
            led = _led(self.observer.component(name, "ledstrip")) or "-"
            lat = run.bridge.links[name].latencies[-50:]
            p50 = f"{sorted(lat)[len(lat) // 2] * 1000:.1f} ms" if lat else "-"
            t.add_row(
                name,
                view.health if view is not None else "-",
                str(fs.get("state", "-")),
                f"[{led}]●[/] {led}" if led != "-" else "-",
                str(fs.get("mode", "-")),
                str(run.arena.robots[name].collected),
                f"{fs.get('leave_prob', 0):.3f}" if fs else "-",
                p50,
            )
        a = run.arena
        clock = (a.tick - run.start_tick) * a.config.dt
        head = f"[bold]foraging[/] t={clock:5.1f}/{run.o.duration:g} s  items {a.collected}  energy {a.energy}  (Ctrl-C stops)"
        if run.result.viz_url:
            head += f"\nweb view {run.result.viz_url}"
        return Group(head, t)

    async def _redraw(self) -> None:
        while True:
            await asyncio.sleep(0.5)  # redraw pace, not a wait for an outcome
            self.live.update(self._render(), refresh=True)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.live.update(self._render(), refresh=True)
        self.live.stop()


# ---- entry points -----------------------------------------------------------------------


def run(options: RunOptions, say: Callable[[str], None] = print) -> RunResult:
    """Do one run with a private broker; returns what happened.

    Raises:
        BrokerError: no broker could be started.
    """
    from devfleet_base.testing.broker import start_local_broker

    broker: Any = start_local_broker(prefer="amqtt" if options.broker == "amqtt" else "mosquitto")
    try:
        kind = type(broker).__name__.replace("Broker", "").lower() or "broker"
        say(f"broker: {kind} on {broker.url}")
        r = Run(options, broker.url, broker.host, broker.port, say)
        live = None if options.headless else LiveView
        return asyncio.run(r.main(live))
    finally:
        broker.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="devfleet-foraging", description=__doc__.split("\n\n")[0])
    p.add_argument("--robots", type=int, default=6, help="robot nodes (default 6)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of foraging (default 60)")
    p.add_argument("--seed", type=int, default=1, help="the arena's seed (default 1)")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)")
    p.add_argument("--headless", action="store_true", help="no live view, events as lines")
    p.add_argument("--gif", action="store_true", help="also write arena.gif")
    p.add_argument("--no-kill", action="store_true", help="do not kill a robot's agent halfway")
    p.add_argument(
        "--out", type=Path, default=Path("foraging-run"), help="output folder (default ./foraging-run)"
    )
    p.add_argument("--broker-kind", choices=("auto", "mosquitto", "amqtt"), default="auto")
    p.add_argument(
        "--viz-port", type=int, default=0, help="the web view's port on 127.0.0.1 (default: a free one)"
    )
    p.add_argument("--no-viz", action="store_true", help="no web view")
    args = p.parse_args(argv)
    if not 1 <= args.robots <= 20:
        p.error("--robots must be between 1 and 20")
    if not 5 <= args.duration <= 3600:
        p.error("--duration must be between 5 and 3600 seconds")
    if not 0.1 <= args.speed <= 10:
        p.error("--speed must be between 0.1 and 10")
    if not 0 <= args.seed < 2**31:
        p.error("--seed must be between 0 and 2**31 - 1")
    if not 0 <= args.viz_port <= 65535:
        p.error("--viz-port must be between 0 and 65535")
    options = RunOptions(
        robots=args.robots,
        duration=args.duration,
        seed=args.seed,
        speed=args.speed,
        headless=args.headless or not sys.stdout.isatty(),
        out=args.out,
        broker=args.broker_kind,
        gif=args.gif,
        kill=not args.no_kill,
        viz=not args.no_viz,
        viz_port=args.viz_port,
    )
    real = options.duration / options.speed
    print(
        f"foraging: {options.robots} robots, {options.duration:g} s of foraging (about {real + 15:.0f} s with "
        f"start-up and summary), seed {options.seed}. Ctrl-C stops it cleanly.",
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        result = run(options)
    except KeyboardInterrupt:
        print("foraging: stopped (Ctrl-C); every agent and the broker were shut down", file=sys.stderr)
        return 130
    except Exception as exc:  # the CLI edge: one line, not a traceback
        print(f"foraging: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for line in summary_lines(result.summary):
        print(line)
    print(f"metrics CSV       {result.csv}")
    print(f"picture           {result.png}")
    if result.gif is not None:
        print(f"animation         {result.gif}")
    return 0
