"""The agent's local settings: flags override environment override file override defaults.

These never change over the wire (the node config does): where the broker is,
credentials, TLS, where data lives, and the two switches that make remote code
possible at all (``allow_code``, ``allow_install``) and the signing key.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devfleet_base.broker_url import parse_broker_urls
from devfleet_base.contract import NAME_PATTERN
from devfleet_base.errors import ContractError, DevfleetError

from .errors import SettingsError

if TYPE_CHECKING:
    from devfleet_base.signing import Identity

__all__ = ["DEFAULT_CONFIG_PATH", "Settings", "default_node_name", "load_settings"]

DEFAULT_CONFIG_PATH = Path("/etc/devfleet/agent.toml")

_PROTOCOLS = ("auto", "5", "3.1.1")
_LOGLEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class Settings:
    """Everything the agent needs to start."""

    broker: str = "localhost"
    port: int = 1883
    name: str = ""
    username: str | None = None
    password: str | None = None
    tls: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_insecure: bool = False
    protocol: str = "auto"
    keepalive: int = 30
    persistent_session: bool = False
    """Keep the MQTT session on the broker across connections (for NATS clusters:
    the session's replicated consumers survive a node loss; docs/scaling.md)."""
    data_dir: str | None = None
    state_dir: str | None = None
    loglevel: str = "INFO"
    allow_code: bool = False
    allow_install: bool = False
    install_index: str | None = None
    install_find_links: str | None = None
    signing_key_file: str | None = None
    wactorz_key_file: str | None = None
    """A file holding the HMAC key shared with Wactorz nodes (hex, what they read
    from ``WACTORZ_NODE_KEY``): control messages signed with it are accepted."""
    wactorz_key: str | None = field(default=None, repr=False)
    """The same key inline (env ``WACTORZ_NODE_KEY``); the file wins. Never shown."""
    install_timeout: float = 600.0
    disabled_components: str | None = None
    component_verify_cycles: int = 3
    component_verify_interval: float = 1.0
    component_verify_timeout: float = 60.0
    extra: dict[str, Any] = field(default_factory=dict)
    fallbacks: tuple[tuple[str, int], ...] = ()
    """More brokers (host, port) after ``broker:port``, from a list of URLs."""

    @property
    def resolved_data_dir(self) -> Path:
        """Where the node keeps its config versions and counters."""
        if self.data_dir:
            return Path(self.data_dir).expanduser()
        system = Path("/var/lib/devfleet")
        if os.access(system.parent, os.W_OK) and (not system.exists() or os.access(system, os.W_OK)):
            return system / self.name
        state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(state) / "devfleet" / self.name

    @property
    def resolved_state_dir(self) -> Path:
        """Where dynamic actors keep their values: ``{data_dir}/actors`` unless
        ``state_dir`` is given (then Wactorz's file names are used there)."""
        if self.state_dir:
            return Path(self.state_dir).expanduser()
        return self.resolved_data_dir / "actors"

    @property
    def disabled_component_names(self) -> frozenset[str]:
        """Entry-point or component names never loaded (``DEVFLEET_DISABLED_COMPONENTS``,
        comma-separated)."""
        raw = self.disabled_components or ""
        return frozenset(part.strip() for part in raw.split(",") if part.strip())

    def signing_identity(self) -> Identity | None:
        """The node's signing identity (``devfleet provision`` writes it), or None.

        Raises:
            SettingsError: unreadable, malformed, or not this node's identity.
        """
        if not self.signing_key_file:
            return None
        from devfleet_base.signing import Identity, node_kid

        try:
            identity = Identity.load(self.signing_key_file)
        except DevfleetError as exc:
            raise SettingsError(exc.message) from None
        cert = identity.cert or {}
        if identity.kid != node_kid(self.name) or cert.get("node") != self.name:
            raise SettingsError(
                f"{self.signing_key_file} is the identity of {identity.kid!r}, not of node {self.name!r} "
                f"(run: devfleet provision {self.name})"
            )
        if not len(identity.trusted):
            raise SettingsError(
                f"{self.signing_key_file} trusts no operator key: every command would be refused"
            )
        return identity

    def wactorz_fleet_key(self) -> bytes | None:
        """The key shared with Wactorz nodes, from :attr:`wactorz_key_file` or else
        :attr:`wactorz_key`; None when neither is given.

        Raises:
            SettingsError: unreadable, not hex, or under 16 bytes (the message never
                shows the key).
        """
        if self.wactorz_key_file:
            path = Path(self.wactorz_key_file).expanduser()
            try:
                text = path.read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not ASCII hex"
                raise SettingsError(f"wactorz_key_file {self.wactorz_key_file}: {reason}") from None
            source = f"wactorz_key_file {self.wactorz_key_file}"
        elif self.wactorz_key:
            text, source = self.wactorz_key, "wactorz_key (env WACTORZ_NODE_KEY)"
        else:
            return None
        try:
            key = bytes.fromhex(text.strip())
        except ValueError:
            raise SettingsError(f"{source}: not a hex key") from None
        if len(key) < 16:
            raise SettingsError(f"{source}: a Wactorz fleet key needs at least 16 bytes")
        return key


_SECRETS = frozenset({"password", "wactorz_key"})
"""Settings whose values an error message never shows."""

_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off", ""}

_ENV = {
    "broker": ("DEVFLEET_BROKER", "AGENTFLOW_BROKER"),
    "port": ("DEVFLEET_PORT",),
    "name": ("DEVFLEET_NODE", "AGENTFLOW_NODE"),
    "username": ("DEVFLEET_USERNAME",),
    "password": ("DEVFLEET_PASSWORD",),
    "tls_ca": ("DEVFLEET_TLS_CA",),
    "tls_cert": ("DEVFLEET_TLS_CERT",),
    "tls_key": ("DEVFLEET_TLS_KEY",),
    "protocol": ("DEVFLEET_PROTOCOL",),
    "persistent_session": ("DEVFLEET_PERSISTENT_SESSION",),
    "data_dir": ("DEVFLEET_DATA_DIR",),
    "state_dir": ("DEVFLEET_STATE_DIR",),
    "loglevel": ("DEVFLEET_LOGLEVEL",),
    "allow_code": ("DEVFLEET_ALLOW_CODE",),
    "allow_install": ("DEVFLEET_ALLOW_INSTALL",),
    "signing_key_file": ("DEVFLEET_SIGNING_KEY_FILE",),
    "wactorz_key_file": ("DEVFLEET_WACTORZ_KEY_FILE",),
    "wactorz_key": ("WACTORZ_NODE_KEY",),
    "disabled_components": ("DEVFLEET_DISABLED_COMPONENTS",),
    "install_index": ("DEVFLEET_INSTALL_INDEX",),
    "install_find_links": ("DEVFLEET_INSTALL_FIND_LINKS",),
}


def default_node_name() -> str:
    """The host name, made into a valid node name."""
    host = socket.gethostname().split(".")[0]
    name = re.sub(r"[^A-Za-z0-9._-]", "-", host).strip("-._")[:64]
    return name or "node"


def _coerce(key: str, value: Any, source: str) -> Any:
    kinds = {f.name: f.type for f in fields(Settings)}
    kind = str(kinds[key])
    if key == "broker" and isinstance(value, list):  # a TOML list of broker URLs
        if not value or not all(isinstance(v, str) for v in value):
            raise SettingsError(f"{source}: broker = {value!r}: expected a list of broker URLs")
        value = ",".join(value)
    try:
        if "bool" in kind:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _BOOL_TRUE:
                return True
            if text in _BOOL_FALSE:
                return False
            raise ValueError("expected true or false")
        if kind.startswith("int"):
            if isinstance(value, bool):
                raise ValueError("expected a whole number")
            return int(value)
        if kind.startswith("float"):
            return float(value)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("expected text")
        return value
    except ValueError as exc:
        shown = "(hidden)" if key in _SECRETS else repr(value)
        raise SettingsError(f"{source}: {key} = {shown}: {exc}") from None


def _from_file(path: Path) -> dict[str, Any]:
    # imported on first use: most agents run from flags and the environment (Pi Zero; issue 20)
    import tomllib

    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise SettingsError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"config file {path}: {exc}") from None
    # Accept a flat file or an [agent] table.
    if isinstance(data.get("agent"), dict):
        data = {**{k: v for k, v in data.items() if k != "agent"}, **data["agent"]}
    known = {f.name for f in fields(Settings)} - {"extra", "fallbacks"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SettingsError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return {k: _coerce(k, v, str(path)) for k, v in data.items()}


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, names in _ENV.items():
        for name in names:
            if name in env:
                out[key] = _coerce(key, env[name], name)
                break
    return out


def load_settings(
    flags: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    config_path: str | None = None,
) -> Settings:
    """Merge settings from file, environment and flags; validate; raise SettingsError."""
    env = os.environ if env is None else env
    merged: dict[str, Any] = {}
    path = Path(config_path).expanduser() if config_path else None
    if path is None and env.get("DEVFLEET_CONFIG"):
        path = Path(env["DEVFLEET_CONFIG"]).expanduser()
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    if path is not None:
        merged.update(_from_file(path))
    merged.update(_from_env(env))
    merged.update({k: _coerce(k, v, f"--{k.replace('_', '-')}") for k, v in flags.items() if v is not None})
    broker = merged.get("broker")
    if isinstance(broker, str) and ("://" in broker or "," in broker):
        merged.update(_parse_broker_urls(broker))
    settings = replace(Settings(), **merged)
    if not settings.name:
        settings = replace(settings, name=default_node_name())
    return _validate(settings)


def _parse_broker_urls(urls: str) -> dict[str, Any]:
    try:
        address, *more = parse_broker_urls(urls)
    except ContractError as exc:
        raise SettingsError(exc.message) from None
    out: dict[str, Any] = {
        "broker": address.host,
        "port": address.port,
        "fallbacks": tuple((a.host, a.port) for a in more),
    }
    if address.tls:
        out["tls"] = True
    if address.username:
        out["username"] = address.username
    if address.password:
        out["password"] = address.password
    return out


def _validate(s: Settings) -> Settings:
    if not re.fullmatch(NAME_PATTERN, s.name):
        raise SettingsError(
            f"node name {s.name!r} is not valid: 1-64 letters, digits, '.', '_', '-' (no '/', '+', '#')"
        )
    if not s.broker or any(c in s.broker for c in " /"):
        raise SettingsError(f"broker {s.broker!r} is not a host name or address")
    if not 0 < s.port < 65536:
        raise SettingsError(f"port {s.port} is out of range 1-65535")
    if s.protocol not in _PROTOCOLS:
        raise SettingsError(f"protocol {s.protocol!r} must be one of {', '.join(_PROTOCOLS)}")
    if s.loglevel.upper() not in _LOGLEVELS:
        raise SettingsError(f"loglevel {s.loglevel!r} must be one of {', '.join(_LOGLEVELS)}")
    if not 5 <= s.keepalive <= 3600:
        raise SettingsError(f"keepalive {s.keepalive} must be within 5-3600 seconds")
    if (s.tls_cert is None) != (s.tls_key is None):
        raise SettingsError("give both --tls-cert and --tls-key for a client certificate, or neither")
    for label, path in (("tls-ca", s.tls_ca), ("tls-cert", s.tls_cert), ("tls-key", s.tls_key)):
        if path is not None and not Path(path).expanduser().is_file():
            raise SettingsError(f"--{label} {path}: no such file")
    if s.password is not None and s.username is None:
        raise SettingsError("a password needs a username")
    if not 1 <= s.component_verify_cycles <= 100:
        raise SettingsError(f"component_verify_cycles {s.component_verify_cycles} must be within 1-100")
    if s.component_verify_interval <= 0 or s.component_verify_timeout <= 0 or s.install_timeout <= 0:
        raise SettingsError(
            "component_verify_interval, component_verify_timeout and install_timeout must be > 0"
        )
    if s.install_find_links is not None and not Path(s.install_find_links).expanduser().is_dir():
        raise SettingsError(f"install_find_links {s.install_find_links}: no such directory")
    if s.install_index is not None and not re.fullmatch(r"(https?|file)://[^\s]+", s.install_index):
        raise SettingsError(f"install_index {s.install_index!r} must be an http(s):// or file:// URL")
    s.signing_identity()  # reads and checks the identity now, not at the first command
    s.wactorz_fleet_key()  # and the Wactorz fleet key
    return replace(s, loglevel=s.loglevel.upper(), tls=s.tls or bool(s.tls_ca or s.tls_cert))
