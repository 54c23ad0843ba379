"""The latency calibrator: its options, the URL it signs, and the stream it
pushes to a media node, read back with the ffmpeg CLI."""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import CommandError, call_command

from livecenter.media.signing import verify
from livecenter.media.timecode import decode_luma
from streams.calibrator import CalibratorConfig, parse_bit_rate, parse_size
from streams.management.commands.calibrator import Command
from tests.mediasupport import NodeThread, probe_packets
from tests.streamsupport import add_pair

ROOT = Path(__file__).resolve().parent.parent


def test_it_parses_sizes_and_bitrates():
    assert parse_size("1280x720") == (1280, 720)
    assert parse_bit_rate("2M") == 2_000_000
    assert parse_bit_rate("800k") == 800_000
    assert parse_bit_rate("1.5M") == 1_500_000
    assert parse_bit_rate("500000") == 500_000
    with pytest.raises(ValueError, match="size must be WIDTHxHEIGHT"):
        parse_size("720p")
    with pytest.raises(ValueError, match="bitrate must be a number"):
        parse_bit_rate("fast")


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"width": 320, "height": 180}, "frame width must be at least 512 px"),
        ({"width": 641, "height": 360}, "size must be even"),
        ({"width": 640, "height": 100}, "height must be at least twice the timecode band"),
        ({"fps": 0}, "fps must be between 1 and 120"),
        ({"bit_rate": 1000}, "bitrate must be between 10k and 100M"),
        ({"gop_seconds": 0}, "gop seconds must be above 0"),
        ({"bframes": 17}, "bframes must be between 0 and 16"),
    ],
)
def test_it_refuses_a_bad_config(options, words):
    with pytest.raises(ValueError, match=words):
        CalibratorConfig(**options)


def test_it_counts_the_keyframe_interval_in_frames():
    assert CalibratorConfig(fps=30, gop_seconds=1).gop_frames == 30
    assert CalibratorConfig(fps=25, gop_seconds=2).gop_frames == 50


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--size", "320x180"], "frame width must be at least 512 px"),
        (["--bitrate", "lots"], "bitrate must be a number"),
        ([], "--domain is required unless --url is given"),
        (["--url", "http://127.0.0.1:8080/live/x.flv"], "--url must be an rtmp:// or srt:// URL"),
    ],
)
def test_it_names_the_bad_option(args, words):
    with pytest.raises(CommandError, match=words):
        call_command("calibrator", *args)


@pytest.mark.django_db
def test_it_signs_the_ingest_url_with_the_url_generator(owner):
    push, _ = add_pair(owner)
    with pytest.raises(CommandError, match="--domain: there is no domain named 'nope.example.com'"):
        call_command("calibrator", "--domain", "nope.example.com")
    with pytest.raises(CommandError, match="--stream: stream name must be"):
        call_command("calibrator", "--domain", "push.example.com", "--stream", "a/b")
    options = {"domain": "push.example.com", "app": "live", "stream": "calib", "media_host": "127.0.0.1"}
    url = Command().generated_url(options)
    assert url.startswith("rtmp://127.0.0.1:1935/live/calib?auth_key=")
    assert url.endswith("&domain=push.example.com")
    token = parse_qs(urlsplit(url).query)["auth_key"][0]
    assert verify("/live/calib", token, [push.auth_primary_key], push.validity_seconds, now=time.time()).ok
    assert Command().generated_url({**options, "media_host": ""}).startswith("rtmp://push.example.com:1935/")


