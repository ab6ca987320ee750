"""Broker addresses: ``mqtt://[user:password@]host[:port]``, ``mqtts://...`` or ``host[:port]``.

One parser for the agent's ``--broker`` and the console's ``--broker``, so both
accept the same spellings (``tcp://`` and ``ssl://`` as aliases, 1883 and 8883
as default ports).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import ContractError

__all__ = ["BrokerAddress", "parse_broker_url"]


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker is, and how to log in if the URL says."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None


def parse_broker_url(url: str) -> BrokerAddress:
    """Parse a broker URL (a bare ``host[:port]`` means ``mqtt://``).

    Raises:
        ContractError: a scheme other than mqtt/mqtts (tcp/ssl), no host, or a bad port.
    """
    text = url if "://" in url else "mqtt://" + url
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ContractError(f"bad broker URL {url!r}: {exc}") from None
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
        raise ContractError(f"bad broker URL {url!r}: use mqtt://host:port or mqtts://host:port")
    tls = parts.scheme in ("mqtts", "ssl")
    return BrokerAddress(
        parts.hostname, port or (8883 if tls else 1883), tls, parts.username or None, parts.password or None
    )
