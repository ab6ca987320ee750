"""What ``devfleet deploy`` will do on a target, decided before anything changes.

Pure functions: parse ``[USER@]HOST`` and ``--hosts`` files, read the target's facts
(what :data:`PROBE` prints), choose the layout, and build the list of
:class:`Action` s that :mod:`deploy_run` executes (``--dry-run`` prints them).
Every remote command is an argument list; none is ever a shell string.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devfleet_base.contract import check_name
from devfleet_base.errors import DevfleetError

from .errors import InvalidRequest

__all__ = [
    "AGENT_DIST",
    "MIN_PYTHON",
    "PROBE",
    "UNIT_NAME",
    "Action",
    "Facts",
    "Layout",
    "Options",
    "deploy_actions",
    "parse_hosts_file",
    "parse_target",
    "undeploy_actions",
]

MIN_PYTHON = (3, 11)
"""The agent's ``requires-python``."""
AGENT_DIST = "devfleet-agent-core[signing]"
UNIT_NAME = "devfleet-agent.service"
USER_UNIT_DIR = ".config/systemd/user"  # under the home directory: systemctl --user's own units
USER_PREFIX = ".local/share/devfleet"  # under the home directory: what deploy/systemd/user's unit names
SYSTEM_PREFIX = "/opt/devfleet"  # the layout deploy/systemd/devfleet-agent.service names
SYSTEM_ETC = "/etc/devfleet"
SYSTEM_DATA = "/var/lib/devfleet"
SERVICE_USER = "devfleet"
MIN_FREE_MB = 200  # a venv with the agent, cryptography and psutil is ~60 MB

_HOST = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,252})|\[?[0-9A-Fa-f:.]+\]?")
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9._-]{0,31}")
_REQUIREMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,-]+\])?([<>=!~]=?[A-Za-z0-9.*+!-]+)?")

PROBE = r"""
import json, os, platform, shutil, subprocess, sys
def free_mb(path):
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    try:
        return shutil.disk_usage(path or "/").free // 2**20
    except OSError:
        return -1
def manifest(prefix):
    try:
        with open(os.path.join(prefix, "deploy.json")) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None
osname = platform.system()
try:
    with open("/etc/os-release") as fh:
        osname = dict(l.rstrip().split("=", 1) for l in fh if "=" in l).get("PRETTY_NAME", osname).strip('"')
except OSError:
    pass
sudo = False
if os.geteuid() != 0 and shutil.which("sudo"):
    sudo = subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0
try:
    import pwd
    pwd.getpwnam("devfleet")
    user = True
except (KeyError, ImportError):
    user = False
def quiet(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
try:
    login = pwd.getpwuid(os.geteuid()).pw_name
except (KeyError, NameError):
    login = ""
done = quiet(["systemctl", "--user", "show-environment"])
user_systemd = done is not None and done.returncode == 0
done = quiet(["loginctl", "show-user", str(os.geteuid()), "--property=Linger", "--value"])
linger = done is not None and done.returncode == 0 and done.stdout.strip() == "yes"
prefixes = {}
for p in sys.argv[1:]:
    p = os.path.abspath(os.path.expanduser(p))
    prefixes[p] = {"free_mb": free_mb(p), "manifest": manifest(p),
                   "venv": os.path.exists(os.path.join(p, "venv", "bin", "python"))}
print(json.dumps({"python": list(sys.version_info[:3]), "os": osname, "arch": platform.machine(),
    "home": os.path.expanduser("~"), "root": os.geteuid() == 0, "sudo": sudo,
    "systemd": os.path.isdir("/run/systemd/system"), "service_user": user, "prefixes": prefixes,
    "login": login, "user_systemd": user_systemd, "linger": linger}))
"""
"""Run on the target as ``python3 -c PROBE PREFIX...``: prints the facts as one JSON line."""


def parse_target(text: str) -> tuple[str | None, str]:
    """``[USER@]HOST`` → ``(user or None, host)``.

    Raises:
        InvalidRequest: not a plain user and host name/address (a leading ``-`` or any
            character a shell or ssh would interpret is refused).
    """
    user, sep, host = text.rpartition("@")
    if not _HOST.fullmatch(host) or (sep and not _USER.fullmatch(user)):
        raise InvalidRequest(f"not a [USER@]HOST: {text!r}")
    return (user if sep else None), host.strip("[]")


