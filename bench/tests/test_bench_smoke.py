"""A smoke run of the benchmark code: tiny sizes, every figure present (numbers not judged)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_quick_run_reports_every_figure(tmp_path: Path) -> None:
    out, md = tmp_path / "results.json", tmp_path / "benchmarks.md"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", "--json", str(out), "--markdown", str(md)],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    names = " | ".join(row["name"] for row in result["rows"])
    for figure in (
        "round trip p50",
        "round trip p99",
        "discovery",
        "fan-out",
        "telemetry ingestion",
        "agent idle RSS",
        "agent idle CPU",
        "agent import",
        "devfleet --help",
        "memory per tracked node",
    ):
        assert figure in names, figure
    assert len([r for r in result["rows"] if r["name"].startswith("discovery")]) == 2
    for row in result["rows"]:
        assert row["value"] is not None and row["value"] >= 0
        assert row["floor"] is None or row["floor"] > 0
    cap = result["details"]["sim_capacity"]
    assert cap["tracked_at_end"] == cap["nodes"]
    assert result["machine"]["cores"] and result["load"]
    text = md.read_text()
    assert "| figure | devfleet | floor (raw paho) | ratio |" in text and "python3 dev.py bench" in text


def test_unknown_section_is_a_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--only", "nosuch", "--json", str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown section nosuch (known: core" in proc.stderr
    assert not (tmp_path / "r.json").exists()
