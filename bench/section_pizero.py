"""The agent on an emulated Raspberry Pi Zero (issue 20): ``python3 dev.py bench --pi-zero``.

Opt-in (``OPT_IN``): the default run skips it, ``--pi-zero`` (or ``--only pizero``)
runs it alone and merges its rows into the existing results. The userland and the
tools are :mod:`armel`'s; this module measures, on one private mosquitto, the same
things for the emulated agent (``qemu-arm -cpu arm1176``, Debian armel) and for the
agent on this host:

- import time of ``devfleet_agent.agent`` (fresh interpreter, median), next to
  ``import paho.mqtt.client, psutil`` and an empty interpreter;
- guest instructions of those imports (the qemu plugin; repeatable where wall time
  under emulation is not);
- time from starting ``devfleet-agent`` to its ``meta`` arriving at a subscriber;
- idle RSS after the idle window: the qemu process's own ``VmRSS`` and, split out of
  ``/proc/PID/smaps``, the part inside the guest's address space (what the guest
  itself has resident; the rest is qemu: translated code, its heap);
- guest instructions per idle minute (default config: heartbeat every 10 s,
  telemetry every 30 s), the host's counted the same way under ``qemu-x86_64``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import armel
from measure import CLK_TCK, proc_stat
from rawmqtt import RawClient

from devfleet_base.testing.broker import MosquittoBroker

TITLE = "Raspberry Pi Zero (emulated)"
OPT_IN = True  # minutes of emulation: only with --pi-zero / --only pizero
COMMAND = "python3 dev.py bench --pi-zero"

IMPORTS = {
    "agent": "import devfleet_agent.agent",
    "floor": "import paho.mqtt.client, psutil",
    "bare": "pass",
}
# A 32-bit guest lives in one 4 GiB window of the qemu process (from guest_base).
GUEST_SPAN = 1 << 32
WORK = "/tmp/bench-run"  # inside the rootfs (made afresh each run)


# ---- one interpreter run -------------------------------------------------------------------


def _wall(cmd: list[str], env: dict[str, str] | None, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _counted(cmd: list[str], env: dict[str, str] | None, counter: Path) -> int:
    counter.unlink(missing_ok=True)
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return _read_count(counter)


def _read_count(counter: Path) -> int:
    return int(counter.read_text().split()[0])


def imports(repeats: int, log: Any) -> dict[str, Any]:
    """Wall time (median of ``repeats``) and instructions of each import, both machines."""
    genv, henv = armel.guest_env(), armel.host_env()
    counter = armel.host_path(f"{WORK}/imports.count")
    out: dict[str, Any] = {}
    for key, code in IMPORTS.items():
        log(f"  import {key} ({code!r}): a warm-up each, emulated x{repeats}, host x{repeats}, then counted")
        _wall(armel.emulated(["-c", code]), genv, 1)  # any bytecode not yet compiled is written now
        _wall([sys.executable, "-c", code], henv, 1)
        out[f"emulated_{key}_seconds"] = _wall(armel.emulated(["-c", code]), genv, repeats)
        out[f"host_{key}_seconds"] = _wall([sys.executable, "-c", code], henv, repeats)
        emulated = armel.emulated(["-c", code], count_into=f"{WORK}/imports.count")
        out[f"emulated_{key}_instructions"] = _counted(emulated, genv, counter)
        out[f"host_{key}_instructions"] = _counted(armel.counted_native(["-c", code], counter), henv, counter)
    return out


# ---- one agent run -------------------------------------------------------------------------


def guest_base(log_file: Path) -> int | None:
    """The guest's base address in the qemu process, from ``-d page``'s log (None: not found)."""
    with contextlib.suppress(OSError):
        for line in log_file.read_text(errors="replace").splitlines():
            if line.startswith("guest_base"):
                return int(line.split()[-1], 16)
    return None


def split_rss(pid: int, base: int) -> tuple[int, int]:
    """Resident bytes of ``pid`` inside ``[base, base + 4 GiB)`` (the guest's) and outside (qemu's)."""
    inside = outside = 0
    start = 0
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(None, 1)[0]
        if "-" in head and not head.endswith(":"):
            start = int(head.split("-")[0], 16)
        elif head == "Rss:":
            kb = int(line.split()[1]) * 1024
            if base <= start < base + GUEST_SPAN:
                inside += kb
            else:
                outside += kb
    return inside, outside


async def agent_run(
    broker: Any, name: str, cmd: list[str], env: dict[str, str] | None, window: float, data_dir: str,
    *, counter: Path | None = None, page_log: Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Start ``cmd`` (a python command line; the agent's module and options are added),
    time its birth, let it idle for ``window`` seconds after its first heartbeat, then
    read RSS, CPU and (``counter``, a host path) the instruction count over the window.
    ``data_dir`` is the agent's, as the process sees it."""
    seen: dict[str, float] = {}  # topic: when it first arrived

    def arrived(topic: str, payload: bytes, retain: bool) -> None:
        seen.setdefault(topic, time.monotonic())

    sub = RawClient(f"bench-{name}", arrived)
    await sub.connect(broker.host, broker.port)
    await sub.subscribe([(f"nodes/{name}/#", 0)])
    options = ["-m", "devfleet_agent", "--broker", broker.host, "--port", str(broker.port), "--name", name,
               "--data-dir", data_dir, "--loglevel", "WARNING"]  # fmt: skip
    stderr = armel.host_path(f"{WORK}/{name}.stderr").open("w")
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *cmd, *options, env=env, stdout=subprocess.DEVNULL, stderr=stderr
    )
    try:
        meta, beat = f"nodes/{name}/meta", f"nodes/{name}/heartbeat"
        await _wait(lambda: meta in seen, proc, 900)
        birth = seen[meta] - t0
        await _wait(lambda: beat in seen, proc, 900)
        await asyncio.sleep(2.0)  # the start-up burst settles before the window opens
        cpu0 = proc_stat(proc.pid)[0]
        count0 = _read_count(counter) if counter else 0
        w0 = time.monotonic()
        await asyncio.sleep(window)
        elapsed = time.monotonic() - w0
        count1 = _read_count(counter) if counter else 0
        cpu1, rss, hwm = proc_stat(proc.pid)
        base = guest_base(page_log) if page_log else None
        guest, qemu = split_rss(proc.pid, base) if base is not None else (None, None)
    finally:
        sub.close()
        if proc.returncode is None:
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        stderr.close()
    return {
        "birth_seconds": birth,
        "rss": rss,
        "peak_rss": hwm,
        "guest_rss": guest,
        "qemu_rss": qemu,
        "cpu_percent": 100 * (cpu1 - cpu0) / elapsed,
        "cpu_ticks": round((cpu1 - cpu0) * CLK_TCK),
        "instructions_per_minute": (count1 - count0) * 60 / elapsed if counter else None,
        "window": elapsed,
    }


