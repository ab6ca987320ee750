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
