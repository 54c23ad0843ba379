"""The engine's samples, starts and stops reach the monitoring app through
the streams bridge: samples become rows, and all three become messages to
the live pages' channel-layer groups."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from channels.layers import get_channel_layer

from livecenter.media.policy import StreamKey
from monitoring import live
from monitoring.models import StreamSample
from streams.models import PublishSession
from tests.monitoringsupport import record, stream_sample
from tests.streamsupport import add_pair, publish, unpublish

pytestmark = pytest.mark.django_db(transaction=True)

KEY = StreamKey("push.example.com", "live", "cam1")


async def _listen(groups: list[str]):
    layer = get_channel_layer()
    channel = await layer.new_channel()
    for group in groups:
        await layer.group_add(group, channel)
    return layer, channel


def messages_during(action, groups: list[str], count: int) -> list[dict]:
    async def run():
        layer, channel = await _listen(groups)
        try:
            await asyncio.get_running_loop().run_in_executor(None, action)
            return [await asyncio.wait_for(layer.receive(channel), 10) for _ in range(count)]
        finally:
            for group in groups:
                await layer.group_discard(group, channel)

    return asyncio.run(run())


def test_it_stores_a_tick_of_samples(owner):
    at = dt.datetime(2026, 5, 1, 10, 0, 5, tzinfo=dt.UTC)
    record(
        stream_sample(at=at, bframes=True, timestamp_jumps=2),
        stream_sample(stream="cam2", session_id="s2", at=at, viewers={}),
        node_id="node-7",
    )
    rows = {s.stream: s for s in StreamSample.objects.all()}
    assert set(rows) == {"cam1", "cam2"}
    row = rows["cam1"]
    assert (row.at, row.node_id, row.session_id, row.domain_name, row.app) == (
        at,
        "node-7",
        "s1",
        "push.example.com",
        "live",
    )
    assert row.video_frame_rate == 30 and row.bitrate == 2_128_000 and row.bframes and row.timestamp_jumps == 2
    assert row.viewers == {"flv": 2, "rtmp": 1} and row.viewer_count == 3
    assert row.bitrate_out == {"flv": 4_256_000, "rtmp": 2_128_000}
    assert rows["cam2"].viewer_count == 0


def test_it_sends_samples_to_the_stream_and_domain_groups(owner):
    sample = stream_sample()
    got = messages_during(
        lambda: record(sample), [live.stream_group(KEY), live.domain_group("push.example.com")], count=2
    )
    by_type = {m["type"]: m for m in got}
    assert by_type[live.SAMPLE]["sample"] == live.event_sample_json(sample, "node-1")
    assert by_type[live.SAMPLES]["samples"] == [live.event_sample_json(sample, "node-1")]
    assert by_type[live.SAMPLE]["sample"]["bitrate"] == 2_128_000
    assert (by_type[live.SAMPLE]["sample"]["node_id"], by_type[live.SAMPLE]["sample"]["upstream_node"]) == (
        "node-1",
        "",
    )


def test_it_tells_the_pages_when_a_stream_starts_and_stops(owner):
    add_pair(owner)
    groups = [live.stream_group(KEY)]
    started = messages_during(lambda: publish("push.example.com", "live", "cam1", "s1"), groups, count=1)[0]
    assert started["type"] == live.STATE and started["live"] is True and started["session_id"] == "s1"
    session = PublishSession.objects.get(session_id="s1")
    stopped = messages_during(lambda: unpublish(session, dt.datetime.now(dt.UTC), "no data"), groups, count=1)[0]
    assert (stopped["live"], stopped["reason"], stopped["stream_url"]) == (False, "no data", str(KEY))


def test_it_keeps_group_names_within_the_layers_limit():
    key = StreamKey("a" * 253, "b" * 255, "c" * 255)
    for name in (live.stream_group(key), live.domain_group(key.domain)):
        assert len(name) < 100 and name.isascii()
    assert live.stream_group(key) != live.stream_group(StreamKey(key.domain, key.app, "d"))


def test_a_failing_listener_does_not_stop_the_database_sink(owner, caplog, monkeypatch):
    from nodes import bridge

    class Broken:
        async def published(self, event):
            raise RuntimeError("boom")

    monkeypatch.setattr(bridge, "_listeners", [Broken(), *bridge._listeners])
    add_pair(owner)
    publish("push.example.com", "live", "cam1", "s9")
    assert PublishSession.objects.filter(session_id="s9").exists()
    assert "event listener Broken failed on StreamPublished" in caplog.text
