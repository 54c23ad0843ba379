"""The engine on real sockets with real peers: ffmpeg publishes over RTMP,
ffprobe and ffmpeg play over RTMP and HTTP-FLV (issue 3)."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request

import pytest

from livecenter.media.policy import PublishRefused, StreamKey, StreamPublished, StreamUnpublished
from tests.mediasupport import (
    INGEST,
    INGEST_KEY,
    PLAY,
    NodeThread,
    TagPublisher,
    probe_packets,
    probe_streams,
    start_publisher,
)

pytestmark = pytest.mark.media
KEY = StreamKey(INGEST, "live", "cam1")


@pytest.fixture
def media():
    node = NodeThread(play_wait_seconds=3).start()
    yield node
    node.stop()


def live(media, key=KEY) -> bool:
    return media.wait_for(lambda: media.node.hub.is_live(key))


def assert_continuous(packets: list[dict], max_gap: float = 0.2) -> None:
    times = [float(p["dts_time"]) for p in packets if p.get("dts_time") not in (None, "N/A")]
    assert len(times) >= 30, f"only {len(times)} video packets"
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) > 0, "timestamps go backwards"
    assert max(gaps) < max_gap, f"a gap of {max(gaps):.3f} s"


def http_status(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=15) as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def test_it_publishes_and_plays_over_rtmp_and_http_flv(media):
    publisher = start_publisher(media.publish_url(), seconds=15)
    try:
        assert live(media), publisher.stop()
        streams = {s["codec_type"]: s for s in probe_streams(media.flv_url())}
        assert streams["video"]["codec_name"] == "h264"
        assert (streams["video"]["width"], streams["video"]["height"]) == (1280, 720)
        assert streams["audio"]["codec_name"] == "aac"
        assert_continuous(probe_packets(media.flv_url(), seconds=3))
        assert_continuous(probe_packets(media.rtmp_play_url(), seconds=3))
        info = media.run_sync(lambda: media.node.hub.stream(KEY).info())
        assert (info.video_codec, info.width, info.height) == ("H264", 1280, 720)
        assert info.audio_codec == "AAC"
        assert 25 <= info.frame_rate <= 35
    finally:
        publisher.stop()
    assert media.wait_for(lambda: not media.node.hub.is_live(KEY))
    kinds = [type(e) for e in media.sink.events]
    assert kinds[0] is StreamPublished and kinds[-1] is StreamUnpublished
    published = media.sink.events[0]
    assert published.key == KEY and published.client_addr.startswith("127.0.0.1:")
    assert "auth_key" not in published.publish_url


@pytest.mark.parametrize(
    ("profile", "bframes", "expected"),
    [("baseline", 0, "Constrained Baseline"), ("high", 3, "High")],
)
def test_it_carries_the_obs_settings_with_and_without_b_frames(media, profile, bframes, expected):
    # The seed's OBS settings: x264, keyframe interval 1 s; baseline without
    # B-frames, or high with them (OBS's default).
    extra = ["-profile:v", profile, "-bf", str(bframes)]
    publisher = start_publisher(
        media.publish_url(), seconds=15, size="854x480", extra=extra, tune="", preset="veryfast"
    )
    try:
        assert live(media), publisher.stop()
        streams = {s["codec_type"]: s for s in probe_streams(media.flv_url())}
        assert streams["video"]["profile"] == expected
        packets = probe_packets(media.flv_url(), seconds=3)
        assert_continuous(packets)
        reordered = any(p["pts_time"] != p["dts_time"] for p in packets)
        assert reordered == (bframes > 0)
        assert_continuous(probe_packets(media.rtmp_play_url(), seconds=2))
    finally:
        publisher.stop()


def test_it_gives_a_new_viewer_the_first_frame_at_once(media):
    publisher = start_publisher(media.publish_url(), seconds=15)
    try:
        assert live(media)
        time.sleep(1.5)  # let the stream be mid-GOP when the viewer comes
        started = time.monotonic()
        packets = probe_packets(media.flv_url(), seconds=0.5)
        assert packets[0]["flags"].startswith("K"), "the first video packet is not a keyframe"
        assert time.monotonic() - started < 5
    finally:
        publisher.stop()


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unsigned", "no auth_key"),
        ("expired", "expired timestamp"),
        ("tampered", "invalid md5hash"),
        ("streaming-domain", "not an ingest domain"),
        ("unknown-domain", "non-existent domain"),
        ("forbidden", "stream is forbidden"),
    ],
)
def test_it_refuses_a_bad_publish_with_its_reason(media, caplog, case, reason):
    caplog.set_level("INFO", logger="livecenter.media")
    domain = {"streaming-domain": PLAY, "unknown-domain": "nobody.test"}.get(case, INGEST)
    url = media.publish_url(domain=domain)
    if case == "unsigned":
        url = f"{media.rtmp}/live/cam1?domain={INGEST}"
    elif case == "expired":
        url = media.publish_url(ts=time.time() - 7200)
    elif case == "tampered":
        # One hex digit of the md5hash changed.
        head, _, tail = url.partition("&domain=")
        url = head[:-1] + ("0" if head[-1] != "0" else "1") + "&domain=" + tail
    elif case == "forbidden":
        media.policy.forbidden.add(KEY)
    publisher = start_publisher(url, seconds=5)
    assert publisher.process.wait(30) != 0
    assert not media.run_sync(lambda: media.node.hub.is_live(KEY))
    assert f"publish refused: stream={domain}/live/cam1 reason={reason}" in caplog.text
    # Reported to the sink for the troubleshooting tool; nothing went live.
    assert media.wait_for(lambda: refusals(media))
    event = refusals(media)[0]
    assert (event.domain, event.app, event.stream, event.protocol) == (domain, "live", "cam1", "rtmp")
    assert (event.reason, event.code, event.node_id) == (reason, 0, "test-node")
    assert event.client_addr.startswith("127.0.0.1:")
    assert all(isinstance(e, PublishRefused) for e in media.sink.events)


def refusals(media) -> list[PublishRefused]:
    return [e for e in media.sink.events if isinstance(e, PublishRefused)]


def test_it_refuses_a_second_publisher(media, caplog):
    caplog.set_level("INFO", logger="livecenter.media")
    first = start_publisher(media.publish_url(), seconds=15)
    try:
        assert live(media)
        second = start_publisher(media.publish_url(), seconds=5)
        assert second.process.wait(30) != 0
        assert "reason=stream is already being published" in caplog.text
        assert media.run_sync(lambda: media.node.hub.is_live(KEY))
        assert media.wait_for(lambda: refusals(media))
        assert [(e.protocol, e.reason) for e in refusals(media)] == [("rtmp", "stream is already being published")]
    finally:
        first.stop()


def test_it_kicks_a_live_publisher(media):
    publisher = start_publisher(media.publish_url(), seconds=30)
    try:
        assert live(media)
        assert media.run_sync(media.node.kick, KEY)
        assert publisher.process.wait(15) != 0 or True  # ffmpeg may exit 0 on a closed socket
        assert media.wait_for(lambda: not media.node.hub.is_live(KEY), timeout=5)
        assert any(isinstance(e, StreamUnpublished) and e.reason == "forbidden" for e in media.sink.events)
    finally:
        publisher.stop()


@pytest.mark.parametrize(
    ("url_case", "status", "reason"),
    [
        ("unsigned", 403, "no auth_key"),
        ("ingest-key", 403, "invalid md5hash"),
        ("ingest-domain", 403, "not a streaming domain"),
        ("not-live", 404, "stream is not live"),
    ],
)
def test_it_refuses_a_bad_http_flv_play(media, url_case, status, reason):
    url = {
        "unsigned": f"{media.http}/live/cam1.flv?domain={PLAY}",
        "ingest-key": media.flv_url(key=INGEST_KEY),
        "ingest-domain": media.flv_url(domain=INGEST, key=INGEST_KEY),
        "not-live": media.flv_url(stream="nobody"),
    }[url_case]
    code, headers = http_status(url)
    assert code == status
    assert headers["X-LiveCenter-Error"] == reason


def test_it_keeps_an_http_flv_viewer_across_a_publisher_reconnect(media, tmp_path):
    first = start_publisher(media.publish_url(), seconds=4)
    assert live(media)
    out = tmp_path / "viewer.flv"
    viewer = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", media.flv_url(), "-c", "copy", "-t", "9",
         "-f", "flv", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first.process.wait(30)
        second = start_publisher(media.publish_url(), seconds=8)
        viewer_err = viewer.communicate(timeout=60)[1]
        second.stop()
    finally:
        if viewer.poll() is None:
            viewer.kill()
    assert viewer.returncode == 0, viewer_err
    packets = probe_packets(str(out), seconds=60)
    assert_continuous(packets, max_gap=1.5)
    assert float(packets[-1]["dts_time"]) > 6  # it played on past the reconnect


def test_it_keeps_other_streams_flowing_when_a_peer_sends_garbage(media):
    import socket

    publisher = start_publisher(media.publish_url(), seconds=15)
    try:
        assert live(media)
        with socket.create_connection(("127.0.0.1", media.node.rtmp_port)) as bad:
            bad.sendall(b"\x03" + b"\x00" * 1536 + b"\xff" * 5000)
            bad.settimeout(10)
            try:
                while bad.recv(65536):
                    pass
            except (ConnectionError, TimeoutError):
                pass
        assert_continuous(probe_packets(media.flv_url(), seconds=2))
    finally:
        publisher.stop()


def test_it_stops_cleanly_with_a_live_publisher_and_viewer(caplog):
    caplog.set_level("INFO")
    node = NodeThread().start()
    publisher = start_publisher(node.publish_url(), seconds=20)
    viewer = None
    try:
        assert live(node)
        viewer = subprocess.Popen(["ffmpeg", "-loglevel", "error", "-i", node.flv_url(), "-f", "null", "-"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        assert node.wait_for(lambda: node.node.hub.stream(KEY).viewer_count == 1)
        node.stop()
    finally:
        publisher.stop()
        if viewer is not None:
            viewer.kill()
            viewer.wait()
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], caplog.text
    assert isinstance(node.sink.events[-1], StreamUnpublished)
    assert node.sink.events[-1].reason == "media node stopped"  # not the publisher's doing, nor its connection's
    assert not node.node.connections


def unpublished_reason(media) -> str | None:
    def reasons() -> list[str]:
        return [e.reason for e in media.sink.events if isinstance(e, StreamUnpublished)]

    media.wait_for(reasons)
    found = media.run_sync(reasons)
    assert len(found) <= 1, found
    return found[0] if found else None


@pytest.mark.parametrize(
    ("ending", "exit_code", "reason"),
    # ffmpeg exits 255 when a signal interrupted it, after closing its output.
    [("finishes", 0, ""), ("SIGTERM", 255, ""), ("SIGKILL", -9, "connection lost")],
)
def test_it_tells_a_killed_encoder_from_one_that_ended_its_stream(media, ending, exit_code, reason):
    # ffmpeg ending its output (at -t or on SIGTERM) sends FCUnpublish and
    # deleteStream; killed, it only leaves a closed (or reset) socket.
    publisher = start_publisher(media.publish_url(), seconds=4 if ending == "finishes" else 60, size="320x240")
    try:
        assert live(media), publisher.stop()
        if ending == "SIGKILL":
            publisher.process.kill()
        elif ending == "SIGTERM":
            publisher.process.terminate()
        assert publisher.process.wait(30) == exit_code
        assert unpublished_reason(media) == reason
    finally:
        publisher.stop()


@pytest.mark.parametrize(("goodbye", "reason"), [(True, ""), (False, "connection lost")])
def test_it_calls_a_close_without_delete_stream_a_lost_connection(media, goodbye, reason):
    publisher = TagPublisher(media.publish_url())
    assert live(media)
    if goodbye:
        publisher._command("deleteStream", 4, None, 1.0)
    publisher.close()
    assert unpublished_reason(media) == reason
    assert media.wait_for(lambda: not media.node.hub.is_live(KEY))
