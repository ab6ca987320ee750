"""``devfleet deploy``/``undeploy`` against a real OpenSSH server and a real broker.

The target is this machine through a private sshd (:func:`start_sshd`: Debian's
/usr/sbin/sshd as the current user, root in CI, with throwaway keys) on a free
loopback port; the agent is installed into a temporary prefix from a wheelhouse
built here, runs as the supervised background process (no systemd), and must be
born on the test kit's broker. Failures (host key, key, port, Python) must each
be one line and a non-zero exit.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devfleet_command.aio import AsyncFleet
from devfleet_command.cli import main
from devfleet_command.provision import provision_console

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Sshd:
    """A running sshd: ``port``, keys, ``known_hosts``; :meth:`close` stops it."""

    proc: subprocess.Popen[bytes]
    port: int
    user_key: Path
    other_key: Path
    known_hosts: Path
    log: Path

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "devfleet-test", "-f", str(path)], check=True
    )


def start_sshd(root: Path) -> Sshd:
    """Start sshd in ``root`` and wait until it accepts connections (at most 10 s)."""
    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.access(binary, os.X_OK) or not shutil.which("ssh-keygen"):
        pytest.fail(
            "the deploy tests need OpenSSH's sshd: sudo apt-get install openssh-server", pytrace=False
        )
    for name in ("host_key", "user_key", "other_key"):
        _keygen(root / name)
    auth = root / "authorized_keys"
    auth.write_text((root / "user_key.pub").read_text())
    auth.chmod(0o600)
    port = free_port()
    sftp = next(
        (p for p in ("/usr/lib/openssh/sftp-server", "/usr/libexec/sftp-server") if Path(p).exists()),
        "internal-sftp",
    )
    config = root / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {root / 'host_key'}",
                f"PidFile {root / 'sshd.pid'}",
                f"AuthorizedKeysFile {auth}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",  # the temporary directory's owner and modes are not ours to set
                "PermitRootLogin prohibit-password",
                f"Subsystem sftp {sftp}",
                "LogLevel VERBOSE",
                "",
            ]
        )
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege separation directory
    log = root / "sshd.log"
    proc = subprocess.Popen(
        [binary, "-D", "-e", "-f", str(config)], stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    host_key = (root / "host_key.pub").read_text().split()
    known = root / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            pytest.fail(f"sshd exited {proc.returncode}: {log.read_text()[-500:]}", pytrace=False)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"sshd did not listen within 10 s: {log.read_text()[-500:]}", pytrace=False)
            time.sleep(0.05)
    return Sshd(proc, port, root / "user_key", root / "other_key", known, log)


def build_wheelhouse(out: Path, *projects: Path) -> Path:
    """Wheels of ``projects`` and all their dependencies into ``out`` (``pip wheel``;
    the dependencies come from pip's cache or the index)."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--disable-pip-version-check",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            *map(str, projects),
        ],
        check=True,
        cwd=ROOT,
    )
    return out


