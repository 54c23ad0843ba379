"""SRT loss recovery across an impaired link (issue 13): an ffmpeg (libsrt)
publisher in a network namespace of its own pushes 2 Mbit/s through an
impairment relay (100 ms each way, 5 % loss each way) to the node, and the
stream is read back over HTTP-FLV.

This kernel has no netem: the relay (tests/netimpair.py) makes the delay and
the loss, in the root namespace at the namespace's gateway address.

At 400 ms of latency (twice the 200 ms round trip) a packet whose NAK or
whose retransmission is lost too (about 10 % of the 5 % lost) cannot come
again in time, whoever receives: the second NAK can only follow the first
by a round trip. libsrt's own receiver (`srt-live-transmit`) through the
same relay loses as much (bench/README.md, "bench/srt"). So at 400 ms the
test asks that retransmission recovered nearly everything, and at 1000 ms
(libsrt's guidance: at least 4 x RTT on a lossy link) that no frame is
missing."""

from __future__ import annotations

import json
import subprocess

import pytest

from livecenter.media.policy import StreamKey
from tests.mediasupport import INGEST, NodeThread, publisher_command
from tests.netimpair import Impairment, ThreadedImpairmentRelay

pytestmark = [pytest.mark.media, pytest.mark.netns]

KEY = StreamKey(INGEST, "live", "cam1")
FPS = 25
READ_SECONDS = 15


def publish_through_loss(netns, latency_ms: int):
    """Publish through the impaired link and read READ_SECONDS back:
    (video DTS list, the node's SRT session counters, demuxer counters, relay counters)."""
    net = netns("publisher")
    node = NodeThread(srt_port=0, play_wait_seconds=20).start()
    link = Impairment(loss=0.05, delay_ms=100)
    relay = ThreadedImpairmentRelay((net.gateway, 0), ("127.0.0.1", node.node.srt_port), up=link, down=link, seed=13)
    publisher = None
    try:
        relay.start()
        url = node.srt_publish_url(latency=latency_ms * 1000).replace(
            f"127.0.0.1:{node.node.srt_port}", f"{relay.address[0]}:{relay.address[1]}"
        )
        cmd = publisher_command(url, seconds=READ_SECONDS + 25, size="640x360", rate=FPS, container="mpegts")
        publisher = net.popen("publisher", cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert node.wait_for(lambda: node.node.hub.live_keys() == [KEY], timeout=30), publisher.stderr.read()
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-rw_timeout", "20000000", "-read_intervals", f"%+{READ_SECONDS}",
             "-show_entries", "packet=codec_type,dts_time", "-of", "json", node.flv_url()],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        packets = json.loads(out.stdout)["packets"]
        video = [float(p["dts_time"]) for p in packets if p["codec_type"] == "video"]
        session = node.run_sync(lambda: next(iter(node.node.srt.listener.connections.values())).stats)
        demuxer = node.run_sync(lambda: next(iter(node.node.srt.publishers.values())).demuxer.counters)
        return video, session, demuxer, relay.snapshot()
    finally:
        if publisher is not None and publisher.poll() is None:
            publisher.terminate()
            publisher.wait(15)
        relay.stop()
        node.stop()


def missing_frames(video: list[float]) -> int:
    """Frames missing between consecutive video DTS (a step of n frame times is n - 1 missing)."""
    return sum(round((b - a) * FPS) - 1 for a, b in zip(video, video[1:], strict=False) if b - a > 1.5 / FPS)


def test_it_misses_no_frame_through_delay_and_loss_each_way_with_latency_for_the_rtt(netns):
    video, session, demuxer, relay = publish_through_loss(netns, latency_ms=1000)
    assert len(video) >= (READ_SECONDS - 3) * FPS, len(video)
    assert missing_frames(video) == 0, (video, session, demuxer)
    assert all(b > a for a, b in zip(video, video[1:], strict=False))
    # The link lost packets both ways, and retransmission brought every one back.
    assert relay["up"]["dropped"] > 100 and relay["down"]["dropped"] > 10, relay
    # (Those lost in the last round trip may still be on their way again.)
    assert session.packets_lost > 100 and session.packets_retransmitted >= session.packets_lost - 10, session
    assert session.packets_dropped == 0 and demuxer.pes_dropped == 0, (session, demuxer)


def test_it_recovers_nearly_every_packet_at_twice_the_rtt(netns):
    video, session, demuxer, relay = publish_through_loss(netns, latency_ms=400)
    assert len(video) >= (READ_SECONDS - 3) * FPS, len(video)
    assert relay["up"]["dropped"] > 100, relay
    # Of the ~5 % lost on the way, retransmission brought back all but those
    # whose NAK or retransmission was lost too (about a tenth of them).
    assert session.packets_lost > 100
    assert session.packets_dropped <= 0.25 * session.packets_lost, session
    # What is lost costs its frame (the demuxer drops a PES with a hole):
    # 2-3 % of the frames in the runs here; libsrt's receiver with ffmpeg's
    # demuxer damaged about 4 % (decode errors) through the same relay.
    assert missing_frames(video) <= 0.05 * len(video), (missing_frames(video), session, demuxer)