def parse_hosts_file(text: str, source: str = "--hosts") -> list[tuple[str, str]]:
    """A ``--hosts`` file: one ``[USER@]HOST NAME`` per line; ``#`` comments, blank lines.

    Returns:
        ``[(target, node name), ...]`` in file order.

    Raises:
        InvalidRequest: a malformed line (its number says which), or a node named twice.
    """
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise InvalidRequest(f"{source} line {number}: expected '[USER@]HOST NAME', got {line[:80]!r}")
        try:
            parse_target(parts[0])
            check_name(parts[1], "node")
        except DevfleetError as exc:
            raise InvalidRequest(f"{source} line {number}: {exc.message}") from None
        if parts[1] in seen:
            raise InvalidRequest(f"{source} line {number}: node {parts[1]} is named twice")
        seen.add(parts[1])
        out.append((parts[0], parts[1]))
    if not out:
        raise InvalidRequest(f"{source}: no hosts")
    return out


def check_requirements(items: list[str]) -> list[str]:
    """Component requirements (``name``, ``name[extra]``, ``name==1.2``).

    Raises:
        InvalidRequest: anything else (a leading ``-`` would be a pip option).
    """
    for item in items:
        if not _REQUIREMENT.fullmatch(item):
            raise InvalidRequest(f"not a package requirement: {item!r}")
    return items


@dataclass(frozen=True)
class Facts:
    """What :data:`PROBE` found on the target."""

    python: tuple[int, int, int]
    os: str
    arch: str
    home: str
    root: bool
    sudo: bool
    systemd: bool
    service_user: bool
    prefixes: dict[str, dict[str, Any]]
    login: str = ""  # the SSH user's name on the target
    user_systemd: bool = False  # `systemctl --user show-environment` succeeded: a user manager runs
    linger: bool = False  # `loginctl show-user` says Linger=yes: user units start at boot

    @classmethod
    def parse(cls, line: str) -> Facts:
        """Read the probe's JSON line.

        Raises:
            ValueError: not the probe's output.
        """
        try:
            return cls._parse(json.loads(line))
        except (KeyError, IndexError, TypeError, OverflowError, AttributeError) as exc:
            raise ValueError(f"not the probe's output: {exc!r}"[:200]) from None

    @classmethod
    def _parse(cls, raw: Any) -> Facts:
        if not isinstance(raw, dict):
            raise ValueError("probe output is not an object")
        py = raw["python"]
        return cls(
            python=(int(py[0]), int(py[1]), int(py[2])),
            os=str(raw["os"])[:80],
            arch=str(raw["arch"])[:40],
            home=str(raw["home"]),
            root=bool(raw["root"]),
            sudo=bool(raw["sudo"]),
            systemd=bool(raw["systemd"]),
            service_user=bool(raw["service_user"]),
            prefixes={str(k): dict(v) for k, v in dict(raw["prefixes"]).items()},
            login=str(raw.get("login", ""))[:32],
            user_systemd=bool(raw.get("user_systemd", False)),
            linger=bool(raw.get("linger", False)),
        )

    @property
    def privileged(self) -> bool:
        """Root, or passwordless sudo."""
        return self.root or self.sudo

    def summary(self) -> str:
        """One line: ``Debian 12, aarch64, Python 3.11.2, systemd, sudo``."""
        py = ".".join(map(str, self.python))
        bits = [self.os, self.arch, f"Python {py}", "systemd" if self.systemd else "no systemd"]
        bits.append("root" if self.root else "sudo" if self.sudo else "no sudo")
        if self.user_systemd and not self.privileged:
            bits.append("user systemd" + (", linger" if self.linger else ""))
        return ", ".join(bits)


