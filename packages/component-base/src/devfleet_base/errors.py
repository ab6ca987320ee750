"""Errors of devfleet, one base class, each with a machine-readable code.

The codes travel on the wire in error receipts (see ``docs/contract.md``), so
they are part of the contract: add new ones, never rename.
"""

from __future__ import annotations

__all__ = [
    "Code",
    "CommandError",
    "ComponentError",
    "ConfigError",
    "ContractError",
    "DevfleetError",
    "SignatureError",
]


class Code:
    """Machine-readable error codes carried in receipts."""

    BAD_JSON = "bad_json"
    TOO_LARGE = "too_large"
    INVALID = "invalid"
    UNKNOWN_COMMAND = "unknown_command"
    EXPIRED = "expired"
    CONFLICT = "conflict"
    FORBIDDEN = "forbidden"
    BAD_SIGNATURE = "bad_signature"
    REPLAY = "replay"
    NOT_FOUND = "not_found"
    BUSY = "busy"
    FAILED = "failed"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"

    ALL = frozenset(
        {
            BAD_JSON,
            TOO_LARGE,
            INVALID,
            UNKNOWN_COMMAND,
            EXPIRED,
            CONFLICT,
            FORBIDDEN,
            BAD_SIGNATURE,
            REPLAY,
            NOT_FOUND,
            BUSY,
            FAILED,
            TIMEOUT,
            UNAVAILABLE,
            INTERNAL,
        }
    )


class DevfleetError(Exception):
    """Base of every devfleet error; ``code`` is the wire code."""

    code: str = Code.INTERNAL

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_wire(self) -> dict[str, str]:
        """The ``code``/``message`` pair an error receipt carries."""
        return {"code": self.code, "message": self.message}


class ContractError(DevfleetError):
    """An inbound topic or payload broke the wire contract."""

    code = Code.INVALID


class SignatureError(ContractError):
    """A control message is unsigned, tampered with or replayed."""

    code = Code.BAD_SIGNATURE


class CommandError(DevfleetError):
    """A command was understood but could not be carried out."""

    code = Code.FAILED


class ConfigError(DevfleetError):
    """A configuration value is invalid, or a write conflicts."""

    code = Code.INVALID


class ComponentError(DevfleetError):
    """A component failed to load, start or answer."""

    code = Code.FAILED
