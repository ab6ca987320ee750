"""Broker addresses: ``mqtt://[user:password@]host[:port]``, ``mqtts://...`` or ``host[:port]``.

One parser for the agent's ``--broker`` and the console's ``--broker``, so both
accept the same spellings (``tcp://`` and ``ssl://`` as aliases, 1883 and 8883
as default ports).

Several brokers (a cluster's nodes, or a standby): :func:`parse_broker_urls`
takes a comma-separated string or a list; clients connect to the first that
answers and move on to the next when the connection is lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from .broker_flag import BrokerListAction
from .errors import ContractError

__all__ = ["BrokerAddress", "BrokerListAction", "parse_broker_url", "parse_broker_urls"]


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


def parse_broker_urls(value: str | Sequence[str]) -> list[BrokerAddress]:
    """Parse one or several broker URLs: ``"a:1883,b:1883"``, or a list of URLs
    (each item may itself be comma-separated: repeated ``--broker`` flags).

    Returns:
        The addresses in the order given (the first is tried first), duplicates dropped.

    Raises:
        ContractError: no URL at all, a malformed one, or a mix of TLS and plain
            (every broker of one client shares its TLS settings and credentials).
    """
    items = [value] if isinstance(value, str) else list(value)
    texts = [part.strip() for item in items for part in str(item).split(",")]
    if not texts or any(not t for t in texts):
        raise ContractError(f"bad broker list {value!r}: an empty entry")
    out: list[BrokerAddress] = []
    for text in texts:
        address = parse_broker_url(text)
        if address not in out:
            out.append(address)
    if len({a.tls for a in out}) > 1:
        raise ContractError(f"bad broker list {value!r}: mixes mqtts:// and mqtt:// brokers")
    return out