async def _wait(predicate: Any, proc: asyncio.subprocess.Process, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.returncode is not None:
            raise RuntimeError(
                f"the agent exited with {proc.returncode} (its .stderr is in {armel.host_path(WORK)})"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"no birth from the agent in {timeout:.0f} s")
        await asyncio.sleep(0.05)


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# ---- the section ---------------------------------------------------------------------------


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


async def run(quick: bool, log: Any, row: Any) -> dict[str, Any]:
    # A terminated run unwinds like Ctrl-C: its mounts and binfmt entry are removed.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return await _run(quick, log, row)
    finally:
        signal.signal(signal.SIGTERM, previous)


async def _run(quick: bool, log: Any, row: Any) -> dict[str, Any]:
    started = time.monotonic()
    load_start = _loadavg()
    armel.ensure_tools(log)
    setup: dict[str, Any] = {"rootfs": armel.ensure_rootfs(log)}
    setup["install"] = armel.ensure_agent(log)
    armel.install_qemu(log)
    setup_seconds = time.monotonic() - started
    repeats, window = (1, 10.0) if quick else (3, 60.0)
    work = armel.host_path(WORK)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    genv = armel.guest_env()
    agents: dict[str, Any] = {}
    with armel.Mounts():
        log("import times and instructions")
        imp = imports(repeats, log)
        with MosquittoBroker() as broker:
            runs = {  # name: (command, environment, counter file as a guest path)
                "emulated": (armel.emulated([], page_log=f"{WORK}/qemu-page.log"), genv, None),
                "emulated_counted": (armel.emulated([], count_into=f"{WORK}/idle.count"), genv, f"{WORK}/idle.count"),
                "host": ([sys.executable], armel.host_env(), None),
                "host_counted": (armel.counted_native([], armel.host_path(f"{WORK}/idle-host.count")), armel.host_env(),
                                 f"{WORK}/idle-host.count"),
            }  # fmt: skip
            for key, (cmd, env, counter) in runs.items():
                log(f"agent, {key}: birth, then {window:.0f} s idle")
                name = f"pz-{key.replace('_', '-')}"
                data = f"{WORK}/data-{name}"
                armel.host_path(data).mkdir()
                agents[key] = await agent_run(
                    broker, name, cmd, env, window,
                    data if key.startswith("emulated") else str(armel.host_path(data)),
                    counter=armel.host_path(counter) if counter else None,
                    page_log=armel.host_path(f"{WORK}/qemu-page.log") if key == "emulated" else None,
                )  # fmt: skip
                a = agents[key]
                log(f"  birth {a['birth_seconds']:.2f} s, RSS {a['rss'] / 2**20:.1f} MB"
                    + (f", {a['instructions_per_minute'] / 1e6:.1f} M instructions/min" if counter else ""))  # fmt: skip
    details = {
        "command": COMMAND,
        "started": time.strftime(
            "%Y-%m-%d %H:%M:%S %Z", time.localtime(time.time() - (time.monotonic() - started))
        ),
        "seconds": round(time.monotonic() - started, 1),
        "setup_seconds": round(setup_seconds, 1),
        "load": {"start": load_start, "end": _loadavg()},
        "quick": quick,
        "repeats": repeats,
        "window": window,
        "versions": armel.tool_versions(),
        "cpu": armel.CPU,
        "setup": setup,
        "imports": imp,
        "agents": agents,
    }
    emu, host = agents["emulated"], agents["host"]
    rows = [
        row("Pi Zero (emulated): agent import", imp["emulated_agent_seconds"] * 1e3, "ms",
            imp["emulated_floor_seconds"] * 1e3),
        row("Pi Zero (emulated): agent import, guest instructions", imp["emulated_agent_instructions"] / 1e6, "M",
            imp["emulated_floor_instructions"] / 1e6),
        row("Pi Zero (emulated): agent start to first birth", emu["birth_seconds"], "s", None),
        row("Pi Zero (emulated): agent idle RSS, guest's own", (emu["guest_rss"] or 0) / 2**20, "MB", None,
            target="≤ 40 MB"),
        row("Pi Zero (emulated): agent idle RSS, qemu process", emu["rss"] / 2**20, "MB", None),
        row("Pi Zero (emulated): agent guest instructions per idle minute",
            agents["emulated_counted"]["instructions_per_minute"] / 1e6, "M", None),
    ]  # fmt: skip
    log(f"  host: import {imp['host_agent_seconds'] * 1e3:.0f} ms, birth {host['birth_seconds']:.2f} s, "
        f"RSS {host['rss'] / 2**20:.1f} MB")  # fmt: skip
    return {"rows": rows, "details": details}


# ---- docs/benchmarks.md --------------------------------------------------------------------


def _mb(value: float | None) -> str:
    return "–" if value is None else f"{value / 2**20:.1f} MB"


def report(d: dict[str, Any]) -> list[str]:
    """The "Raspberry Pi Zero (emulated)" section of docs/benchmarks.md from ``details``."""
    imp, a, v = d["imports"], d["agents"], d["versions"]
    emu, host = a["emulated"], a["host"]
    rootfs, install = d["setup"]["rootfs"], d["setup"]["install"]

    def ratio(x: float, y: float) -> str:
        return f"{x / y:.1f}×" if y else "–"

    def ms(key: str) -> tuple[str, str, str]:
        e, h = imp[f"emulated_{key}_seconds"], imp[f"host_{key}_seconds"]
        return f"{e * 1e3:,.0f} ms", f"{h * 1e3:,.0f} ms", ratio(e, h)

    def minstr(key: str) -> tuple[str, str]:
        return (
            f"{imp[f'emulated_{key}_instructions'] / 1e6:,.0f} M",
            f"{imp[f'host_{key}_instructions'] / 1e6:,.0f} M",
        )

    table = [
        (f"`import devfleet_agent.agent`, wall (median of {d['repeats']})", *ms("agent")),
        ("`import paho.mqtt.client, psutil` (the floor), wall", *ms("floor")),
        ("empty interpreter (`python -c pass`), wall", *ms("bare")),
        ("`import devfleet_agent.agent`, instructions", *minstr("agent"), "–"),
        ("`import paho.mqtt.client, psutil`, instructions", *minstr("floor"), "–"),
        ("empty interpreter, instructions", *minstr("bare"), "–"),
        ("start to first birth (`meta` at a subscriber)", f"{emu['birth_seconds']:.2f} s",
         f"{host['birth_seconds']:.2f} s", ratio(emu["birth_seconds"], host["birth_seconds"])),
        (f"idle RSS after {d['window']:.0f} s, the process (`VmRSS`)", _mb(emu["rss"]), _mb(host["rss"]), "–"),
        ("… of which the guest's own (inside its 4 GiB window)", _mb(emu["guest_rss"]), "–", "–"),
        ("… of which qemu's (translated code, its heap, its binary)", _mb(emu["qemu_rss"]), "–", "–"),
        ("instructions per idle minute", f"{a['emulated_counted']['instructions_per_minute'] / 1e6:,.1f} M",
         f"{a['host_counted']['instructions_per_minute'] / 1e6:,.1f} M", "–"),
        ("CPU over the idle window (host time spent emulating)", f"{emu['cpu_percent']:.2f} %",
         f"{host['cpu_percent']:.2f} %", "–"),
    ]  # fmt: skip
    made = "cached from an earlier run" if rootfs["cached"] else "made in this run"
    lines = [
        "",
        "## Raspberry Pi Zero (emulated)",
        "",
        f"Run: {d['started']}, {d['seconds']:.0f} s ({d['setup_seconds']:.0f} s of it making or checking the "
        f"userland){', quick run' if d['quick'] else ''}; load average {d['load']['start']} at the start, "
        f"{d['load']['end']} at the end (2 cores shared with other jobs). Reproduce with `{d['command']}`.",
        "",
        f"The agent in a Debian bookworm **armel** userland (ARMv5TE+, which an ARMv6 Pi Zero runs; Debian's "
        f"armhf is ARMv7) under `qemu-arm -cpu {d['cpu']}` (the Pi Zero's ARM1176), next to the same agent on "
        f"this x86_64 host, on one private mosquitto. qemu {v['qemu']}, debootstrap {v['debootstrap']}, "
        f"python3.11 {v['python3.11 (armel)']} and gcc-12 {v['gcc-12 (armel)']} from the armel archive.",
        "",
        "| figure | Pi Zero (emulated) | this host | emulated ÷ host |",
        "| --- | ---: | ---: | ---: |",
        *[f"| {name} | {e} | {h} | {r} |" for name, e, h, r in table],
        "",
        "Making the userland (once; kept in `.bench/pizero/`, git-ignored): "
        f"debootstrap stage 1 {rootfs['stage1_seconds']:.0f} s on the host, stage 2 "
        f"{rootfs['stage2_seconds']:.0f} s under qemu ({made}). Installing the agent in its venv "
        f"(`python3 -m venv --copies`): venv {install['venv_seconds']:.0f} s; **psutil is the only dependency "
        f"that needs a compiler** (no armv6 wheel on PyPI: its sdist builds with the armel `gcc` and "
        f"`python3-dev`) and took {install['psutil_build_seconds']:.0f} s to build and install under emulation; "
        f"the pure-Python ones ({', '.join(install.get('dependencies', ['?'])[1:])}) "
        f"{install['deps_seconds']:.0f} s; the two devfleet wheels "
        f"{install['agent_seconds']:.0f} s (installed again every run). On a real Pi Zero, piwheels or "
        "Debian's `python3-psutil` spare the compiler.",
        "",
        "How it is measured, and what emulation does not tell:",
        "",
        "- **Instructions** are guest instructions counted by a qemu TCG plugin (`bench/pizero/insncount.c`, "
        "built with the host's cc and loaded into Debian's dynamic `qemu-arm`: the static build cannot load "
        "plugins and Debian ships none). They repeat from run to run where wall time under emulation does not. "
        "The host column is counted the same way under `qemu-x86_64` (this VM exposes no hardware counters "
        "to `perf`, and valgrind cannot run inside qemu); ARM and x86_64 instructions are not the same unit, "
        "so compare each column with itself (agent import against the floor) more than across.",
        "- **Bytecode**: both sides import compiled bytecode (pip compiled the guest's at install; a "
        "warm-up run writes the host's first). This machine sets `PYTHONDONTWRITEBYTECODE=1` for every "
        "process, which the section clears for its own runs: otherwise the host recompiles every module "
        "from source on each start (measured by hand: 712 M instead of 326 M instructions for "
        "`import paho.mqtt.client, psutil`; the core section's import figures carry that cost).",
        "- **Wall times** (imports, birth) are of emulation on this host (JIT-translated ARM code on an x86 "
        "core), not of a 1 GHz ARM1176: they are an order of magnitude, not a prediction. At one instruction "
        "per cycle or worse (the ARM1176 is single-issue, 16 KB caches, no L2), the instruction counts above "
        "give a lower bound for the real time: N M instructions take at least N ms at 1 GHz.",
        "- **RSS**: qemu-user's own memory (the translation cache, its heap and binary) is in the process's "
        "`VmRSS`; the guest's own resident set is split out of `/proc/PID/smaps` (the pages inside the "
        "guest's 4 GiB window, whose base `-d page` logs), which is what the Pi's kernel would count, page "
        "size and libraries being the same.",
        "- **armel is not Raspberry Pi OS**: Debian's armel is soft-float (floating point in library "
        "calls, the Pi's VFP unused) and built for ARMv5TE; Raspberry Pi OS (armhf for ARMv6 with VFP) runs "
        "the same Python in somewhat fewer instructions where it uses floats (telemetry, JSON numbers).",
        "- Not told by emulation: memory bandwidth and cache behaviour, SD card I/O (imports read hundreds "
        "of small files: a cold start on a class 10 card is slower), the real clock and its throttling, and "
        "the 512 MB limit itself (nothing here constrains memory). Measured on the device, these would "
        "replace the wall times above.",
    ]
    return lines
