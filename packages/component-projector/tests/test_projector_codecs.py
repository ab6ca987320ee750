from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devfleet_projector import (
    BenqProtocol,
    EpsonProtocol,
    Op,
    Protocol,
    ProtocolError,
    Request,
    get_protocol,
)

EPSON = EpsonProtocol()
BENQ = BenqProtocol()
ALL_REQUESTS = [Request(op) for op in Op if op is not Op.SOURCE_SET] + [Request(Op.SOURCE_SET, "hdmi")]


def test_epson_encodes_the_real_syntax() -> None:
    assert EPSON.encode(Request(Op.POWER_ON)) == b"PWR ON\r"
    assert EPSON.encode(Request(Op.POWER_OFF)) == b"PWR OFF\r"
    assert EPSON.encode(Request(Op.POWER)) == b"PWR?\r"
    assert EPSON.encode(Request(Op.SOURCE_SET, "hdmi")) == b"SOURCE 30\r"
    assert EPSON.encode(Request(Op.SOURCE)) == b"SOURCE?\r"
    assert EPSON.encode(Request(Op.MUTE_ON)) == b"MUTE ON\r"
    assert EPSON.encode(Request(Op.MUTE_OFF)) == b"MUTE OFF\r"
    assert EPSON.encode(Request(Op.LAMP)) == b"LAMP?\r"
    assert EPSON.encode(Request(Op.ERRORS)) == b"ERR?\r"


def test_epson_decodes_answers_and_refusals() -> None:
    assert EPSON.decode(Request(Op.POWER), b"PWR=01\r:").value == "on"
    assert EPSON.decode(Request(Op.POWER), b"PWR=02\r:").value == "warming"
    assert EPSON.decode(Request(Op.POWER), b"PWR=03\r:").value == "cooling"
    assert EPSON.decode(Request(Op.POWER), b"PWR=04\r:").value == "off"
    assert EPSON.decode(Request(Op.SOURCE), b"SOURCE=A0\r:").value == "hdmi2"
    assert EPSON.decode(Request(Op.SOURCE), b"SOURCE=9F\r:").value == "code:9F"
    assert EPSON.decode(Request(Op.MUTE), b"MUTE=ON\r:").value is True
    assert EPSON.decode(Request(Op.LAMP), b"LAMP=1234\r:").value == 1234
    assert EPSON.decode(Request(Op.ERRORS), b"ERR=00\r:").value == []
    assert EPSON.decode(Request(Op.ERRORS), b"ERR=04\r:").value == ["high internal temperature"]
    ack = EPSON.decode(Request(Op.MUTE_ON), b":")
    assert not ack.refused and ack.value is None
    refused = EPSON.decode(Request(Op.SOURCE_SET, "hdmi"), b"ERR\r:")
    assert refused.refused and refused.reason == "ERR"
    assert EPSON.complete(b"PWR?\r", b"PWR=01\r:")
    assert not EPSON.complete(b"PWR?\r", b"PWR=01\r")


