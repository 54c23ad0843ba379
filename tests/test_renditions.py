"""Renditions as the engine sees them (issue 7): template sizes, rendition
names, the ABR master playlist, and the node asking its sink for a
rendition a viewer waits for."""

from __future__ import annotations

import asyncio
import subprocess
import time
import urllib.request
from types import SimpleNamespace

import pytest

from livecenter.media.codecs import iter_annexb_nal_units
from livecenter.media.hls_master import X264_PROFILES, Variant, master_playlist, master_text, x264_level
from livecenter.media.hub import StreamHub
from livecenter.media.mpegts_demux import TsDemuxer
from livecenter.media.policy import RenditionGroup, RenditionRequested, StreamKey
from livecenter.media.renditions import RenditionSpec, output_size, split_rendition_name, standard_spec
from livecenter.media.signing import sign, verify
from tests.mediasupport import INGEST, PLAY, PLAY_KEY, NodeThread, start_publisher
from tests.test_dolby import push_srt_stream
from tests.test_mpegts_demux import ffmpeg_ts


def test_it_sizes_the_standard_templates_by_their_short_side():
    assert output_size(standard_spec("lld"), 1280, 720) == (640, 360)
    assert output_size(standard_spec("lsd"), 1280, 720) == (768, 432)
    assert output_size(standard_spec("lhd"), 1920, 1080) == (1152, 648)
    assert output_size(standard_spec("lud"), 1920, 1080) == (1920, 1080)
    # Portrait: the short side is the width.
    assert output_size(standard_spec("lld"), 720, 1280) == (360, 640)
    # Never upscaled.
    assert output_size(standard_spec("lud"), 1280, 720) == (1280, 720)


def test_it_sizes_custom_templates():
    assert output_size(RenditionSpec("w", 800, width=854), 1920, 1080) == (854, 480)
    assert output_size(RenditionSpec("h", 800, height=240), 1280, 720) == (426, 240)
    assert output_size(RenditionSpec("wh", 800, width=400, height=400), 1280, 720) == (400, 400)
    assert output_size(RenditionSpec("odd", 800, short_side=361), 1280, 720) == (642, 362)


def test_it_splits_rendition_names_at_the_last_underscore():
    assert split_rendition_name("cam1_lld") == ("cam1", "lld")
    assert split_rendition_name("my_cam_lhd") == ("my_cam", "lhd")
    assert split_rendition_name("cam1") is None
    assert split_rendition_name("cam1_") is None
    assert standard_spec("nope") is None


def test_it_writes_a_master_playlist():
    text = master_text(
        [
            Variant("a_lld.m3u8?x=1", 500_000, 640, 360, 30.0),
            Variant("a.m3u8", 2_000_000, 1280, 720, codecs="avc1.64001f,ec-3"),
        ]
    )
    assert text.splitlines() == [
        "#EXTM3U",
        "#EXT-X-VERSION:6",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        "#EXT-X-STREAM-INF:BANDWIDTH=600000,AVERAGE-BANDWIDTH=500000,RESOLUTION=640x360,FRAME-RATE=30.000",
        "a_lld.m3u8?x=1",
        '#EXT-X-STREAM-INF:BANDWIDTH=2400000,AVERAGE-BANDWIDTH=2000000,CODECS="avc1.64001f,ec-3",RESOLUTION=1280x720',
        "a.m3u8",
    ]


def x264_sps_level(width: int, height: int, fps: int, profile: str, bit_rate: int) -> tuple[int, int, int]:
    """(profile_idc, constraint flags, level_idc) of what x264 makes, as a rendition encodes (VBV at the bitrate)."""
    rate = str(bit_rate)
    cmd = ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc=size={width}x{height}:rate={fps}", "-frames:v", "1",
           "-c:v", "libx264", "-profile:v", profile, "-b:v", rate, "-maxrate", rate, "-bufsize", rate,
           "-tune", "zerolatency", "-pix_fmt", "yuv420p", "-f", "h264", "-"]  # fmt: skip
    stream = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout
    sps = next(n for n in iter_annexb_nal_units(stream, 0) if n[0] & 0x1F == 7)
    return sps[1], sps[2], sps[3]