@dataclass(frozen=True)
class Layout:
    """Where everything goes on the target.

    ``system``: the systemd system unit's fixed layout (``/opt/devfleet/venv``,
    ``/etc/devfleet``, ``/var/lib/devfleet``, user ``devfleet``); else everything
    under ``prefix``, run by the systemd user unit (``user``: the prefix is
    ``HOME/.local/share/devfleet``, the unit in ``HOME/.config/systemd/user``) or
    else by a supervised background process.
    """

    prefix: str
    system: bool = False
    user: bool = False
    home: str = ""  # the target's home directory (where the user unit goes)

    @property
    def venv(self) -> str:
        return posixpath.join(self.prefix, "venv")

    @property
    def python(self) -> str:
        return posixpath.join(self.venv, "bin", "python")

    @property
    def etc(self) -> str:
        return SYSTEM_ETC if self.system else posixpath.join(self.prefix, "etc")

    @property
    def data(self) -> str:
        return SYSTEM_DATA if self.system else posixpath.join(self.prefix, "data")

    @property
    def wheelhouse(self) -> str:
        return posixpath.join(self.prefix, "wheelhouse")

    @property
    def supervisor(self) -> str:
        return posixpath.join(self.prefix, "supervise.py")

    @property
    def pidfile(self) -> str:
        return posixpath.join(self.prefix, "agent.pid")

    @property
    def logfile(self) -> str:
        return posixpath.join(self.prefix, "agent.log")

    @property
    def manifest(self) -> str:
        return posixpath.join(self.prefix, "deploy.json")

    @property
    def unit(self) -> str:
        if self.user:
            return posixpath.join(self.home, USER_UNIT_DIR, UNIT_NAME)
        return f"/etc/systemd/system/{UNIT_NAME}"

    def removed_by_undeploy(self) -> list[str]:
        """Every path undeploy removes."""
        paths = [self.prefix]
        if self.system:
            paths += [self.etc, self.data, self.unit]
        elif self.user:
            paths.append(self.unit)
        return paths


@dataclass(frozen=True)
class Action:
    """One change on the target: a command (``argv``) or a file (``path`` ← ``data``
    or ``local``). ``secret`` files are never shown, only their path and mode."""

    step: str
    argv: tuple[str, ...] = ()
    warn: str = ""  # a failure is not an error: this warning is shown instead
    sudo: bool = False
    path: str = ""
    data: bytes | None = None
    local: Path | None = None
    mode: int = 0o644
    owner: str = ""  # with sudo: install the file owned by this user (and group)
    secret: bool = False
    ok_codes: tuple[int, ...] = (0,)

    def describe(self) -> str:
        """What ``--dry-run`` prints for it."""
        if self.argv:
            return (
                ("sudo " if self.sudo else "")
                + shlex.join(self.argv)
                + (" (may fail: warns)" if self.warn else "")
            )
        what = f"upload {self.local.name}" if self.local is not None else "write"
        note = ", contents not shown" if self.secret else ""
        owner = f", owner {self.owner}" if self.owner else ""
        return f"{what} -> {self.path} (mode {self.mode:04o}{owner}{note})"


@dataclass
class Options:
    """What the operator asked for (the CLI's flags)."""

    name: str
    prefix: str | None = None
    python: str = "python3"
    wheelhouse: Path | None = None
    index_url: str | None = None
    components: list[str] = field(default_factory=list)
    allow_install: bool = False
    system: bool | None = None  # None: the system unit when systemd runs and root/sudo works


def choose_layout(opts: Options, facts: Facts) -> tuple[Layout, list[str]]:
    """The layout for this target, and warnings to show.

    Raises:
        InvalidRequest: ``--system`` asked where it cannot be done.
    """
    warnings: list[str] = []
    can_system = facts.systemd and facts.privileged
    system = can_system and opts.prefix is None if opts.system is None else opts.system
    if system and not can_system:
        raise InvalidRequest("--system needs systemd running and root or passwordless sudo on the target")
    if system:
        return Layout(SYSTEM_PREFIX, system=True), warnings
    default = posixpath.join(facts.home, USER_PREFIX)
    prefix = opts.prefix or default
    if not posixpath.isabs(prefix):
        prefix = posixpath.join(facts.home, prefix.removeprefix("~/"))
    prefix = posixpath.normpath(prefix)
    # The user unit names HOME/.local/share/devfleet (%h-relative), so only that prefix.
    if facts.systemd and facts.user_systemd and prefix == posixpath.normpath(default):
        return Layout(prefix, user=True, home=facts.home), warnings
    if not facts.systemd:
        why = "no systemd runs there"
    elif prefix != posixpath.normpath(default):
        why = "--prefix other than ~/.local/share/devfleet"
    else:
        why = "no root or passwordless sudo, and no systemd user manager (systemctl --user failed)"
    warnings.append(
        f"{why}: the agent runs as a supervised background process, restarted if it "
        "exits but NOT started again after a reboot"
    )
    return Layout(prefix, system=False), warnings


