"""A run that cannot go on stops with one error that says what each late robot showed."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from devfleet_foraging.bridge import ArenaBridge
from devfleet_foraging.runner import RunError, RunOptions, run

pytestmark = pytest.mark.timeout(90)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_robot_whose_rosbridge_is_unreachable_is_named_with_its_ros_link_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"ws://127.0.0.1:{_closed_port()}"
    monkeypatch.setattr(ArenaBridge, "urls", property(lambda self: {n: url for n in self.links}))
    options = RunOptions(
        robots=1, duration=5.0, headless=True, out=tmp_path, kill=False, viz=False, start_timeout=8.0
    )
    with pytest.raises(RunError) as caught:
        run(options, say=lambda line: None)
    text = str(caught.value)
    assert text.startswith("robots not driven after 8 s: bot-1: online"), text
    assert url in text, text  # the ros component's state says where it tries to connect
    assert "log:" in text, text
