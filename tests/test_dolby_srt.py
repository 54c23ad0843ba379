"""Dolby audio end to end (issue 13): a real ffmpeg publishes H.264 and
E-AC-3 over SRT; the hub says E-AC-3, and HLS/LL-HLS and SRT playback carry
the E-AC-3 untouched for ffmpeg to decode. (hls.js in Chromium cannot play
E-AC-3; Safari and native players can.) HTTP-FLV and RTMP players get AAC
made once per stream, which Debian's ffmpeg 5.1 decodes; media workers (the
recordings) read the E-AC-3 from HTTP-FLV."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.request
from urllib.parse import urljoin

import pytest

from livecenter.media.capacity import WORKER_TOKEN_PARAM, worker_token
from livecenter.media.policy import StreamKey
from livecenter.media.signing import sign
from tests.mediasupport import INGEST, PLAY, PLAY_KEY, NodeThread, start_publisher
from tests.test_srt_play import assert_continuous, frames_of, probe, srt_play_url

pytestmark = pytest.mark.media

KEY = StreamKey(INGEST, "live", "cam1")
WORKER_KEY = b"worker-key"


@pytest.fixture(scope="module")
def dolby():
    node = NodeThread(srt_port=0, play_wait_seconds=10, worker_key=WORKER_KEY).start()
    publisher = start_publisher(node.srt_publish_url(), seconds=60, size="320x240", rate=25, container="mpegts",
                                audio="eac3", extra=("-ac", "6"))  # fmt: skip
    try:
        assert node.wait_for(lambda: node.node.hub.live_keys() == [KEY], timeout=20), publisher.stop()
        yield node
    finally:
        publisher.stop()
        node.stop()


def m3u8_url(node) -> str:
    token = sign("/live/cam1.m3u8", PLAY_KEY, int(time.time()))
    return f"{node.http}/live/cam1.m3u8?auth_key={token}&domain={PLAY}"


def worker_flv_url(node) -> str:
    """The HTTP-FLV URL as mediajobs gives it to a media worker (a recording)."""
    token = worker_token(WORKER_KEY, "/live/cam1.flv", int(time.time()) + 600)
    return f"{node.flv_url()}&{WORKER_TOKEN_PARAM}={token}"


def test_the_stream_says_e_ac_3(dolby):
    assert dolby.wait_for(lambda: dolby.node.hub.stream(KEY).info().audio_channels > 0)
    info = dolby.run_sync(lambda: dolby.node.hub.stream(KEY).info())
    # start_publisher's tone is at 44.1 kHz, which E-AC-3 keeps.
    assert (info.video_codec, info.audio_codec, info.audio_sample_rate, info.audio_channels) == (
        "H264",
        "E-AC-3",
        44100,
        6,
    )
    assert dolby.wait_for(lambda: dolby.node.hub.stream(KEY).info().audio_bitrate > 50_000)


def test_hls_segments_carry_the_e_ac_3_for_ffmpeg_to_decode(dolby):
    # Two whole segments, so the second starts with a PMT that has the audio.
    deadline = time.monotonic() + 30
    while True:
        text = urllib.request.urlopen(m3u8_url(dolby), timeout=15).read().decode()
        if len(re.findall(r"^cam1/seg_", text, re.M)) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    segment = re.findall(r"^(cam1/seg_\d+\.ts\?token=\S+)$", text, re.M)[-1]
    data = urllib.request.urlopen(urljoin(m3u8_url(dolby), segment), timeout=15).read()
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,channels:packet=codec_type", "-of", "json", "-"],
        input=data, capture_output=True, timeout=60,
    )  # fmt: skip
    probed = json.loads(out.stdout)
    assert {(s["codec_name"], s.get("channels")) for s in probed["streams"]} == {("h264", None), ("eac3", 6)}
    assert sum(p["codec_type"] == "audio" for p in probed["packets"]) >= 10
    # The playlist plays: ffmpeg decodes 3 s of its audio without an error.
    pcm = subprocess.run(
        ["ffmpeg", "-v", "error", "-xerror", "-i", m3u8_url(dolby), "-map", "0:a", "-t", "3", "-f", "s16le", "-"],
        capture_output=True, timeout=90,
    )  # fmt: skip
    assert pcm.returncode == 0, pcm.stderr
    assert len(pcm.stdout) >= 2.5 * 44100 * 6 * 2


def test_srt_playback_carries_the_e_ac_3(dolby):
    got = frames_of(probe(srt_play_url(dolby), seconds=4))
    assert got["codecs"] == ["eac3", "h264"]
    assert len(got["audio"]) >= 60 and len(got["video"]) >= 50  # 28.7 E-AC-3 frames a second at 44.1 kHz
    assert_continuous(got["audio"], 0.1)
    assert_continuous(got["video"], 0.2)


class RecordTo:
    """pipeline.record's control: one MP4 in `folder`, stopped after `seconds`."""

    def __init__(self, folder, seconds: float) -> None:
        self.folder, self.until, self.closed = folder, time.monotonic() + seconds, []

    def should_stop(self) -> bool:
        return time.monotonic() > self.until

    def source_live(self) -> bool:
        return True

    def open_file(self, started_at: float):
        return self.folder / f"rec_{len(self.closed)}.mp4"

    def file_closed(self, path, started_at: float, ended_at: float, duration_s: float) -> None:
        self.closed.append((path, duration_s))

    def split_now(self) -> bool:
        return False


