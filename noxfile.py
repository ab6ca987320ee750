"""Sessions for devfleet: tests, each package alone, lint, types, demo, benchmarks.

Run through ``python3 dev.py`` (which brings nox and uv), or with nox directly.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).parent
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = not os.environ.get("CI")
nox.options.sessions = ["lint", "typecheck", "tests", "isolated"]

# Every package of the monorepo: folder -> distribution name. Order = dependency order.
PACKAGES = {
    "packages/component-base": "devfleet-component-base",
    "packages/agent-core": "devfleet-agent-core",
    "packages/central-command": "devfleet-central-command",
    "packages/component-ledstrip": "devfleet-component-ledstrip",
    "packages/component-projector": "devfleet-component-projector",
    "examples/minimal-component": "devfleet-example-minimal",
}
PRESENT = {path: dist for path, dist in PACKAGES.items() if (ROOT / path / "pyproject.toml").exists()}
TEST_TOOLS = ["pytest>=8", "pytest-asyncio>=0.24", "pytest-timeout>=2.3", "hypothesis>=6.100", "amqtt>=0.11"]


def _local_requirements(path: str) -> list[str]:
    """The package itself plus the local packages it declares (transitively), editable."""
    by_dist = {dist: p for p, dist in PRESENT.items()}
    seen: list[str] = []

    def visit(p: str, extras: str = "") -> None:
        if p in seen:
            return
        meta = tomllib.loads((ROOT / p / "pyproject.toml").read_text())["project"]
        for dep in meta.get("dependencies", []):
            name = dep.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip()
            if name in by_dist:
                visit(by_dist[name])
        seen.append(p)

    visit(path)
    out = []
    for p in seen:
        extra = "[testing,mqtt]" if p == "packages/component-base" else ""
        out += ["-e", f"./{p}{extra}"]
    return out


def _tests_of(path: str) -> list[str]:
    tests = ROOT / path / "tests"
    return [str(tests.relative_to(ROOT))] if tests.is_dir() else []


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite, every package installed together."""
    reqs: list[str] = []
    for path in PRESENT:
        for item in _local_requirements(path):
            if item not in reqs or item == "-e":
                reqs.append(item)
    session.install(*reqs, *TEST_TOOLS)
    paths = [t for p in PRESENT for t in _tests_of(p)]
    # The simulator against a console, and a smoke run of the benchmark code.
    paths += ["bench/tests"] if (ROOT / "bench" / "tests").is_dir() else []
    session.run("pytest", *paths, *session.posargs)


@nox.session
@nox.parametrize("package", list(PRESENT))
def isolated(session: nox.Session, package: str) -> None:
    """One package alone with only what it declares: an undeclared import fails here."""
    session.install(*_local_requirements(package), *TEST_TOOLS)
    paths = _tests_of(package)
    if not paths:
        session.skip(f"{package} has no tests")
    session.run("pytest", *paths, "-q", "-p", "no:randomly", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over every package's source."""
    reqs: list[str] = []
    for path in PRESENT:
        for item in _local_requirements(path):
            if item not in reqs or item == "-e":
                reqs.append(item)
    session.install(*reqs, "mypy>=1.13", "types-pyserial", "rich")
    srcs = [str(p) for path in PRESENT for p in [ROOT / path / "src"] if p.is_dir()]
    session.run("mypy", *srcs)


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: a broker (mosquitto, else embedded amqtt), a few agents, the live fleet view."""
    reqs: list[str] = []
    for path in PRESENT:
        for item in _local_requirements(path):
            if item not in reqs or item == "-e":
                reqs.append(item)
    session.install(*reqs, "amqtt>=0.11")
    session.run("python", "-m", "devfleet_command.demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against the raw paho floor; writes docs/benchmarks.md and bench/results.json."""
    reqs: list[str] = []
    for path in PRESENT:
        for item in _local_requirements(path):
            if item not in reqs or item == "-e":
                reqs.append(item)
    session.install(*reqs)
    session.run("python", "bench/run.py", *session.posargs)
