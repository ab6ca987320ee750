"""devfleet projector component: Epson ESC/VP21 and BenQ RS-232 over a serial line."""

from __future__ import annotations

from .component import ALL_SOURCES, Projector
from .errors import ProjectorError, ProjectorTimeout, ProtocolError, TransportError
from .protocols import (
    PROTOCOLS,
    BenqProtocol,
    EpsonProtocol,
    Op,
    Protocol,
    Reply,
    Request,
    get_protocol,
)
from .transport import ProjectorClient, SerialTransport

__version__ = "0.1.0"

__all__ = [
    "ALL_SOURCES",
    "PROTOCOLS",
    "BenqProtocol",
    "EpsonProtocol",
    "Op",
    "Projector",
    "ProjectorClient",
    "ProjectorError",
    "ProjectorTimeout",
    "Protocol",
    "ProtocolError",
    "Reply",
    "Request",
    "SerialTransport",
    "TransportError",
    "__version__",
    "get_protocol",
]
