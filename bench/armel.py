"""An emulated Raspberry Pi Zero for the bench: a Debian armel userland under qemu-user.

A Pi Zero is an ARM1176 (ARMv6 with a VFPv2 floating-point unit), so the userland is
Debian ``armel`` (ARMv5TE and later, soft-float ABI, runs on ARMv6), not Debian's
``armhf`` (ARMv7); Raspberry Pi OS's own armhf (ARMv6 + VFP) is not in Debian's archive.
Every guest process runs under ``qemu-arm -cpu arm1176``. Layout (git-ignored, kept between runs):

    .bench/pizero/rootfs/                  debootstrap --arch=armel bookworm (made once)
    .bench/pizero/rootfs/opt/devfleet/     the agent's venv (python3 -m venv --copies)
    .bench/pizero/rootfs/opt/wheels/       wheels built on the host, psutil's sdist
    .bench/pizero/rootfs/opt/qemu-host/    qemu (static, and dynamic with its libraries)
    .bench/pizero/rootfs/tmp/bench-run/    the last run's files (agent data, logs, counts)
    .bench/pizero/insncount.so             the qemu plugin counting guest instructions

How it runs here (found by trying): ``debootstrap --foreign`` on the host, then the
second stage, ``python3 -m venv`` and ``pip install`` (which compiles psutil with the
userland's own gcc) inside ``chroot``. A process in the chroot runs more ARM programs
(dpkg, gcc, ...), so the kernel must hand ARM binaries to qemu: a binfmt_misc entry
(:class:`Binfmt`, registered for the run and removed after; binfmt_misc is mounted
first if it is not). The measured processes also run in the chroot (``/proc`` and
``/sys`` mounted, :class:`Mounts`), but started through a qemu copied into the rootfs
(``/opt/qemu-host``), so the bench knows their pid and passes qemu options.
``qemu-arm -L ROOTFS`` outside a chroot does not work for Python: qemu 7.2 maps paths
for ``open`` but not for ``statx``, so the interpreter cannot find its extension modules.
Guest instructions are counted by a TCG plugin (``bench/pizero/insncount.c``): Debian's
static qemu cannot load plugins and Debian's qemu ships none, so the dynamic
``qemu-arm`` (package ``qemu-user``, with its x86_64 libraries copied alongside) loads
this one, built with the host's C compiler.

Nothing here is a dependency of the tests or CI: only ``python3 dev.py bench --pi-zero``
calls it. Missing tools are installed with apt-get when running as root on Debian.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# DEVFLEET_PIZERO_DIR: another place for it (a second cache, a run from scratch beside one).
BASE = Path(os.environ.get("DEVFLEET_PIZERO_DIR") or ROOT / ".bench" / "pizero").resolve()
ROOTFS = BASE / "rootfs"
SUITE = "bookworm"
ARCH = "armel"
CPU = "arm1176"
# python3-dev, gcc and libc6-dev: psutil has no armv6 wheel on PyPI and compiles on the device.
PACKAGES = ("python3", "python3-venv", "python3-dev", "gcc", "libc6-dev")
VENV = "/opt/devfleet"  # inside the rootfs
WHEELS = "/opt/wheels"  # inside the rootfs
QEMU_DIR = "/opt/qemu-host"  # inside the rootfs: qemu for the measured processes
LOADER = "ld-linux-x86-64.so.2"
PLUGIN_SRC = Path(__file__).resolve().parent / "pizero" / "insncount.c"
PLUGIN = BASE / "insncount.so"
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
BINFMT_NAME = f"devfleet-bench-pizero-{os.getpid()}"  # one per run: two runs never remove each other's
# 32-bit little-endian ARM executables (the ELF header fields binfmt matches on).
ARM_MAGIC = r"\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00"
ARM_MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
TOOLS = {"qemu-arm-static": "qemu-user-static", "qemu-arm": "qemu-user", "debootstrap": "debootstrap"}
# The agent's own packages, and the extras of them it installs (see dependencies()).
AGENT_PACKAGES = {"packages/component-base": ("mqtt",), "packages/agent-core": ()}

Log = Callable[[str], None]


class SetupError(RuntimeError):
    """The emulated userland cannot be made on this machine (the message says why)."""


def _run(args: list[str | Path], *, env: dict[str, str] | None = None, log: Log | None = None) -> str:
    """Run a command; its output on failure goes into the error (last 2,000 characters)."""
    proc = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=env, check=False, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0:
        raise SetupError(
            f"{' '.join(map(str, args[:6]))} ... exited {proc.returncode}: {proc.stderr[-2000:]}"
        )
    return proc.stdout


def ensure_tools(log: Log) -> None:
    """qemu-arm-static, qemu-arm, debootstrap and a C compiler; apt-get them as root if missing."""
    missing = sorted({pkg for exe, pkg in TOOLS.items() if not shutil.which(exe)})
    if not shutil.which("cc"):
        missing.append("gcc")
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SetupError(
            f"the Pi Zero bench needs {', '.join(missing)} (Debian packages); install them first"
        )
    log(f"apt-get install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-q"], env=env)
    _run(["apt-get", "install", "-y", "-q", *missing], env=env)


def mirror(etc_apt: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt on this machine uses for ``bookworm`` (the only network used):
    the first deb822 stanza or one-line entry for the suite, else deb.debian.org."""
    texts = [p.read_text() for p in sorted(etc_apt.glob("sources.list.d/*.sources"))]
    for text in texts:  # deb822: a stanza with URIs and Suites
        for stanza in text.split("\n\n"):
            fields = dict(
                (k.strip(), v.strip())
                for k, _, v in (line.partition(":") for line in stanza.splitlines())
                if v
            )
            if SUITE in fields.get("Suites", "").split() and "deb" in fields.get("Types", "").split():
                return fields["URIs"].split()[0]
    lists = [etc_apt / "sources.list", *sorted(etc_apt.glob("sources.list.d/*.list"))]
    for path in lists:
        for line in path.read_text().splitlines() if path.exists() else []:
            m = re.match(rf"deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{SUITE}\s", line)
            if m:
                return m.group(1)
    return "http://deb.debian.org/debian"


