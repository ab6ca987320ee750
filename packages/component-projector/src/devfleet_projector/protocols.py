"""Projector serial protocols as pure codecs (bytes in, bytes out, no I/O).

Each protocol turns a :class:`Request` (one operation the component needs) into
the bytes to send, says when an answer is complete (:meth:`Protocol.complete`),
and decodes the answer into a :class:`Reply`. A refusal by the projector (Epson
``ERR``, BenQ ``*Block item#``) is a reply with ``refused=True``; only bytes the
codec cannot make sense of raise :class:`~devfleet_projector.errors.ProtocolError`.

Epson ESC/VP21: commands end with CR; the projector ends every answer with the
``:`` prompt: ``PWR?\\r`` → ``PWR=01\\r:``, ``SOURCE 30\\r`` → ``:``, a refused
command → ``ERR\\r:``.

BenQ RS-232: commands are framed ``\\r*pow=on#\\r``; the projector echoes the
command, then answers ``*POW=ON#`` (or ``*Block item#``, ``*Illegal format#``,
``*Unsupported item#``), each followed by CR LF.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from .errors import ProtocolError

__all__ = [
    "PROTOCOLS",
    "BenqProtocol",
    "EpsonProtocol",
    "Op",
    "Protocol",
    "Reply",
    "Request",
    "get_protocol",
]

_MAX_NUMBER_DIGITS = 9


class Op(StrEnum):
    """The operations the component needs from any projector."""

    POWER_ON = "power_on"
    POWER_OFF = "power_off"
    POWER = "power?"
    SOURCE_SET = "source_set"
    SOURCE = "source?"
    MUTE_ON = "mute_on"
    MUTE_OFF = "mute_off"
    MUTE = "mute?"
    LAMP = "lamp?"
    ERRORS = "errors?"


@dataclass(frozen=True)
class Request:
    """One operation; ``arg`` is the logical source name for ``SOURCE_SET``."""

    op: Op
    arg: str | None = None


@dataclass(frozen=True)
class Reply:
    """A decoded answer.

    Attributes:
        value: the normalised value of a query (``"on"``, ``"hdmi"``, ``True``,
            ``1234``, a list of error strings) or ``None`` for an acknowledged set.
        refused: the projector refused the command.
        transient: the refusal is due to the projector's current state
            (warm-up, cool-down) and may succeed later.
        reason: the projector's refusal text.
    """

    value: Any = None
    refused: bool = False
    transient: bool = False
    reason: str = ""


class Protocol:
    """Base of the codecs."""

    name: ClassVar[str] = ""
    sources: ClassVar[dict[str, str]] = {}
    """Logical source name → wire code."""

    def supports(self, op: Op) -> bool:
        """Whether this protocol has a command for ``op``."""
        return True

    def encode(self, request: Request) -> bytes:
        """The bytes to send for ``request``."""
        raise NotImplementedError

    def complete(self, sent: bytes, buffer: bytes) -> bool:
        """True when ``buffer`` holds a whole answer to ``sent``."""
        raise NotImplementedError

    def decode(self, request: Request, raw: bytes) -> Reply:
        """Decode a complete answer; raise ProtocolError on anything else."""
        raise NotImplementedError

    def source_code(self, name: str) -> str:
        """The wire code of logical source ``name``; ProtocolError if unknown."""
        try:
            return self.sources[name]
        except KeyError:
            known = ", ".join(sorted(self.sources))
            raise ProtocolError(f"{self.name} has no input {name!r} (known: {known})") from None

    def source_name(self, code: str) -> str:
        """The logical name of wire source ``code`` (``code:XX`` when unmapped)."""
        for name, wire in self.sources.items():
            if wire.lower() == code.lower():
                return name
        return f"code:{code}"


def _text(raw: bytes) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError(f"non-ASCII bytes in answer {raw[:40]!r}") from None


def _number(value: str, what: str) -> int:
    if not value.isdigit() or not value.isascii() or len(value) > _MAX_NUMBER_DIGITS:
        raise ProtocolError(f"{what}: expected a number, got {value[:20]!r}")
    return int(value)


def _on_off(value: str, what: str) -> bool:
    upper = value.upper()
    if upper not in ("ON", "OFF"):
        raise ProtocolError(f"{what}: expected ON or OFF, got {value[:20]!r}")
    return upper == "ON"


class EpsonProtocol(Protocol):
    """Epson ESC/VP21."""

    name = "epson"
    sources = {
        "computer": "10",
        "component": "14",
        "computer2": "20",
        "hdmi": "30",
        "video": "41",
        "svideo": "42",
        "usb": "52",
        "lan": "53",
        "hdmi2": "A0",
    }
    POWER_STATES: ClassVar[dict[str, str]] = {
        "00": "off",  # standby, network off
        "01": "on",  # lamp on
        "02": "warming",
        "03": "cooling",
        "04": "off",  # standby, network on
        "05": "error",  # abnormal standby
        "07": "off",  # wireless HD standby
        "09": "off",  # A/V standby
    }
    ERROR_CODES: ClassVar[dict[str, str]] = {
        "01": "fan error",
        "03": "lamp failure at power on",
        "04": "high internal temperature",
        "06": "lamp error",
        "07": "lamp cover open",
        "08": "cinema filter error",
        "09": "electric dual-layered capacitor disconnected",
        "0A": "auto iris error",
        "0B": "subsystem error",
        "0C": "low air flow",
        "0D": "air filter air flow sensor error",
        "0E": "power supply unit (ballast) error",
    }
    _QUERY_KEYS: ClassVar[dict[Op, str]] = {
        Op.POWER: "PWR",
        Op.SOURCE: "SOURCE",
        Op.MUTE: "MUTE",
        Op.LAMP: "LAMP",
        Op.ERRORS: "ERR",
    }
    _SPLIT = re.compile(r"[\r\n:]+")

    def encode(self, request: Request) -> bytes:
        op = request.op
        if op is Op.SOURCE_SET:
            return f"SOURCE {self.source_code(request.arg or '')}\r".encode("ascii")
        simple = {
            Op.POWER_ON: "PWR ON",
            Op.POWER_OFF: "PWR OFF",
            Op.MUTE_ON: "MUTE ON",
            Op.MUTE_OFF: "MUTE OFF",
        }
        if op in simple:
            return f"{simple[op]}\r".encode("ascii")
        return f"{self._QUERY_KEYS[op]}?\r".encode("ascii")

    def complete(self, sent: bytes, buffer: bytes) -> bool:
        return buffer.endswith(b":")

    def decode(self, request: Request, raw: bytes) -> Reply:
        if not raw.endswith(b":"):
            raise ProtocolError(f"epson: answer without ':' prompt: {raw[:40]!r}")
        lines = [part.strip() for part in self._SPLIT.split(_text(raw))]
        lines = [line for line in lines if line]
        if lines == ["ERR"]:
            return Reply(refused=True, reason="ERR")
        key = self._QUERY_KEYS.get(request.op)
        if key is None:  # a set command: a bare prompt acknowledges it
            if lines:
                raise ProtocolError(f"epson: unexpected answer {raw[:40]!r} to a set command")
            return Reply()
        if len(lines) != 1 or "=" not in lines[0]:
            raise ProtocolError(f"epson: expected {key}=..., got {raw[:40]!r}")
        got, _, value = lines[0].partition("=")
        if got.strip() != key:
            raise ProtocolError(f"epson: expected {key}=..., got {raw[:40]!r}")
        return Reply(self._value(request.op, value.strip()))

    def _value(self, op: Op, value: str) -> Any:
        if op is Op.POWER:
            if value not in self.POWER_STATES:
                raise ProtocolError(f"epson: unknown power state {value[:20]!r}")
            return self.POWER_STATES[value]
        if op is Op.LAMP:
            return _number(value.split(" ")[0], "epson LAMP")
        if op is Op.MUTE:
            return _on_off(value, "epson MUTE")
        if not re.fullmatch(r"[0-9A-Fa-f]{2}", value):
            raise ProtocolError(f"epson: expected a hex code, got {value[:20]!r}")
        if op is Op.SOURCE:
            return self.source_name(value.upper())
        code = value.upper()  # Op.ERRORS
        if code == "00":
            return []
        return [self.ERROR_CODES.get(code, f"error {code}")]


class BenqProtocol(Protocol):
    """BenQ RS-232 (``*key=value#``)."""

    name = "benq"
    sources = {
        "computer": "RGB",
        "computer2": "RGB2",
        "component": "ypbr",
        "hdmi": "hdmi",
        "hdmi2": "hdmi2",
        "video": "vid",
        "svideo": "svid",
        "dvi": "dvid",
        "usb": "usbdisplay",
        "lan": "network",
        "displayport": "dp",
        "hdbaset": "hdbaset",
    }
    _BODIES: ClassVar[dict[Op, str]] = {
        Op.POWER_ON: "pow=on",
        Op.POWER_OFF: "pow=off",
        Op.POWER: "pow=?",
        Op.SOURCE: "sour=?",
        Op.MUTE_ON: "mute=on",
        Op.MUTE_OFF: "mute=off",
        Op.MUTE: "mute=?",
        Op.LAMP: "ltim=?",
    }
    _KEYS: ClassVar[dict[Op, str]] = {
        Op.POWER_ON: "POW",
        Op.POWER_OFF: "POW",
        Op.POWER: "POW",
        Op.SOURCE_SET: "SOUR",
        Op.SOURCE: "SOUR",
        Op.MUTE_ON: "MUTE",
        Op.MUTE_OFF: "MUTE",
        Op.MUTE: "MUTE",
        Op.LAMP: "LTIM",
    }
    _REFUSALS: ClassVar[dict[str, bool]] = {  # refusal text → transient
        "BLOCK ITEM": True,
        "ILLEGAL FORMAT": False,
        "UNSUPPORTED ITEM": False,
    }
    _TOKEN = re.compile(rb"\*([^#*\r\n]*)#")

    def supports(self, op: Op) -> bool:
        return op is not Op.ERRORS  # no standard error-status query

    def _body(self, request: Request) -> str:
        if request.op is Op.SOURCE_SET:
            return f"sour={self.source_code(request.arg or '')}"
        if request.op not in self._BODIES:
            raise ProtocolError(f"benq: no command for {request.op.value}")
        return self._BODIES[request.op]

    def encode(self, request: Request) -> bytes:
        return f"\r*{self._body(request)}#\r".encode("ascii")

    def _answers(self, sent: bytes, buffer: bytes) -> list[bytes]:
        echo = sent.strip()[1:-1]  # the body between '*' and '#'
        return [t for t in self._TOKEN.findall(buffer) if t != echo]

    def complete(self, sent: bytes, buffer: bytes) -> bool:
        return bool(self._answers(sent, buffer))

    def decode(self, request: Request, raw: bytes) -> Reply:
        answers = self._answers(self.encode(request), raw)
        if not answers:
            raise ProtocolError(f"benq: no answer in {raw[:40]!r}")
        answer = _text(answers[-1]).strip()
        refusal = answer.upper()
        if refusal in self._REFUSALS:
            return Reply(refused=True, transient=self._REFUSALS[refusal], reason=answer)
        key, sep, value = answer.partition("=")
        want = self._KEYS[request.op]
        if not sep or key.strip().upper() != want:
            raise ProtocolError(f"benq: expected *{want}=...#, got {raw[:40]!r}")
        return Reply(self._value(request.op, value.strip()))

    def _value(self, op: Op, value: str) -> Any:
        if op in (Op.POWER, Op.POWER_ON, Op.POWER_OFF):
            upper = value.upper()
            if upper not in ("ON", "OFF"):
                raise ProtocolError(f"benq: unknown power state {value[:20]!r}")
            return "on" if upper == "ON" else "off"
        if op in (Op.SOURCE, Op.SOURCE_SET):
            if not value:
                raise ProtocolError("benq: empty source")
            return self.source_name(value)
        if op in (Op.MUTE, Op.MUTE_ON, Op.MUTE_OFF):
            return _on_off(value, "benq MUTE")
        return _number(value, "benq LTIM")


PROTOCOLS: dict[str, type[Protocol]] = {"epson": EpsonProtocol, "benq": BenqProtocol}
"""Every protocol by name."""


def get_protocol(name: str) -> Protocol:
    """A codec instance for protocol ``name`` (``epson`` or ``benq``)."""
    try:
        return PROTOCOLS[name]()
    except KeyError:
        raise ProtocolError(f"unknown projector protocol {name!r}") from None
