"""Pure parts of the agent: config store, log shipping."""

from __future__ import annotations

import asyncio
import logging

import pytest

from devfleet_agent.config_store import ConfigStore, apply_dotted
from devfleet_agent.logship import LogShipper
from devfleet_base.errors import ConfigError


def test_apply_dotted():
    base = {"a": {"b": 1}, "c": 2}
    assert apply_dotted(base, {"a.b": 3, "d.e": 4, "c": None}) == {"a": {"b": 3}, "d": {"e": 4}}
    assert base == {"a": {"b": 1}, "c": 2}
    for bad in ("", "a..b", ".a"):
        with pytest.raises(ConfigError):
            apply_dotted(base, {bad: 1})
    with pytest.raises(ConfigError, match="not a section"):
        apply_dotted(base, {"c.x": 1})


def test_store_versions_prune_and_reload(tmp_path):
    store = ConfigStore(tmp_path, keep=3)
    store.load()
    assert store.version == 0
    for i in range(5):
        store.apply(set={"description": f"v{i + 1}"})
    assert store.versions() == [3, 4, 5]
    fresh = ConfigStore(tmp_path)
    fresh.load()
    assert fresh.version == 5 and fresh.config["description"] == "v5"
    with pytest.raises(ConfigError) as e:
        fresh.apply(set={"description": "x"}, expect_version=4)
    assert e.value.code == "conflict"
    with pytest.raises(ConfigError):
        fresh.apply(set={"description": "x"}, replace={})
    assert fresh.version == 5  # refused writes change nothing


def test_store_skips_garbage_files(tmp_path):
    store = ConfigStore(tmp_path)
    store.apply(set={"description": "good"})
    (tmp_path / "v2.json").write_text('{"version": 2, "config": {"heartbeat": {"interval": -1}}}')
    (tmp_path / "v3.json").write_text("[]")
    (tmp_path / "notes.txt").write_text("ignored")
    fresh = ConfigStore(tmp_path)
    fresh.load()
    assert fresh.version == 1 and fresh.config["description"] == "good"


async def test_logshipper_buffers_offline_and_reports_drops():
    sent: list[dict] = []
    online = False

    async def publish(batch):
        if online:
            sent.append(batch)
        return online

    shipper = LogShipper(publish, "n1")
    shipper.configure(
        {"enabled": True, "level": "INFO", "batch_size": 4, "flush_interval": 0.05, "buffer": 10}
    )
    logger = logging.getLogger("devfleet.test.ship")
    logger.addHandler(shipper)
    logger.setLevel(logging.INFO)
    try:
        for i in range(15):
            logger.info("record %d", i)
        logger.debug("not shipped")
        assert not await shipper.ship()
        assert shipper.pending == 10 and shipper.dropped == 5
        online = True
        assert await shipper.ship()
    finally:
        logger.removeHandler(shipper)
    msgs = [r["msg"] for b in sent for r in b["records"]]
    assert msgs == [f"record {i}" for i in range(5, 15)]
    assert [len(b["records"]) for b in sent] == [4, 4, 2]
    assert sent[0]["dropped"] == 5 and sent[1]["dropped"] == 0
    assert shipper.pending == 0


async def test_logshipper_wakes_on_full_batch():
    got = asyncio.Event()

    async def publish(batch):
        got.set()
        return True

    shipper = LogShipper(publish, "n1")
    shipper.configure(
        {"enabled": True, "level": "INFO", "batch_size": 2, "flush_interval": 3600, "buffer": 10}
    )
    task = asyncio.create_task(shipper.run())
    await asyncio.sleep(0)
    rec = logging.LogRecord("devfleet.x", logging.INFO, __file__, 1, "m", None, None)
    shipper.handle(rec)
    shipper.handle(rec)
    await asyncio.wait_for(got.wait(), 5)
    task.cancel()