def tool_versions() -> dict[str, str]:
    """qemu, debootstrap, and the userland's python3 and gcc package versions."""
    first = _run(["qemu-arm-static", "--version"]).splitlines()[0]
    query: list[str | Path] = [
        "dpkg-query",
        "--admindir",
        ROOTFS / "var/lib/dpkg",
        "-W",
        "-f",
        "${Package} ${Version}\n",
    ]
    packages: dict[str, str] = {}
    for line in _run([*query, "python3.11", "gcc-12"]).splitlines():
        name, _, got = line.partition(" ")
        packages[name] = got
    return {
        "qemu": first.removeprefix("qemu-arm version "),
        "debootstrap": _run(["debootstrap", "--version"]).strip().removeprefix("debootstrap "),
        "python3.11 (armel)": packages.get("python3.11", "?"),
        "gcc-12 (armel)": packages.get("gcc-12", "?"),
    }


class Binfmt:
    """A binfmt_misc entry handing 32-bit ARM executables to ``qemu-arm-static`` for as
    long as the ``with`` block lasts (needed by anything that runs inside the chroot).

    The ``F`` flag opens the interpreter now, so the chroot needs no copy of it; the CPU
    model comes from ``QEMU_CPU`` in the environment (binfmt passes no options). An entry
    of this run already there is reused.

    Raises:
        SetupError: binfmt_misc is not mounted and cannot be (not root, no kernel support).
    """

    def __init__(self) -> None:
        self.added = False

    def __enter__(self) -> Binfmt:
        if not (BINFMT_DIR / "register").exists():
            try:
                _run(["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT_DIR])
            except (SetupError, OSError) as e:
                raise SetupError(
                    f"binfmt_misc is not available here, so the chroot cannot run ARM code: {e}"
                ) from e
        if not (BINFMT_DIR / BINFMT_NAME).exists():
            qemu = shutil.which("qemu-arm-static") or "/usr/bin/qemu-arm-static"
            rule = f":{BINFMT_NAME}:M::{ARM_MAGIC}:{ARM_MASK}:{qemu}:F"
            try:
                (BINFMT_DIR / "register").write_bytes(
                    rule.encode().decode("unicode_escape").encode("latin-1")
                )
            except OSError as e:
                raise SetupError(f"cannot register qemu-arm-static with binfmt_misc: {e}") from e
            self.added = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self.added and (BINFMT_DIR / BINFMT_NAME).exists():
            (BINFMT_DIR / BINFMT_NAME).write_text("-1")


def chroot_env() -> dict[str, str]:
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/root",
        "QEMU_CPU": CPU,
        "DEBIAN_FRONTEND": "noninteractive",
    }


def in_chroot(args: list[str], log: Log | None = None) -> str:
    """Run ``args`` inside the armel rootfs (needs a :class:`Binfmt` around it)."""
    return _run(["chroot", ROOTFS, *args], env=chroot_env(), log=log)


def ensure_rootfs(log: Log) -> dict[str, Any]:
    """The armel rootfs, made once with debootstrap (both stages) and then reused.

    Returns ``{"cached": bool, "seconds": float, "stage1_seconds", "stage2_seconds"}``
    (the stage times are those of the run that made it).
    """
    stamp = BASE / "rootfs.json"
    source = mirror()
    wanted = {"suite": SUITE, "arch": ARCH, "packages": list(PACKAGES), "mirror": source}
    if stamp.exists():
        made = json.loads(stamp.read_text())
        if made.get("wanted") == wanted and (ROOTFS / "usr/bin/python3").exists():
            log(f"armel rootfs cached in {ROOTFS} (made in {made['seconds']:.0f} s)")
            return {**made, "cached": True}
    if ROOTFS.exists():
        log(f"removing the incomplete or outdated {ROOTFS}")
        shutil.rmtree(ROOTFS)
    ROOTFS.parent.mkdir(parents=True, exist_ok=True)
    log(f"debootstrap stage 1: {SUITE} {ARCH} from {source} (downloads ~60 MB)")
    t0 = time.monotonic()
    _run(["debootstrap", "--foreign", f"--arch={ARCH}", "--variant=minbase", "--include=" + ",".join(PACKAGES),
          SUITE, ROOTFS, source])  # fmt: skip
    t1 = time.monotonic()
    log(f"debootstrap stage 2 under qemu-arm (stage 1 took {t1 - t0:.0f} s; this one takes several minutes)")
    with Binfmt():
        in_chroot(["/debootstrap/debootstrap", "--second-stage"])
    t2 = time.monotonic()
    made = {"wanted": wanted, "stage1_seconds": t1 - t0, "stage2_seconds": t2 - t1, "seconds": t2 - t0}
    stamp.write_text(json.dumps(made, indent=2) + "\n")
    log(f"armel rootfs made in {t2 - t0:.0f} s (stage 2 {t2 - t1:.0f} s)")
    return {**made, "cached": False}


def dependencies() -> list[str]:
    """The agent's third-party distributions, read from its packages' pyproject.toml
    (component-base with its ``mqtt`` extra, agent-core), devfleet's own left out."""
    names: set[str] = set()
    for path, extras in AGENT_PACKAGES.items():
        meta = tomllib.loads((ROOT / path / "pyproject.toml").read_text())["project"]
        optional = meta.get("optional-dependencies", {})
        for req in [*meta.get("dependencies", []), *(r for e in extras for r in optional.get(e, []))]:
            name = re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0]
            if not name.startswith("devfleet-"):
                names.add(name)
    return sorted(names)