def check_facts(facts: Facts, layout: Layout, host: str) -> None:
    """Refuse a target that cannot run the agent.

    Raises:
        InvalidRequest: the message names the host and the fix.
    """
    if facts.python[:2] < MIN_PYTHON:
        need = ".".join(map(str, MIN_PYTHON))
        raise InvalidRequest(
            f"{host}: Python {'.'.join(map(str, facts.python))} is too old (the agent needs {need})"
        )
    free = _prefix_facts(facts, layout).get("free_mb", -1)
    if isinstance(free, int) and 0 <= free < MIN_FREE_MB:
        raise InvalidRequest(f"{host}: only {free} MB free at {layout.prefix} (need {MIN_FREE_MB} MB)")


def _prefix_facts(facts: Facts, layout: Layout) -> dict[str, Any]:
    return facts.prefixes.get(layout.prefix, {})


def deploy_actions(
    opts: Options,
    facts: Facts,
    layout: Layout,
    *,
    files: dict[str, bytes],
    unit: bytes | None,
    supervisor: Path,
    user_unit: bytes | None = None,
) -> list[Action]:
    """Everything deploy changes on the target, in order.

    Args:
        opts: the operator's options.
        facts: the target's facts (decides whether the venv exists, a unit, ...).
        layout: from :func:`choose_layout`.
        files: the node's provisioned files by name (``agent.toml``, ``identity.json``,
            ...), written 0600 into ``layout.etc``.
        unit: the systemd unit (deploy/systemd/devfleet-agent.service) for a system layout.
        supervisor: the local file of :mod:`deploy_supervise`, for a background layout.
        user_unit: deploy/systemd/user/devfleet-agent.service, for a user layout.
    """
    sudo = layout.system and not facts.root
    state = _prefix_facts(facts, layout)
    acts: list[Action] = []
    manifest = json.dumps(
        {
            "node": opts.name,
            "prefix": layout.prefix,
            "system": layout.system,
            "user": layout.user,
            "etc": layout.etc,
            "data": layout.data,
        },
        sort_keys=True,
    ).encode()
    if state.get("manifest"):
        if layout.system:
            acts.append(Action("stop", ("systemctl", "stop", UNIT_NAME), sudo=sudo, ok_codes=(0, 5)))
        elif isinstance(state["manifest"], dict) and state["manifest"].get("user"):
            # 1: no user manager now (the background process replaces the unit), 5: not loaded
            acts.append(Action("stop", (*USER_SYSTEMCTL, "stop", UNIT_NAME), ok_codes=(0, 1, 5)))
        elif state.get("venv"):  # an earlier run that failed before the venv started nothing
            acts.append(
                Action("stop", (layout.python, layout.supervisor, "stop", layout.pidfile), ok_codes=(0, 1, 2))
            )
    if layout.system and not facts.service_user:
        acts.append(
            Action(
                "prepare",
                (
                    "useradd",
                    "--system",
                    "--home-dir",
                    layout.data,
                    "--shell",
                    "/usr/sbin/nologin",
                    SERVICE_USER,
                ),
                sudo=sudo,
            )
        )
    acts.append(Action("prepare", ("mkdir", "-p", "-m", "0755", layout.prefix, layout.wheelhouse), sudo=sudo))
    acts.append(Action("prepare", ("mkdir", "-p", "-m", "0700", layout.etc, layout.data), sudo=sudo))
    if layout.user:
        acts.append(Action("prepare", ("mkdir", "-p", "-m", "0755", posixpath.dirname(layout.unit))))
    if layout.system:
        acts.append(
            Action("prepare", ("chown", f"{SERVICE_USER}:{SERVICE_USER}", layout.etc, layout.data), sudo=sudo)
        )
    acts.append(Action("prepare", path=layout.manifest, data=manifest, mode=0o644, sudo=sudo))
    if not state.get("venv"):
        acts.append(Action("venv", (opts.python, "-m", "venv", layout.venv), sudo=sudo))
    pip = [layout.python, "-m", "pip", "install", "--disable-pip-version-check", "--quiet", "--upgrade"]
    pip += ["--upgrade-strategy", "only-if-needed"]
    if opts.wheelhouse is not None:
        for wheel in sorted(opts.wheelhouse.glob("*.whl")):
            acts.append(
                Action("upload", path=posixpath.join(layout.wheelhouse, wheel.name), local=wheel, sudo=sudo)
            )
        pip += ["--no-index", "--find-links", layout.wheelhouse]
    elif opts.index_url:
        pip += ["--index-url", opts.index_url]
    if layout.system:
        pip.append("--root-user-action=ignore")  # a root-owned venv the service only reads
    acts.append(Action("install", (*pip, AGENT_DIST, *opts.components), sudo=sudo))
    owner = SERVICE_USER if layout.system else ""
    for name, data in files.items():
        path = posixpath.join(layout.etc, name)
        acts.append(
            Action("configure", path=path, data=data, mode=0o600, owner=owner, secret=True, sudo=sudo)
        )
    config = posixpath.join(layout.etc, "agent.toml")
    if layout.system:
        assert unit is not None, "a system layout needs the unit file"
        acts.append(Action("service", path=layout.unit, data=unit, mode=0o644, sudo=sudo))
        acts.append(Action("service", ("systemctl", "daemon-reload"), sudo=sudo))
        acts.append(Action("service", ("systemctl", "enable", UNIT_NAME), sudo=sudo))
        # --no-block: the unit is Type=notify with no start timeout (it waits for the
        # broker as long as it takes); the online step waits for the birth instead.
        acts.append(Action("service", ("systemctl", "restart", "--no-block", UNIT_NAME), sudo=sudo))
    elif layout.user:
        assert user_unit is not None, "a user layout needs the user unit file"
        acts += _user_unit_actions(facts, layout, user_unit)
    else:
        acts.append(Action("service", path=layout.supervisor, local=supervisor, mode=0o644))
        agent = (
            posixpath.join(layout.venv, "bin", "devfleet-agent"),
            "--config",
            config,
            "--data-dir",
            layout.data,
        )
        acts.append(
            Action(
                "service",
                (layout.python, layout.supervisor, "start", layout.pidfile, layout.logfile, "--", *agent),
            )
        )
    return acts


