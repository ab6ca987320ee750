"""The SSH side of ``devfleet deploy``: one connection per target, through asyncssh.

Why asyncssh (not paramiko/fabric): the console is asyncio already (one event loop
drives the MQTT client and many targets at once, ``--hosts`` with a semaphore, no
thread per host); it checks host keys against OpenSSH ``known_hosts`` files itself,
uses the operator's keys and ``ssh-agent``, reads ``~/.ssh/config``, and has SFTP to
upload files with their mode set at creation. Its one compiled dependency is
``cryptography``, which the console has already (signing). It is an optional extra
(``devfleet-central-command[deploy]``) imported only when deploying.

Every remote command is an argument list joined with :func:`shlex.join` (each
argument quoted): nothing from the operator or the target is ever parsed by the
remote shell. Secrets travel only as SFTP file contents, never in a command line
or a log message.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shlex
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devfleet_base.errors import Code

from .errors import ConsoleError, InvalidRequest

if TYPE_CHECKING:
    import asyncssh

__all__ = ["DeployError", "Remote", "SshTarget", "load_asyncssh"]


class DeployError(ConsoleError):
    """A deploy step failed; ``step`` names it (``connect``, ``check``, ``install``, ...)."""

    code = Code.FAILED

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


def load_asyncssh() -> Any:
    """Import asyncssh, or raise one line saying which extra brings it.

    Raises:
        InvalidRequest: asyncssh is not installed.
    """
    try:
        import asyncssh
    except ImportError:
        raise InvalidRequest(
            "deploy needs asyncssh: pip install 'devfleet-central-command[deploy]'"
        ) from None
    return asyncssh


@dataclass(frozen=True)
class SshTarget:
    """Where to connect: ``[user@]host`` and port, the key and the known_hosts file.

    Attributes:
        host: name or address (validated by :func:`deploy_plan.parse_target`).
        user: login name; None: the SSH config's or the local user's.
        port: TCP port (default 22).
        identity: a private key file; None: the operator's default keys and agent.
        known_hosts: the known_hosts file checked (and appended to with accept_new).
        accept_new: trust and record the key of a host not in known_hosts yet, like
            OpenSSH ``StrictHostKeyChecking=accept-new``; a changed key is always refused.
        timeout: seconds for the TCP connection and the login each.
    """

    host: str
    user: str | None = None
    port: int = 22
    identity: Path | None = None
    known_hosts: Path = Path("~/.ssh/known_hosts")
    accept_new: bool = False
    timeout: float = 10.0

    @property
    def label(self) -> str:
        """``user@host`` or ``host``, with ``:port`` when not 22."""
        who = f"{self.user}@{self.host}" if self.user else self.host
        return who if self.port == 22 else f"{who}:{self.port}"

    def host_pattern(self) -> str:
        """The host's name as known_hosts writes it (``[host]:port`` off port 22)."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


@dataclass(frozen=True)
class Result:
    """A finished remote command."""

    exit_status: int
    stdout: str
    stderr: str

    def last_line(self) -> str:
        """The last non-empty line of stderr (else stdout): what went wrong, briefly."""
        for text in (self.stderr, self.stdout):
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if lines:
                return lines[-1][:300]
        return f"exit status {self.exit_status}"


