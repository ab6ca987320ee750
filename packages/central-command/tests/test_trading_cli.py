"""The trading CLI's edges without a broker: usage errors and ``acl generate --node-config``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devfleet_command.acl import generate_acl
from devfleet_command.cli import main
from devfleet_command.errors import InvalidName

ACL = Path(__file__).resolve().parents[3] / "deploy" / "mosquitto" / "acl"


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv",
    [
        ["task", "submit"],
        ["task", "submit", "--skill", "x", "--inputs", "{"],
        ["task", "submit", "--skill", "x", "--deadline", "-1"],
        ["task", "submit", "--skill", "bad skill"],
        ["task", "lonely-actor"],
    ],
)
def test_bad_submissions_are_usage_errors(capsys: Any, argv: list[str]) -> None:
    # Port 9 (discard) on loopback: nothing listens, and nothing must be sent anyway.
    code, out, err = run(capsys, "--broker", "mqtt://127.0.0.1:9", "--timeout", "1", *argv)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1


def test_acl_from_node_config(capsys: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "accredit.json"
    cfg.write_text(json.dumps({"ward-pi": {"accredit": ["gdpr"]}, "kiosk": {"accredit": ["iso"]}}))
    code, out, err = run(capsys, "acl", "generate", "--template", str(ACL), "--node-config", str(cfg))
    assert code == 0, err
    assert out.startswith(ACL.read_text().splitlines()[0])
    assert out.rstrip().endswith("user ward-pi\ntopic readwrite patient-data/#")
    assert "user kiosk" not in out
    cfg.write_text(json.dumps({"ward-pi": {"accredit": "gdpr"}}))
    code, out, err = run(capsys, "acl", "generate", "--node-config", str(cfg))
    assert code == 2 and "accredit" in err


@settings(max_examples=100)
@given(st.text(max_size=40))
def test_a_node_name_cannot_inject_acl_lines(name: str) -> None:
    try:
        text = generate_acl({name: ["gdpr"]})
    except InvalidName:
        return
    assert text.count("\n") == 3 and f"user {name}\n" in text