def build_wheels(log: Log) -> list[str]:
    """The two devfleet wheels (built now from this checkout), the pure-Python
    dependencies' wheels and psutil's sdist (pinned to the host bench's versions) and
    setuptools (psutil's build backend) into the rootfs's ``/opt/wheels``.

    Returns:
        The requirement strings to install, devfleet's own last.
    """
    out = ROOTFS / WHEELS.lstrip("/")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("devfleet_*"):
        old.unlink()
    pip = [sys.executable, "-m", "pip"]
    pins = {dist: version(dist) for dist in dependencies()}
    log(f"wheels on the host: devfleet-component-base, devfleet-agent-core; {pins}")
    _run(
        [
            *pip,
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            out,
            ROOT / "packages/component-base",
            ROOT / "packages/agent-core",
        ]
    )
    pure = [f"{d}=={v}" for d, v in pins.items() if d != "psutil"]
    _run([*pip, "download", "-q", "--no-deps", "--only-binary=:all:", "-d", out, *pure, "setuptools"])
    _run([*pip, "download", "-q", "--no-deps", "--no-binary=:all:", "-d", out, f"psutil=={pins['psutil']}"])
    return [f"psutil=={pins['psutil']}", *pure, "devfleet-agent-core"]


def ensure_agent(log: Log) -> dict[str, Any]:
    """The agent installed in ``/opt/devfleet`` inside the rootfs.

    The venv and the dependencies (psutil compiled there, timed) are made once and kept
    while the pins do not change; the devfleet wheels are installed again on every run,
    so the figures are of this checkout.

    Returns:
        ``{"venv_seconds", "psutil_build_seconds", "deps_seconds", "agent_seconds", "deps_cached"}``
        (venv/psutil/deps times are those of the run that installed them).
    """
    requirements = build_wheels(log)
    stamp = BASE / "venv.json"
    deps = requirements[:-1]
    pip = [f"{VENV}/bin/python", "-m", "pip", "install", "-q", "--no-index", "--find-links", WHEELS,
           "--disable-pip-version-check", "--no-cache-dir"]  # fmt: skip
    key = hashlib.sha256(json.dumps([deps, pip]).encode()).hexdigest()  # new pins or pip options: a new venv
    made: dict[str, Any] = json.loads(stamp.read_text()) if stamp.exists() else {}
    with Binfmt():
        if made.get("key") != key or not (ROOTFS / VENV.lstrip("/") / "bin/python").exists():
            shutil.rmtree(ROOTFS / VENV.lstrip("/"), ignore_errors=True)
            log(f"python3 -m venv --copies {VENV} (under qemu)")
            t0 = time.monotonic()
            in_chroot(["python3", "-m", "venv", "--copies", VENV])
            t1 = time.monotonic()
            log(f"pip install {deps[0]} (compiles its C extension with the armel gcc, under qemu)")
            in_chroot([*pip, deps[0]])
            t2 = time.monotonic()
            log(f"pip install {' '.join(deps[1:])}")
            in_chroot([*pip, *deps[1:]])
            t3 = time.monotonic()
            made = {
                "key": key,
                "venv_seconds": t1 - t0,
                "psutil_build_seconds": t2 - t1,
                "deps_seconds": t3 - t2,
                "dependencies": deps,
            }
            stamp.write_text(json.dumps(made, indent=2) + "\n")
            cached = False
        else:
            log(
                f"venv with {', '.join(deps)} cached (psutil compiled in {made['psutil_build_seconds']:.0f} s)"
            )
            cached = True
        log("pip install the devfleet wheels of this checkout (under qemu)")
        t0 = time.monotonic()
        in_chroot([*pip, "--force-reinstall", "--no-deps", *[f"{WHEELS}/{w.name}" for w in sorted(
            (ROOTFS / WHEELS.lstrip("/")).glob("devfleet_*.whl"))]])  # fmt: skip
        agent_seconds = time.monotonic() - t0
    return {
        **{k: v for k, v in made.items() if k != "key"},
        "agent_seconds": agent_seconds,
        "deps_cached": cached,
    }


