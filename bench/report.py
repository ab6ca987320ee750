"""Turn a results dict (see :mod:`run`) into ``docs/benchmarks.md``."""

from __future__ import annotations

from typing import Any

# Why a figure can miss its target: shown under the table only for figures that did.
EXPLAIN: dict[str, str] = {
    "agent import": (
        "the agent is an asyncio program and the floor (bare paho with its network thread + psutil) is "
        "not: `python -X importtime -c 'import devfleet_agent.agent'` gives asyncio ~38 ms of ~89 ms, "
        "the wire contract's compiled topic and name patterns ~10 ms, settings ~5 ms. The ratio moves "
        "with the floor's own noise (1.40× in the previous full run, 86.5 ms floor; 1.65× here, 68.6 ms "
        "floor); on the Pi Zero the import is 1.57× the floor in guest instructions. Not one of issue "
        "20's goals; a lazier contract module is the next step if it matters."
    ),
    "command round trip": (
        "the floor's two processes bounce bytes; devfleet's console builds, encodes and (unsigned here) "
        "publishes an envelope and waits for its PUBACK, the agent decodes and schema-validates it, checks "
        "expiry and at-most-once, runs the handler in a task of its own and encodes two receipts, and the "
        "console decodes and validates each receipt. The hop table above shows each of those stages at tens "
        "of µs. The gap is CPU, and on this shared 2-core machine CPU turns into waiting: with the floor's "
        "responder made to burn 150 µs a request, its p50 went from ~0.5 ms to 0.8–4.7 ms per block at "
        "load 12, where devfleet's before this round sat at 1–4 ms. Cut in this round (issue 20): the "
        "transport writes what paho queued once per loop turn instead of registering the socket for "
        "writing per burst, and waits for a PUBACK with one future and one timer instead of "
        "`wait_for(shield())`; one shared JSON encoder; a fast path for command topics; a command handle "
        "wakes its waiter without `shield()`; the agent freezes its start-up objects out of the cyclic "
        "collector (a 53 ms full collection was caught in the probe). Instructions per round trip "
        "(callgrind): agent 1.31 M → 1.21 M, console 1.49 M → 1.31 M (floor: responder 0.90 M, requester "
        "1.20 M). Main before this round against this tree in one run (`bench/ab_roundtrip.py --blocks 100 "
        "--block 30`, load 2.8): p50 0.710 → 0.614 ms (1.60× → 1.39× the floor's 0.443 ms), p99 5.34 → "
        "5.54 ms (1.31× → 1.36×: unchanged). Not cut: the `accepted` receipt, envelope and receipt validation, the task per "
        "command (Python 3.11 has no eager tasks); p99 at this load is the scheduler's time slice for "
        "every process, the floor's included."
    ),
    "discovery": (
        "the floor is paho's own Python per message (~28 µs here: packet read, MQTT 5 properties, "
        "topic decode); devfleet adds the `MqttClient` callback and `MqttMessage` (~3 µs, a 1.1× CPU ratio "
        "with the model switched off) and the model. Profiled (issue 20): the stdlib JSON decode and "
        "`contract.TopicMatch` (a frozen dataclass, 1.9 µs to build, and every topic of a burst is new) "
        "were most of the model's 7.5 µs a message, and the 1-second stale sweep walked the growing model "
        "during the burst. Now, with the `fast` extra: msgspec decodes (the stdlib's results exactly), "
        "`meta`/`state`/`cfg` are checked by a header decode and kept as bytes until read, the model "
        "classifies topics itself, the sweep starts after the sync, and the cyclic GC stays paused for "
        "the burst (the model holds few GC-tracked objects now, so it costs little afterwards): 3.5 µs a "
        "message in isolation, 1.80× → 1.49× in CPU seconds of the live process at 10,000 nodes. What "
        "remains is Python per message on top of paho's: cache misses in the live process make the "
        "model's share about twice its isolated cost. The C client `mosquitto_sub` takes the same burst "
        "in ~1/7 of paho's time (see Scale): paho's Python, not the broker, sets both figures."
    ),
    "fan-out": (
        "each of the 2,000 receipts (`accepted` + `ok`) is decoded, schema-validated and routed to the "
        "broadcast by command id; the simulated nodes, all on one event loop, decode and validate the "
        "envelope and publish two JSON receipts each, where the floor's clients echo bytes. The "
        "broadcast's bookkeeping used to sort every outcome on every receipt (O(N²)); it now keeps a tally. "
        "The schema fast path made envelope and receipt validation cheaper and the agent no longer "
        "starts a second task per command, but neither moved the figure beyond run-to-run noise "
        "(295, 299, 285 ms over three full runs). Profiled in issue 20: on the console, each receipt's "
        "`Receipt.from_wire` spends half its time in `Schema.validate` filling defaults for absent "
        "fields (the nested `_sig` schema's defaults are rebuilt per receipt), left to the schema work; "
        "the rest of the gap is the simulated nodes themselves, a thousand on one event loop. At 10,000 "
        "nodes (see Scale) both grow about linearly."
    ),
    "telemetry ingestion": (
        "the floor counts messages; the console decodes each sample, checks it is a finite number, "
        "stores it and appends it to the node's bounded history, and emits a change event. The shared "
        "decoder, the topic fast path and skipping the per-message `asyncio.Event` (made only when a "
        "`wait_for` is waiting) cut the model's own cost; the rest is the `MqttMessage` and event objects per "
        "message in Python."
    ),
    "`devfleet --help`": (
        "the floor is a bare interpreter printing an argparse help (~20 ms is Python's own start-up). "
        "Typing, dataclasses, logging, pathlib and json are off the help path (`TYPE_CHECKING = False` "
        "blocks, the handlers' `Context` loaded on first use, imports inside handlers, and since issue 20 "
        "the `--broker` action in `devfleet_base.broker_flag`, without broker_url's dataclasses and "
        "urllib.parse). The start-up figures used to include compiling ~18 modules from source on every "
        "run (`PYTHONDONTWRITEBYTECODE` in the bench's environment kept the editable installs from "
        "caching bytecode); they are now measured with caches, as an installed wheel runs. Instructions "
        "(callgrind): 344 M → 161 M against the floor's 93 M. The rest is building the parser: ~38 "
        "parsers and ~180 `add_argument` calls (each makes a formatter that asks the terminal its size); "
        "building only the requested subcommand's parser would remove most of it."
    ),
    "agent idle CPU": (
        "both figures are a few hundredths of a percent over the idle window: a handful of clock ticks "
        "either way, so the ratio is noise; the absolute target (≤ 0.5 %) is what matters."
    ),
}


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def _met(row: dict[str, Any]) -> bool | None:
    target = row["target"]
    if target.startswith("≤ ") and target.endswith("×"):
        return None if row["ratio"] is None else bool(row["ratio"] <= float(target[2:-1]))
    if target == "< 1.0×":
        return None if row["ratio"] is None else row["ratio"] < 1.0
    if target.startswith("≤ ") and target.endswith(row["unit"]):
        return bool(row["value"] <= float(target[2:].split()[0]))
    return None


