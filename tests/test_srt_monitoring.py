"""SRT link figures in the per-second samples, and refused SRT publishers
reported to the sink (issue 13, Monitoring): the sampler's arithmetic on a
fake clock, and a node sampling a real ffmpeg (libsrt) publisher."""

from __future__ import annotations

import dataclasses

import pytest

from livecenter.media import node as node_module
from livecenter.media.hub import StreamHub
from livecenter.media.node import MAX_REFUSALS_PER_SECOND, MediaNode, NodeConfig
from livecenter.media.policy import MemorySink, PublishRefused, SrtSessionStats, StreamKey, StreamsSampled
from livecenter.media.srt.connection import INITIAL_RTT_US
from livecenter.media.srt.packets import SrtRejectReason
from livecenter.media.srt_server import REJECT_UNAUTHORIZED
from livecenter.media.stats import StatsSampler
from tests.mediasupport import INGEST, NodeThread, default_policy, start_publisher
from tests.test_hub import run
from tests.test_stats import Clock

KEY = StreamKey(INGEST, "live", "cam1")
PASSPHRASE = "Correct-Horse-Battery-9"


def reading(socket_id: int = 7, **totals) -> SrtSessionStats:
    values = {"packets_received": 0, "packets_lost": 0, "packets_retransmitted": 0, "packets_dropped": 0, **totals}
    return SrtSessionStats(
        socket_id=socket_id, peer="192.0.2.1:5000", encrypted=True, latency_ms=120, rtt_ms=35.5, rtt_var_ms=4.0,
        receive_buffer_packets=40, receive_buffer_ms=118, **values,
    )  # fmt: skip


@run
async def test_it_turns_srt_totals_into_per_second_figures():
    hub = StreamHub()
    clock, wall = Clock(), Clock()
    sampler = StatsSampler(hub, monotonic=clock, wall=wall)
    pub = hub.publish(KEY)
    wall.now = pub.started_at + 2  # the first sample covers the session from its start
    live = {KEY: "s1"}
    [first] = sampler.sample(live, {KEY: reading(packets_received=400, packets_lost=10, packets_dropped=2)})
    assert first.srt.packets_received_per_second == 200 and first.srt.packets_lost_per_second == 5
    assert first.srt.packets_dropped_per_second == 1 and first.srt.packets_retransmitted_per_second == 0
    assert (first.srt.rtt_ms, first.srt.latency_ms, first.srt.receive_buffer_ms) == (35.5, 120, 118)

    clock.now += 0.5
    now = reading(packets_received=600, packets_lost=20, packets_retransmitted=8, packets_dropped=2)
    [second] = sampler.sample(live, {KEY: now})
    assert second.srt.packets_received == 600  # totals pass through
    assert second.srt.packets_received_per_second == 400 and second.srt.packets_lost_per_second == 20
    assert second.srt.packets_retransmitted_per_second == 16 and second.srt.packets_dropped_per_second == 0

    # Another SRT session on the same publication counts from zero, not from the last one's totals.
    clock.now += 1
    [third] = sampler.sample(live, {KEY: reading(socket_id=8, packets_received=50)})
    assert third.srt.packets_received_per_second == 50
    # A stream not read as SRT has none.
    clock.now += 1
    [fourth] = sampler.sample(live)
    assert fourth.srt is None


def srt_publisher(url: str, seconds: float = 30):
    return start_publisher(url, seconds=seconds, size="320x240", rate=25, container="mpegts")


@pytest.fixture
def secured():
    policy = default_policy()
    policy.domains[INGEST] = dataclasses.replace(policy.domains[INGEST], srt_passphrase=PASSPHRASE, srt_latency_ms=300)
    node = NodeThread(policy, srt_port=0, play_wait_seconds=10).start()
    yield node
    node.stop()


def srt_samples(node) -> list:
    return [s for e in node.sink.events if isinstance(e, StreamsSampled) for s in e.samples if s.srt is not None]


@pytest.mark.media
def test_a_node_samples_an_srt_publishers_link_every_second(secured):
    publisher = srt_publisher(secured.srt_publish_url(passphrase=PASSPHRASE))
    try:
        assert secured.wait_for(lambda: len(srt_samples(secured)) >= 4, timeout=30), publisher.stop()
    finally:
        publisher.stop()
    samples = srt_samples(secured)
    assert {s.key for s in samples} == {KEY}
    last = samples[-1].srt
    assert last.encrypted and last.latency_ms == 300
    assert last.peer.startswith("127.0.0.1:")
    # The RTT is measured (ACK/ACKACK), no longer the initial guess.
    assert last.rtt_ms != INITIAL_RTT_US / 1000
    # 25 fps of 320x240 with audio is tens of packets a second; the totals grow.
    assert all(s.srt.packets_received_per_second > 0 for s in samples[1:])
    assert samples[-1].srt.packets_received > samples[0].srt.packets_received
    # Held packets wait up to the 300 ms latency for their release.
    assert any(s.srt.receive_buffer_packets > 0 and 0 < s.srt.receive_buffer_ms <= 1000 for s in samples)
    # Loopback loses nothing.
    assert last.packets_dropped == 0


@pytest.mark.media
@pytest.mark.parametrize(
    ("options", "code", "reason"),
    [
        ({"passphrase": "not the right one"}, SrtRejectReason.BADSECRET, "wrong passphrase"),
        ({}, SrtRejectReason.UNSECURE, "caller sent no passphrase"),
        ({"key": "wrongKey", "passphrase": PASSPHRASE}, REJECT_UNAUTHORIZED, "invalid md5hash"),
    ],
    ids=["wrong passphrase", "no passphrase", "bad signature"],
)
def test_a_refused_srt_publisher_is_reported_to_the_sink(secured, options, code, reason):
    publisher = srt_publisher(secured.srt_publish_url(**options), seconds=10)
    publisher.process.wait(30)
    publisher.stop()

    def refusals():
        return [e for e in secured.sink.events if isinstance(e, PublishRefused)]

    assert secured.wait_for(lambda: refusals(), timeout=10)
    event = refusals()[0]
    assert (event.domain, event.app, event.stream, event.protocol) == (INGEST, "live", "cam1", "srt")
    assert event.code == code and reason in event.reason
    assert event.client_addr.startswith("127.0.0.1:") and event.node_id == "test-node"


def test_a_node_reports_at_most_max_refusals_per_second(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(node_module.time, "monotonic", clock)
    node = MediaNode(NodeConfig(node_id="n"), default_policy(), MemorySink())
    event = PublishRefused(INGEST, "live", "cam1", "srt", "192.0.2.1:5000", "wrong passphrase", 10, 0.0, "n")
    for _ in range(MAX_REFUSALS_PER_SECOND):
        node.publish_refused(event)
    assert node._events.qsize() == MAX_REFUSALS_PER_SECOND
    node.publish_refused(event)  # one past the limit: only logged
    assert node._events.qsize() == MAX_REFUSALS_PER_SECOND
    clock.now += 1  # the next second
    node.publish_refused(event)
    assert node._events.qsize() == MAX_REFUSALS_PER_SECOND + 1
