"""docs/contract.md and the contract module must agree."""

from __future__ import annotations

import re
from pathlib import Path

from devfleet_base import contract
from devfleet_base.errors import Code
from devfleet_base.node_config import NODE_CONFIG_SCHEMA

DOC = Path(__file__).resolve().parents[3] / "docs" / "contract.md"


def _table(name: str) -> list[list[str]]:
    text = DOC.read_text()
    m = re.search(rf"<!-- {name}:start -->\n(.*?)<!-- {name}:end -->", text, re.S)
    assert m, f"no {name} table in {DOC}"
    rows = [line for line in m.group(1).splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def test_topic_table_matches_module():
    documented = [(r[0].strip("`"), r[1], r[2] == "yes", int(r[3])) for r in _table("topics")]
    in_code = [(t.pattern, t.direction, t.retained, t.qos) for t in contract.TOPICS]
    assert documented == in_code


def test_every_documented_topic_parses():
    samples = {
        "node": "n1",
        "metric": "cpu",
        "verb": "ping",
        "component": "led",
        "leaf": "state",
        "group": "g",
        "inbox": "i1",
        "id": "a1",
        "name": "bob",
        "task": "t1",
        "agent": "a2",
        "step": "s1",
        "map": "arena",
        "target": "n2",
        "pool": "gpu",
        "job": "j1",
    }
    for spec in contract.TOPICS:
        topic = spec.pattern.format(**samples)
        assert contract.parse_topic(topic) is not None, topic


def test_error_codes_match():
    assert {r[0].strip("`") for r in _table("codes")} == set(Code.ALL)


def test_config_keys_match():
    documented = {r[0].strip("`") for r in _table("config")}
    in_code: set[str] = set()
    for key, field in NODE_CONFIG_SCHEMA.fields.items():
        if field.schema is not None:
            in_code |= {f"{key}.{sub}" for sub in field.schema.fields}
        else:
            in_code.add(key)
    assert documented == in_code