@pytest.mark.media
def test_it_pushes_frames_stamped_with_their_capture_time():
    """The command in a process of its own (PyAV keeps the GIL while FFmpeg's
    RTMP client waits), ffprobe and ffmpeg reading the FLV back."""
    node = NodeThread().start()
    calibrator = subprocess.Popen(
        [sys.executable, "manage.py", "calibrator", "--url", node.publish_url(), "--size", "640x360",
         "--fps", "30", "--bitrate", "800k", "--gop-seconds", "1", "--duration", "20"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert node.wait_for(lambda: bool(node.node.hub.live_keys())), calibrator.communicate()
        packets = probe_packets(node.flv_url(), seconds=2)
        dts = [float(p["dts_time"]) for p in packets]
        steps = [round(b - a, 3) for a, b in zip(dts, dts[1:], strict=False)]
        assert len(dts) >= 50 and all(0.030 <= s <= 0.037 for s in steps), steps
        keyframes = [float(p["dts_time"]) for p in packets if "K" in p["flags"]]
        assert keyframes and all(round(b - a, 2) == 1.0 for a, b in zip(keyframes, keyframes[1:], strict=False))

        frame_bytes = 640 * 360
        raw = subprocess.run(
            ["ffmpeg", "-v", "error", "-i", node.flv_url(), "-frames:v", "30", "-f", "rawvideo", "-pix_fmt", "gray",
             "-"], capture_output=True, timeout=30,
        )  # fmt: skip
        read_at = time.time() * 1000
        frames = [raw.stdout[i : i + frame_bytes] for i in range(0, len(raw.stdout), frame_bytes)]
        times = [decode_luma(frame, 640, 360) for frame in frames]
        assert len(times) == 30 and None not in times, times
        steps = [b - a for a, b in zip(times, times[1:], strict=False)]
        # Each stamp is the moment its frame was made: in order, a frame
        # interval apart, but a frame made late on a loaded machine carries
        # its late moment (that is the point), so the interval is the median.
        assert all(s > 0 for s in steps), steps
        assert 25 <= statistics.median(steps) <= 45, steps
        # Captured a moment ago by this machine's clock.
        assert 0 < read_at - times[-1] < 5000
    finally:
        calibrator.terminate()
        out, err = calibrator.communicate(timeout=20)
        node.stop()
    assert "Calibrator stopped after" in out, err


@pytest.mark.media
def test_it_pushes_over_srt_as_mpeg_ts():
    """An srt:// URL: MPEG-TS through srt-live-transmit to the node's SRT port,
    played back over HTTP-FLV with the capture times in the frames."""
    node = NodeThread(srt_port=0).start()
    calibrator = subprocess.Popen(
        [sys.executable, "manage.py", "calibrator", "--url", node.srt_publish_url(latency=120),  # srt-live-transmit: ms
         "--size", "640x360", "--fps", "30", "--bitrate", "800k", "--duration", "20"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert node.wait_for(lambda: bool(node.node.hub.live_keys())), calibrator.communicate()
        assert node.run_sync(lambda: [p.key.stream for p in node.node.srt.publishers.values()]) == ["cam1"]
        frame_bytes = 640 * 360
        raw = subprocess.run(
            ["ffmpeg", "-v", "error", "-i", node.flv_url(), "-frames:v", "10", "-fps_mode", "passthrough",
             "-f", "rawvideo", "-pix_fmt", "gray", "-"], capture_output=True, timeout=30,
        )  # fmt: skip
        read_at = time.time() * 1000
        times = [decode_luma(raw.stdout[i : i + frame_bytes], 640, 360) for i in range(0, len(raw.stdout), frame_bytes)]
        assert len(times) == 10 and None not in times, times
        assert all(b > a for a, b in zip(times, times[1:], strict=False)), times
        assert 0 < read_at - times[-1] < 5000
    finally:
        calibrator.terminate()
        out, err = calibrator.communicate(timeout=20)
        node.stop()
    assert "Calibrator stopped after" in out, err


@pytest.mark.media
def test_it_says_so_when_its_srt_connection_fails():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as nobody:  # a UDP port where no SRT listener answers
        nobody.bind(("127.0.0.1", 0))
        url = f"srt://127.0.0.1:{nobody.getsockname()[1]}?latency=120"
        result = subprocess.run(
            [sys.executable, "manage.py", "calibrator", "--url", url, "--size", "640x360", "--duration", "20"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode != 0
    assert "srt-live-transmit ended (exit status 0): the SRT connection failed" in result.stderr
