"""The Pi Zero section's plumbing without qemu: it is opt-in, finds the apt mirror, and
renders its part of docs/benchmarks.md from a results dict (numbers not judged)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import armel
import run
import section_pizero


def test_pizero_is_a_section_left_out_of_the_default_run() -> None:
    assert "pizero" in run.sections()
    assert "pizero" not in run.default_sections()
    assert "core" in run.default_sections()


def test_mirror_from_a_deb822_source(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n"
    )
    assert armel.mirror(tmp_path) == "http://mirror.example/debian"


def test_mirror_from_a_one_line_source_else_the_default(tmp_path: Path) -> None:
    assert armel.mirror(tmp_path) == "http://deb.debian.org/debian"
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://one.example/debian bookworm main\n")
    assert armel.mirror(tmp_path) == "http://one.example/debian"


def test_guest_base_from_qemus_page_log(tmp_path: Path) -> None:
    log = tmp_path / "page.log"
    log.write_text("host mmap_min_addr=0x1000\nLocating guest address space @ 0x1000\nguest_base  0x1000\n")
    assert section_pizero.guest_base(log) == 0x1000
    assert section_pizero.guest_base(tmp_path / "missing.log") is None


def _details() -> dict[str, Any]:
    imports = {f"{m}_{k}_{u}": 1.0 for m in ("emulated", "host") for k in section_pizero.IMPORTS
               for u in ("seconds", "instructions")}  # fmt: skip
    agent = {"birth_seconds": 1.0, "rss": 2**20, "guest_rss": 2**19, "qemu_rss": 2**19, "cpu_percent": 0.1,
             "instructions_per_minute": 1e6}  # fmt: skip
    return {
        "command": section_pizero.COMMAND, "started": "now", "seconds": 1.0, "setup_seconds": 0.5,
        "load": {"start": "1.0 1.0 1.0", "end": "1.0 1.0 1.0"},
        "quick": False, "repeats": 3, "window": 60.0, "cpu": "arm1176",
        "versions": {"qemu": "7.2", "debootstrap": "1.0", "python3.11 (armel)": "3.11", "gcc-12 (armel)": "12"},
        "setup": {"rootfs": {"cached": True, "stage1_seconds": 1.0, "stage2_seconds": 2.0},
                  "install": {"venv_seconds": 1.0, "psutil_build_seconds": 2.0, "deps_seconds": 1.0,
                              "agent_seconds": 1.0}},
        "imports": imports,
        "agents": {k: agent for k in ("emulated", "emulated_counted", "host", "host_counted")},
    }  # fmt: skip


def test_report_has_its_heading_table_and_command() -> None:
    text = "\n".join(section_pizero.report(_details()))
    assert "## Raspberry Pi Zero (emulated)" in text
    assert "| figure | Pi Zero (emulated) | this host | emulated ÷ host |" in text
    assert "`python3 dev.py bench --pi-zero`" in text
    assert "qemu 7.2" in text and "debootstrap 1.0" in text


def test_section_reports_only_for_sections_in_the_results() -> None:
    assert run.section_reports({"details": {}}) == []
    assert "## Raspberry Pi Zero (emulated)" in run.section_reports({"details": {"pizero": _details()}})


def test_a_full_run_keeps_the_last_opt_in_figures_where_they_stood() -> None:
    """A full run does not run pizero (minutes under qemu): its last rows and details stay,
    in their place; a section that no longer exists goes."""
    previous = {
        "rows": [
            {"section": "core", "name": "old core"},
            {"section": "pizero", "name": "Pi Zero: import"},
            {"section": "gone", "name": "a removed section"},
            {"section": "agent", "name": "old agent"},
        ],
        "details": {"pizero": {"started": "then"}, "agent": {"old": True}},
    }
    result: dict[str, Any] = {
        "rows": [{"section": "core", "name": "new core"}, {"section": "agent", "name": "new agent"}],
        "details": {"agent": {"new": True}},
    }
    run.carry_opt_in(previous, result, ["core", "agent"], ["pizero"])
    assert [r["name"] for r in result["rows"]] == ["new core", "Pi Zero: import", "new agent"]
    assert result["details"] == {"agent": {"new": True}, "pizero": {"started": "then"}}


def test_a_failing_section_loses_only_itself_in_a_full_run(monkeypatch: Any) -> None:
    """A full run takes many minutes: a section that raises is reported as failed and the
    others' figures are kept; the quick smoke run fails on it instead."""
    import asyncio
    import types

    async def broken(quick: bool, log: Any, row: Any) -> dict[str, Any]:
        raise ConnectionError("the cluster dropped the console")

    async def fine(quick: bool, log: Any, row: Any) -> dict[str, Any]:
        return {"rows": [row("a figure", 1.0, "s", 1.0)], "details": {"ok": True}}

    fake = {
        "broken": types.SimpleNamespace(TITLE="broken", run=broken),
        "fine": types.SimpleNamespace(TITLE="fine", run=fine),
    }
    monkeypatch.setattr(run, "sections", lambda: fake)
    lines: list[str] = []
    out = asyncio.run(run.run_sections(["broken", "fine"], False, lines.append))
    assert out["failed"] == ["broken"]
    assert [r["section"] for r in out["rows"]] == ["fine"] and out["details"] == {"fine": {"ok": True}}
    assert any("section broken FAILED (ConnectionError" in line for line in lines)
    with pytest.raises(ConnectionError):
        asyncio.run(run.run_sections(["broken", "fine"], True, lines.append))
