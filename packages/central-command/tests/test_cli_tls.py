"""The console names a broker certificate it cannot trust, instead of "cannot reach the broker" (real mosquitto)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devfleet_base.testing import TlsFiles
from devfleet_command.cli import main


def test_a_wrong_ca_is_named_at_once(
    mqtt_broker_tls: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = TlsFiles(tmp_path / "other")
    code = main(["ls", "--broker", mqtt_broker_tls.url, "--tls-ca", str(other.ca_path), "--timeout", "20"])
    err = capsys.readouterr().err
    assert code == 3
    assert "wrong CA?" in err and str(other.ca_path) in err and "cannot reach" not in err