@pytest.mark.parametrize(
    "width,height,fps,profile,kbps",
    [(640, 360, 30, "high", 470), (768, 432, 30, "high", 680), (1152, 648, 30, "main", 1500),
     (1920, 1080, 30, "high", 2500), (1920, 1080, 60, "high", 6000), (320, 240, 15, "baseline", 300),
     (1280, 720, 60, "high", 25000)],
)  # fmt: skip
def test_it_says_the_profile_and_level_x264_makes_for_a_rendition_not_live_yet(width, height, fps, profile, kbps):
    profile_idc, flags, level = x264_sps_level(width, height, fps, profile, kbps * 1000)
    assert X264_PROFILES[profile] == (profile_idc, flags)
    assert x264_level(profile, width, height, fps, kbps * 1000) == level


@pytest.mark.parametrize("audio,name", [("eac3", "ec-3"), ("ac3", "ac-3"), ("aac", "mp4a.40.2")])
def test_the_master_playlist_says_each_variant_s_codecs_dolby_audio_included(audio, name):
    # A Dolby source, as SRT ingest gives it to the hub (test_dolby.py); renditions copy its audio.
    key = StreamKey(INGEST, "live", "cam1")
    base = RenditionSpec("base", 300, short_side=180, profile="baseline")
    group = RenditionGroup("abr", (standard_spec("lld"), base))

    async def run():
        hub = StreamHub()
        events = TsDemuxer().receive_data(ffmpeg_ts(audio=audio))
        push_srt_stream(hub, events, key)

        async def rendition_group(domain, app, group_id):
            return group if group_id == "abr" else None

        policy, config = SimpleNamespace(rendition_group=rendition_group), SimpleNamespace(play_wait_seconds=0)
        node = SimpleNamespace(hub=hub, policy=policy, config=config, request_rendition=lambda *a: None)
        admission = SimpleNamespace(key=StreamKey(INGEST, "live", "cam1_abr"), domain=None)
        return hub.stream(key).avc_config, await master_playlist(node, admission, "live", "cam1_abr", {})

    source, (status, text) = asyncio.run(run())
    assert status == 200
    codecs = [line.split('CODECS="')[1].split('"')[0] for line in text.splitlines() if line.startswith("#EXT-X-STREAM")]
    # 320x240 30 fps source: 240x180 at 300 kbit/s baseline (level 1.2), lld not upscaled (320x240
    # at 470 kbit/s, high: 9,000 macroblocks a second, level 1.3), the source.
    source_avc = f"avc1.{source.profile_idc:02x}{source.profile_compatibility:02x}{source.level_idc:02x}"
    assert codecs == [f"avc1.42c00c,{name}", f"avc1.64000d,{name}", f"{source_avc},{name}"]


@pytest.fixture
def node():
    node = NodeThread(play_wait_seconds=2, update_interval_seconds=0.5)
    node.policy.groups[(INGEST, "live", "abr")] = RenditionGroup("abr", (standard_spec("lld"), standard_spec("lhd")))
    node.start()
    yield node
    node.stop()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.media
