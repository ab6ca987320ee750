"""Where the console's connection settings come from (part of the CLI edge: the
library reads no environment and no files).

In order, the first that gives a value wins:

1. command-line flags (``--broker``, ``--username``, ``--password``, ``--tls-ca``,
   ``--signing-key-file``, ``--wactorz-key-file``, ``--timeout``);
2. environment variables: ``DEVFLEET_BROKER``, ``DEVFLEET_USERNAME``,
   ``DEVFLEET_PASSWORD``, ``DEVFLEET_TLS_CA``, ``DEVFLEET_SIGNING_KEY_FILE``
   (the agent reads the same names), ``DEVFLEET_WACTORZ_KEY_FILE``, and
   ``DEVFLEET_WACTORZ_KEY`` (the Wactorz fleet key itself, hex; a key file, from
   the flag or its variable, wins over it, as on the agent);
3. a profile of the console config file: ``--profile NAME`` (or
   ``DEVFLEET_PROFILE``), else its ``[default]`` table. The file is
   ``$DEVFLEET_CONSOLE_CONFIG``, else ``$XDG_CONFIG_HOME/devfleet/console.toml``
   (``~/.config/devfleet/console.toml``); it is optional;
4. built-in defaults (``mqtt://127.0.0.1:1883``, 10 s).

The file, in TOML::

    [default]
    broker = "mqtt://192.168.1.10:1883"

    [lab]
    broker = "mqtts://lab.example.org:8883"
    username = "alice"
    password_file = "~/.config/devfleet/lab.password"
    tls_ca = "~/.config/devfleet/lab-ca.pem"
    signing_key_file = "~/.config/devfleet/lab.json"
    wactorz_key_file = "~/.config/devfleet/lab-wactorz.key"
    timeout = 20

The Wactorz fleet key file holds the key in hex, as Wactorz nodes take it in
``WACTORZ_NODE_KEY`` (surrounding whitespace ignored). The key is never printed:
errors name the file, not what it holds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError

__all__ = ["DEFAULT_BROKER", "PROFILE_KEYS", "ConsoleSettings", "config_path", "resolve"]

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
DEFAULT_TIMEOUT = 10.0

ENV = {
    "broker": "DEVFLEET_BROKER",
    "username": "DEVFLEET_USERNAME",
    "password": "DEVFLEET_PASSWORD",
    "tls_ca": "DEVFLEET_TLS_CA",
    "signing_key_file": "DEVFLEET_SIGNING_KEY_FILE",
    "wactorz_key_file": "DEVFLEET_WACTORZ_KEY_FILE",
}
"""Setting → environment variable."""

WACTORZ_KEY_ENV = "DEVFLEET_WACTORZ_KEY"
"""The Wactorz fleet key itself (hex), for a console without a key file."""

PROFILE_KEYS = frozenset({*ENV, "password_file", "timeout"})
"""The keys a profile may hold (anything else is refused, so a typo is not ignored)."""


@dataclass(frozen=True)
class ConsoleSettings:
    """How the console reaches the broker, resolved from flags, environment and profile.

    Attributes:
        broker: broker URL.
        username, password: broker credentials, or None.
        tls_ca: CA certificate file (turns TLS on), or None.
        signing_key_file: the console's signing key file (``~`` expanded; read by
            the caller), or None.
        timeout: seconds to wait for the broker and answers.
        profile: the profile used (None when no file was read).
        wactorz_key: the HMAC key shared with Wactorz nodes (read and decoded
            here), or None; never in the repr.
    """

    broker: str
    username: str | None
    password: str | None
    tls_ca: str | None
    signing_key_file: str | None
    timeout: float
    profile: str | None
    wactorz_key: bytes | None = field(default=None, repr=False)


def config_path(env: Mapping[str, str]) -> Path:
    """The console config file's path (it need not exist)."""
    if env.get("DEVFLEET_CONSOLE_CONFIG"):
        return Path(env["DEVFLEET_CONSOLE_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base).expanduser() / "devfleet" / "console.toml"


def _load_profile(path: Path, name: str | None) -> tuple[dict[str, Any], str | None]:
    if not path.exists():
        if name is not None:
            raise UsageError(f"no profile {name!r}: {path} does not exist")
        return {}, None
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from None
    chosen = name or "default"
    table = data.get(chosen)
    if table is None:
        if name is None:
            return {}, None
        known = ", ".join(sorted(k for k, v in data.items() if isinstance(v, dict))) or "none"
        raise UsageError(f"no profile {name!r} in {path} (profiles: {known})")
    if not isinstance(table, dict):
        raise UsageError(f"{path}: [{chosen}] must be a table of settings")
    unknown = sorted(set(table) - PROFILE_KEYS)
    if unknown:
        raise UsageError(
            f"{path}: [{chosen}] has unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(PROFILE_KEYS))})"
        )
    for key, value in table.items():
        if key == "broker" and isinstance(value, list):  # several brokers: a TOML list of URLs
            if not value or not all(isinstance(v, str) and v for v in value):
                raise UsageError(f"{path}: [{chosen}] broker must be a URL or a list of URLs")
            table[key] = ",".join(value)
        elif key == "timeout":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 86400
            if not ok or (isinstance(value, float) and not math.isfinite(value)):
                raise UsageError(f"{path}: [{chosen}] timeout must be a number of seconds, more than 0")
        elif not isinstance(value, str) or not value:
            raise UsageError(f"{path}: [{chosen}] {key} must be a non-empty string")
    return dict(table), chosen


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes().strip()
    except OSError as exc:
        raise UsageError(f"cannot read the {what}: {exc.strerror}: {exc.filename}") from None


def resolve(
    flags: Mapping[str, Any], env: Mapping[str, str], *, profile: str | None = None
) -> ConsoleSettings:
    """Settings from ``flags`` (None = not given), ``env`` and the config file.

    Args:
        flags: ``broker``, ``username``, ``password``, ``tls_ca``, ``signing_key_file``,
            ``timeout`` as parsed (None when the flag was not given).
        env: the environment (``os.environ``).
        profile: ``--profile``; None falls back to ``DEVFLEET_PROFILE``, then ``default``.

    Raises:
        UsageError: a named profile is missing, the file is malformed, or the
            password file cannot be read.
    """
    name = profile or env.get("DEVFLEET_PROFILE") or None
    table, used = _load_profile(config_path(env), name)

    def pick(key: str) -> Any:
        if flags.get(key) is not None:
            return flags[key]
        if key in ENV and env.get(ENV[key]):
            return env[ENV[key]]
        return table.get(key)

    password = pick("password")
    if password is None and table.get("password_file"):
        password = _read(table["password_file"], "password file").decode("utf-8", "replace")
    key_file = pick("signing_key_file")
    tls_ca = pick("tls_ca")
    wactorz_key = _wactorz_key(flags, env, pick)
    return ConsoleSettings(
        broker=pick("broker") or DEFAULT_BROKER,
        username=pick("username"),
        password=password,
        tls_ca=os.path.expanduser(tls_ca) if tls_ca else None,
        signing_key_file=os.path.expanduser(key_file) if key_file else None,
        timeout=float(pick("timeout") or DEFAULT_TIMEOUT),
        profile=used,
        wactorz_key=wactorz_key,
    )


def _wactorz_key(flags: Mapping[str, Any], env: Mapping[str, str], pick: Any) -> bytes | None:
    """The Wactorz fleet key: ``--wactorz-key-file``, else the file of
    ``DEVFLEET_WACTORZ_KEY_FILE``, else ``DEVFLEET_WACTORZ_KEY`` (hex), else the
    profile's ``wactorz_key_file`` (a file wins over the variable, as on the agent).

    Raises:
        UsageError: the file cannot be read, or the key is empty or not hex (the
            message names where it came from, never the key).
    """
    path = flags.get("wactorz_key_file") or env.get(ENV["wactorz_key_file"]) or None
    if path is None and env.get(WACTORZ_KEY_ENV, "").strip():
        return _hex_key(env[WACTORZ_KEY_ENV].encode("utf-8", "replace"), WACTORZ_KEY_ENV)
    path = path if path is not None else pick("wactorz_key_file")
    if path is None:
        return None
    return _hex_key(_read(path, "Wactorz key file"), f"the Wactorz key file {path}")


def _hex_key(text: bytes, where: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip().decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise UsageError(f"{where} does not hold a hex key (as WACTORZ_NODE_KEY)") from None
    if not key:
        raise UsageError(f"{where} holds an empty key")
    return key
