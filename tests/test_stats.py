"""Per-second samples in the engine (livecenter/media/stats.py): the counters
the hub and the servers keep, the sampler's arithmetic on a fake clock, and a
node sampling a real ffmpeg stream of known frame rate and bitrate."""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time
import urllib.request
from urllib.parse import urljoin

import pytest

from livecenter.media import stats
from livecenter.media.hub import StreamHub
from livecenter.media.policy import StreamKey, StreamsSampled
from livecenter.media.signing import sign
from livecenter.media.stats import REQUEST_VIEWER_WINDOW_SECONDS, StatsSampler, StreamCounters
from tests.mediasupport import PLAY, PLAY_KEY, NodeThread, start_publisher
from tests.test_hub import AUDIO_HEADER, META, VIDEO_HEADER, run

KEY = StreamKey("push.test", "live", "cam1")


def avc(keyframe: bool, size: int = 100, cts: int = 0) -> bytes:
    return (b"\x17\x01" if keyframe else b"\x27\x01") + cts.to_bytes(3, "big") + bytes(size - 5)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_it_counts_frames_bytes_and_the_keyframe_interval():
    # B-frames are the hub's to find (slice headers, rts/h264.py); the
    # sample reads them from the stream's info.
    c = StreamCounters()
    for i in range(60):
        c.video(i * 33, 100, i % 30 == 0)
    assert (c.video_frames, c.video_bytes) == (60, 6000)
    assert c.keyframe_interval_ms == 990 and c.timestamp_jumps == 0


def test_it_counts_timestamp_jumps_back_and_far_forward():
    c = StreamCounters()
    for ts in (0, 40, 80, 20, 60, 5000, 5040):
        c.video(ts, 10, False)
    c.audio(0, 10)
    c.audio(23, 10)
    c.audio(3000, 10)
    assert c.timestamp_jumps == 3  # 80 -> 20, 60 -> 5000, audio 23 -> 3000


def test_it_forgets_request_clients_after_the_window():
    c = StreamCounters()
    c.served("hls", 100, "10.0.0.1", 0.0)
    c.served("hls", 100, "10.0.0.2", 5.0)
    c.served("hls", 100, "10.0.0.1", 6.0)
    assert c.request_viewers(7.0) == {"hls": 2}
    assert c.request_viewers(6.0 + REQUEST_VIEWER_WINDOW_SECONDS - 0.5) == {"hls": 1}
    assert c.request_viewers(100.0) == {}
    assert c.bytes_out == {"hls": 300}