def test_it_asks_for_a_rendition_a_viewer_waits_for_and_serves_the_group_master(node):
    source = StreamKey(INGEST, "live", "cam1")
    # Not live: a viewer of a rendition asks for nothing.
    assert get(node.flv_url(stream="cam1_lld"))[0] == 404
    assert not [e for e in node.sink.events if isinstance(e, RenditionRequested)]
    publisher = start_publisher(node.publish_url(), seconds=20, size="640x360")
    try:
        assert node.wait_for(lambda: node.node.hub.is_live(source))
        assert get(node.flv_url(stream="cam1_lld"))[0] == 404  # nobody made it within the wait
        requests = [e for e in node.sink.events if isinstance(e, RenditionRequested)]
        assert requests == [RenditionRequested(source, "lld", "test-node")]

        ts = int(time.time())
        token = sign("/live/cam1_abr.m3u8", PLAY_KEY, ts, "r1", "u1")
        status, text = get(f"{node.http}/live/cam1_abr.m3u8?auth_key={token}&domain={PLAY}")
        assert status == 200, text
        uris = [line for line in text.splitlines() if line and not line.startswith("#")]
        assert [u.split("?")[0] for u in uris] == ["cam1_lld.m3u8", "cam1_lhd.m3u8", "cam1.m3u8"]
        assert "RESOLUTION=640x360" in text  # lhd is not upscaled past the 640x360 source
        for uri in uris:
            auth = dict(p.split("=", 1) for p in uri.split("?", 1)[1].split("&"))
            assert auth["domain"] == PLAY
            assert auth["auth_key"].startswith(f"{ts}-r1-u1-")
            assert verify(f"/live/{uri.split('?')[0]}", auth["auth_key"], (PLAY_KEY,), 3600, time.time()).ok
        # The master asked for the group's renditions.
        asked = lambda: {e.template_id for e in node.sink.events if isinstance(e, RenditionRequested)}  # noqa: E731
        assert node.wait_for(lambda: asked() == {"lld", "lhd"}), asked()
        # A group that does not exist is an ordinary (not live) stream.
        token = sign("/live/cam1_nope.m3u8", PLAY_KEY, ts)
        assert get(f"{node.http}/live/cam1_nope.m3u8?auth_key={token}&domain={PLAY}")[0] == 404
    finally:
        publisher.stop()


@pytest.mark.media
def test_it_asks_for_a_rendition_a_viewer_waited_for_before_its_source_went_live(node):
    import threading

    source = StreamKey(INGEST, "live", "cam1")
    viewer = threading.Thread(target=get, args=(node.flv_url(stream="cam1_lhd"),))
    viewer.start()
    assert node.wait_for(lambda: StreamKey(INGEST, "live", "cam1_lhd") in node.node.hub.waiting_keys())
    publisher = start_publisher(node.publish_url(), seconds=10, size="640x360")
    try:
        requested = lambda: [e for e in node.sink.events if isinstance(e, RenditionRequested)]  # noqa: E731
        assert node.wait_for(requested), node.sink.events
        assert requested() == [RenditionRequested(source, "lhd", "test-node")]
    finally:
        publisher.stop()
        viewer.join(10)


def test_viewers_waiting_for_a_rendition_queue_one_request_while_the_sink_is_busy():
    """Each viewer waiting for a rendition asks for it; while the sink is
    slow (a database round trip each) one request is queued, not one per
    viewer (the soak's queue of RenditionRequested grew with its viewers)."""
    from livecenter.media.policy import MemorySink

    class SlowSink(MemorySink):
        def __init__(self) -> None:
            super().__init__()
            self.gate = asyncio.Event()

        async def rendition_requested(self, event: RenditionRequested) -> None:
            await self.gate.wait()
            await super().rendition_requested(event)

    thread = NodeThread(sample_interval_seconds=0)
    thread.sink = SlowSink()
    node = thread.start()
    source = StreamKey(INGEST, "live", "cam1")

    def queued() -> int:
        return sum(isinstance(e, RenditionRequested) for e in node.node._events._queue)

    delivered = lambda: sum(isinstance(e, RenditionRequested) for e in thread.sink.events)  # noqa: E731
    try:
        node.run_sync(node.node.request_rendition, source, "lld")
        assert node.wait_for(lambda: queued() == 0)  # with the sink, which holds it
        for _ in range(200):
            node.run_sync(node.node.request_rendition, source, "lld")
        node.run_sync(node.node.request_rendition, source, "lhd")
        # Behind the one with the sink: one lld for the 200 viewers (asked after the sink took the
        # first, so not lost), and lhd.
        assert node.run_sync(queued) == 2
        node.loop.call_soon_threadsafe(thread.sink.gate.set)
        assert node.wait_for(lambda: delivered() == 3)
        assert node.run_sync(queued) == 0 and not node.node._renditions_asked
        # Delivered: a later viewer asks again.
        node.run_sync(node.node.request_rendition, source, "lld")
        assert node.wait_for(lambda: delivered() == 4)
    finally:
        node.stop()