def test_a_recording_of_the_http_flv_keeps_the_e_ac_3_untouched(dolby, tmp_path):
    # The node's HTTP-FLV carries the E-AC-3 as Enhanced RTMP FourCC audio,
    # which the workers' PyAV (FFmpeg 8) reads; the recording copies it.
    from mediajobs.transcode import pipeline

    control = RecordTo(tmp_path, seconds=4)
    pipeline.record(worker_flv_url(dolby), control, cycle_seconds=600)
    (path, duration), *_ = control.closed
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,channels,sample_rate:format=format_name",
         "-of", "json", path],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    probed = json.loads(out.stdout)
    assert "mp4" in probed["format"]["format_name"] and duration >= 2
    streams = {s["codec_name"]: s for s in probed["streams"]}
    assert set(streams) == {"h264", "eac3"}
    assert (streams["eac3"]["channels"], streams["eac3"]["sample_rate"]) == (6, "44100")
    pcm = subprocess.run(
        ["ffmpeg", "-v", "error", "-xerror", "-i", path, "-map", "0:a", "-f", "s16le", "-"],
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert pcm.returncode == 0, pcm.stderr
    assert len(pcm.stdout) >= (duration - 0.5) * 44100 * 6 * 2


# --- HTTP-FLV and RTMP players: AAC made once per stream ------------------------------


def legacy_aac_running(node) -> bool:
    stream = node.node.hub.stream(KEY)
    return stream is not None and stream.legacy_aac is not None


@pytest.mark.parametrize("protocol", ["flv", "rtmp"])
def test_http_flv_and_rtmp_players_get_aac_that_debian_ffmpeg_decodes(dolby, protocol):
    url = dolby.flv_url() if protocol == "flv" else dolby.rtmp_play_url()
    got = frames_of(probe(url, seconds=3))
    assert got["codecs"] == ["aac", "h264"]
    # 46.9 AAC frames a second at 48 kHz, from the GOP's keyframe on.
    assert len(got["audio"]) >= 100 and len(got["video"]) >= 50
    # Together within the AAC encoder's priming and a few of its 21 ms frames.
    assert abs(got["audio"][0] - got["video"][0]) < 0.3
    assert_continuous(got["audio"], 0.1)
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-rw_timeout", "15000000", "-show_entries", "stream=codec_name,sample_rate,channels",
         "-of", "json", url],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    streams = json.loads(out.stdout)["streams"]
    assert {(s["codec_name"], s.get("sample_rate"), s.get("channels")) for s in streams} == {
        ("h264", None, None),
        ("aac", "48000", 2),
    }
    pcm = subprocess.run(
        ["ffmpeg", "-v", "error", "-xerror", "-rw_timeout", "15000000", "-i", url, "-map", "0:a", "-t", "3",
         "-f", "s16le", "-"],
        capture_output=True, timeout=90,
    )  # fmt: skip
    assert pcm.returncode == 0, pcm.stderr
    assert len(pcm.stdout) >= 2.9 * 48000 * 2 * 2
    # The players have gone: the conversion and its thread stop with the last one.
    assert dolby.wait_for(lambda: not legacy_aac_running(dolby), timeout=15)
    assert dolby.wait_for(lambda: not [t for t in threading.enumerate() if t.name.startswith("legacy-aac")])


def test_a_media_worker_reads_the_e_ac_3_from_http_flv_while_players_get_aac(dolby):
    import av

    player = urllib.request.urlopen(dolby.flv_url(), timeout=15)
    try:
        assert player.read(9)[:3] == b"FLV"
        assert dolby.wait_for(lambda: legacy_aac_running(dolby))
        container = av.open(worker_flv_url(dolby), format="flv", options={"rw_timeout": "15000000"}, timeout=15)
        try:
            codecs = {s.type: s.codec_context.name for s in container.streams}
            channels = next(s.codec_context.channels for s in container.streams if s.type == "audio")
        finally:
            container.close()
        assert codecs == {"video": "h264", "audio": "eac3"} and channels == 6
    finally:
        player.close()
    assert dolby.wait_for(lambda: not legacy_aac_running(dolby))
