"""Private MQTT brokers for tests: a real mosquitto, or amqtt when mosquitto is absent.

Each broker listens on a free loopback port with a configuration generated in
its own temporary directory, so tests never touch a shared broker::

    with MosquittoBroker() as broker:
        ...  # broker.host, broker.port, broker.url

Variants are chosen with constructor arguments: ``auth=True`` (a password file
made with ``mosquitto_passwd`` plus an optional ACL) and ``tls=True`` (a
throwaway CA, server and client certificate made with trustme).

Only the standard library is imported here (trustme when a TLS broker is made);
amqtt is imported by the subprocess that runs it, never by the test process.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol, Self

__all__ = [
    "BrokerError",
    "BrokerNotInstalled",
    "EmbeddedBroker",
    "LocalBroker",
    "MosquittoBroker",
    "TlsFiles",
    "amqtt_available",
    "find_mosquitto",
    "free_port",
    "start_local_broker",
]

LOOPBACK = "127.0.0.1"
_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin")
INSTALL_HINT = (
    "install it with `apt-get install mosquitto` (Debian/Ubuntu/Raspberry Pi OS), "
    "`brew install mosquitto` (macOS), or `pip install amqtt` for the embedded broker"
)


class BrokerError(RuntimeError):
    """A test broker could not be started or stopped."""


class BrokerNotInstalled(BrokerError):
    """The broker executable (or the amqtt package) is not installed."""


class LocalBroker(Protocol):
    """What every test broker offers; fixtures and probes depend only on this."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """``mqtt://host:port`` (``mqtts://`` when TLS is on)."""
        ...

    @property
    def ca_path(self) -> Path | None:
        """The CA certificate clients should trust, or ``None`` without TLS."""
        ...

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        ...

    def start(self) -> None:
        """Start the broker and wait until its port accepts connections."""

    def stop(self) -> None:
        """Stop the broker gracefully (SIGTERM, then SIGKILL if it hangs)."""

    def restart(self) -> None:
        """Stop and start again on the same port."""

    def kill(self) -> None:
        """Kill the broker abruptly (SIGKILL), as a crash would."""


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on ``host`` that is free right now.

    Args:
        host: The loopback address to probe.

    Returns:
        A port number chosen by the kernel.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _find_executable(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in _SBIN_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def find_mosquitto() -> str | None:
    """Return the path of the ``mosquitto`` executable, or ``None``.

    Looks on ``PATH`` first, then in the usual ``sbin`` directories (Debian
    installs mosquitto in ``/usr/sbin``, which is not on a normal user's PATH).
    """
    return _find_executable("mosquitto")


def amqtt_available() -> bool:
    """Whether the ``amqtt`` package can be imported by this interpreter."""
    import importlib.util

    return importlib.util.find_spec("amqtt") is not None


def _run(args: Sequence[str], what: str) -> None:
    proc = subprocess.run(list(args), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BrokerError(
            f"{what} failed (exit {proc.returncode}): {' '.join(args)}\n"
            f"{proc.stderr.strip() or proc.stdout.strip()}"
        )


class TlsFiles:
    """A throwaway CA with a server certificate (for 127.0.0.1) and a client certificate.

    Made with trustme (EC P-256 keys, the extensions strict verifiers want: key
    usage, subject/authority key identifiers, SAN). trustme is the test kit's
    extra and is imported only when TLS is asked for.

    Attributes:
        ca_path: CA certificate (PEM) that clients and the broker trust.
        ca_key: CA private key (PEM, unencrypted), for tests that sign more certificates.
        server_cert: Server certificate (PEM), SAN ``IP:127.0.0.1, DNS:localhost``.
        server_key: Server private key (PEM, unencrypted).
        client_cert: Client certificate for mutual TLS (CN ``devfleet-test-client``).
        client_key: Client private key (PEM, unencrypted).
    """

    def __init__(self, directory: Path) -> None:
        """Generate the files in ``directory`` (created if missing; keys are 0600).

        Raises:
            BrokerNotInstalled: trustme is not installed (``devfleet-component-base[testing]``).
        """
        try:
            import trustme
        except ImportError:
            raise BrokerNotInstalled(
                "trustme is needed for TLS test brokers: pip install 'devfleet-component-base[testing]'"
            ) from None
        directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="devfleet-test-ca")
        server = ca.issue_cert("127.0.0.1", "localhost", common_name="devfleet-test-server")
        client = ca.issue_cert("devfleet-test-client", common_name="devfleet-test-client")
        self.ca_path = directory / "ca.crt"
        self.ca_key = directory / "ca.key"
        self.server_cert = directory / "server.crt"
        self.server_key = directory / "server.key"
        self.client_cert = directory / "client.crt"
        self.client_key = directory / "client.key"
        ca.cert_pem.write_to_path(str(self.ca_path))
        server.cert_chain_pems[0].write_to_path(str(self.server_cert))
        client.cert_chain_pems[0].write_to_path(str(self.client_cert))
        for blob, path in (
            (ca.private_key_pem, self.ca_key),
            (server.private_key_pem, self.server_key),
            (client.private_key_pem, self.client_key),
        ):
            path.touch(mode=0o600)
            blob.write_to_path(str(path))


class _SubprocessBroker:
    """Shared lifecycle of a broker that runs as a child process on a fixed loopback port."""

    _kind = "broker"

    def __init__(self, *, port: int | None, startup_timeout: float, tmp_dir: Path | None) -> None:
        self.host = LOOPBACK
        self._explicit_port = port is not None
        self.port = port if port is not None else free_port()
        self.startup_timeout = startup_timeout
        self._own_tmp = tmp_dir is None
        self.dir = Path(tempfile.mkdtemp(prefix="devfleet-broker-")) if tmp_dir is None else tmp_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "broker.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._tls: TlsFiles | None = None

    # -- subclass hooks -------------------------------------------------
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _write_config(self) -> None:
        raise NotImplementedError

    # -- public API -----------------------------------------------------
    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT``, or ``mqtts://`` when TLS is on."""
        scheme = "mqtts" if self._tls is not None else "mqtt"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def tls(self) -> TlsFiles | None:
        """The generated certificates when TLS is on, else ``None``."""
        return self._tls

    @property
    def ca_path(self) -> Path | None:
        """The CA certificate clients should trust, or ``None`` without TLS."""
        return self._tls.ca_path if self._tls is not None else None

    @property
    def pid(self) -> int | None:
        """Process id of the running broker, or ``None``."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the broker's log (stdout and stderr)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> None:
        """Start the broker and wait until its port accepts a TCP connection.

        If the port chosen at construction was taken in the meantime (and no
        port was given explicitly), a new free port is picked once or twice.

        Raises:
            BrokerError: the broker exited or did not listen in time; the
                message carries the tail of its log.
        """
        if self.running:
            return
        self._write_config()
        attempts = 1 if self._explicit_port else 3
        for attempt in range(attempts):
            try:
                self._spawn_and_wait()
                return
            except BrokerError:
                if attempt + 1 < attempts and "in use" in self.log_tail().lower():
                    self._repick_ports()
                    self._write_config()
                    continue
                raise

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker with SIGTERM, escalating to SIGKILL after ``timeout`` seconds."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self._proc = None

    def kill(self) -> None:
        """Kill the broker with SIGKILL, as a crash or power cut would."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait(5.0)
        self._proc = None

    def restart(self) -> None:
        """Stop the broker and start it again on the same port.

        Without persistence the new broker has no retained messages and no
        sessions, exactly like a broker that rebooted; clients must reconnect,
        re-subscribe and re-publish their birth.
        """
        self.stop()
        self._explicit_port = True  # clients know this port now; never move it
        self.start()

    def close(self) -> None:
        """Stop the broker and remove its temporary directory (if we made it)."""
        self.stop()
        if self._own_tmp:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.url} {state}>"

    # -- internals ------------------------------------------------------
    def _repick_ports(self) -> None:
        """Choose new free ports after one was taken between choosing and binding."""
        self.port = free_port()

    def _listening(self) -> bool:
        """Whether the started process is ready for clients (polled until the deadline)."""
        return _accepts(self.host, self.port)

    def _spawn_and_wait(self) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"--- starting {self._kind} on port {self.port}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(  # an argument list, never a shell string
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,  # a Ctrl-C in the terminal must not reach it first
            )
        deadline = time.monotonic() + self.startup_timeout
        delay = 0.005
        while True:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                raise BrokerError(
                    f"{self._kind} exited with code {code} while starting on "
                    f"{self.host}:{self.port}; log tail:\n{self.log_tail()}"
                )
            if self._listening():
                return
            if time.monotonic() >= deadline:
                self.kill()
                raise BrokerError(
                    f"{self._kind} did not accept connections on {self.host}:{self.port} "
                    f"within {self.startup_timeout:.1f}s; log tail:\n{self.log_tail()}"
                )
            time.sleep(delay)  # polling a condition with a deadline, not hoping
            delay = min(delay * 2, 0.1)


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class MosquittoBroker(_SubprocessBroker):
    """A private mosquitto on a free loopback port.

    Args:
        port: Port to listen on; a free one is chosen if omitted.
        auth: Require a username and password (anonymous access off unless
            ``allow_anonymous`` says otherwise).
        users: ``{username: password}`` written with ``mosquitto_passwd -b``.
        acl: ACL file lines (mosquitto syntax, e.g. ``"user device"``,
            ``"topic readwrite nodes/#"``, ``"pattern read nodes/%u/#"``).
            Without it, every authenticated user may do everything.
        allow_anonymous: Override the default (``not auth``).
        tls: Listen with TLS, using a throwaway CA (see :attr:`tls`).
        require_client_cert: With ``tls``, demand a client certificate signed
            by the CA (mutual TLS); clients use ``tls.client_cert``/``client_key``.
        persistence: Keep retained messages and sessions across :meth:`restart`.
        max_queued_messages: mosquitto's per-client queue of QoS 1/2 messages (100,000
            for load tests); None leaves mosquitto's default (1,000), as a stock
            broker has it.
        extra_config: More mosquitto.conf lines, appended verbatim.
        executable: Path of mosquitto; found on PATH or in /usr/sbin if omitted.
        startup_timeout: Seconds to wait for the port to accept connections.
        tmp_dir: Directory for config, password, ACL, certificates and log;
            a temporary directory (removed by :meth:`close`) if omitted.

    Raises:
        BrokerNotInstalled: mosquitto (or mosquitto_passwd, trustme) is missing.
    """

    _kind = "mosquitto"

    def __init__(
        self,
        *,
        port: int | None = None,
        auth: bool = False,
        users: Mapping[str, str] | None = None,
        acl: Sequence[str] | None = None,
        allow_anonymous: bool | None = None,
        tls: bool = False,
        require_client_cert: bool = False,
        persistence: bool = False,
        max_queued_messages: int | None = 100_000,
        extra_config: Sequence[str] = (),
        executable: str | None = None,
        startup_timeout: float = 10.0,
        tmp_dir: Path | None = None,
    ) -> None:
        exe = executable or find_mosquitto()
        if exe is None:
            raise BrokerNotInstalled(f"mosquitto is not installed: {INSTALL_HINT}")
        if require_client_cert and not tls:
            raise ValueError("require_client_cert needs tls=True")
        super().__init__(port=port, startup_timeout=startup_timeout, tmp_dir=tmp_dir)
        self.executable = exe
        self.auth = auth
        self.users: dict[str, str] = dict(users or {})
        self.acl: list[str] | None = list(acl) if acl is not None else None
        self.allow_anonymous = (not auth) if allow_anonymous is None else allow_anonymous
        self.require_client_cert = require_client_cert
        self.persistence = persistence
        self.max_queued_messages = max_queued_messages
        self.extra_config = list(extra_config)
        self.config_path = self.dir / "mosquitto.conf"
        self._files_ready = False
        if tls:
            self._tls = TlsFiles(self.dir / "tls")

    def _command(self) -> list[str]:
        return [self.executable, "-c", str(self.config_path)]

    def _prepare_files(self) -> None:
        if self._files_ready:
            return
        if self.auth:
            passwd = _find_executable("mosquitto_passwd")
            if passwd is None:
                raise BrokerNotInstalled(
                    f"mosquitto_passwd is not installed (it ships with mosquitto): {INSTALL_HINT}"
                )
            path = self.dir / "passwd"
            path.write_text("")
            path.chmod(0o600)
            for user, password in self.users.items():
                _run([passwd, "-b", str(path), user, password], f"mosquitto_passwd for {user!r}")
            path.chmod(0o600)
        if self.acl is not None:
            path = self.dir / "acl"
            path.write_text("\n".join(self.acl) + "\n")
            path.chmod(0o600)
        self._files_ready = True

    def _write_config(self) -> None:
        self._prepare_files()
        lines = [
            "# generated by devfleet_base.testing.broker",
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",  # only used when run as root
            "per_listener_settings false",
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            "set_tcp_nodelay true",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp true",
        ]
        if self.max_queued_messages is not None:
            lines.append(f"max_queued_messages {self.max_queued_messages}")
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.dir}/"]
        else:
            lines.append("persistence false")
        if self.auth:
            lines.append(f"password_file {self.dir / 'passwd'}")
        if self.acl is not None:
            lines.append(f"acl_file {self.dir / 'acl'}")
        if self._tls is not None:
            lines += [
                f"cafile {self._tls.ca_path}",
                f"certfile {self._tls.server_cert}",
                f"keyfile {self._tls.server_key}",
                f"require_certificate {'true' if self.require_client_cert else 'false'}",
            ]
        lines += self.extra_config
        self.config_path.write_text("\n".join(lines) + "\n")


