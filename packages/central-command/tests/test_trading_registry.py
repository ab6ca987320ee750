"""The console's résumé registry: newest wins, empty clears, junk is counted."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from devfleet_base import contract
from devfleet_command.model import FleetModel
from devfleet_command.trading import ResumeRegistry


def resume(version: int, **kw: object) -> bytes:
    return contract.encode(
        {"skills": ["x"], "node": "n1", "name": "a", "session": 1, "version": version, **kw}
    )


def test_newest_wins_and_an_empty_message_clears() -> None:
    reg = ResumeRegistry()
    reg.feed("agents/a1/resume", resume(5, region="eu"))
    reg.feed("agents/a1/resume", resume(4, region="us"))  # a late, older one
    assert reg.resumes["a1"]["region"] == "eu"
    rows = reg.query(FleetModel(), skill="x")
    assert rows[0]["available"] is False and rows[0]["node_status"] == "unknown"  # its node is not known
    assert reg.query(FleetModel(), skill="y") == []
    reg.feed("agents/a1/resume", b"")
    assert reg.resumes == {}


@given(st.binary(max_size=200))
def test_junk_is_counted_not_raised(payload: bytes) -> None:
    reg = ResumeRegistry()
    reg.feed("agents/a1/resume", payload)
    assert reg.invalid + len(reg.resumes) <= 1
