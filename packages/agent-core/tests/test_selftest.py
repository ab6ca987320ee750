"""The built-in self-test: all seven scenarios pass and the report is parseable."""

from __future__ import annotations

import io

import pytest

from devfleet_agent import selftest


def test_all_seven_scenarios_pass() -> None:
    out = io.StringIO()
    assert selftest.run_selftest(out) == 0
    lines = out.getvalue().splitlines()
    assert lines[:-1] == [f"PASS {name}" for name in selftest.SCENARIOS]
    assert len(lines) == 8
    assert lines[-1] == "7/7 supervisor tests passed"


def test_a_failing_scenario_is_reported_and_returns_1(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(run: object) -> None:
        raise selftest._Failed("on purpose")

    async def crashing(run: object) -> None:
        raise KeyError("oops")

    scenarios = dict(selftest.SCENARIOS)
    scenarios["stable agent"] = broken
    scenarios["compile error"] = crashing
    monkeypatch.setattr(selftest, "SCENARIOS", scenarios)
    out = io.StringIO()
    assert selftest.run_selftest(out) == 1
    text = out.getvalue()
    assert "FAIL stable agent: on purpose" in text
    assert "FAIL compile error: KeyError: 'oops'" in text
    assert "PASS setup failure" in text
    assert text.splitlines()[-1] == "5/7 supervisor tests passed"
