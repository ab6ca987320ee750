"""The pure rules of work trading: constraints, the default policy, schemas."""

from __future__ import annotations

import pytest

from devfleet_base import contract, trading
from devfleet_base.errors import ContractError


def offer(agent: str, cost: float, eta: float = 1.0, **kw: object) -> dict[str, object]:
    return {"agent": agent, "cost": cost, "eta": eta, "accredit": [], "region": None, **kw}


def test_cheapest_meeting_the_constraints_then_fastest_then_first() -> None:
    proposals = [
        offer("a", 0.05),
        offer("b", 0.01, accredit=["gdpr"], region="eu"),
        offer("c", 0.01, eta=0.5),
        offer("d", 0.01, eta=0.5),
    ]
    assert [p["agent"] for p in trading.cheapest({}, proposals)] == ["c", "d", "b", "a"]
    gdpr = {"constraints": {"accredit": ["gdpr"]}}
    assert [p["agent"] for p in trading.cheapest(gdpr, proposals)] == ["b"]
    assert trading.cheapest({"constraints": {"max_usd": 0.02, "region": "eu"}}, proposals)[0]["agent"] == "b"


def test_meets_reads_a_resume_cost_too() -> None:
    resume = {"skills": ["x"], "cost": {"usd": 0.3}, "accredit": ["gdpr", "iso"]}
    assert trading.meets(resume, {"accredit": ["gdpr"], "max_usd": 0.5})
    assert not trading.meets(resume, {"max_usd": 0.1})
    assert not trading.meets(resume, {"region": "eu"})


@pytest.mark.parametrize(
    "bad",
    [
        {"skills": []},
        {"skills": ["a b"]},
        {"skills": ["x"], "cost": {"usd": -1}},
        {"skills": ["x"], "accredit": "gdpr"},
    ],
)
def test_a_bad_resume_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ContractError):
        trading.check_resume(bad)


def test_pool_topics() -> None:
    assert contract.pool_share_filter("gpu") == "$share/gpu/pools/gpu/jobs/+"
    match = contract.parse_topic(contract.pool_topic("gpu", "done", "j-1"))
    assert match is not None and (match.kind, match.name, match.ident) == ("pool_done", "gpu", "j-1")
    with pytest.raises(ContractError):
        contract.pool_topic("g/x", "jobs", "j")
    assert contract.task_assign_filter("a1") == "tasks/+/assign/a1"
