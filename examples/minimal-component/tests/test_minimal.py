from hypothesis import given, settings
from hypothesis import strategies as st

from devfleet_base.testing import inject
from devfleet_minimal import Counter


async def test_counter_counts_and_bumps(fake_context):
    counter = Counter(fake_context, {"interval": 0.1})
    await counter.start()
    await counter.process()
    assert fake_context.state == {"count": 1}
    assert await counter.handle_command("bump", {"by": 5}) == {"count": 6}
    assert fake_context.messages("bumped") == [{"count": 6}]
    assert fake_context.recall("count") == 6
    await counter.stop()


async def test_wire_payloads_get_receipts(fake_context):
    counter = Counter(fake_context)
    await counter.start()
    ok = await inject(counter, {"id": "c1", "args": {"command": "bump", "args": {"by": 2}}})
    assert ok["status"] == "ok" and ok["result"] == {"count": 2}
    bad = await inject(counter, b'{"id": "c2", "args": {"command": "bump", "args": {"by": 0}}}')
    assert bad["status"] == "error" and bad["code"] == "invalid"
    assert (await inject(counter, b"not json"))["code"] == "bad_json"
    assert (await inject(counter, {"id": "c3", "args": {"command": "nope"}}))["code"] == "unknown_command"


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
async def test_junk_never_escapes(payload):
    from devfleet_base.testing import FakeContext

    counter = Counter(FakeContext())
    await counter.start()
    receipt = await inject(counter, payload)
    assert receipt["status"] in ("ok", "error")
