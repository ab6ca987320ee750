"""The README's five-minute tour, run exactly as written.

Every command line of the tour's ``sh`` blocks and its Python snippet are read
from README.md here, so the README and this test cannot drift. Only the broker's
address is rewritten (``192.168.1.10`` → this test's private mosquitto). The
agents are real subprocesses started by the README's own ``devfleet-agent``
lines; the console is the real ``devfleet`` executable.

What the test adds around the tour, and why:
- ``pip install`` lines are not run (the packages are installed in this
  environment; ``test_install.py`` runs the Install section's lines);
- each agent gets its own ``DEVFLEET_DATA_DIR``/``DEVFLEET_STATE_DIR`` and a
  private ``HOME`` (environment, not command line), so nothing leaves tmp;
- an ``old-node`` agent is started and stopped first, so ``purge old-node`` has
  a removed node to clear;
- the commands that run until Ctrl-C (``watch``, ``logs -f``) and
  ``mosquitto_sub`` are stopped once they showed what the README promises.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from devfleet_command import Fleet

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"
UNTIL_CTRL_C = {("devfleet", "watch"), ("devfleet", "logs")}


def tour_section() -> str:
    text = README.read_text()
    start = text.index("## Five-minute tour")
    return text[start : text.index("\n## ", start + 1)]


def tour_blocks() -> list[tuple[str, str]]:
    """``(language, body)`` of every code block of the tour, in order."""
    return re.findall(r"```(sh|python|toml)\n(.*?)```", tour_section(), re.S)


def commands(block: str) -> list[list[str]]:
    """The command lines of a ``sh`` block, split like a shell, comments dropped;
    output samples (lines that start with a topic) are not commands."""
    out = []
    for line in block.splitlines():
        if not line.strip() or line.startswith("nodes/"):
            continue
        out.append(shlex.split(line, comments=True))
    return out


def rewrite(argv: list[str], broker: Any) -> list[str]:
    """Point the README's broker address (192.168.1.10) at the test broker."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "192.168.1.10" and argv[i - 1] == "-h":  # mosquitto_sub -h HOST
            out += ["127.0.0.1", "-p", str(broker.port)]
        elif arg == "192.168.1.10" and argv[i - 1] == "--broker":  # devfleet-agent --broker HOST
            out.append(broker.url)
        else:
            out.append(arg.replace("mqtt://192.168.1.10:1883", broker.url))
    assert "192.168.1.10" not in " ".join(out), f"a broker address left unrewritten in {argv}"
    return out


class Tour:
    """Runs the tour's lines against one broker and keeps what they started."""

    def __init__(self, broker: Any, tmp: Path) -> None:
        self.broker = broker
        self.tmp = tmp
        bindir = str(Path(sys.executable).parent)
        self.env = {
            **os.environ,
            "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(tmp / "home"),
            "COLUMNS": "200",
        }
        self.env.pop("DEVFLEET_BROKER", None)
        self.agents: list[subprocess.Popen[str]] = []
        self.transcript: list[str] = []

    def agent(self, argv: list[str]) -> None:
        name = argv[argv.index("--name") + 1]
        data = self.tmp / "agents" / name
        env = {**self.env, "DEVFLEET_DATA_DIR": str(data), "DEVFLEET_STATE_DIR": str(data / "actors")}
        log = (self.tmp / f"{name}.log").open("w")
        self.agents.append(subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, text=True))
        with Fleet.connect(self.broker.url) as fleet:
            fleet.wait_for(
                lambda m: (n := m.get(name)) is not None and n.online and n.cfg is not None, timeout=30
            )

    def run(self, argv: list[str], timeout: float = 120) -> str:
        proc = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        self.transcript.append(f"$ {shlex.join(argv)}\n{proc.stdout}{proc.stderr}")
        assert proc.returncode == 0, (
            f"{shlex.join(argv)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
        )
        assert "Traceback" not in proc.stderr
        return proc.stdout

    def until_ctrl_c(self, argv: list[str], shows: str) -> str:
        """Run on a terminal until the output contains ``shows``, then Ctrl-C."""
        master, slave = pty.openpty()
        proc = subprocess.Popen(argv, env=self.env, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT)
        os.close(slave)
        text = ""
        try:
            deadline = time.monotonic() + 30
            while shows not in text and (left := deadline - time.monotonic()) > 0:
                if select.select([master], [], [], left)[0]:
                    try:
                        text += os.read(master, 65536).decode("utf-8", "replace")
                    except OSError:
                        break
            assert shows in text, f"{shlex.join(argv)} never showed {shows!r}: {text!r}"
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=10)
            while select.select([master], [], [], 0.2)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                text += chunk.decode("utf-8", "replace")
        finally:
            proc.kill()
            os.close(master)
        self.transcript.append(f"$ {shlex.join(argv)}  (Ctrl-C)\n{text}")
        assert code in (0, 130), f"{shlex.join(argv)} ended with {code} on Ctrl-C: {text!r}"
        assert "Traceback" not in text, text
        return text

    def mosquitto_sub(self, argv: list[str], samples: list[str]) -> None:
        """Run it until every sample line's topic came, with the keys the sample shows."""
        proc = subprocess.Popen(argv, env=self.env, stdout=subprocess.PIPE, text=True)
        want = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in samples}
        seen: dict[str, str] = {}
        try:
            deadline = time.monotonic() + 40  # the heartbeat comes every 10 s
            assert proc.stdout is not None
            while set(want) - set(seen) and time.monotonic() < deadline:
                if select.select([proc.stdout], [], [], deadline - time.monotonic())[0]:
                    topic, _, payload = proc.stdout.readline().rstrip("\n").partition(" ")
                    if topic in want:
                        seen[topic] = payload
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        assert set(seen) == set(want), f"mosquitto_sub never showed {set(want) - set(seen)}"
        for topic, sample in want.items():
            shown = re.findall(r'"(\w+)":', sample)
            actual = json.loads(seen[topic])
            assert set(shown) <= set(actual), (
                f"{topic}: the README shows keys {shown}, the node sends {sorted(actual)}"
            )

    def close(self) -> None:
        for proc in self.agents:
            proc.send_signal(signal.SIGTERM)
        for proc in self.agents:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def tour(fresh_broker: Any, tmp_path: Path) -> Any:
    t = Tour(fresh_broker, tmp_path)
    try:
        yield t
    finally:
        t.close()
        print("\n".join(t.transcript))


