"""WHIP link figures in the per-second samples, and refused WHIP publishers
reported to the sink (issue 17, Monitoring): the sampler's arithmetic on a
fake clock, and a node sampling a real aiortc WHIP publisher
(tests/whipsupport.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from livecenter.media.hub import StreamHub
from livecenter.media.policy import PublishRefused, StreamKey, StreamsSampled, WhipSessionStats
from livecenter.media.stats import StatsSampler
from tests.mediasupport import INGEST, NodeThread
from tests.test_hub import run
from tests.test_rts_whip import policy
from tests.test_stats import Clock
from tests.whipsupport import WhipPublisher, http, whip_url

KEY = StreamKey(INGEST, "live", "cam1")


def reading(session_id: str = "w1", **totals) -> WhipSessionStats:
    values = {"packets_received": 0, "packets_lost": 0, "nacks_sent": 0, **totals}
    return WhipSessionStats(
        session_id=session_id, peer="192.0.2.1:5000", video_codec="H264", audio_codec="opus",
        connection_state="connected", rtt_ms=12.5, jitter_ms=2.0, keyframe_requests=3, frames_lost=1, **values,
    )  # fmt: skip


@run
async def test_it_turns_whip_totals_into_per_second_figures():
    hub = StreamHub()
    clock, wall = Clock(), Clock()
    sampler = StatsSampler(hub, monotonic=clock, wall=wall)
    pub = hub.publish(KEY)
    wall.now = pub.started_at + 2  # the first sample covers the session from its start
    live = {KEY: "s1"}
    [first] = sampler.sample(live, whip={KEY: reading(packets_received=400, packets_lost=10, nacks_sent=8)})
    assert first.whip.packets_received_per_second == 200 and first.whip.packets_lost_per_second == 5
    assert first.whip.nacks_sent_per_second == 4 and first.srt is None
    assert (first.whip.rtt_ms, first.whip.connection_state, first.whip.keyframe_requests) == (12.5, "connected", 3)

    clock.now += 0.5
    [second] = sampler.sample(live, whip={KEY: reading(packets_received=600, packets_lost=20, nacks_sent=8)})
    assert second.whip.packets_received == 600  # totals pass through
    assert second.whip.packets_received_per_second == 400 and second.whip.packets_lost_per_second == 20
    assert second.whip.nacks_sent_per_second == 0

    # Another WHIP session on the same publication counts from zero, not from the last one's totals.
    clock.now += 1
    [third] = sampler.sample(live, whip={KEY: reading(session_id="w2", packets_received=50)})
    assert third.whip.packets_received_per_second == 50
    # A stream not read as WHIP has none.
    clock.now += 1
    [fourth] = sampler.sample(live)
    assert fourth.whip is None


@pytest.fixture
def node():
    node = NodeThread(policy(), sample_interval_seconds=0.5).start()
    yield node
    node.stop()


def whip_samples(node) -> list:
    return [s for e in node.sink.events if isinstance(e, StreamsSampled) for s in e.samples if s.whip is not None]


@pytest.mark.media
def test_a_node_samples_a_whip_publishers_link(node):
    async def scenario():
        publisher = WhipPublisher(whip_url(node), seconds=8)
        assert await publisher.start() == 201, publisher.body
        try:
            deadline = time.monotonic() + 30
            # Media flows for a few samples, and a STUN check (every RTT_PROBE_SECONDS) measured the RTT.
            while not (
                [s for s in whip_samples(node) if s.whip.packets_received_per_second > 0][3:]
                and any(s.whip.rtt_ms > 0 for s in whip_samples(node))
            ):
                assert time.monotonic() < deadline, "no WHIP link figures were sampled"
                await asyncio.sleep(0.1)
        finally:
            assert await publisher.stop() == 200
        return publisher.headers["Location"].rsplit("/", 1)[-1]

    session_id = asyncio.run(scenario())
    samples = whip_samples(node)
    assert {s.key for s in samples} == {KEY}
    connected = [s.whip for s in samples if s.whip.connection_state == "connected"]
    assert connected, [s.whip.connection_state for s in samples]
    last = connected[-1]
    assert last.session_id == session_id and last.peer.startswith("127.0.0.1:")
    assert (last.video_codec, last.audio_codec) == ("H264", "opus")
    assert last.packets_received > 0 and samples[-1].whip.packets_received >= samples[0].whip.packets_received
    # The RTT is measured by STUN checks every few seconds; loopback loses nothing.
    assert any(s.whip.rtt_ms > 0 for s in samples)
    assert last.frames_lost == 0
    # The rest of the sample is the hub's, as for any publisher.
    assert any(s.video_codec == "H264" and s.width == 320 and s.video_frame_rate > 0 for s in samples)


@pytest.mark.media
def test_a_refused_whip_publisher_is_reported_to_the_sink(node):
    status, headers, _ = http(whip_url(node, key="wrongKey"), "POST", b"v=0\r\n")
    assert status == 403 and headers["X-LiveCenter-Error"] == "invalid md5hash"

    def refusals():
        return [e for e in node.sink.events if isinstance(e, PublishRefused)]

    assert node.wait_for(lambda: refusals(), timeout=10)
    event = refusals()[0]
    assert (event.domain, event.app, event.stream, event.protocol) == (INGEST, "live", "cam1", "whip")
    assert (event.code, event.reason) == (403, "invalid md5hash")
    assert event.client_addr.startswith("127.0.0.1:") and event.node_id == "test-node"
