"""Shared bits of the interop tests: actor programs both runtimes run, and the CLI runner."""

from __future__ import annotations

import time
from typing import Any

import pytest

from devfleet_command.actors import actor_rows
from devfleet_command.cli import main
from devfleet_command.sync import Fleet

# Runs unchanged on a devfleet node and on wactorz-node (both give setup/process/handle_task
# an `agent` with recall/persist/state).
COUNTER = """
async def setup(agent):
    agent.state['n'] = agent.recall('n', 0)

async def process(agent):
    agent.persist('n', agent.recall('n', 0) + 1)

async def handle_task(agent, payload):
    if isinstance(payload, dict) and payload.get('fail'):
        raise RuntimeError('asked to fail')
    return {'n': agent.recall('n', 0), 'echo': payload, 'who': 'counter'}
"""

# A caller: asks the actor named in the task and returns what it answered.
CALLER = """
async def process(agent):
    pass

async def handle_task(agent, payload):
    answer = await agent.send_to(payload['to'], payload['body'], timeout=15)
    return {'answer': answer}
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The devfleet CLI in-process: (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def wait_online(url: str, *names: str, timeout: float = 30) -> None:
    """Until every node is online; a Wactorz node also with its retained manifest (sent
    a moment after its first heartbeat), so a console connecting later knows it."""

    def ready(m: Any) -> bool:
        views = [m.get(n) for n in names]
        return all(v is not None and v.online and (v.meta or v.manifest) for v in views)

    with Fleet.connect(url) as fleet:
        fleet.wait_for(ready, timeout=timeout)


def wait_actor(url: str, node: str, actor: str, *, present: bool = True, timeout: float = 30) -> None:
    """Until the console's actor rows show (or no longer show) ``actor`` on ``node``."""

    def seen(model: Any) -> bool:  # on the console's loop: read the model, never call the fleet
        rows = actor_rows(model, node)
        return any(r["name"] == actor and r.get("state") == "running" for r in rows) == present

    with Fleet.connect(url) as fleet:
        fleet.wait_for(seen, timeout=timeout)


def poll(check: Any, *, timeout: float = 20, every: float = 0.2) -> Any:
    """Call ``check()`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {check}")
        time.sleep(every)


def spawn_counting(url: str, node: str, name: str, *, counted: int = 2, **spec: Any) -> dict[str, Any]:
    """Spawn COUNTER as ``name`` on ``node`` (every 0.1 s, ``spec`` added) and return its
    task answer once it has counted ``counted`` (so it has state worth carrying)."""
    with Fleet.connect(url) as fleet:
        fleet.spawn(node, {"name": name, "code": COUNTER, "poll_interval": 0.1, **spec}, timeout=30)
        answer: dict[str, Any] = poll(lambda: a if (a := fleet.task(name, {}))["n"] >= counted else None)
        return answer