def _agent_tables(agent: dict[str, Any]) -> list[str]:
    """The agent section's hop breakdown and side-by-side footprint (bench/section_agent.py)."""
    lines: list[str] = []
    hops = agent.get("hops", {})
    if hops.get("hops"):
        rt = agent.get("round_trip", {})
        lines += [
            "",
            "## Where a command round trip's time goes",
            "",
            f"{hops['analysed']:,} round trips to an agent with timing probes (`bench/hops.py`; marks are "
            "`perf_counter_ns`, one clock for both processes), after a warm-up; µs. The probes add a little "
            "to each hop: the headline rows come from the run without them"
            + (
                f" ({rt['count']:,} round trips each, devfleet and floor alternated in {rt['blocks']} blocks)."
                if rt
                else "."
            ),
            "",
            "| hop | p50 µs | p99 µs |",
            "| --- | ---: | ---: |",
        ]
        lines += [f"| {h['hop']} | {h['p50_us']:.1f} | {h['p99_us']:.1f} |" for h in hops["hops"]]
        lines.append(
            f"| **whole round trip (probed)** | {hops['total_p50_us']:.0f} | {hops['total_p99_us']:.0f} |"
        )
        loops, tasks, gcs = hops.get("loop_iterations", {}), hops.get("tasks_created", {}), hops.get("gc", {})
        lines += [
            "",
            f"- Event-loop iterations per round trip (median): console {loops.get('console', '?')}, agent "
            f"{loops.get('agent', '?')} (from its socket read to its `ok` send). Tasks created per round trip: "
            f"console {tasks.get('console', '?')}, agent {tasks.get('agent', '?')}.",
        ]
        for side in ("console", "agent"):
            g = gcs.get(side) or {}
            if g:
                lines.append(
                    f"- Cyclic GC in the {side}: {g['collections']} collections during the probed round trips "
                    f"(by generation {g['by_generation']}), pause p50 {g['pause_p50_us']:.0f} µs, max "
                    f"{g['pause_max_us']:.0f} µs; {g['round_trips_hit']} round trips overlapped one."
                )
        nd = rt.get("tcp_nodelay")
        if nd:
            lines.append(
                "- TCP_NODELAY on the broker connections: "
                + "; ".join(f"{k} {v}" for k, v in nd.items())
                + "."
            )
    fp = agent.get("footprint", {})
    if fp.get("devfleet"):
        lines += [
            "",
            f"## Idle footprint, side by side ({fp['window']:.0f} s window, one broker)",
            "",
            "| process | RSS | peak RSS | CPU |",
            "| --- | ---: | ---: | ---: |",
        ]
        names = {
            "devfleet": "`devfleet-agent` (default config)",
            "wactorz": "`wactorz-node` (Wactorz packaged runner, PyPI `wactorz==0.7.2`)",
            "floor": "bare paho + psutil (`bench/floors.py agent`)",
        }
        for key, label in names.items():
            if key in fp:
                v = fp[key]
                lines.append(f"| {label} | {v['rss'] / 2**20:.1f} MB | {v['peak_rss'] / 2**20:.1f} MB | "
                             f"{v['cpu_percent']:.2f} % |")  # fmt: skip
        if fp.get("wactorz_missing"):
            lines += ["", f"Wactorz runner not measured: {fp['wactorz_missing']}."]
    return lines