@pytest.mark.parametrize(
    ("request_", "raw"),
    [
        (Request(Op.POWER), b"PWR=01\r"),  # no prompt
        (Request(Op.POWER), b"PWR=99\r:"),
        (Request(Op.POWER), b"SOURCE=30\r:"),  # a late answer to something else
        (Request(Op.LAMP), b"LAMP=lots\r:"),
        (Request(Op.MUTE_ON), b"MUTE=ON\r:"),
        (Request(Op.POWER), b"\xff\xfe:"),
    ],
)
def test_epson_garbage_raises_protocol_error(request_: Request, raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        EPSON.decode(request_, raw)


def test_benq_encodes_the_real_syntax() -> None:
    assert BENQ.encode(Request(Op.POWER_ON)) == b"\r*pow=on#\r"
    assert BENQ.encode(Request(Op.POWER)) == b"\r*pow=?#\r"
    assert BENQ.encode(Request(Op.SOURCE_SET, "hdmi")) == b"\r*sour=hdmi#\r"
    assert BENQ.encode(Request(Op.SOURCE_SET, "computer")) == b"\r*sour=RGB#\r"
    assert BENQ.encode(Request(Op.MUTE_ON)) == b"\r*mute=on#\r"
    assert BENQ.encode(Request(Op.LAMP)) == b"\r*ltim=?#\r"
    assert not BENQ.supports(Op.ERRORS)
    with pytest.raises(ProtocolError):
        BENQ.encode(Request(Op.ERRORS))


def test_benq_skips_the_echo_and_decodes_the_answer() -> None:
    sent = BENQ.encode(Request(Op.POWER_ON))
    assert not BENQ.complete(sent, b"*pow=on#\r\n")  # the echo alone is not an answer
    assert BENQ.complete(sent, b"*pow=on#\r\n*POW=ON#")
    assert BENQ.decode(Request(Op.POWER_ON), b"*pow=on#\r\n*POW=ON#\r\n").value == "on"
    assert BENQ.decode(Request(Op.POWER), b">*pow=?#\r\n*POW=OFF#\r\n").value == "off"
    assert BENQ.decode(Request(Op.SOURCE), b"*sour=?#\r\n*SOUR=HDMI#\r\n").value == "hdmi"
    assert BENQ.decode(Request(Op.MUTE_ON), b"*mute=on#\r\n*MUTE=ON#\r\n").value is True
    assert BENQ.decode(Request(Op.LAMP), b"*ltim=?#\r\n*LTIM=321#\r\n").value == 321
    # a model that does not echo
    assert BENQ.decode(Request(Op.POWER), b"*POW=ON#\r\n").value == "on"


def test_benq_refusals() -> None:
    block = BENQ.decode(Request(Op.SOURCE_SET, "hdmi"), b"*sour=hdmi#\r\n*Block item#\r\n")
    assert block.refused and block.transient
    illegal = BENQ.decode(Request(Op.MUTE_ON), b"*mute=on#\r\n*Illegal format#\r\n")
    assert illegal.refused and not illegal.transient
    unsupported = BENQ.decode(Request(Op.SOURCE_SET, "dvi"), b"*Unsupported item#\r\n")
    assert unsupported.refused and not unsupported.transient


@pytest.mark.parametrize(
    ("request_", "raw"),
    [
        (Request(Op.POWER), b"*pow=?#\r\n"),
        (Request(Op.POWER), b"*pow=?#\r\n*POW=MAYBE#"),
        (Request(Op.LAMP), b"*LTIM=#"),
        (Request(Op.POWER), b"*SOUR=HDMI#"),
        (Request(Op.POWER), b"*\xff#"),
    ],
)
def test_benq_garbage_raises_protocol_error(request_: Request, raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        BENQ.decode(request_, raw)


def test_unknown_source_and_protocol() -> None:
    with pytest.raises(ProtocolError, match="no input"):
        EPSON.encode(Request(Op.SOURCE_SET, "dvi"))
    with pytest.raises(ProtocolError):
        get_protocol("sony")


@settings(max_examples=400, deadline=None)
@given(
    protocol=st.sampled_from([EPSON, BENQ]),
    request_=st.sampled_from(ALL_REQUESTS),
    raw=st.one_of(
        st.binary(max_size=80),
        st.lists(
            st.sampled_from(
                [
                    b"*",
                    b"#",
                    b"=",
                    b":",
                    b"\r",
                    b"\n",
                    b"PWR",
                    b"POW",
                    b"ON",
                    b"01",
                    b"ERR",
                    b"LAMP",
                    b"LTIM",
                    b"SOURCE",
                    b"?",
                    b"9" * 12,
                    b"\xff",
                    b" ",
                ]
            ),
            max_size=12,
        ).map(b"".join),
    ),
)
def test_random_bytes_never_crash_the_codec(protocol: Protocol, request_: Request, raw: bytes) -> None:
    if not protocol.supports(request_.op):
        return
    protocol.complete(protocol.encode(request_), raw)
    with contextlib.suppress(ProtocolError):
        protocol.decode(request_, raw)