_AMQTT_RUNNER = "from devfleet_base.testing.broker import _run_amqtt; _run_amqtt()"


class EmbeddedBroker(_SubprocessBroker):
    """amqtt (pure Python, MQTT 3.1.1 only) in a child process, on a free loopback port.

    For machines without mosquitto. Same lifecycle as :class:`MosquittoBroker`.
    amqtt speaks MQTT 3.1.1 only: clients must not ask for MQTT 5.

    Args:
        port: Port to listen on; a free one is chosen if omitted.
        tls: Listen with TLS, using a throwaway CA (see :attr:`tls`).
        python: Interpreter that runs amqtt; this one by default.
        startup_timeout: Seconds to wait for the port to accept connections.
        tmp_dir: Directory for the config and log; temporary if omitted.

    Raises:
        BrokerNotInstalled: amqtt cannot be imported (only checked when
            ``python`` is this interpreter).
    """

    _kind = "amqtt"

    def __init__(
        self,
        *,
        port: int | None = None,
        tls: bool = False,
        python: str | None = None,
        startup_timeout: float = 15.0,
        tmp_dir: Path | None = None,
    ) -> None:
        if python is None and not amqtt_available():
            raise BrokerNotInstalled(
                "amqtt is not installed: `pip install amqtt` (or install mosquitto: "
                "`apt-get install mosquitto`)"
            )
        super().__init__(port=port, startup_timeout=startup_timeout, tmp_dir=tmp_dir)
        self.python = python or sys.executable
        self.config_path = self.dir / "amqtt.json"
        if tls:
            self._tls = TlsFiles(self.dir / "tls")

    def _command(self) -> list[str]:
        return [self.python, "-c", _AMQTT_RUNNER, str(self.config_path)]

    def _write_config(self) -> None:
        listener: dict[str, object] = {"type": "tcp", "bind": f"{self.host}:{self.port}"}
        if self._tls is not None:
            listener |= {
                "ssl": True,
                "certfile": str(self._tls.server_cert),
                "keyfile": str(self._tls.server_key),
                "cafile": str(self._tls.ca_path),
            }
        config = {
            "listeners": {"default": listener},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        self.config_path.write_text(json.dumps(config, indent=2))


def _run_amqtt() -> None:  # pragma: no cover - runs in the broker subprocess
    """Entry point of the amqtt subprocess: ``python -c ... CONFIG.json``.

    Starts amqtt with the JSON configuration, serves until SIGTERM or SIGINT,
    then shuts the broker down cleanly.
    """
    import asyncio
    import logging

    from amqtt.broker import Broker

    config = json.loads(Path(sys.argv[1]).read_text())
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        broker = Broker(config)
        await broker.start()
        print(f"amqtt listening on {config['listeners']['default']['bind']}", flush=True)
        await stopping.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(broker.shutdown(), 5.0)

    asyncio.run(serve())


def start_local_broker(
    prefer: Literal["mosquitto", "amqtt"] = "mosquitto", *, port: int | None = None
) -> MosquittoBroker | EmbeddedBroker:
    """Start a plain (anonymous, no TLS) broker with whatever is installed.

    Args:
        prefer: Which broker to try first; the other is the fallback.
        port: Port to listen on; a free one is chosen if omitted.

    Returns:
        A started broker; call ``close()`` (or use it as a context manager).

    Raises:
        BrokerNotInstalled: neither mosquitto nor amqtt is installed.
        ValueError: ``prefer`` is not ``"mosquitto"`` or ``"amqtt"``.
    """
    if prefer not in ("mosquitto", "amqtt"):
        raise ValueError(f"prefer must be 'mosquitto' or 'amqtt', not {prefer!r}")
    order = ["mosquitto", "amqtt"] if prefer == "mosquitto" else ["amqtt", "mosquitto"]
    for kind in order:
        broker: MosquittoBroker | EmbeddedBroker
        if kind == "mosquitto":
            if find_mosquitto() is None:
                continue
            broker = MosquittoBroker(port=port)
        else:
            if not amqtt_available():
                continue
            broker = EmbeddedBroker(port=port)
        try:
            broker.start()
        except BaseException:
            broker.close()
            raise
        return broker
    raise BrokerNotInstalled(f"no MQTT broker found: neither mosquitto nor amqtt; {INSTALL_HINT}")