def markdown(result: dict[str, Any], extra: list[str] | None = None) -> str:
    """The whole page; ``extra``: sections' own parts (lines), placed before "Machine"."""
    m = result["machine"]
    lines = [
        "# Benchmarks",
        "",
        "<!-- generated by bench/run.py: do not edit by hand -->",
        "",
        "Every figure is measured next to its **floor**: raw paho-mqtt doing the same work on the same",
        "private mosquitto in the same run (see `bench/floors.py` and `bench/rawmqtt.py`). The ratio is",
        "devfleet ÷ floor for times and sizes, floor ÷ devfleet for rates, so above 1 always means",
        "devfleet costs more. Targets: each row's own (≤ 1.2× for the command round trip and the",
        "console's discovery, fan-out, ingestion and memory per node, issue 20; ≤ 1.5× elsewhere); agent",
        "idle RSS ≤ 40 MB and below the Wactorz runner's beside it; idle CPU ≤ 0.5 %.",
        "",
        "The floor is the bare paho client, not the fastest possible reader: devfleet's MQTT client",
        "reads in 64 KiB chunks and decodes a PUBLISH without MQTT 5 properties itself, so a row can",
        "sit well below 1 (discovery). The scale section adds the C client `mosquitto_sub` as a",
        "second floor for discovery.",
        "",
        f"Run: {result['started']}, {result['mode']} run, {result['seconds']:.0f} s. "
        f"Reproduce with `{result['command']}`.",
        "",
        "| figure | devfleet | floor (raw paho) | ratio | target | met |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    missed = []
    for row in result["rows"]:
        met = _met(row)
        if met is False:
            missed.append(row)
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else "–"
        mark = {True: "yes", False: "**no**", None: "–"}[met]
        lines.append(
            f"| {row['name']} | {_fmt(row['value'], row['unit'])} | {_fmt(row['floor'], row['unit'])} "
            f"| {ratio} | {row['target']} | {mark} |"
        )
    d = result["details"]
    cap = d.get("sim_capacity", {})
    if cap:
        marginal = cap.get("rss_per_node_marginal")
        lines += [
            "",
            "## Fleet simulator capacity",
            "",
            f"`devfleet-sim --nodes {cap['nodes']:,} --processes {cap['processes']}` with the default config "
            "(heartbeat every 10 s, telemetry every 30 s), tracked by a console (`AsyncFleet`) in the "
            "benchmark process, against the same kind of private mosquitto:",
            "",
            "| figure | value |",
            "| --- | ---: |",
            f"| nodes online in the console after start | {cap['tracked_at_end']:,} of {cap['nodes']:,} |",
            f"| time until the console saw every node online (staggered connects) | {cap['online_seconds']:.1f} s |",
            f"| simulator RSS, all processes | {cap['rss_bytes'] / 2**20:.0f} MB |",
            f"| simulator RSS per node (total / nodes) | {cap['rss_per_node'] / 1024:.1f} KB |",
            f"| simulator RSS per node (above the interpreter's own) | "
            f"{_fmt(marginal / 1024 if marginal else None, 'KB')} |",
            f"| simulator CPU, steady state over {cap['window']:.0f} s (100 % = one core) | "
            f"{cap['sim_cpu_percent']:.1f} % |",
            f"| console CPU tracking them | {cap['console_cpu_percent']:.1f} % |",
        ]
    lines += _scale(d.get("scale", {}))
    lines += _agent_tables(d.get("agent", {}))
    lines += ["", "## Where a target is missed", ""]
    if not missed:
        lines.append("Every target is met in this run.")
    told: set[str] = set()
    for row in missed:
        key = next((k for k in EXPLAIN if row["name"].startswith(k)), None)
        if key is None:
            why = "not yet explained."
        elif key in told:
            why = "same cause as above."
        else:
            why = EXPLAIN[key]
            told.add(key)
        lines.append(f"- **{row['name']}**: {why}")
    lines += [
        "",
        "## How each figure is measured",
        "",
        "- **Round trip** (section `agent`): `AsyncFleet.call(node, 'ping')` against a real `devfleet-agent` "
        "process, one at a time; the console waits for the broker's PUBACK of the command, then for the "
        "`ok` receipt (the agent also sends `accepted` first). Floor: a raw requester publishes QoS 1 to a "
        "raw responder process that answers twice at QoS 1 (like `accepted` + `ok`). Both pairs run side "
        "by side for the whole measurement and take turns in blocks (order flipped every block) after a "
        "warm-up, thousands of round trips each, so machine load hits both alike. "
        "`python bench/ab_roundtrip.py --base-rev REV` compares two source trees the same way.",
        "- **Discovery**: the retained births (meta, status, state, cfg: 4 messages a node, built by the "
        "agent's own payload code) are published first by a fast raw publisher. Timed from creating a fresh "
        "`AsyncFleet` until its model holds every node with a status (median of the repeats). Floor: a raw "
        "subscriber with the console's subscriptions until it received every retained message.",
        "- **Fan-out**: `devfleet-sim` nodes in a separate process; `AsyncFleet.broadcast('ping')` until "
        "every `ok` receipt is in. Floor: as many raw clients (one process, epoll) each answering the "
        "request twice at QoS 1; timed until every second answer arrived.",
        "- **Ingestion**: a raw publisher process sends telemetry samples (QoS 0) as fast as it can; rate "
        "from the first to the last message fed to the console's `FleetModel` (through `AsyncFleet`). "
        "Floor: a raw subscriber with the same subscriptions counting messages.",
        "- **Footprint** (section `agent`): `devfleet-agent` with the default config, `wactorz-node` (the "
        "Wactorz packaged runner, in the bench venv only: heartbeats, an MQTT session, psutil metrics) and "
        "`bench/floors.py agent` (bare paho with its network thread + psutil: birth, heartbeat every 10 s, "
        "cpu/memory/disk every 30 s) idle side by side on one broker; CPU from `/proc/PID/stat` over the "
        "idle window, RSS from `/proc/PID/status` at its end.",
        "- **Start-up**: median wall time of fresh interpreters: `python -c 'import devfleet_agent.agent'` "
        "versus `import paho.mqtt.client, psutil` (section `agent`); `devfleet --help` versus an argparse "
        "`--help`; each run once first, then timed with bytecode caches (the bench drops "
        "`PYTHONDONTWRITEBYTECODE` for them), as an installed wheel runs.",
        "- **Memory per node**: `tracemalloc` around a `FleetModel` fed each node's births, one heartbeat "
        "and three samples, then again after every node's `meta`, `state` and `cfg` were read (with the "
        "`fast` extra they are kept as received until read). Floor: a dict holding the decoded last "
        "payload of every topic.",
    ]
    lines += extra or []
    lines += [
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']} ({m['cores']} cores), {m['memory_gb']} GB RAM",
        f"- `uname`: {m['uname']}",
        f"- Python {m['python']}, paho-mqtt {m['paho']}, mosquitto {m['mosquitto']}",
        "- Load average (1/5/15 min) while measuring: "
        + "; ".join(f"{k}: {v}" for k, v in result["load"].items()),
        "",
        "Other jobs shared the machine; a figure that looked off was measured again. Raw numbers are in",
        "`bench/results.json`.",
        "",
    ]
    return "\n".join(lines)


def _scale(scale: dict[str, Any]) -> list[str]:
    """The scale section's table: each figure, its floors, and how it grows."""
    if not scale.get("discovery") and not scale.get("fanout"):
        return []

    def k(value: float | None) -> str:
        return "–" if value is None else f"N^{value:.2f}"

    lines = [
        "",
        "## Scale",
        "",
        "Discovery and fan-out as the fleet grows (`python3 dev.py bench -- --only scale`; "
        "`bench/section_scale.py`). Growth is k in time ∝ N^k from the size above (1.00 = linear). "
        "mosquitto_sub is the C client taking in the same retained messages (its time includes "
        "starting the process).",
        "",
        "| figure | nodes | devfleet | growth | bare paho | growth | ratio | mosquitto_sub | ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines_after: list[str] = []
    for kind, label in (("discovery", "discovery"), ("fanout", "fan-out ping")):
        for p in scale.get(kind, []):
            c = p.get("c_seconds")
            c_ratio = f"{p['seconds'] / c:.2f}" if c else "–"
            ratio = f"{p['seconds'] / p['floor_seconds']:.2f}" if p.get("floor_seconds") else "–"
            if p.get("floor_error"):
                lines_after.append(
                    f"{label} at {p['nodes']:,} nodes: bare paho not measured ({p['floor_error']})."
                )
            lines.append(
                f"| {label} | {p['nodes']:,} | {_fmt(p['seconds'], 's')} | {k(p.get('growth'))} "
                f"| {_fmt(p['floor_seconds'], 's')} | {k(p.get('floor_growth'))} "
                f"| {ratio} | {_fmt(c, 's') if c else '–'} | {c_ratio} |"
            )
    for name, why in scale.get("errors", {}).items():
        lines_after.append(f"{name}: not measured ({why}).")
    if lines_after:
        lines += ["", *(f"- {text}" for text in lines_after)]
    if scale.get("plot"):
        lines += ["", f"![discovery and fan-out against fleet size, log-log]({scale['plot']})"]
    return lines