@run
async def test_it_samples_rates_in_stream_time_and_viewers_by_protocol():
    hub = StreamHub()
    clock, wall = Clock(), Clock()
    sampler = StatsSampler(hub, monotonic=clock, wall=wall)
    pub = hub.publish(KEY)
    wall.now = pub.started_at
    pub.push("meta", 0, META)
    pub.push("video", 0, VIDEO_HEADER)
    pub.push("audio", 0, AUDIO_HEADER)
    flv = hub.subscribe(KEY, protocol="flv")
    hub.subscribe(KEY, protocol="rtmp")
    hub.subscribe(KEY, protocol="hls-packager")  # the node's own work
    live = {KEY: "session-1"}

    def second(start_ts: int, video_size: int) -> None:
        # 25 fps video and 50 audio frames, all arriving in one burst.
        for i in range(25):
            pub.push("video", start_ts + i * 40, avc(i == 0, video_size))
        for i in range(50):
            pub.push("audio", start_ts + i * 20, b"\xaf\x01" + bytes(48))

    second(0, 5000)
    clock.now += 1.0
    wall.now += 1.0
    first = sampler.sample(live)[0]
    # The first sample of a publication is measured on the wall clock.
    assert first.video_frame_rate == pytest.approx(25)
    second(1000, 5000)
    flv.count_sent(250_000)
    sampler.served(KEY, "hls", 50_000, "192.0.2.7")
    clock.now += 1.3  # the sampler ran late; the stream's timestamps tell
    wall.now += 1.3
    sample = sampler.sample(live)[0]
    assert sample.session_id == "session-1" and sample.at == wall.now
    assert sample.video_frame_rate == pytest.approx(25)
    assert sample.audio_frame_rate == pytest.approx(50)
    assert sample.video_bitrate == pytest.approx(25 * 5000 * 8)
    assert sample.audio_bitrate == pytest.approx(50 * 50 * 8)
    assert sample.bitrate == sample.video_bitrate + sample.audio_bitrate
    assert sample.keyframe_interval_ms == 1000 and not sample.bframes and sample.timestamp_jumps == 0
    assert sample.viewers == {"flv": 1, "rtmp": 1, "hls": 1}
    assert sample.bitrate_out == {"flv": pytest.approx(250_000 * 8 / 1.3), "hls": pytest.approx(50_000 * 8 / 1.3)}
    assert (sample.video_codec, sample.width, sample.height, sample.audio_codec) == ("H264", 1280, 720, "AAC")

    # Nothing arrives for a second: zero, not the last rate.
    clock.now += 1.0
    assert sampler.sample(live)[0].video_frame_rate == 0

    # A new publication starts its counters afresh.
    pub.close()
    pub = hub.publish(KEY)
    wall.now = pub.started_at + 1.0
    clock.now += 1.0
    for i in range(10):
        pub.push("video", i * 100, avc(i == 0, 1000))
    again = sampler.sample({KEY: "session-2"})[0]
    assert again.session_id == "session-2" and again.video_frame_rate == pytest.approx(10, rel=0.1)
    assert again.bitrate_out == {}
    assert sampler.sample({}) == []


def samples_of(node: NodeThread) -> list:
    return [s for e in node.sink.events if isinstance(e, StreamsSampled) for s in e.samples]


