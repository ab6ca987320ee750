"""Wactorz control messages on the dispatcher's one path (issue 19): read, expiry, at-most-once
by ``_id``, one final receipt (no ``accepted``), errors told to the owner; no broker needed."""

from __future__ import annotations

import time
from typing import Any

from devfleet_agent.commands import Dispatcher
from devfleet_base import contract
from devfleet_base.contract import Command
from devfleet_base.errors import CommandError, DevfleetError
from devfleet_base.mqtt import MqttMessage


def _dispatcher() -> tuple[Dispatcher, list[dict[str, Any]], list[str], list[tuple[str, str]]]:
    sent: list[dict[str, Any]] = []
    runs: list[str] = []
    errors: list[tuple[str, str]] = []

    async def send(topic: str, receipt: dict[str, Any], correlation: bytes | None) -> None:
        assert topic == "nodes/n1/receipts" and correlation is None
        sent.append(receipt)

    async def stop(command: Command, msg: MqttMessage) -> dict[str, Any]:
        runs.append(command.args["name"])
        if command.args["name"] == "ghost":
            raise CommandError("no actor named 'ghost'", code="not_found")
        return {"name": command.args["name"], "stopped": True}

    async def on_error(command: Command, error: DevfleetError) -> None:
        errors.append((command.id, error.code))

    d = Dispatcher("n1", send)
    d.register_control("stop", stop, form="name", on_error=on_error)
    return d, sent, runs, errors


def _msg(payload: Any) -> MqttMessage:
    raw = payload if isinstance(payload, bytes) else contract.encode(payload)
    return MqttMessage("nodes/n1/stop", raw, False, 1)


async def _send(d: Dispatcher, payload: Any) -> None:
    msg = _msg(payload)
    match = contract.parse_topic(msg.topic)
    assert match is not None
    await d.handle_control(msg, match)


async def test_a_repeated_id_runs_once_and_gets_its_final_receipt_again() -> None:
    d, sent, runs, _ = _dispatcher()
    await _send(d, {"name": "a", "_id": "c1"})
    await _send(d, {"name": "a", "_id": "c1"})  # a QoS 1 redelivery
    assert runs == ["a"]
    assert [(r["id"], r["status"]) for r in sent] == [("c1", "ok"), ("c1", "ok")]
    assert sent[0] == sent[1] and d.counts["duplicate"] == 1
    await _send(d, {"name": "a"})  # no _id: nothing to recognise it by
    await _send(d, "a")  # the bare-name form
    assert runs == ["a", "a", "a"] and len({r["id"] for r in sent}) == 3


async def test_refusals_and_failures_are_one_receipt_each_told_to_the_owner() -> None:
    d, sent, runs, errors = _dispatcher()
    await _send(d, {"name": "a", "_id": "late", "_expires_at": time.time() - 5})
    await _send(d, {"name": "a", "_id": "badexp", "_expires_at": "soon"})
    await _send(d, b"[1, 2]")
    await _send(d, {"name": "ghost", "_id": "g1"})
    assert runs == ["ghost"]
    assert [(r["id"], r["status"], r.get("code")) for r in sent[:2] + sent[3:]] == [
        ("late", "error", "expired"),
        ("badexp", "error", "invalid"),
        ("g1", "error", "not_found"),
    ]
    assert sent[2]["code"] == "invalid" and "object" in sent[2]["message"]
    assert all(r["cmd"] == "stop" and r["status"] != "accepted" for r in sent)
    assert [code for _, code in errors] == ["expired", "invalid", "invalid", "not_found"]
    await _send(d, {"name": "a", "_id": "late"})  # a refused id was not remembered: it runs
    assert runs == ["ghost", "a"]


async def test_a_keyed_node_refuses_an_unsigned_control_message() -> None:
    d, sent, runs, _ = _dispatcher()
    d.wactorz_key = b"k" * 32
    await _send(d, {"name": "a", "_id": "u1"})
    await _send(d, "a")
    assert runs == [] and [r["code"] for r in sent] == ["bad_signature", "bad_signature"]