def bumped_wheel(project: Path, version: str, out: Path, tmp: Path) -> None:
    """Build ``project`` again as ``version`` (a copy with its version changed) into ``out``."""
    copy = tmp / project.name
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    meta = copy / "pyproject.toml"
    text = meta.read_text()
    meta.write_text(text.replace('version = "0.1.0"', f'version = "{version}"', 1))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--disable-pip-version-check",
            "--no-build-isolation",
            "--no-deps",
            "--wheel-dir",
            str(out),
            str(copy),
        ],
        check=True,
    )


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.close()


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The agent (with signing), the example component and every dependency."""
    return build_wheelhouse(
        tmp_path_factory.mktemp("wheelhouse"),
        ROOT / "packages" / "component-base",
        ROOT / "packages" / "agent-core[signing]",
        ROOT / "examples" / "minimal-component",
    )


@pytest.fixture(scope="module")
def console_identity(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return provision_console("op-deploy", tmp_path_factory.mktemp("console")).files["identity"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


BASE_PYTHON = os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def ssh_args(sshd: Sshd, *, key: Path | None = None, known: Path | None = None) -> list[str]:
    return [
        "--ssh-port",
        str(sshd.port),
        "--identity",
        str(key or sshd.user_key),
        "--known-hosts",
        str(known or sshd.known_hosts),
        # The target's Python: the one running these tests (>= 3.11), whatever PATH has.
        "--python",
        BASE_PYTHON,
    ]


def installed_version(prefix: Path, dist: str) -> str:
    done = subprocess.run(
        [
            str(prefix / "venv" / "bin" / "python"),
            "-c",
            f"import importlib.metadata as m; print(m.version({dist!r}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def retained(broker: Any, node: str, identity: Path) -> dict[str, bytes]:
    async def go() -> dict[str, bytes]:
        async with AsyncFleet.connect(f"mqtt://{broker.host}:{broker.port}") as fleet:
            return await fleet.retained_topics(node, timeout=5)

    return asyncio.run(go())


def test_deploy_upgrade_undeploy(
    sshd: Sshd,
    wheelhouse: Path,
    console_identity: Path,
    mqtt_broker: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prefix = tmp_path / "target"
    provisioned = tmp_path / "provisioned"
    common = [
        *ssh_args(sshd),
        "--prefix",
        str(prefix),
        "--provisioned",
        str(provisioned),
        "--broker",
        f"mqtt://{mqtt_broker.host}:{mqtt_broker.port}",
        "--signing-key-file",
        str(console_identity),
        "--wait",
        "30",
    ]
    node = "n-ssh-deploy"

    # The plan changes nothing.
    code, out, err = run(
        capsys, "deploy", "127.0.0.1", "--name", node, "--wheelhouse", str(wheelhouse), "--dry-run", *common
    )
    assert code == 0, err
    assert f"{BASE_PYTHON} -m venv" in out and "supervise.py start" in out
    assert not prefix.exists()

    # A failure part-way (a component the wheelhouse lacks) names the step, what was
    # left and how to undo it.
    code, out, err = run(
        capsys,
        "deploy", "127.0.0.1", "--name", node, "--wheelhouse", str(wheelhouse),
        "--components", "devfleet-no-such-component", *common,
    )  # fmt: skip
    assert code == 1
    assert " venv " in err  # made, and left for the next run
    assert (
        err.strip().splitlines()[-1].startswith("devfleet: 127.0.0.1:")
        and "install failed (python -m pip): ERROR: No matching distribution" in err
    )
    assert f"left on the target: {prefix}" in out
    undo = next(line.split("to undo: ", 1)[1] for line in out.splitlines() if "to undo: " in line)
    assert undo == f"devfleet undeploy 127.0.0.1 --ssh-port {sshd.port} --prefix {prefix}"

    # Deploy again: venv (kept), agent and component from the wheelhouse, credentials 0600, online.
    code, out, err = run(
        capsys,
        "deploy", "127.0.0.1", "--name", node, "--wheelhouse", str(wheelhouse),
        "--components", "devfleet-example-minimal", *common,
    )  # fmt: skip
    assert code == 0, out + err
    assert " venv " not in err
    for step in (
        "connect",
        "check",
        "stop",
        "prepare",
        "upload",
        "install",
        "configure",
        "service",
        "online",
    ):
        assert f" {step} " in err, step
    assert "NOT started again after a reboot" in out
    assert node in out and "online" in out  # what `devfleet show` prints
    assert installed_version(prefix, "devfleet-example-minimal") == "0.1.0"
    for name in ("agent.toml", "identity.json"):
        assert (prefix / "etc" / name).stat().st_mode & 0o777 == 0o600
    password = next(
        line.split("=", 1)[1].strip().strip('"')
        for line in (provisioned / node / "agent.toml").read_text().splitlines()
        if line.startswith("password")
    )
    assert password not in out + err
    assert password not in (prefix / "agent.log").read_text()
    first_pid = int((prefix / "agent.pid").read_text())

    # Second run: a newer component in the wheelhouse is upgraded in place; data and
    # credentials are kept (the node's session counter goes on counting).
    counters = json.loads((prefix / "data" / "session.json").read_text())
    newer = tmp_path / "wheelhouse2"
    shutil.copytree(wheelhouse, newer)
    bumped_wheel(ROOT / "examples" / "minimal-component", "0.1.1", newer, tmp_path)
    code, out, err = run(
        capsys,
        "deploy", "127.0.0.1", "--name", node, "--wheelhouse", str(newer),
        "--components", "devfleet-example-minimal", "--json", *common,
    )  # fmt: skip
    assert code == 0, out + err
    report = json.loads(out)
    assert report["targets"][0]["ok"] is True and report["notes"] == []  # no new credentials
    assert installed_version(prefix, "devfleet-example-minimal") == "0.1.1"
    assert json.loads((prefix / "data" / "session.json").read_text())["session"] > counters["session"]
    second_pid = int((prefix / "agent.pid").read_text())
    assert second_pid != first_pid
    with pytest.raises(ProcessLookupError):
        os.kill(first_pid, 0)

    # Undeploy, as the failure above said: process, prefix and retained topics are gone.
    undo_args = undo.split()[1:]
    code, out, err = run(
        capsys, *undo_args, *ssh_args(sshd)[2:], "--broker", common[common.index("--broker") + 1]
    )
    assert code == 0, out + err
    assert not prefix.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(second_pid, 0)
    assert retained(mqtt_broker, node, console_identity) == {}


def test_unknown_host_key_refused_and_accept_new(
    sshd: Sshd, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    known = tmp_path / "known_hosts"
    args = ["deploy", "127.0.0.1", "--name", "n-hostkey", "--dry-run", "--prefix", str(tmp_path / "p")]
    code, _, err = run(capsys, *args, *ssh_args(sshd, known=known))
    assert code == 3
    assert err.strip().splitlines()[-1].startswith("devfleet: 127.0.0.1:")
    assert "unknown host key" in err.splitlines()[-1] and "--accept-new-host-key" in err
    assert not known.exists()

    code, _out, err = run(capsys, *args, *ssh_args(sshd, known=known), "--accept-new-host-key")
    assert code == 0, err
    host_key = (sshd.known_hosts.read_text().split())[1:3]
    assert known.read_text().split()[1:3] == host_key
    # A changed key is refused even with accept-new.
    known.write_text(f"[127.0.0.1]:{sshd.port} {(tmp_path / 'x').name and _other_host_key(tmp_path)}\n")
    code, _, err = run(capsys, *args, *ssh_args(sshd, known=known), "--accept-new-host-key")
    assert code == 3 and "does NOT match" in err.splitlines()[-1]


def _other_host_key(tmp_path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    return " ".join((tmp_path / "k.pub").read_text().split()[:2])


@pytest.mark.parametrize(
    ("case", "expect", "code"),
    [
        ("wrong key", "SSH login refused", 3),
        ("unreachable", "cannot connect", 3),
        ("no python", "no /nonexistent/python3 on the target", 1),
    ],
)
def test_failures_are_one_line(
    sshd: Sshd, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, expect: str, code: int
) -> None:
    args = ["deploy", "127.0.0.1", "--name", "n-fail", "--dry-run", "--prefix", str(tmp_path / "p")]
    ssh = ssh_args(sshd, key=sshd.other_key if case == "wrong key" else None)
    if case == "unreachable":
        ssh[1] = str(free_port())
    if case == "no python":
        ssh += ["--python", "/nonexistent/python3"]
    got, out, err = run(capsys, *args, *ssh)
    assert got == code
    last = err.strip().splitlines()[-1]
    assert last.startswith("devfleet: ") and expect in last, err
    assert "Traceback" not in out + err


def test_hosts_file_three_targets_one_fails(
    sshd: Sshd, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = (
        os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    )
    hosts = tmp_path / "hosts"
    # localhost is not in known_hosts (only 127.0.0.1 is): that one is refused.
    hosts.write_text(f"# lab\n127.0.0.1 n-a\n{user}@127.0.0.1 n-b\nlocalhost n-c\n")
    code, out, _ = run(
        capsys,
        "deploy",
        "--hosts",
        str(hosts),
        "--dry-run",
        "--prefix",
        str(tmp_path / "p"),
        "--json",
        *ssh_args(sshd),
    )
    assert code == 3
    got = {t["node"]: t for t in json.loads(out)["targets"]}
    assert got["n-a"]["ok"] and got["n-b"]["ok"]
    assert not got["n-c"]["ok"] and got["n-c"]["step"] == "connect"
    assert "unknown host key" in got["n-c"]["error"]
    # The same as a table.
    code, out, _err = run(
        capsys, "deploy", "--hosts", str(hosts), "--dry-run", "--prefix", str(tmp_path / "p"), *ssh_args(sshd)
    )
    row = next(line for line in out.splitlines() if line.startswith("localhost"))
    assert "FAILED" in row and "connect" in row and "unknown host key" in row


def test_a_file_for_the_service_user_is_staged_then_installed(sshd: Sshd, tmp_path: Path) -> None:
    """The system layout's path for config files (owner ``devfleet`` there; here
    ``daemon``): written 0600 into a staging folder, moved by ``install -o -g -m``,
    and the staging folder removed."""
    import pwd

    from devfleet_command.deploy_plan import Action
    from devfleet_command.deploy_run import _run_actions, probe
    from devfleet_command.deploy_ssh import Remote, SshTarget

    # As root (CI) another owner proves the file went through `install -o`; Debian has
    # user and group `daemon`.
    user = "daemon" if os.geteuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
    dest = tmp_path / "agent.toml"
    steps: list[tuple[str, str]] = []

    async def go() -> str:
        target = SshTarget("127.0.0.1", port=sshd.port, identity=sshd.user_key, known_hosts=sshd.known_hosts)
        async with await Remote.open(target) as remote:
            facts = await probe(remote, BASE_PYTHON, [str(tmp_path)])
            act = Action(
                "configure", path=str(dest), data=b"password = 1\n", mode=0o600, owner=user, secret=True
            )
            await _run_actions(
                remote, [act], "t", lambda host, step, detail: steps.append((step, detail)), facts
            )
            return facts.home

    home = asyncio.run(go())
    assert dest.read_bytes() == b"password = 1\n"
    assert dest.stat().st_mode & 0o777 == 0o600 and dest.stat().st_uid == pwd.getpwnam(user).pw_uid
    assert not (Path(home) / ".devfleet-staging").exists()
    assert [s for s, _ in steps] == ["configure", "configure"]


def test_a_linger_that_cannot_be_enabled_is_a_warning_not_a_failure(sshd: Sshd, tmp_path: Path) -> None:
    """The user-unit plan's ``loginctl enable-linger``, run for real over SSH. No
    systemd runs here (so no user manager: the probe says so, and a user unit cannot
    be started in any test here); loginctl fails, and that must warn, not fail."""
    from dataclasses import replace

    from devfleet_command.deploy_plan import Options, choose_layout, deploy_actions
    from devfleet_command.deploy_run import _run_actions, probe
    from devfleet_command.deploy_ssh import Remote, SshTarget

    warnings: list[str] = []

    async def go() -> tuple[bool, bool]:
        target = SshTarget("127.0.0.1", port=sshd.port, identity=sshd.user_key, known_hosts=sshd.known_hosts)
        async with await Remote.open(target) as remote:
            facts = await probe(remote, BASE_PYTHON, [str(tmp_path)])
            as_if = replace(facts, systemd=True, root=False, sudo=False, user_systemd=True)
            layout, _ = choose_layout(Options(name="n"), as_if)
            acts = deploy_actions(
                Options(name="n"), as_if, layout, files={}, unit=None, supervisor=Path("s"), user_unit=b""
            )
            linger = [a for a in acts if a.argv[:2] == ("loginctl", "enable-linger")]
            assert linger and linger[0].argv[2:] == (facts.login,)
            await _run_actions(remote, linger, "t", lambda *_: None, facts, warnings.append)
            return facts.user_systemd, facts.linger

    assert asyncio.run(go()) == (False, False)
    assert len(warnings) == 1 and "linger could not be enabled" in warnings[0]
    assert "NOT started after a reboot" in warnings[0]
