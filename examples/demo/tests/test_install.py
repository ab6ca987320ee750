"""The README's Install section, its pip lines run as written in fresh venvs.

The wheelhouse is built by ``contrib/wheelhouse.py`` (what ``python3 dev.py
build`` runs) into tmp; every pip line then installs with no index at all, so a
line that needs something the wheelhouse or the checkout lacks fails here.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "contrib"))
import wheelhouse  # noqa: E402

# Building the wheelhouse downloads every dependency (cryptography, for the console's
# signatures, is a few MB): 80 s here on a loaded machine, over the suite's 120 s default
# once the network is slow.
pytestmark = pytest.mark.timeout(600)


def install_lines() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Install")
    section = text[start : text.index("\n## ", start + 1)]
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        lines += [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]
    return lines


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("build") / "wheelhouse"
    # every devfleet wheel; the dependencies of what the README's lines install
    wheelhouse.build(
        out, [], isolation=False, dependencies_of=["devfleet-agent-core", "devfleet-central-command"]
    )
    return out


def _venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=True).create(path)
    return path / "bin"


def _offline_env(find_links: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    # No index, no site pip config: only the wheelhouse (or the checkout) can satisfy a line.
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(find_links)}


def test_every_wheel_carries_the_license(built: Path) -> None:
    wheels = sorted(built.glob("devfleet_*.whl"))
    names = {w.name.split("-")[0].replace("_", "-") for w in wheels}
    assert names == set(wheelhouse.distributions().values())
    license_text = (ROOT / "LICENSE").read_text()
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            names = [n for n in zf.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
            assert names, f"{wheel.name} has no LICENSE"
            assert zf.read(names[0]).decode() == license_text
            meta = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
            assert "License-Expression: MIT" in meta or "License: MIT" in meta


def test_readme_install_lines_work_offline(built: Path, tmp_path: Path) -> None:
    lines = install_lines()
    assert ["python3", "dev.py", "build"] in lines
    pip_lines = [line for line in lines if line[:2] == ["pip", "install"]]
    assert len(pip_lines) == 4, pip_lines
    for i, argv in enumerate(pip_lines):
        bindir = _venv(tmp_path / f"venv{i}")
        from_wheels = "wheelhouse" in argv
        # the wheelhouse lines run beside wheelhouse/; the checkout lines in the checkout
        cwd = built.parent if from_wheels else ROOT
        proc = subprocess.run(
            [str(bindir / "pip"), *argv[1:]], cwd=cwd, env=_offline_env(built), capture_output=True, text=True
        )
        assert proc.returncode == 0, f"{shlex.join(argv)}:\n{proc.stdout}{proc.stderr}"
        wanted = "devfleet-agent" if "agent-core" in " ".join(argv) else "devfleet"
        check = subprocess.run([str(bindir / wanted), "--version"], capture_output=True, text=True)
        assert check.returncode == 0 and "0." in check.stdout + check.stderr, check
