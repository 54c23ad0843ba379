"""The node's event pump under a slow sink (bench/soak found it): a tick's
updates of every live stream travel as one batch, at most one batch waits,
and samples still reach the sink instead of queueing behind stale updates."""

from __future__ import annotations

import asyncio

import pytest

from livecenter.media.policy import MemorySink, StreamsSampled, StreamUpdated
from tests.mediasupport import NodeThread, start_publisher

pytestmark = pytest.mark.media

SINK_SECONDS = 1.0  # each database round trip of the slow sink: ten update ticks


class SlowSink(MemorySink):
    """Writes updates as slowly as a sink on a saturated loop does."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[tuple[StreamUpdated, ...]] = []

    async def updated(self, event: StreamUpdated) -> None:
        await asyncio.sleep(SINK_SECONDS)
        await super().updated(event)

    async def updated_many(self, events) -> None:
        await asyncio.sleep(SINK_SECONDS)
        self.batches.append(tuple(events))


def test_a_slow_sink_gets_one_batch_of_updates_a_time_and_every_sample_tick():
    node = NodeThread(update_interval_seconds=0.1, sample_interval_seconds=0.5)
    node.sink = SlowSink()
    node.start()
    publishers = [start_publisher(node.publish_url(stream=f"cam{i}"), seconds=20, size="320x180") for i in range(3)]
    try:
        assert node.wait_for(lambda: len(node.node.hub.live_keys()) == 3, timeout=30)
        assert node.wait_for(lambda: len(node.sink.batches) >= 4, timeout=30)
        # Ten ticks pass during each batch's write; they are not queued: one batch waits at most.
        queued = node.run_sync(lambda: [type(e).__name__ for e in node.node._events._queue])
        assert queued.count("_Updates") <= 1, queued
        samples = [e for e in node.sink.events if isinstance(e, StreamsSampled)]
        assert len(samples) >= 4, samples
        assert node.node.sample_batches_dropped == 0
        latest = node.sink.batches[-1]
        assert sorted(e.key.stream for e in latest) == ["cam0", "cam1", "cam2"]
    finally:
        for publisher in publishers:
            publisher.stop()
        node.stop()


def test_a_sink_without_updated_many_gets_each_update():
    node = NodeThread(update_interval_seconds=0.2).start()
    publisher = start_publisher(node.publish_url(), seconds=10, size="320x180")
    try:
        assert node.wait_for(lambda: any(isinstance(e, StreamUpdated) for e in node.sink.events), timeout=30)
    finally:
        publisher.stop()
        node.stop()
