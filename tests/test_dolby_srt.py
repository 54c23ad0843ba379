"""Dolby audio end to end (issue 13): a real ffmpeg publishes H.264 and
E-AC-3 over SRT; the hub says E-AC-3, and HLS/LL-HLS and SRT playback carry
the E-AC-3 untouched for ffmpeg to decode. (hls.js in Chromium cannot play
E-AC-3; Safari and native players can.)"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from urllib.parse import urljoin

import pytest

from livecenter.media.policy import StreamKey
from livecenter.media.signing import sign
from tests.mediasupport import INGEST, PLAY, PLAY_KEY, NodeThread, start_publisher
from tests.test_srt_play import assert_continuous, frames_of, probe, srt_play_url

pytestmark = pytest.mark.media

KEY = StreamKey(INGEST, "live", "cam1")


@pytest.fixture(scope="module")
def dolby():
    node = NodeThread(srt_port=0, play_wait_seconds=10).start()
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
    pipeline.record(dolby.flv_url(), control, cycle_seconds=600)
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
