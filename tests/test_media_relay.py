"""relay.push and relay.pull between two real nodes on loopback, with a real
ffmpeg publisher and ffprobe viewers: a stream published on one node is
played from the other, both ways of getting it there."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from livecenter.media.hub import StreamHub
from livecenter.media.policy import StreamKey
from livecenter.media.relay import RelayError, RelayTarget, pull, push
from livecenter.media.signing import sign
from tests.mediasupport import INGEST, INGEST_KEY, PLAY, PLAY_KEY, NodeThread, probe_packets, start_publisher

KEY = StreamKey(INGEST, "live", "cam1")


@pytest.fixture
def nodes():
    a = NodeThread(node_id="node-a").start()
    # b's idle limit past a's reconnect grace (both 10 s by default): a relay
    # that waits out the grace ends itself, before b would drop it as idle.
    b = NodeThread(node_id="node-b", publish_idle_seconds=30).start()
    yield a, b
    a.stop()
    b.stop()


def _target(node: NodeThread, key: str, domain: str, stream: str = "cam1") -> RelayTarget:
    token = sign(f"/live/{stream}", key, int(time.time()))
    return RelayTarget("127.0.0.1", node.node.rtmp_port, "live", stream, (("auth_key", token), ("domain", domain)))


def _start(node: NodeThread, coro) -> asyncio.Future:
    return asyncio.run_coroutine_threadsafe(coro, node.loop)


def _assert_continuous(packets: list[dict]) -> None:
    assert len(packets) > 30, f"only {len(packets)} video packets"
    times = [float(p["dts_time"]) for p in packets]
    steps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(steps) > 0 and max(steps) < 0.1, f"timestamps jump: {min(steps)}..{max(steps)}"


def test_a_pushed_stream_plays_on_the_other_node_and_ends_with_its_publisher(nodes):
    a, b = nodes
    publisher = start_publisher(a.publish_url(), seconds=8)
    try:
        assert a.wait_for(lambda: a.node.hub.is_live(KEY)), publisher.stop()
        started = []
        relay = _start(a, push(a.node.hub, KEY, _target(b, INGEST_KEY, INGEST), on_started=lambda: started.append(1)))
        assert b.wait_for(lambda: b.node.hub.is_live(KEY)), relay
        assert started == [1]
        _assert_continuous(probe_packets(b.flv_url(), seconds=3))
        assert b.run_sync(lambda: b.node.hub.stream(KEY).video_frames) > 30
    finally:
        publisher.stop()
    # The publisher has gone: after the hub's reconnect grace the relay ends
    # by itself, and the stream with it on the other node.
    relay.result(timeout=a.node.hub.reconnect_grace_seconds + 20)
    assert b.wait_for(lambda: not b.node.hub.is_live(KEY))


def test_a_refused_push_names_the_refusal(nodes):
    a, b = nodes
    publisher = start_publisher(a.publish_url(), seconds=5)
    try:
        assert a.wait_for(lambda: a.node.hub.is_live(KEY))
        relay = _start(a, push(a.node.hub, KEY, _target(b, "wrongKey999", INGEST)))
        with pytest.raises(RelayError, match="refused: NetStream.Publish"):
            relay.result(timeout=20)
    finally:
        publisher.stop()


def test_a_link_to_nowhere_is_a_relay_error():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with pytest.raises(RelayError, match=f"127.0.0.1:{port}/live/cam1"):
            asyncio.run(push(StreamHub(), KEY, RelayTarget("127.0.0.1", port, "live", "cam1")))


def test_a_pulled_stream_plays_on_the_pulling_node_and_stops_when_cancelled(nodes):
    a, b = nodes
    publisher = start_publisher(a.publish_url(), seconds=10)
    try:
        assert a.wait_for(lambda: a.node.hub.is_live(KEY))
        puller = _start(b, pull(b.node.hub, KEY, _target(a, PLAY_KEY, PLAY)))
        assert b.wait_for(lambda: b.node.hub.is_live(KEY)), puller
        _assert_continuous(probe_packets(b.flv_url(), seconds=3))
        # One pull, shared: the source node has one RTMP viewer.
        assert a.run_sync(lambda: a.node.hub.stream(KEY).viewers()).get("rtmp") == 1
        b.loop.call_soon_threadsafe(puller.cancel)
        assert b.wait_for(lambda: not b.node.hub.is_live(KEY))
        assert a.wait_for(lambda: not a.node.hub.stream(KEY).viewers().get("rtmp"))
    finally:
        publisher.stop()