class Remote:
    """An open SSH connection to one target: run argument lists, write files.

    Use :meth:`open` (``async with await Remote.open(target) as remote``).
    """

    def __init__(self, target: SshTarget, conn: asyncssh.SSHClientConnection) -> None:
        self.target = target
        self._conn = conn
        self.new_host_key: str | None = None  # set when accept_new recorded a key

    @classmethod
    async def open(cls, target: SshTarget) -> Remote:
        """Connect and log in, checking the host key.

        Raises:
            DeployError(step="connect"): unreachable, refused, unknown or changed host
                key, key not accepted; the message is one line naming the target.
            InvalidRequest: asyncssh is missing.
        """
        ssh = load_asyncssh()
        known = target.known_hosts.expanduser()
        kwargs: dict[str, Any] = {
            "port": target.port,
            "connect_timeout": target.timeout,
            "login_timeout": target.timeout,
        }
        if target.user:
            kwargs["username"] = target.user
        if target.identity is not None:
            # Like OpenSSH's IdentitiesOnly: the named key and nothing else.
            kwargs.update(client_keys=[str(target.identity.expanduser())], agent_path=None)
        trusted = _known_keys(ssh, known, target)
        recorded: str | None = None
        if trusted or not target.accept_new:
            kwargs["known_hosts"] = (trusted, [], [])
        else:
            # Trust on first use, as OpenSSH accept-new: only public-key logins follow,
            # and their signatures are bound to this session, so nothing is given away.
            kwargs["known_hosts"] = None
        where = target.label
        try:
            conn = await ssh.connect(target.host, **kwargs)
        except ssh.HostKeyNotVerifiable:
            if trusted:
                raise DeployError(
                    "connect",
                    f"{where}: the host key does NOT match {known}; refusing (if the host was "
                    f"re-imaged: ssh-keygen -R {shlex.quote(target.host_pattern())} -f {known})",
                ) from None
            raise DeployError(
                "connect",
                f"{where}: unknown host key (not in {known}); check it and pass "
                "--accept-new-host-key to trust it",
            ) from None
        except ssh.PermissionDenied:
            raise DeployError(
                "connect", f"{where}: SSH login refused (key not accepted for this user)"
            ) from None
        except TimeoutError:
            raise DeployError("connect", f"{where}: no SSH answer within {target.timeout:g} s") from None
        except ssh.Error as exc:
            raise DeployError("connect", f"{where}: SSH failed: {exc.reason}") from None
        except OSError as exc:
            raise DeployError("connect", f"{where}: cannot connect: {exc.strerror or exc}") from None
        remote = cls(target, conn)
        if not trusted and target.accept_new:
            key = conn.get_server_host_key()
            if key is not None:
                recorded = key.export_public_key().decode().strip()
                _append_known_host(known, target.host_pattern(), recorded)
                remote.new_host_key = recorded
        return remote

    async def __aenter__(self) -> Remote:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection."""
        self._conn.close()
        await self._conn.wait_closed()

    async def run(self, argv: list[str], *, sudo: bool = False, timeout: float = 900.0) -> Result:
        """Run one command given as an argument list (each argument quoted).

        Args:
            argv: the program and its arguments.
            sudo: run it through ``sudo -n`` (never prompts: a password is never sent).
            timeout: seconds before the command is abandoned.

        Raises:
            DeployError(step="ssh"): the connection broke or the command timed out.
        """
        full = ["sudo", "-n", "--", *argv] if sudo else argv
        ssh = load_asyncssh()
        try:
            done = await asyncio.wait_for(self._conn.run(shlex.join(full), check=False), timeout)
        except TimeoutError:
            raise DeployError(
                "ssh", f"{self.target.label}: {argv[0]} did not finish within {timeout:g} s"
            ) from None
        except ssh.Error as exc:
            raise DeployError("ssh", f"{self.target.label}: SSH failed: {exc.reason}") from None
        status = done.exit_status if done.exit_status is not None else -1
        return Result(status, _text(done.stdout), _text(done.stderr))

    async def write(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """Write ``data`` to ``path`` with ``mode``: created under a temporary name with
        that mode, then renamed over, so the contents are never readable by others."""
        ssh = load_asyncssh()
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
        async with self._conn.start_sftp_client() as sftp:
            async with sftp.open(tmp, "wb", ssh.SFTPAttrs(permissions=mode)) as fh:
                await fh.write(data)
            await sftp.chmod(tmp, mode)
            await sftp.posix_rename(tmp, path)

    async def put(self, local: Path, path: str, mode: int = 0o644) -> None:
        """Upload one local file to ``path`` (skipped when a file of the same size is there)."""
        ssh = load_asyncssh()
        size = os.stat(local).st_size
        async with self._conn.start_sftp_client() as sftp:
            try:
                same = (await sftp.stat(path)).size == size
            except ssh.SFTPError:
                same = False  # not there (or unreadable): upload it
            if same:
                return  # a wheel's name carries its version: same name and size, same wheel
            await sftp.put(str(local), path)
            await sftp.chmod(path, mode)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else ""


def _known_keys(ssh: Any, known: Path, target: SshTarget) -> list[Any]:
    """The trusted keys known_hosts lists for the target (none when the file is missing)."""
    try:
        data = known.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise DeployError("connect", f"cannot read {known}: {exc.strerror}") from None
    try:
        addr = str(ipaddress.ip_address(target.host))
    except ValueError:
        addr = ""  # a name: matched by name only, as OpenSSH does with CheckHostIP=no
    try:
        host_keys, *_ = ssh.match_known_hosts(data, target.host, addr, target.port)
    except (ValueError, ssh.KeyImportError) as exc:
        raise DeployError("connect", f"{known}: not a known_hosts file ({exc})") from None
    return list(host_keys)


def _append_known_host(known: Path, pattern: str, key: str) -> None:
    known.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with known.open("a") as fh:
        fh.write(f"{pattern} {key}\n")
