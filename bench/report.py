"""Turn a results dict (see :mod:`run`) into ``docs/benchmarks.md``."""

from __future__ import annotations

from typing import Any

# Why a figure can miss its target: shown under the table only for figures that did.
EXPLAIN: dict[str, str] = {
    "command round trip": (
        "devfleet does more per command than two raw clients bouncing bytes: the console builds and "
        "JSON-encodes an envelope and waits for the broker's PUBACK before it waits for the receipt; the "
        "agent decodes and schema-validates the envelope, checks expiry and at-most-once, and sends "
        "`accepted` and then `ok` (the handler runs in the message's own task); the console validates "
        "each receipt. "
        "That is a few tens of microseconds of Python per hop on top of a sub-millisecond floor, so the ratio "
        "is large while the absolute cost stays below a millisecond at p50. The p99 on this shared 2-core "
        "machine is dominated by scheduling jitter (three busy processes on two cores)."
    ),
    "discovery": (
        "every retained description goes through the whole receive path: paho → `MqttSession` (an "
        "`Inbound` per message) → `AsyncFleet` → `FleetModel.feed`, which decodes the JSON, checks "
        "session/version ordering (a late will must never win) and validates `status` against its schema, "
        "then builds the node view and its events. Measured: `MqttSession` alone (no model) takes in the "
        "10,000-node burst in ~1.2 s, level with the raw floor, so the whole gap is the model's Python. "
        "Cut so far (a compiled fast path in `Schema.validate`: `status` 4.1 → 1.3 µs; `decode` "
        "scanning plain objects directly; `Inbound` a named tuple; no KeyError per new topic; no event "
        "dispatch when nobody listens): `feed` over the 40,000 births went from ~13.9 to ~12.4 µs a "
        "message, and the console's handler in the live process from 19–24 to 16–21 µs. What remains is "
        "the JSON decode (~3.3 µs) and CPython's cyclic garbage collector: the same `feed` run takes "
        "~7.4 µs a message with the collector off, ~12.4 µs with it on, because the model keeps every "
        "decoded payload and each full collection walks the growing heap (worse at 10,000 nodes than at "
        "1,000). The console now pauses the collector for the retained burst only (`AsyncFleet.start`, "
        "restoring the caller's setting): 10,000 nodes went from 2.38 s to 2.06 s between full runs; the "
        "rest is the decode, ordering and validation the contract asks for, in Python."
    ),
    "fan-out": (
        "each of the 2,000 receipts (`accepted` + `ok`) is decoded, schema-validated and routed to the "
        "broadcast by command id; the simulated nodes, all on one event loop, decode and validate the "
        "envelope and publish two JSON receipts each, where the floor's clients echo bytes. The "
        "broadcast's bookkeeping used to sort every outcome on every receipt (O(N²)); it now keeps a tally. "
        "The schema fast path made envelope and receipt validation cheaper and the agent no longer "
        "starts a second task per command, but neither moved the figure beyond run-to-run noise "
        "(295, 299, 285 ms over three full runs); this path has not been profiled further."
    ),
    "telemetry ingestion": (
        "the floor counts messages; the console decodes each sample, checks it is a finite number, "
        "stores it and appends it to the node's bounded history, and emits a change event. The shared "
        "decoder, the topic fast path and skipping the per-message `asyncio.Event` (made only when a "
        "`wait_for` is waiting) cut the model's own cost; the rest is the `Inbound` and event objects per "
        "message in Python."
    ),
    "`devfleet --help`": (
        "the floor is a bare interpreter printing an argparse help (~20 ms is Python's own start-up). "
        "Typing, dataclasses, logging, pathlib and json are off the help path (`TYPE_CHECKING = False` blocks, the handlers' `Context` in a module "
        "loaded on first use, imports inside handlers): 53.9 → 38.0 ms between full runs, output unchanged. `python -X "
        "importtime` now shows 14.8 ms for `devfleet_command.cli` and everything it imports, of which "
        "argparse (which the floor imports too) is 11.6 ms; building the parser again in a warm process "
        "takes ~3 ms. Where the rest of the gap goes (the console-script wrapper, the editable installs' "
        "path entries, building ~30 subparsers that each copy the global options) was not profiled "
        "further in this round."
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
    if target == "≤ 1.5×":
        return None if row["ratio"] is None else row["ratio"] <= 1.5
    if target.startswith("≤ ") and target.endswith(row["unit"]):
        return bool(row["value"] <= float(target[2:].split()[0]))
    return None


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
        "devfleet costs more. Targets: every ratio ≤ 1.5; agent idle RSS ≤ 40 MB; idle CPU ≤ 0.5 %.",
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
        "- **Round trip**: `AsyncFleet.call(node, 'ping')` against a real `devfleet-agent` process, one at a "
        "time after a warm-up; the console waits for the broker's PUBACK of the command, then for the "
        "`ok` receipt (the agent also sends `accepted` first). Floor: a raw requester publishes QoS 1 to a "
        "raw responder process that answers twice at QoS 1 (like `accepted` + `ok`).",
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
        "- **Footprint**: `devfleet-agent` with the default config, and `bench/floors.py agent` (bare paho "
        "with its network thread + psutil: birth, heartbeat every 10 s, cpu/memory/disk every 30 s) side "
        "by side; CPU from `/proc/PID/stat` over the idle window, RSS from `/proc/PID/status`.",
        "- **Start-up**: median wall time of fresh interpreters: `python -c 'import devfleet_agent.agent'` "
        "versus `import paho.mqtt.client, psutil`; `devfleet --help` versus an argparse `--help`.",
        "- **Memory per node**: `tracemalloc` around a `FleetModel` fed each node's births, one heartbeat "
        "and three samples. Floor: a dict holding the decoded last payload of every topic.",
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