USER_SYSTEMCTL = ("systemctl", "--user")


def _user_unit_actions(facts: Facts, layout: Layout, user_unit: bytes) -> list[Action]:
    """Install, enable and (re)start the user unit; linger so it starts at boot."""
    acts = [
        Action("service", path=layout.unit, data=user_unit, mode=0o644),
        Action("service", (*USER_SYSTEMCTL, "daemon-reload")),
        Action("service", (*USER_SYSTEMCTL, "enable", UNIT_NAME)),
        # --no-block as for the system unit: Type=notify waits for the broker.
        Action("service", (*USER_SYSTEMCTL, "restart", "--no-block", UNIT_NAME)),
    ]
    if not facts.linger:
        # Without linger the user manager (and the agent) starts at the user's first
        # login and stops at the last logout. polkit lets most users linger themselves.
        who = facts.login or "$USER"
        acts.append(
            Action(
                "service",
                ("loginctl", "enable-linger", *([facts.login] if facts.login else [])),
                warn=(
                    "linger could not be enabled: the agent stops when you log out and is NOT "
                    f"started after a reboot until you log in (as root: loginctl enable-linger {who})"
                ),
            )
        )
    return acts


def undeploy_actions(facts: Facts, layout: Layout) -> list[Action]:
    """Stop the agent and remove every file deploy made (see :meth:`Layout.removed_by_undeploy`)."""
    sudo = layout.system and not facts.root
    acts: list[Action] = []
    if layout.system:
        acts.append(
            Action("stop", ("systemctl", "disable", "--now", UNIT_NAME), sudo=sudo, ok_codes=(0, 1, 5))
        )
        acts.append(Action("remove", ("rm", "-rf", "--", *layout.removed_by_undeploy()), sudo=sudo))
        acts.append(Action("remove", ("systemctl", "daemon-reload"), sudo=sudo))
        if facts.service_user:
            acts.append(Action("remove", ("userdel", SERVICE_USER), sudo=sudo, ok_codes=(0, 6)))
    elif layout.user:
        # 1: no such unit, 5: not loaded; linger is left as it was (other user units may need it).
        acts.append(Action("stop", (*USER_SYSTEMCTL, "disable", "--now", UNIT_NAME), ok_codes=(0, 1, 5)))
        acts.append(Action("remove", ("rm", "-rf", "--", *layout.removed_by_undeploy())))
        acts.append(Action("remove", (*USER_SYSTEMCTL, "daemon-reload"), ok_codes=(0, 1)))
    else:
        acts.append(
            Action(
                "stop", (layout.python, layout.supervisor, "stop", layout.pidfile), ok_codes=(0, 1, 2, 127)
            )
        )
        acts.append(Action("remove", ("rm", "-rf", "--", layout.prefix)))
    return acts


def toml_settings(settings: dict[str, object]) -> bytes:
    """Extra ``agent.toml`` lines (``allow_install = true``): JSON scalars are TOML."""
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items()).encode()
