"""SRT loss recovery across an impaired link (issue 13): an ffmpeg (libsrt)
publisher in a network namespace of its own pushes 2 Mbit/s through an
impairment relay (100 ms each way, 5 % loss each way) to the node, and the
stream is read back over HTTP-FLV by ffprobe, which decodes it: a frame is
missing when the decoded frames' timestamps skip it, and a damaged one
(decoded with errors) shows as a decoder error line.

This kernel has no netem: the relay (tests/netimpair.py) makes the delay and
the loss, in the root namespace at the namespace's gateway address.

At 400 ms of latency (twice the 200 ms round trip) with too-late drop, a
packet whose retransmission (or both copies of its first NAK) is lost too
cannot come again in time, whoever receives: the second request can only
follow the first by a round trip, and its answer arrives about 1 one-way
delay + 2 round trips after the packet was sent, which is its play time.
So there the test asks that retransmission recovered nearly everything. At
1000 ms (libsrt's guidance: at least 4 x RTT on a lossy link), and at 400
ms with ffmpeg's `tlpktdrop=0` (neither side drops: the receiver waits for
the retransmission past the play time), no frame may be missing.
bench/srt/loss.py measures the same with libsrt's receiver beside ours."""

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


def publish_through_loss(netns, latency_ms: int, **srt_options):
    """Publish through the impaired link and read READ_SECONDS back, decoded:
    (video frame timestamps, decoder error lines, the node's SRT session
    counters, demuxer counters, relay counters)."""
    net = netns("publisher")
    node = NodeThread(srt_port=0, play_wait_seconds=20).start()
    link = Impairment(loss=0.05, delay_ms=100)
    relay = ThreadedImpairmentRelay((net.gateway, 0), ("127.0.0.1", node.node.srt_port), up=link, down=link, seed=13)
    publisher = None
    try:
        relay.start()
        url = node.srt_publish_url(latency=latency_ms * 1000, **srt_options).replace(
            f"127.0.0.1:{node.node.srt_port}", f"{relay.address[0]}:{relay.address[1]}"
        )
        cmd = publisher_command(url, seconds=READ_SECONDS + 25, size="640x360", rate=FPS, container="mpegts")
        publisher = net.popen("publisher", cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert node.wait_for(lambda: node.node.hub.live_keys() == [KEY], timeout=30), publisher.stderr.read()
        video, errors = decoded_video(node.flv_url(), READ_SECONDS)
        publisher_session = node.run_sync(lambda: next(iter(node.node.srt.publishers.values())))
        connection = node.run_sync(lambda: node.node.srt.listener.connections[publisher_session.socket_id])
        # The handshake agreed on what the publisher asked for.
        assert connection.too_late_drop == (srt_options.get("tlpktdrop", 1) != 0)
        session, demuxer = connection.stats, publisher_session.demuxer.counters
        return video, errors, session, demuxer, relay.snapshot()
    finally:
        if publisher is not None and publisher.poll() is None:
            publisher.terminate()
            publisher.wait(15)
        relay.stop()
        node.stop()


def decoded_video(url: str, seconds: float) -> tuple[list[float], list[str]]:
    """The timestamp of each video frame ffprobe decodes from `url` in
    `seconds` (the publisher makes no B-frames: in decoding order),
    and what the decoder complained of (one line per damaged slice or
    missing reference)."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-rw_timeout", "20000000", "-read_intervals", f"%+{seconds}",
         "-select_streams", "v:0", "-show_entries", "frame=best_effort_timestamp_time", "-of", "json", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    frames = json.loads(out.stdout)["frames"]
    return [float(f["best_effort_timestamp_time"]) for f in frames if "best_effort_timestamp_time" in f], (
        out.stderr.splitlines()
    )


def missing_frames(video: list[float]) -> int:
    """Frames missing between consecutive video timestamps (a step of n frame times is n - 1 missing)."""
    return sum(round((b - a) * FPS) - 1 for a, b in zip(video, video[1:], strict=False) if b - a > 1.5 / FPS)


def test_it_misses_no_frame_through_delay_and_loss_each_way_with_latency_for_the_rtt(netns):
    video, errors, session, demuxer, relay = publish_through_loss(netns, latency_ms=1000)
    missing = missing_frames(video)
    print(f"1000 ms, too-late drop: {missing} of {len(video) + missing} frames missing, {len(errors)} decoder errors")
    print(session)
    assert len(video) >= (READ_SECONDS - 3) * FPS, len(video)
    assert missing_frames(video) == 0 and errors == [], (video, errors, session, demuxer)
    assert all(b > a for a, b in zip(video, video[1:], strict=False))
    # The link lost packets both ways, and retransmission brought every one back.
    assert relay["up"]["dropped"] > 100 and relay["down"]["dropped"] > 10, relay
    # (Those lost in the last round trip may still be on their way again.)
    assert session.packets_lost > 100 and session.packets_retransmitted >= session.packets_lost - 10, session
    assert demuxer.pes_dropped == 0, (session, demuxer)
    # Not one frame lost (above), but once in nine runs on 2026-12-05 (and
    # twice in thirteen before) the session counted 2-3 packets given up at
    # this latency with no PES lost: not explained yet (bench/README "Loss
    # recovery"). Held to that, not to 0, until it is.
    assert session.packets_dropped <= 3, (session, demuxer)


def test_it_recovers_nearly_every_packet_at_twice_the_rtt(netns):
    video, errors, session, demuxer, relay = publish_through_loss(netns, latency_ms=400)
    missing = missing_frames(video)
    print(f"400 ms, too-late drop: {missing} of {len(video) + missing} frames missing, {len(errors)} decoder errors")
    print(session)
    assert len(video) >= (READ_SECONDS - 3) * FPS, len(video)
    assert all(b > a for a, b in zip(video, video[1:], strict=False))
    assert relay["up"]["dropped"] > 100, relay
    # Of the ~5 % lost on the way, retransmission brought back all but those
    # whose retransmission (or both copies of their NAK) was lost too.
    assert session.packets_lost > 100 and session.packets_retransmitted > 0.5 * session.packets_lost, session
    assert session.packets_dropped <= 0.25 * session.packets_lost, session
    # What is lost costs its frame (the demuxer drops a PES with a hole):
    # 1-7 % on a quiet machine, up to 17 % seen under a loaded one (a late
    # second round misses its play time more often); bench/srt/loss.py
    # measures it against libsrt's receiver.
    assert missing <= 0.2 * len(video), (missing, session, demuxer)


def test_it_misses_no_frame_at_twice_the_rtt_when_the_publisher_turns_too_late_drop_off(netns):
    video, errors, session, demuxer, relay = publish_through_loss(netns, latency_ms=400, tlpktdrop=0)
    missing = missing_frames(video)
    print(f"400 ms, tlpktdrop=0: {missing} of {len(video) + missing} frames missing, {len(errors)} decoder errors")
    print(session)
    assert len(video) >= (READ_SECONDS - 3) * FPS, len(video)
    assert relay["up"]["dropped"] > 100 and relay["down"]["dropped"] > 10, relay
    assert missing == 0 and errors == [], (missing, errors, session, demuxer)
    # Continuous: one frame time from each frame to the next.
    assert all(abs((b - a) * FPS - 1) < 0.25 for a, b in zip(video, video[1:], strict=False)), video
    assert session.packets_lost > 100 and session.packets_retransmitted >= session.packets_lost - 10, session