def ensure_plugin(log: Log) -> Path:
    """``insncount.so`` built from ``bench/pizero/insncount.c`` with the host's cc (when newer)."""
    if not PLUGIN.exists() or PLUGIN.stat().st_mtime < PLUGIN_SRC.stat().st_mtime:
        log("building the qemu instruction-counting plugin")
        PLUGIN.parent.mkdir(parents=True, exist_ok=True)
        _run(["cc", "-O2", "-shared", "-fPIC", "-Wall", "-o", PLUGIN, PLUGIN_SRC, "-lpthread"])
    return PLUGIN


def install_qemu(log: Log) -> None:
    """qemu inside the rootfs (``/opt/qemu-host``), so a measured process runs in the
    chroot without binfmt and the bench knows its pid: ``qemu-arm-static`` as it is, the
    dynamic ``qemu-arm`` (it loads plugins) with its x86_64 libraries and loader, and the
    plugin. Copied again every run (a few MB)."""
    target = host_path(QEMU_DIR)
    shutil.rmtree(target, ignore_errors=True)
    (target / "lib").mkdir(parents=True)
    for exe in ("qemu-arm-static", "qemu-arm"):
        shutil.copy2(shutil.which(exe) or f"/usr/bin/{exe}", target / exe)
    shutil.copy2(ensure_plugin(log), target / PLUGIN.name)
    for lib in re.findall(r"(/\S+) \(0x", _run(["ldd", target / "qemu-arm"])):
        shutil.copy2(lib, target / "lib" / Path(lib).name)  # (follows symlinks)
    if not (target / "lib" / LOADER).exists():
        raise SetupError(f"qemu-arm's loader {LOADER} not found by ldd")


