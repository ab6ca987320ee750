"""The README's library snippet runs as written against a real agent."""

from __future__ import annotations

import re
from pathlib import Path

from devfleet_agent.testing import AgentThread, settings_for

README = Path(__file__).resolve().parents[3] / "README.md"


def test_readme_python_snippet_runs(fresh_broker, tmp_path, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README has no python example"
    code = blocks[0].replace("mqtt://192.168.1.10:1883", fresh_broker.url)
    with AgentThread(settings_for(fresh_broker, "rpi-livingroom", tmp_path / "n")):
        from devfleet_command import Fleet

        with Fleet.connect(fresh_broker.url) as fleet:
            fleet.wait_for(lambda m: "rpi-livingroom" in m and m.get("rpi-livingroom").online, timeout=20)
        exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "rpi-livingroom online" in out and "'pong': True" in out


def test_readme_agent_settings_file_is_valid(tmp_path):
    """The agent.toml shown in the README loads (its files made to exist)."""
    from devfleet_agent.settings import load_settings

    block = re.search(r"```toml\n(.*?)```", README.read_text(), re.S)
    assert block, "the README has no agent.toml example"
    text = block.group(1)
    from devfleet_base.signing import Identity

    for path in re.findall(r'"(/etc/devfleet/[^"]+)"', text):
        local = tmp_path / path.rsplit("/", 1)[-1]
        local.write_text("k" * 32)
        if local.name == "identity.json":  # what devfleet provision writes
            Identity.generate("console").issue_node("rpi-livingroom").save(local)
        text = text.replace(path, str(local))
    cfg = tmp_path / "agent.toml"
    cfg.write_text(text)
    settings = load_settings({}, env={}, config_path=str(cfg))
    assert settings.name == "rpi-livingroom" and settings.tls and not settings.allow_code
