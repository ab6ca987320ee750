"""devfleet benchmarks: every figure next to its raw-paho floor, measured in the same run.

    python3 dev.py bench               # the full run (nox -s bench); writes the files below
    python bench/run.py --quick        # small N, short idle window (the smoke test uses it)
    python3 dev.py bench -- --only ros # one section again, merged into the existing results
    python3 dev.py bench --pi-zero     # the agent on an emulated Pi Zero (minutes; opt-in, see below)

Sections: the core figures (discovery, fan-out, ingestion, ``devfleet --help``,
memory, simulator capacity) live here as ``core``; the agent's own (command round
trip, its hop breakdown, idle footprint beside Wactorz, import time) in
``bench/section_agent.py``; every other section is
a module ``bench/section_{name}.py`` found at run time, with ``TITLE`` and
``async def run(quick: bool, log, row) -> dict`` returning ``{"rows": [...],
"details": {...}}`` (``row`` is :func:`_row`). A section with ``OPT_IN = True``
(``pizero``: qemu and a Debian armel userland) is left out of the default run and runs
when named; one with ``report(details) -> list[str]`` adds its own part to the markdown.

Writes ``bench/results.json`` and ``docs/benchmarks.md`` (both generated; commit
them from a full run). One private mosquitto serves every measurement.
Benchmarks are not pass/fail: targets are reported, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import measure
from report import markdown

from devfleet_base.testing.broker import MosquittoBroker

ROOT = Path(__file__).resolve().parent.parent

FULL = {
    "discovery": (1_000, 10_000),
    "discovery_repeats": 3,
    "fanout_nodes": 1_000,
    "fanout_repeats": 5,
    "ingest_messages": 100_000,
    "ingest_nodes": 1_000,
    "import_repeats": 7,
    "memory_nodes": 10_000,
    "capacity_nodes": 5_000,
    "capacity_processes": 2,
    "capacity_window": 30.0,
}
QUICK = {
    "discovery": (50, 200),
    "discovery_repeats": 1,
    "fanout_nodes": 30,
    "fanout_repeats": 2,
    "ingest_messages": 3_000,
    "ingest_nodes": 50,
    "import_repeats": 2,
    "memory_nodes": 200,
    "capacity_nodes": 60,
    "capacity_processes": 2,
    "capacity_window": 3.0,
}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem / 2**30, 1),
        "uname": " ".join((*platform.uname()[:3], platform.uname().machine)),
        "python": platform.python_version(),
        "paho": _version("paho-mqtt"),
        "mosquitto": _mosquitto_version(),
    }


def _version(dist: str) -> str:
    from importlib.metadata import version

    try:
        return version(dist)
    except Exception:
        return "?"


def _mosquitto_version() -> str:
    import subprocess

    from devfleet_base.testing.broker import find_mosquitto

    exe = find_mosquitto()
    if exe is None:
        return "?"
    out = subprocess.run([exe, "-h"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0].replace("mosquitto version ", "") if out else "?"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _row(
    name: str, value: float, unit: str, floor: float | None, *, lower_is_better: bool = True, target: str = ""
) -> dict[str, Any]:
    ratio = None
    if floor:
        ratio = value / floor if lower_is_better else floor / value
    return {"name": name, "value": value, "unit": unit, "floor": floor, "ratio": ratio, "target": target}


def sections() -> dict[str, Any]:
    """Every extra section module (``bench/section_*.py``), by name, sorted."""
    found = {}
    for path in sorted(Path(__file__).resolve().parent.glob("section_*.py")):
        name = path.stem.removeprefix("section_")
        found[name] = importlib.import_module(path.stem)
    return found


def default_sections() -> list[str]:
    """What a run without ``--only`` runs: ``core`` and every section not marked ``OPT_IN``."""
    return ["core", *(name for name, mod in sections().items() if not getattr(mod, "OPT_IN", False))]


def section_reports(result: dict[str, Any]) -> list[str]:
    """The markdown that sections with a ``report`` function add for their details."""
    lines: list[str] = []
    for name, mod in sections().items():
        if hasattr(mod, "report") and name in result.get("details", {}):
            lines += mod.report(result["details"][name])
    return lines


async def run_sections(names: list[str], quick: bool, log: Any) -> dict[str, Any]:
    """Run the named sections (``core`` included when named); rows tagged by section."""
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    loads: dict[str, str] = {}
    failed: list[str] = []
    extra = sections()
    for name in names:
        if name == "core":
            core = await run_all(QUICK if quick else FULL, log)
            rows += [{**r, "section": "core"} for r in core["rows"]]
            details.update(core["details"])
            loads.update(core["load"])
            continue
        log(f"section {name}: {extra[name].TITLE}")
        try:
            out = await extra[name].run(quick, log, _row)
        except Exception as exc:
            if quick:
                raise  # the smoke test: a broken section fails it
            # A full run takes many minutes: one section's failure must not lose the others.
            log(f"section {name} FAILED ({type(exc).__name__}: {exc}); its last figures stay")
            failed.append(name)
            continue
        rows += [{**r, "section": name} for r in out["rows"]]
        details[name] = out["details"]
        loads[f"after {name}"] = loadavg()
    return {"rows": rows, "details": details, "load": loads, "failed": failed}


async def run_all(sizes: dict[str, Any], log: Any) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    loads: dict[str, str] = {"start": loadavg()}
    # max_queued_messages 0 = no limit (mosquitto 2.0.11 accepts it): a load test must not
    # have the broker drop QoS 1 messages to a subscriber that is busy for a moment.
    with MosquittoBroker(extra_config=["max_queued_messages 0", "max_inflight_messages 0"]) as broker:
        loaded = 0
        for n in sizes["discovery"]:
            log(f"discovery of {n} nodes")
            names = [f"disc-{i:05d}" for i in range(loaded, n)]
            await measure.preload(broker, names)
            loaded = n
            d = await measure.discovery(broker, n, 4 * n, sizes["discovery_repeats"])
            details[f"discovery_{n}"] = d
            rows.append(_row(f"discovery: fleet model holds {n:,} retained nodes", d["seconds"], "s",
                             d["floor_seconds"], target="≤ 1.2×"))  # fmt: skip
        loads["after discovery"] = loadavg()

    # A broker of its own for each load test: no retained fleet of 10,000 in the way.
    with MosquittoBroker(extra_config=["max_queued_messages 0", "max_inflight_messages 0"]) as broker:
        log(f"fan-out to {sizes['fanout_nodes']} simulated nodes")
        f = await measure.fanout(broker, sizes["fanout_nodes"], sizes["fanout_repeats"])
        details["fanout"] = f
        rows.append(_row(f"fan-out: fleet-wide ping, {f['nodes']:,} nodes, every ok receipt in", f["seconds"] * 1e3,
                         "ms", f["floor_seconds"] * 1e3, target="≤ 1.2×"))  # fmt: skip
        loads["after fan-out"] = loadavg()
    with MosquittoBroker(extra_config=["max_queued_messages 0", "max_inflight_messages 0"]) as broker:
        log("telemetry ingestion")
        ing = await measure.ingestion(broker, sizes["ingest_messages"], sizes["ingest_nodes"])
        details["ingestion"] = ing
        rows.append(_row("telemetry ingestion into the fleet model", ing["rate"], "msg/s", ing["floor_rate"],
                         lower_is_better=False, target="≤ 1.2×"))  # fmt: skip
        loads["after ingestion"] = loadavg()

    log("start-up times")
    st = measure.startup(sizes["import_repeats"])
    details["startup"] = st
    rows.append(_row("`devfleet --help`", st["help"] * 1e3, "ms", st["floor_help"] * 1e3, target="≤ 1.5×"))

    log(f"memory per tracked node at {sizes['memory_nodes']} nodes")
    mem = measure.memory_per_node(sizes["memory_nodes"])
    details["memory"] = mem
    rows.append(_row(f"console memory per tracked node ({mem['nodes']:,} nodes)", mem["bytes"] / 1024, "KB",
                     mem["floor_bytes"] / 1024, target="≤ 1.2×"))  # fmt: skip
    rows.append(_row("… the same after every node's meta, state and cfg were read (decoded)", mem["bytes_read"] / 1024,
                     "KB", mem["floor_bytes"] / 1024, target="≤ 1.2×"))  # fmt: skip

    with MosquittoBroker(extra_config=["max_queued_messages 0", "max_inflight_messages 0"]) as broker:
        log(f"simulator capacity: {sizes['capacity_nodes']} nodes")
        details["sim_capacity"] = await measure.sim_capacity(
            broker, sizes["capacity_nodes"], sizes["capacity_processes"], sizes["capacity_window"]
        )
    loads["end"] = loadavg()
    return {"rows": rows, "details": details, "load": loads}


def carry_opt_in(
    previous: dict[str, Any], result: dict[str, Any], names: list[str], opt_in: list[str]
) -> None:
    """Into a full run's ``result`` (sections ``names``), the ``opt_in`` sections' rows and
    details from ``previous``, each row where it stood; rows of sections that are neither
    (renamed or removed since) are dropped."""
    rows = merge_rows(previous.get("rows", []), result["rows"], names)
    result["rows"] = [r for r in rows if r.get("section", "core") in (*names, *opt_in)]
    kept = {n: previous["details"][n] for n in opt_in if n in previous.get("details", {})}
    result["details"] = {**result["details"], **kept}


def merge_rows(
    previous: list[dict[str, Any]], new: list[dict[str, Any]], names: list[str]
) -> list[dict[str, Any]]:
    """The previous rows with the named sections' rows replaced by ``new``, each section
    where it stood (a section not there before goes last)."""
    fresh: dict[str, list[dict[str, Any]]] = {}
    for r in new:
        fresh.setdefault(r.get("section", "core"), []).append(r)
    out: list[dict[str, Any]] = []
    placed: set[str] = set()
    for r in previous:
        section = r.get("section", "core")
        if section not in names:
            out.append(r)
        elif section not in placed:
            out += fresh.get(section, [])
            placed.add(section)
    for section in names:
        if section not in placed:
            out += fresh.get(section, [])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small N and a short idle window (smoke test)")
    p.add_argument("--json", default=str(ROOT / "bench" / "results.json"), help="where the JSON goes")
    p.add_argument("--markdown", default=str(ROOT / "docs" / "benchmarks.md"), help="where the table goes")
    p.add_argument("--render", metavar="JSON", help="only write the markdown again from a results file")
    p.add_argument(
        "--only",
        metavar="NAMES",
        help="comma-separated sections to run (core, " + ", ".join(sections()) + "); their rows replace "
        "the same sections' rows in the existing results file",
    )
    p.add_argument(
        "--pi-zero",
        action="store_true",
        help="only the agent on an emulated Raspberry Pi Zero (qemu-arm, Debian armel; minutes, "
        "needs root or qemu-user-static, qemu-user and debootstrap), merged into the existing results",
    )
    args = p.parse_args(argv)
    if args.render:
        result = json.loads(Path(args.render).read_text())
        Path(args.markdown).write_text(markdown(result, section_reports(result)))
        return 0
    if args.pi_zero:
        args.only = ",".join(filter(None, [args.only, "pizero"]))
    known = ["core", *sections()]
    names = default_sections() if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        p.error(f"unknown section {', '.join(unknown)} (known: {', '.join(known)})")
    started = time.time()

    def log(msg: str) -> None:
        print(f"bench [{time.time() - started:6.1f} s, load {loadavg()}]: {msg}", file=sys.stderr, flush=True)

    sizes = QUICK if args.quick else FULL
    result = asyncio.run(run_sections(names, args.quick, log))
    failed = result.pop("failed")
    ran = [n for n in names if n not in failed]
    if args.only and Path(args.json).exists():  # keep the other sections' figures from the last run
        previous = json.loads(Path(args.json).read_text())
        result["rows"] = merge_rows(previous.get("rows", []), result["rows"], ran)
        result["details"] = {**previous.get("details", {}), **result["details"]}
        result["load"] = {**previous.get("load", {}), **result["load"]}
        if all(getattr(sections().get(n), "OPT_IN", False) for n in names):
            # An opt-in section alone (its own run facts are in its details): the main
            # table's run, mode and command stay those of the run that measured it.
            keep = ("mode", "sections", "sizes", "machine", "started", "seconds", "command")
            result.update({k: previous[k] for k in keep if k in previous})
    elif not args.quick and Path(args.json).exists():
        # A full run leaves the opt-in sections out (pizero: minutes under qemu): their last
        # figures stay, dated by their own details, instead of vanishing from the page.
        previous = json.loads(Path(args.json).read_text())
        opt_in = [n for n, module in sections().items() if getattr(module, "OPT_IN", False)]
        carry_opt_in(previous, result, ran, [*opt_in, *failed])
    if "command" not in result:
        result.update(
            mode="quick" if args.quick else "full",
            sections=names,
            sizes={k: list(v) if isinstance(v, tuple) else v for k, v in sizes.items()},
            machine=machine(),
            started=time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
            seconds=round(time.time() - started, 1),
            command="python3 dev.py bench",
        )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
    Path(args.markdown).write_text(markdown(result, section_reports(result)))
    log(f"wrote {args.json} and {args.markdown}")
    if failed:
        log(f"failed sections (their last figures kept): {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