@pytest.mark.media
@pytest.mark.parametrize(("rate", "bframes"), [(25, False), (30, True)])
def test_it_samples_a_real_stream_every_second_within_five_percent(rate, bframes):
    node = NodeThread(sample_interval_seconds=1.0).start()
    viewer = None
    # CBR with filler (nal-hrd=cbr), so the bitrate in is the bitrate asked for.
    x264 = "nal-hrd=cbr:force-cfr=1" + (":bframes=2" if bframes else ":bframes=0")
    publisher = start_publisher(
        node.publish_url(), seconds=30, size="320x240", rate=rate, tune="",
        extra=("-b:v", "600k", "-minrate", "600k", "-maxrate", "600k", "-bufsize", "300k", "-x264-params", x264),
    )  # fmt: skip
    try:
        assert node.wait_for(lambda: node.node.hub.is_live(KEY), timeout=20), publisher.stop()
        viewer = subprocess.Popen(["ffmpeg", "-loglevel", "error", "-i", node.flv_url(), "-f", "null", "-"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        # An HLS player: the playlist, then the segment it names.
        playlist_url = f"{node.http}/live/cam1.m3u8?auth_key={sign('/live/cam1.m3u8', PLAY_KEY, int(time.time()))}"
        with urllib.request.urlopen(f"{playlist_url}&domain={PLAY}", timeout=20) as r:
            segment = re.search(r"^(cam1/seg_\d+\.ts\?token=\S+)$", r.read().decode(), re.M).group(1)
        with urllib.request.urlopen(urljoin(playlist_url, segment), timeout=20) as r:
            assert len(r.read()) > 1000
        assert node.wait_for(lambda: len(samples_of(node)) >= 9, timeout=40), samples_of(node)
    finally:
        publisher.stop()
        if viewer is not None:
            viewer.kill()
            viewer.wait()
        node.stop()
    samples = samples_of(node)[2:]  # past the start
    assert {s.key for s in samples} == {KEY}
    video_fps = statistics.median(s.video_frame_rate for s in samples)
    audio_fps = statistics.median(s.audio_frame_rate for s in samples)
    video_bitrate = statistics.median(s.video_bitrate for s in samples)
    assert video_fps == pytest.approx(rate, rel=0.05)
    assert audio_fps == pytest.approx(44100 / 1024, rel=0.05)  # AAC frames of 1024 samples
    assert video_bitrate == pytest.approx(600_000, rel=0.05)
    assert all(s.keyframe_interval_ms == pytest.approx(1000, abs=50) for s in samples[1:])
    assert any(s.bframes for s in samples) is bframes
    assert not any(s.timestamp_jumps for s in samples)
    last = samples[-1]
    assert (last.video_codec, last.width, last.height, last.audio_codec) == ("H264", 320, 240, "AAC")
    everything = samples_of(node)
    assert any(s.viewers.get("hls") == 1 for s in everything) and any(s.bitrate_out.get("hls") for s in everything)
    assert not any("hls-packager" in s.viewers for s in samples)
    # Two viewers by identity (address and user agent): ffmpeg's FLV play and urllib's HLS requests.
    identities = {i for s in everything for i in s.viewer_ids}
    urllib_agent = f"Python-urllib/{sys.version_info.major}.{sys.version_info.minor}"
    assert len(identities) == 2 and node.node.stats.viewer("127.0.0.1", urllib_agent) in identities
    # What one FLV viewer is sent is what comes in, audio included, plus FLV's
    # tags (a few per cent); a sample's second may hold a burst of a backlog.
    watched = [s for s in samples if s.viewers.get("flv") == 1]
    bitrate_in = video_bitrate + statistics.median(s.audio_bitrate for s in samples)
    assert watched and statistics.median(s.bitrate_out.get("flv", 0) for s in watched) == pytest.approx(
        bitrate_in, rel=0.2
    )


def test_it_remembers_at_most_max_request_clients(monkeypatch):
    from livecenter.media import stats

    monkeypatch.setattr(stats, "MAX_REQUEST_CLIENTS", 3)
    c = StreamCounters()
    for i in range(3):
        c.served("hls", 1, f"10.0.0.{i}", 1.0)
    assert c.request_viewers(2.0) == {"hls": 3}  # at the limit
    c.served("hls", 1, "10.0.0.9", 1.5)  # one past: the oldest goes
    assert c.request_viewers(2.0) == {"hls": 3} and ("hls", "10.0.0.0") not in c.clients


@run
async def test_it_reports_each_viewer_once_a_minute_by_a_salted_hash(monkeypatch):
    monkeypatch.setattr(stats, "MAX_VIEWER_IDS_PER_SAMPLE", 2)
    hub = StreamHub()
    clock, wall = Clock(), Clock()
    sampler = StatsSampler(hub, monotonic=clock, wall=wall, salt=b"cluster salt")
    hub.publish(KEY)
    wall.now = 60 * 1000.0 + 10  # 10 s into a UTC minute
    a, b = sampler.viewer("10.0.0.1", "Chrome"), sampler.viewer("10.0.0.2", "Firefox")
    assert a == stats.viewer_identity(b"cluster salt", "10.0.0.1", "Chrome") and len(a) == 16
    assert a != StatsSampler(hub, salt=b"another").viewer("10.0.0.1", "Chrome")  # the salt keys it
    assert "10.0.0.1" not in a
    hub.subscribe(KEY, protocol="flv", viewer=a)
    hub.subscribe(KEY, protocol="rtmp", viewer=b)
    hub.subscribe(KEY, protocol="relay", viewer="")  # another node: nobody
    sampler.served(KEY, "hls", 100, sampler.viewer("10.0.0.3", "Safari"))
    sampler.served(KEY, "hls", 100, a)  # the same viewer over two protocols counts once

    def ids() -> tuple[str, ...]:
        clock.now += 1
        wall.now += 1
        return sampler.sample({KEY: "s1"})[0].viewer_ids

    first, second = ids(), ids()
    # At most two a sample; the third follows in the next second of the minute.
    assert len(first) == 2 and len(second) == 1
    assert set(first + second) == {a, b, sampler.viewer("10.0.0.3", "Safari")}
    assert ids() == ()  # all reported this minute
    wall.now += 60  # the next minute: all again
    again = ids() + ids()
    assert set(again) == set(first + second)
