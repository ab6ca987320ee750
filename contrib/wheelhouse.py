#!/usr/bin/env python3
"""Build a wheelhouse: a wheel of every devfleet distribution plus the wheels of
their dependencies (and of hatchling, the build backend), so a machine without the repository (or without internet)
installs with

    pip install --no-index --find-links wheelhouse devfleet-agent-core

Run through ``python3 dev.py build`` (nox session ``build``) or directly:

    python3 contrib/wheelhouse.py [--out DIR] [-- PIP-DOWNLOAD-OPTIONS ...]

The dependencies are fetched with ``pip download`` for the machine that runs this.
For another platform pass pip's own options after ``--``, e.g. for a Raspberry Pi
Zero (armv6, Python 3.11), with piwheels for the compiled psutil:

    python3 dev.py build -- --platform linux_armv6l --python-version 3.11 \\
        --only-binary=:all: --extra-index-url https://www.piwheels.org/simple
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def distributions() -> dict[Path, str]:
    """Every published folder (``packages/*``, ``examples/*`` with a pyproject) → its name."""
    found = {}
    for pyproject in sorted(
        [*ROOT.glob("packages/*/pyproject.toml"), *ROOT.glob("examples/*/pyproject.toml")]
    ):
        found[pyproject.parent] = tomllib.loads(pyproject.read_text())["project"]["name"]
    return found


def build(
    out: Path, pip_options: list[str], *, isolation: bool = True, dependencies_of: list[str] | None = None
) -> list[Path]:
    """Wheels of every distribution into ``out``, then their dependencies.

    Args:
        out: the wheelhouse folder (created).
        pip_options: extra options for ``pip download`` (a foreign ``--platform``...).
        isolation: build in pip's isolated environments (False: use the installed hatchling).
        dependencies_of: only these distributions' dependencies (default: every one's).

    Returns:
        The devfleet wheels built.

    Raises:
        subprocess.CalledProcessError: pip failed.
    """
    out.mkdir(parents=True, exist_ok=True)
    dists = distributions()
    pip = [sys.executable, "-m", "pip"]
    isolate = [] if isolation else ["--no-build-isolation"]
    subprocess.run([*pip, "wheel", "-q", "--no-deps", *isolate, "-w", str(out), *map(str, dists)], check=True)
    # Our wheels are found in `out`; everything they depend on comes from the index, and
    # the build backend too, so `pip install -e packages/...` works offline from a checkout.
    backend = ["hatchling", "editables"] if not pip_options else []  # (a foreign platform needs none)
    wanted = dependencies_of if dependencies_of is not None else list(dists.values())
    subprocess.run(
        [*pip, "download", "-q", "-d", str(out), "--find-links", str(out), *pip_options, *wanted, *backend],
        check=True,
    )
    return sorted(p for p in out.glob("devfleet_*.whl"))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "wheelhouse", help="where (default ./wheelhouse)")
    parser.add_argument("pip_options", nargs="*", help="options for pip download, after --")
    args = parser.parse_args(argv)
    wheels = build(args.out, args.pip_options)
    print(f"{len(wheels)} devfleet wheels and their dependencies in {args.out}")
    print(f"install with: pip install --no-index --find-links {args.out} devfleet-agent-core")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
