"""What the agent publishes about itself fits the schemas the console reads it with.

Every builder's output is checked with the strict :meth:`Schema.validate` (a malformed
field raises, where the console's tolerant read would drop it silently), over varied
inputs; then a real agent's payloads on a real broker are checked against the JSON
Schemas docs/contract.md publishes, with the ``jsonschema`` library.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
from pathlib import Path
from typing import Any

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from devfleet_agent.config_store import MemoryConfigStore
from devfleet_agent.describe import host_facts
from devfleet_agent.logship import LogShipper
from devfleet_agent.payloads import Descriptions, heartbeat_payload, telemetry_payload
from devfleet_base import contract
from devfleet_base.node_config import NODE_CONFIG_SCHEMA
from devfleet_base.payload_schemas import (
    CFG_SCHEMA,
    HEARTBEAT_SCHEMA,
    LOGS_SCHEMA,
    META_SCHEMA,
    STATUS_SCHEMA,
    TELEMETRY_SCHEMA,
)

DOC = Path(__file__).resolve().parents[3] / "docs" / "contract.md"

_names = st.from_regex(contract.NAME_PATTERN, fullmatch=True)
_sessions = st.integers(0, 2**40)
_counts = st.integers(0, 2**31)
_percent = st.floats(0, 100)
_text = st.text(max_size=40)


@settings(max_examples=60, deadline=None)
@given(
    node=_names,
    session=_sessions,
    commands=st.dictionaries(_names, _text, max_size=5),
    groups=st.lists(_names, max_size=4, unique=True),
    description=st.text(max_size=256),
    signed=st.booleans(),
    started_at=st.floats(0, 4e9),
)
def test_meta_status_will_fit_their_schemas(
    node: str,
    session: int,
    commands: dict[str, str],
    groups: list[str],
    description: str,
    signed: bool,
    started_at: float,
) -> None:
    d = Descriptions(node, session)
    config = NODE_CONFIG_SCHEMA.validate({"groups": groups, "description": description})
    meta = d.meta(
        host_facts(), commands=commands, config=config, signed_commands=signed, started_at=started_at
    )
    assert META_SCHEMA.validate(meta) == meta
    for status in ("online", "offline"):
        payload = d.status(status)
        assert STATUS_SCHEMA.validate(payload) == payload
    will = contract.decode(d.will().payload)
    assert STATUS_SCHEMA.validate(will) == will and will["status"] == "lost"


@settings(max_examples=40, deadline=None)
@given(
    node=_names,
    session=_sessions,
    updates=st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "heartbeat.interval": st.floats(1, 3600),
                "telemetry.interval": st.floats(1, 86400),
                "logs.level": st.sampled_from(["DEBUG", "INFO", "ERROR"]),
                "description": st.text(max_size=20),
            },
        ),
        max_size=4,
    ),
    error=st.none()
    | st.fixed_dictionaries({"id": st.just("c1"), "code": st.just("invalid"), "message": _text}),
)
def test_cfg_fits_its_schema(
    node: str, session: int, updates: list[dict[str, Any]], error: dict[str, Any] | None
) -> None:
    store = MemoryConfigStore(keep=3)
    for n, update in enumerate(updates):
        store.apply(set=update, applied_id=f"c{n}")
    cfg = Descriptions(node, session).cfg(store, error)
    assert CFG_SCHEMA.validate(cfg) == cfg
    assert NODE_CONFIG_SCHEMA.validate(cfg["config"]) == cfg["config"]


@settings(max_examples=60, deadline=None)
@given(
    node=_names,
    session=_sessions,
    uptime=st.floats(0, 1e9),
    counts=st.fixed_dictionaries({k: _counts for k in ("received", "ok", "error", "duplicate")}),
    logs=st.fixed_dictionaries({k: _counts for k in ("pending", "shipped", "dropped")}),
    metrics=st.dictionaries(st.sampled_from(["cpu", "memory", "disk"]), _percent),
    value=st.floats(allow_nan=False, allow_infinity=False),
    ts=st.floats(0, 4e9),
)
def test_heartbeat_and_telemetry_fit_their_schemas(
    node: str,
    session: int,
    uptime: float,
    counts: dict[str, int],
    logs: dict[str, int],
    metrics: dict[str, float],
    value: float,
    ts: float,
) -> None:
    beat = heartbeat_payload(
        node,
        bd_seq=session,
        uptime=uptime,
        broker="127.0.0.1:1883",
        commands=counts,
        logs=logs,
        metrics=metrics,
        agent_usage={"rss_mb": 30.1, "cpu": 0.5},
    )
    assert HEARTBEAT_SCHEMA.validate(beat) == beat
    sample = telemetry_payload(value, ts)
    assert TELEMETRY_SCHEMA.validate(sample) == sample


def test_a_log_batch_fits_its_schema() -> None:
    batches: list[dict[str, Any]] = []

    async def publish(batch: dict[str, Any]) -> bool:
        batches.append(batch)
        return True

    async def main() -> None:
        shipper = LogShipper(publish, "n1")
        log = logging.getLogger("devfleet.test.payloads")
        log.addHandler(shipper)
        try:
            log.warning("one %s", "record")
            try:
                raise ValueError("boom")
            except ValueError:
                log.exception("with a traceback")
        finally:
            log.removeHandler(shipper)
        assert await shipper.ship()

    asyncio.run(main())
    assert batches and all(LOGS_SCHEMA.validate(b) == b for b in batches)


# ---- a real agent on a real broker, against the published JSON Schemas ---------------------

_ids = itertools.count()


def _published() -> list[tuple[re.Pattern[str], dict[str, Any]]]:
    """(topic regex, JSON Schema) for every schema docs/contract.md publishes."""
    text = DOC.read_text()
    section = re.search(r"<!-- payload-schemas:start -->\n(.*?)<!-- payload-schemas:end -->", text, re.S)
    assert section, "no payload-schemas section in docs/contract.md"
    out = []
    for topics, body in re.findall(r"#### `([^`]+)`\n\n```json\n(.*?)\n```", section.group(1), re.S):
        schema = json.loads(body)
        for topic in topics.split(", "):
            out.append((re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(topic))), schema))
    return out


def test_a_real_agents_payloads_fit_the_published_json_schemas(agent_factory: Any, probe: Any) -> None:
    node = "schemas1"
    inbox = f"replies/schemas{next(_ids)}"
    probe.subscribe(f"nodes/{node}/#")
    probe.subscribe(inbox)
    actor = contract.actor_id("ticker")
    probe.subscribe(f"agents/{actor}/heartbeat")
    agent_factory(node, allow_code=True)
    probe.wait_for(f"nodes/{node}/status", lambda m: m.json()["status"] == "online")
    probe.wait_for(f"nodes/{node}/heartbeat")
    code = "async def process(agent):\n    agent.state['n'] = agent.state.get('n', 0) + 1\n"
    probe.publish(f"nodes/{node}/spawn", {"name": "ticker", "code": code, "poll_interval": 0.5})
    probe.wait_for(f"agents/{actor}/heartbeat", timeout=15)
    probe.wait_for(f"nodes/{node}/state", lambda m: "ticker" in m.json().get("actors", {}), timeout=15)

    def send(verb: str, args: dict[str, Any]) -> str:
        env = contract.Command.envelope(args, reply_to=inbox)
        probe.publish(contract.node_command_topic(node, verb), env)
        return str(env["id"])

    # Faster telemetry and log batches, so that samples and a batch come in; then a refused
    # configure, so that cfg carries a desired_error; then a ping answered on the receipts topic.
    ok = send("configure", {"set": {"telemetry.interval": 1.0, "logs.flush_interval": 0.2}})
    probe.wait_for(inbox, lambda m: m.json()["id"] == ok and m.json()["status"] == "ok")
    probe.wait_for(f"nodes/{node}/telemetry/cpu", timeout=10)
    probe.wait_for(f"nodes/{node}/logs", timeout=10)
    bad = send("configure", {"set": {"heartbeat.interval": -1}})
    probe.wait_for(inbox, lambda m: m.json()["id"] == bad and m.json()["status"] == "error")
    probe.wait_for(f"nodes/{node}/cfg", lambda m: "desired_error" in m.json())
    probe.publish(contract.node_command_topic(node, "ping"), contract.Command.envelope({}))
    probe.wait_for(f"nodes/{node}/receipts", lambda m: m.json()["status"] == "ok")

    schemas = _published()
    checked: set[str] = set()
    messages = [m for m in probe.messages(f"nodes/{node}/#") if m.payload and not m.topic.endswith("/spawn")]
    messages += probe.messages(inbox) + probe.messages(f"agents/{actor}/heartbeat")
    for msg in messages:
        matching = [schema for rx, schema in schemas if rx.fullmatch(msg.topic)]
        assert matching, f"no published schema for {msg.topic}"
        jsonschema.validate(msg.json(), matching[0], cls=jsonschema.Draft202012Validator)
        checked.add(matching[0]["title"])
    published = {
        "meta",
        "status",
        "state",
        "cfg",
        "heartbeat",
        "telemetry",
        "logs",
        "receipt",
        "actor heartbeat",
    }
    assert published <= checked