def test_the_readme_tour_runs_as_written(tour: Tour, fresh_broker: Any) -> None:
    blocks = tour_blocks()
    assert [lang for lang, _ in blocks].count("python") == 1, "the tour has one Python snippet"
    # a node that was removed: purge old-node clears what it left
    tour.agent(["devfleet-agent", "--broker", fresh_broker.url, "--name", "old-node"])
    old = tour.agents.pop()
    old.send_signal(signal.SIGTERM)
    old.wait(timeout=15)

    ran: list[str] = []
    for lang, body in blocks:
        if lang == "toml":
            continue  # the agent settings file: test_readme.py loads it
        if lang == "python":
            code = body.replace("mqtt://192.168.1.10:1883", fresh_broker.url)
            assert "192.168.1.10" not in code
            proc = subprocess.run(
                [sys.executable, "-c", code], env=tour.env, capture_output=True, text=True, timeout=120
            )
            assert proc.returncode == 0, proc.stderr
            assert "rpi-livingroom online" in proc.stdout and "'pong': True" in proc.stdout, proc.stdout
            ran.append("python snippet")
            continue
        samples = [line for line in body.splitlines() if line.startswith("nodes/")]
        for argv in commands(body):
            if not argv:
                continue
            ran.append(shlex.join(argv))
            if argv[:2] == ["pip", "install"]:
                continue  # installed already: see the module docstring
            argv = rewrite(argv, fresh_broker)
            if argv[0] == "export":
                key, _, value = argv[1].partition("=")
                tour.env[key] = value
            elif argv[0] == "devfleet-agent":
                tour.agent(argv)
            elif argv[0] == "mosquitto_sub":
                tour.mosquitto_sub(argv, samples)
            elif tuple(argv[:2]) in UNTIL_CTRL_C:
                tour.until_ctrl_c(argv, "rpi-livingroom" if argv[1] == "watch" else "Ctrl-C to stop")
            else:
                out = tour.run(argv, timeout=900 if argv[1] == "install" else 120)
                check_answer(argv, out)
    # the tour covers what the README says it does
    for expected in ("devfleet ls", "devfleet watch", "devfleet spawn", "devfleet migrate", "python snippet"):
        assert any(line.startswith(expected) for line in ran), f"{expected} not in the tour"


def check_answer(argv: list[str], out: str) -> None:
    """What the commands whose answer the README describes print."""
    verb = argv[1]
    if verb == "ls":
        assert re.search(r"^rpi-livingroom +online", out, re.M), out
    elif verb == "ping":
        assert re.search(r"^rpi-livingroom: ok in \d+\.\d ms$", out, re.M), out
    elif verb == "purge":
        assert out.startswith("old-node: purged "), out
    elif verb == "task":
        assert json.loads(out)["node"] == "rpi-livingroom", out
    elif verb == "migrate":
        assert out.strip() == "temp-sensor-agent: migrated from rpi-livingroom to rpi-bedroom", out
    elif verb == "actors":
        assert re.search(r"^rpi-livingroom +temp-sensor-agent", out, re.M), out