class Mounts:
    """``/proc`` and ``/sys`` of the rootfs mounted for the measured processes (qemu reads
    /proc/self/maps, the agent's psutil reads /proc and /sys); unmounted after."""

    def __init__(self) -> None:
        self.mounted: list[Path] = []

    def __enter__(self) -> Mounts:
        for kind in ("proc", "sysfs"):
            where = ROOTFS / ("proc" if kind == "proc" else "sys")
            if not os.path.ismount(where):
                _run(["mount", "-t", kind, kind, where])
                self.mounted.append(where)
        return self

    def __exit__(self, *exc: object) -> None:
        for where in reversed(self.mounted):
            subprocess.run(["umount", "-l", str(where)], check=False)


def host_path(guest: str) -> Path:
    """Where a path inside the rootfs is on the host."""
    return ROOTFS / guest.lstrip("/")


def guest_env() -> dict[str, str]:
    """A clean environment for a guest process (nothing of the host's venv leaks in)."""
    return {"PATH": f"{VENV}/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}


def host_env() -> dict[str, str]:
    """This process's environment for a host process, without ``PYTHONDONTWRITEBYTECODE``
    (set on this machine): compared with the guest, which imports compiled bytecode, the
    host must not compile every module from source on every start."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def emulated(args: list[str], *, count_into: str | None = None, page_log: str | None = None) -> list[str]:
    """The command line running the venv's ``python3 ARGS`` as a Pi Zero would: in the
    chroot, under qemu with ``-cpu arm1176`` (needs :class:`Mounts` around it).

    Args:
        count_into: a guest path; also count guest instructions into that file (the
            dynamic ``qemu-arm`` with the plugin; otherwise ``qemu-arm-static``, no plugin
            overhead).
        page_log: a guest path for qemu's ``-d page`` log (where the guest's base is).
    """
    chroot = [shutil.which("chroot") or "/usr/sbin/chroot", str(ROOTFS)]
    if count_into is None:
        qemu = [f"{QEMU_DIR}/qemu-arm-static"]
    else:
        qemu = [f"{QEMU_DIR}/lib/{LOADER}", "--library-path", f"{QEMU_DIR}/lib", f"{QEMU_DIR}/qemu-arm",
                "-plugin", f"{QEMU_DIR}/{PLUGIN.name},out={count_into}"]  # fmt: skip
    log = ["-d", "page", "-D", page_log] if page_log else []
    return [*chroot, *qemu, "-cpu", CPU, *log, f"{VENV}/bin/python3", *args]


def counted_native(args: list[str], count_into: Path) -> list[str]:
    """The host interpreter running ``ARGS`` under ``qemu-x86_64`` with the same counter
    (the host has no hardware counters here and valgrind cannot run inside qemu)."""
    return ["qemu-x86_64", "-plugin", f"{PLUGIN},out={count_into}", sys.executable, *args]
