"""Monitoring end to end: ffmpeg publishes a generated stream of known frame
rate and bitrate to a media node on the database, an HTTP-FLV viewer
watches, and the monitoring API and the Prometheus endpoint report the
stream within 5 % of what was sent."""

from __future__ import annotations

import statistics
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from domains import services
from tests.apisupport import client_for
from tests.mediasupport import start_publisher
from tests.test_streams_live import DatabaseNode, local, wait_until

pytestmark = [pytest.mark.media, pytest.mark.django_db(transaction=True), pytest.mark.backends]

FPS = 25
VIDEO_BITRATE = 800_000
AUDIO_FRAME_RATE = 44100 / 1024  # AAC frames of 1024 samples
# CBR with filler (nal-hrd=cbr): the bitrate in is the bitrate asked for.
CBR = ("-b:v", "800k", "-minrate", "800k", "-maxrate", "800k", "-bufsize", "400k",
       "-x264-params", "nal-hrd=cbr:force-cfr=1:bframes=0")  # fmt: skip


def test_it_reports_a_known_stream_within_five_percent(owner):
    push = services.add_domain(owner, "push.mon.test", "ingest", "overseas", "ap-southeast-1")
    play = services.add_domain(owner, "play.mon.test", "streaming", "overseas", "ap-southeast-1")
    services.associate_ingest(play, push.domain_name)
    api = client_for(owner)
    with DatabaseNode() as media:
        urls = services.generate_urls(owner, "push.mon.test", "live", "cam1")
        publisher = start_publisher(
            local(urls.ingest["rtmp"], media.node.rtmp_port), seconds=40, size="320x240", rate=FPS, tune="", extra=CBR
        )
        viewer = None
        try:
            assert wait_until(lambda: media.node.hub.live_keys() or publisher.process.poll() is not None)
            assert publisher.process.poll() is None, publisher.stop()
            viewer = subprocess.Popen(
                ["ffmpeg", "-loglevel", "error", "-i", local(urls.playback["flv"], media.node.http_port),
                 "-f", "null", "-"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip

            def series():
                r = api.get("/api/v1/monitoring/stream-bitrate/",
                            {"domain": "push.mon.test", "app": "live", "stream": "cam1"})  # fmt: skip
                rows = r.json()["frame_rate_and_bit_rate_infos"]
                watched = [row for row in rows if row["viewers"].get("flv")]
                return rows if len(rows) >= 12 and len(watched) >= 3 else None

            rows = wait_until(series, timeout=60)
            assert rows, publisher.stop()
            now = api.get("/api/v1/monitoring/frame-rate-and-bitrate/", {"domain": "play.mon.test"}).json()
            users = api.get("/api/v1/monitoring/online-users/", {"domain": "play.mon.test"}).json()
            metrics = api.get("/api/v1/monitoring/metrics/").content.decode()
        finally:
            publisher.stop()
            if viewer is not None:
                viewer.kill()
                viewer.wait()

    steady = rows[2:]  # past the first, partial seconds
    video_fps = statistics.median(r["video_frame_rate"] for r in steady)
    audio_fps = statistics.median(r["audio_frame_rate"] for r in steady)
    video_bitrate = statistics.median(r["video_bit_rate"] for r in steady)
    bytes_per_second = statistics.median(r["bit_rate"] for r in steady)
    audio_bitrate = statistics.median(r["audio_bit_rate"] for r in steady)
    print(f"measured: video {video_fps:.2f} fps, audio {audio_fps:.2f} frames/s, video {video_bitrate:.0f} bit/s,"
          f" audio {audio_bitrate:.0f} bit/s, total {bytes_per_second:.0f} B/s")  # fmt: skip
    assert video_fps == pytest.approx(FPS, rel=0.05)
    assert audio_fps == pytest.approx(AUDIO_FRAME_RATE, rel=0.05)
    assert video_bitrate == pytest.approx(VIDEO_BITRATE, rel=0.05)
    assert bytes_per_second == pytest.approx((video_bitrate + audio_bitrate) / 8, rel=0.01)
    assert all(r["keyframe_interval_ms"] == pytest.approx(1000, abs=50) for r in steady)
    assert not any(r["bframes"] or r["timestamp_jumps"] for r in steady)

    [info] = now["frame_rate_and_bit_rate_infos"]
    assert info["stream_url"] == "rtmp://push.mon.test/live/cam1"
    assert info["video_frame_rate"] == pytest.approx(FPS, rel=0.05)
    assert info["audio_frame_rate"] == pytest.approx(AUDIO_FRAME_RATE, rel=0.05)

    assert users["domain_name"] == "play.mon.test" and users["stream_count"] == 1
    assert users["online_user_info"][0]["protocols"] == {"flv": 1} and users["user_count"] == 1

    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    [fps_sample] = families["livecenter_stream_video_frame_rate"].samples
    assert fps_sample.labels == {"domain": "push.mon.test", "app": "live", "stream": "cam1", "node": "live-test"}
    assert fps_sample.value == pytest.approx(FPS, rel=0.05)
    [flv_out] = families["livecenter_stream_out_bits_per_second"].samples
    assert flv_out.labels["protocol"] == "flv" and flv_out.value > 0.5 * VIDEO_BITRATE
