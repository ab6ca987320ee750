"""Errors of the projector package, one base class, each with a wire code."""

from __future__ import annotations

from devfleet_base import Code, DevfleetError

__all__ = ["ProjectorError", "ProjectorTimeout", "ProtocolError", "TransportError"]


class ProjectorError(DevfleetError):
    """Base of every projector error."""

    code = Code.FAILED


class ProtocolError(ProjectorError):
    """Bytes from the serial line that the codec cannot make sense of."""

    code = Code.FAILED


class ProjectorTimeout(ProjectorError):
    """The projector answered late, partially or not at all."""

    code = Code.TIMEOUT


class TransportError(ProjectorError):
    """The serial port cannot be opened, or failed while in use."""

    code = Code.UNAVAILABLE
