"""The stream hub (livecenter/media/hub.py): GOP cache, bounded subscribers,
reconnects, stats. Each test runs its own event loop and waits on events."""

from __future__ import annotations

import asyncio
import functools
import tracemalloc

import pytest

from livecenter.media.flv import AUDIO, SCRIPT, VIDEO, FlvReader, FrameKind, encode_tag
from livecenter.media.hub import AlreadyPublishing, MediaFrame, StreamHub
from livecenter.media.policy import StreamInfo, StreamKey
from tests.test_codecs import make_sps
from tests.test_flv import ffmpeg_flv

KEY = StreamKey("push.test", "live", "cam1")
SPS = make_sps(profile_idc=66, width_mbs=80, height_map_units=45)  # 1280x720
VIDEO_HEADER = b"\x17\x00\x00\x00\x00\x01\x42\xc0\x1e\xff\xe1" + len(SPS).to_bytes(2, "big") + SPS + b"\x01\x00\x01\x68"
AUDIO_HEADER = b"\xaf\x00\x12\x10"  # AAC LC, 44.1 kHz, stereo
META = b"\x02\x00\x0aonMetaData\x08\x00\x00\x00\x00\x00\x00\x09"


def run(test):
    """Run an async test in a fresh loop, with a guard against hanging."""

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(asyncio.wait_for(test(*args, **kwargs), 30))

    return wrapper


def video(keyframe: bool = False, size: int = 100) -> bytes:
    return (b"\x17\x01" if keyframe else b"\x27\x01") + bytes(size - 2)


def audio(size: int = 20) -> bytes:
    return b"\xaf\x01"[:size] + bytes(max(0, size - 2))


def start(publication, ts: int = 0) -> None:
    publication.push("meta", ts, META)
    publication.push("video", ts, VIDEO_HEADER)
    publication.push("audio", ts, AUDIO_HEADER)


def push_gop(publication, ts: int, frames: int = 30, size: int = 100) -> int:
    """A keyframe and inter frames at 30 fps with an audio frame after each;
    returns the next timestamp."""
    for i in range(frames):
        publication.push("video", ts, video(i == 0, size))
        publication.push("audio", ts + 1, audio())
        ts += 33
    return ts


def kinds(frames: list[MediaFrame]) -> list[str]:
    names = {(VIDEO_HEADER, "video"): "VH", (AUDIO_HEADER, "audio"): "AH"}
    out = []
    for f in frames:
        if f.kind == "meta":
            out.append("M")
        elif f.sequence_header:
            out.append(names.get((f.body, f.kind), "H?"))
        else:
            out.append(("K" if f.keyframe else "v") if f.kind == "video" else "a")
    return out


# --- joining ------------------------------------------------------------------------


@run
async def test_it_gives_a_late_joiner_the_headers_and_the_latest_gop_at_once():
    hub = StreamHub()
    pub = hub.publish(KEY)
    start(pub)
    next_ts = push_gop(pub, 0)
    next_ts = push_gop(pub, next_ts, frames=3)

    sub = hub.subscribe(KEY, protocol="flv")
    burst = sub.drain()
    assert kinds(burst) == ["M", "VH", "AH", "K", "a", "v", "a", "v", "a"]
    assert burst[3].timestamp == 990  # the second GOP's keyframe
    assert sub.drain() == []

    live = pub.push("video", next_ts, video())
    assert await sub.get() is live


@run
async def test_it_feeds_a_subscriber_that_came_before_the_publisher_from_the_first_keyframe():
    hub = StreamHub()
    sub = hub.subscribe(KEY)
    assert not hub.is_live(KEY) and hub.stream(KEY).viewer_count == 1
    getter = asyncio.ensure_future(sub.get())
    pub = hub.publish(KEY)
    start(pub)
    assert (await getter).kind == "meta"
    pub.push("video", 0, video())  # an inter frame before any keyframe is useless
    pub.push("audio", 1, audio())
    push_gop(pub, 33, frames=2)
    assert kinds(sub.drain()) == ["VH", "AH", "K", "a", "v", "a"]
    assert sub.dropped == 2


@run
async def test_it_caches_a_gop_up_to_its_byte_limit_and_restarts_at_the_next_keyframe_past_it():
    hub = StreamHub(gop_cache_max_bytes=1000)
    pub = hub.publish(KEY)
    start(pub)
    pub.push("video", 0, video(True, 400))
    pub.push("video", 33, video(size=600))
    stream = hub.stream(KEY)
    assert stream.gop_bytes == 1000 and len(stream.gop) == 2  # at the limit: cached

    pub.push("audio", 34, audio(1))  # one byte past
    assert stream.gop == ()
    pub.push("video", 66, video())
    assert stream.gop == ()  # waits for a keyframe
    joiner = hub.subscribe(KEY)
    assert kinds(joiner.drain()) == ["M", "VH", "AH"]

    pub.push("video", 99, video(True, 1000))
    assert len(stream.gop) == 1
    pub.push("video", 132, video(True, 1001))  # a keyframe alone past the limit
    assert stream.gop == ()
    assert kinds(joiner.drain()) == ["K", "K"]


@run
async def test_it_restarts_the_gop_cache_on_a_new_sequence_header():
    hub = StreamHub()
    pub = hub.publish(KEY)
    start(pub)
    push_gop(pub, 0, frames=3)
    pub.push("video", 100, VIDEO_HEADER)  # new encoder settings mid-GOP
    assert hub.stream(KEY).gop == ()
    pub.push("video", 133, video(True))
    assert kinds(hub.subscribe(KEY).drain()) == ["M", "VH", "AH", "K"]


@run
async def test_it_shares_one_frame_and_its_encodings_between_subscribers():
    hub = StreamHub()
    first, second = hub.subscribe(KEY, protocol="flv"), hub.subscribe(KEY, protocol="rtmp")
    pub = hub.publish(KEY)
    frame = pub.push("video", 0x1000000, bytearray(video(True)))
    assert isinstance(frame.body, bytes)
    assert await first.get() is frame and await second.get() is frame
    assert frame.flv_tag == encode_tag(VIDEO, 0x1000000, frame.body)
    assert frame.flv_tag is frame.flv_tag  # encoded once
    tags = FlvReader().receive_data(b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00" + frame.flv_tag)
    assert (tags[0].tag_type, tags[0].timestamp, tags[0].body) == (VIDEO, 0x1000000, frame.body)
    assert pub.push("meta", 0, META).flv_tag[0] == SCRIPT and pub.push("audio", 0, audio()).flv_tag[0] == AUDIO


@run
async def test_it_refuses_unknown_frame_kinds():
    pub = StreamHub().publish(KEY)
    with pytest.raises(ValueError, match="frame kind must be one of 'video', 'audio', 'meta', not 'subtitle'"):
        pub.push("subtitle", 0, b"")


@run
async def test_it_gives_every_frame_a_frame_kind_whether_pushed_by_kind_or_by_name():
    pub = StreamHub().publish(KEY)
    frames = [
        pub.push(FrameKind.META, 0, META),
        pub.push("video", 0, VIDEO_HEADER),
        pub.push(FrameKind.AUDIO, 0, audio()),
    ]
    assert [type(f.kind) for f in frames] == [FrameKind] * 3
    assert [f.kind for f in frames] == [FrameKind.META, FrameKind.VIDEO, FrameKind.AUDIO]
    assert [f.flv_tag[0] for f in frames] == [SCRIPT, VIDEO, AUDIO]


# --- slow and stalled subscribers ------------------------------------------------------


@run
async def test_it_skips_a_subscriber_at_its_byte_limit_to_the_next_keyframe_with_audio():
    headers = len(META) + len(VIDEO_HEADER) + len(AUDIO_HEADER)
    hub = StreamHub(gop_cache_max_bytes=1000, subscriber_max_bytes=headers + 1000)
    sub = hub.subscribe(KEY)
    pub = hub.publish(KEY)
    start(pub)
    pub.push("video", 0, video(True, 500))
    pub.push("audio", 1, audio(100))
    pub.push("video", 33, video(size=399))
    pub.push("audio", 34, audio(1))
    assert sub.queued_bytes == headers + 1000 and sub.skips == 0  # at the limit

    pub.push("audio", 35, audio(1))  # one byte past: skip
    assert sub.skips == 1 and sub.dropped == 5
    assert sub.queued_bytes == headers  # the headers stay
    pub.push("video", 66, video())
    pub.push("audio", 67, audio())  # audio waits for the keyframe too
    assert sub.dropped == 7
    pub.push("video", 99, video(True))
    pub.push("audio", 100, audio())
    frames = sub.drain()
    assert kinds(frames) == ["M", "VH", "AH", "K", "a"]
    assert frames[3].timestamp == 99


@run
async def test_it_skips_a_subscriber_at_its_frame_limit():
    hub = StreamHub(subscriber_max_frames=10)
    pub = hub.publish(KEY)
    start(pub)
    sub = hub.subscribe(KEY)
    pub.push("video", 0, video(True))
    for ts in range(1, 7):
        pub.push("audio", ts, audio())
    assert sub.queued_frames == 10 and sub.skips == 0  # at the limit
    pub.push("audio", 7, audio())
    assert sub.skips == 1 and sub.queued_frames == 3


@run
async def test_it_keeps_one_header_of_each_kind_for_a_stalled_subscriber_across_reconnects():
    hub = StreamHub(subscriber_max_frames=16, reconnect_grace_seconds=60)
    sub = hub.subscribe(KEY)
    for _ in range(100):
        pub = hub.publish(KEY)
        start(pub)
        pub.close()
    assert sub.queued_frames <= 16
    assert kinds(sub.drain())[-3:] == ["M", "VH", "AH"]


@run
async def test_it_bounds_what_a_stalled_subscriber_holds_while_200_mb_go_by():
    frame_bytes = 64 * 1024
    hub = StreamHub(subscriber_max_lag_ms=10**9)  # stays attached: only the queue bound acts
    pub = hub.publish(KEY)
    start(pub)
    stalled = hub.subscribe(KEY, protocol="flv")
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        most_queued = 0
        ts = 0
        for i in range(200 * 1024 * 1024 // frame_bytes):
            pub.push("video", ts, video(i % 30 == 0, frame_bytes))
            most_queued = max(most_queued, stalled.queued_bytes)
            ts += 33
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert most_queued <= hub.subscriber_max_bytes
    assert stalled.skips > 5 and stalled.dropped > 2000
    # What stays alive: the subscriber's queue and the GOP cache (shared).
    assert peak <= hub.subscriber_max_bytes + hub.gop_cache_max_bytes + 2 * 1024 * 1024
    assert not stalled.lagging_disconnect


@run
async def test_it_disconnects_a_subscriber_lagging_past_the_limit():
    hub = StreamHub(subscriber_max_lag_ms=1000)
    pub = hub.publish(KEY)
    start(pub)
    sub = hub.subscribe(KEY, protocol="flv")
    pub.push("video", 0, video(True))
    pub.push("video", 1000, video())  # 1000 ms behind: at the limit
    assert not sub.lagging_disconnect
    pub.push("audio", 1001, audio())  # past it
    assert sub.lagging_disconnect
    assert await sub.get() is None
    assert sub.dropped == 5 and hub.stream(KEY).viewer_count == 0
    pub.push("video", 1033, video())
    assert sub.queued_frames == 0


@run
async def test_it_does_not_disconnect_a_subscriber_that_keeps_up_or_waits_for_a_keyframe():
    hub = StreamHub(subscriber_max_lag_ms=1000)
    pub = hub.publish(KEY)
    start(pub)
    reader = hub.subscribe(KEY)
    late = hub.subscribe(KEY)  # always 15 frames (500 ms) behind
    ts = 0
    for i in range(300):
        pub.push("video", ts, video(i % 30 == 0))
        reader.drain()
        if i >= 15:
            late.drain(1)  # one frame in, one out: a constant backlog
        ts += 33
    assert late.queued_frames == 18 and late.dropped == 0
    assert not (reader.lagging_disconnect or late.lagging_disconnect)
    # A new sequence header empties the GOP cache: a caught-up joiner waits
    # for the next keyframe, however long the GOP, and is not lagging.
    pub.push("video", ts, VIDEO_HEADER)
    reader.drain()
    waiting = hub.subscribe(KEY)
    assert kinds(waiting.drain()) == ["M", "VH", "AH"]
    for _ in range(100):
        ts += 33
        pub.push("video", ts, video())
        waiting.drain()
    assert not waiting.lagging_disconnect and waiting.dropped == 100
    assert late.lagging_disconnect  # it stopped reading


# --- publishers ---------------------------------------------------------------------


@run
async def test_it_refuses_a_second_publisher_until_the_first_is_gone():
    hub = StreamHub()
    first = hub.publish(KEY)
    with pytest.raises(AlreadyPublishing, match="push.test/live/cam1 is already being published"):
        hub.publish(KEY)
    first.close()
    assert not hub.is_live(KEY) and hub.stream(KEY) is None  # nobody was watching
    second = hub.publish(KEY)
    assert hub.is_live(KEY) and hub.live_keys() == [KEY] and hub.stream(KEY).publication is second
    assert first.push("video", 0, video(True)) is None  # a closed publication drops frames


@run
async def test_it_rebases_a_reconnecting_publisher_so_viewers_see_one_stream():
    hub = StreamHub(reconnect_grace_seconds=0.05)
    sub = hub.subscribe(KEY, protocol="flv")
    first = hub.publish(KEY)
    start(first)
    last = push_gop(first, 0, frames=60) - 33 + 1  # the last audio frame
    first.close("network")
    assert not hub.is_live(KEY)
    getter = asyncio.ensure_future(consume(sub))
    await asyncio.sleep(0)

    second = hub.publish(KEY)
    new_video_header = VIDEO_HEADER[:-1] + b"\x69"  # another PPS
    second.push("meta", 0, META)
    second.push("video", 0, new_video_header)
    second.push("audio", 0, AUDIO_HEADER)
    second.push("video", 0, video())  # not a keyframe: waited for
    second.push("audio", 1, audio())
    second.push("audio", 20, audio())
    second.push("video", 40, video(True))
    second.push("audio", 39, audio())  # a little out of order
    second.push("video", 73, video())
    second.close()
    frames = await getter  # ends with the grace period

    old, new = frames[:123], frames[123:]
    assert kinds(old[-2:]) == ["v", "a"] and old[-1].timestamp == last
    assert kinds(new) == ["M", "H?", "AH", "K", "a", "v"]
    assert new[1].body == new_video_header
    for kind in ("video", "audio"):
        track = [f.timestamp for f in frames if f.kind == kind and not f.is_header]
        assert track == sorted(track)
    # The new stream starts one frame (33 ms) after the old one; its clock keeps going from there.
    floor = last + 33
    assert [f.timestamp for f in new if not f.is_header] == [floor + 40, floor + 39, floor + 73]
    assert all(f.timestamp == floor for f in new[:3])


async def consume(sub) -> list[MediaFrame]:
    frames = []
    while (frame := await sub.get()) is not None:
        frames.append(frame)
    return frames


@run
async def test_it_does_not_rebase_a_stream_nobody_watched():
    hub = StreamHub()
    pub = hub.publish(KEY)
    push_gop(pub, 5000, frames=2)
    pub.close()
    assert hub.publish(KEY).push("video", 7, video(True)).timestamp == 7


@run
async def test_it_gives_a_joiner_during_the_grace_period_only_the_new_publishers_headers():
    hub = StreamHub()
    watcher = hub.subscribe(KEY)
    pub = hub.publish(KEY)
    start(pub)
    push_gop(pub, 0, frames=3)
    pub.close()
    joiner = hub.subscribe(KEY)
    assert joiner.drain() == []
    start(hub.publish(KEY))
    assert kinds(joiner.drain()) == ["M", "VH", "AH"]
    assert watcher.queued_frames == 3 + 6 + 3


@run
async def test_it_ends_subscribers_when_nobody_comes_back_within_the_grace_period():
    hub = StreamHub(reconnect_grace_seconds=0.01)
    sub = hub.subscribe(KEY)
    pub = hub.publish(KEY)
    start(pub)
    push_gop(pub, 0, frames=2)
    pub.close()
    assert hub.stream(KEY) is not None  # still waiting for the publisher
    assert kinds(await consume(sub)) == ["M", "VH", "AH", "K", "a", "v", "a"]
    assert sub.ended and not sub.lagging_disconnect
    assert hub.stream(KEY) is None

    hub = StreamHub(reconnect_grace_seconds=0)
    sub = hub.subscribe(KEY)
    hub.publish(KEY).close()
    assert await sub.get() is None


@run
async def test_it_keeps_viewers_across_a_reconnect_within_the_grace_period():
    hub = StreamHub(reconnect_grace_seconds=0.01)
    sub = hub.subscribe(KEY)
    hub.publish(KEY).close()
    pub = hub.publish(KEY)
    await asyncio.sleep(0.05)  # past the old grace period: nothing may end the viewer
    assert not sub.ended
    pub.push("video", 0, video(True))
    assert (await sub.get()).keyframe


# --- waiting, kicking, closing -----------------------------------------------------------


@run
async def test_it_waits_for_a_stream_to_go_live_and_times_out_otherwise():
    hub = StreamHub()
    assert await hub.wait_live(KEY, 0.01) is False
    assert await hub.wait_live(KEY, 0) is False
    waiter = asyncio.ensure_future(hub.wait_live(KEY, 30))
    await asyncio.sleep(0)
    hub.publish(KEY)
    assert await waiter is True
    assert await hub.wait_live(KEY, 0) is True
    assert hub._live_waiters == {}


@run
async def test_it_kicks_the_live_publisher():
    hub = StreamHub()
    assert hub.kick(KEY) is False
    pub = hub.publish(KEY)
    watcher = asyncio.ensure_future(pub.kicked.wait())
    assert hub.kick(KEY) is True
    await watcher
    assert pub.closed and pub.close_reason == "kicked" and not hub.is_live(KEY)
    assert pub.push("video", 0, video(True)) is None
    pub.close("forbidden")  # the server closing it again changes nothing
    assert pub.close_reason == "kicked"
    assert hub.kick(KEY) is False
    hub.publish(KEY)


@run
async def test_closing_a_subscription_wakes_its_reader_and_forgets_it():
    hub = StreamHub()
    pub = hub.publish(KEY)
    sub = hub.subscribe(KEY, protocol="flv")
    getter = asyncio.ensure_future(sub.get())
    await asyncio.sleep(0)
    sub.close()
    assert await getter is None
    assert hub.stream(KEY).viewer_count == 0
    pub.close()
    assert hub.stream(KEY) is None
    sub.close()  # twice is fine


@run
async def test_it_calls_on_ready_when_frames_arrive_and_when_it_ends():
    hub = StreamHub(reconnect_grace_seconds=0)
    calls = []
    sub = hub.subscribe(KEY, on_ready=lambda s: calls.append((s.queued_frames, s.ended)))
    pub = hub.publish(KEY)
    pub.push("video", 0, video(True))
    pub.push("video", 33, video())  # queue was not empty: no call
    assert calls == [(1, False)]
    assert len(sub.drain(1)) == 1 and len(sub.drain()) == 1
    pub.close()
    assert calls == [(1, False), (0, True)]


@run
async def test_audio_only_streams_start_at_any_audio_frame():
    hub = StreamHub()
    pub = hub.publish(KEY)
    pub.push("audio", 0, AUDIO_HEADER)
    for ts in range(0, 230, 23):
        pub.push("audio", ts, audio())
    frames = hub.subscribe(KEY).drain()
    assert kinds(frames) == ["AH", "a"] and frames[1].timestamp == 207


# --- stats --------------------------------------------------------------------------


@run
async def test_it_detects_b_frames_at_ingest_and_forgets_them_with_the_publication():
    hub = StreamHub(reconnect_grace_seconds=0)
    for extra, expected in (("-bf 0", False), ("-bf 2", True)):
        pub = hub.publish(KEY)
        for tag in FlvReader().receive_data(ffmpeg_flv(seconds=1.0, audio=None, extra=extra)):
            pub.push({VIDEO: "video", AUDIO: "audio", SCRIPT: "meta"}[tag.tag_type], tag.timestamp, tag.body)
        assert hub.stream(KEY).has_bframes is expected
        assert hub.stream(KEY).info().has_bframes is expected
        pub.close()


@run
async def test_it_measures_a_real_stream():
    data = ffmpeg_flv(size="1280x720", seconds=2.0, profile="high")
    tags = FlvReader().receive_data(data)
    hub = StreamHub()
    pub = hub.publish(KEY)
    for tag in tags:
        pub.push({VIDEO: "video", AUDIO: "audio", SCRIPT: "meta"}[tag.tag_type], tag.timestamp, tag.body)
    stream = hub.stream(KEY)
    video_tags = [t for t in tags if t.tag_type == VIDEO][1:]
    span = video_tags[-1].timestamp - video_tags[0].timestamp
    expected_video_bitrate = sum(len(t.body) for t in video_tags[:-1]) * 8000 / span
    info = stream.info()
    assert 60_000 < info.audio_bitrate < 400_000  # ffmpeg's AAC default is 128 kbit/s
    assert info == StreamInfo(
        video_codec="H264",
        audio_codec="AAC",
        width=1280,
        height=720,
        # ffmpeg gives the last two frames of a cut stream one timestamp: 60 intervals in 1967 ms.
        frame_rate=pytest.approx(30, abs=0.6),
        video_bitrate=pytest.approx(expected_video_bitrate),
        audio_bitrate=info.audio_bitrate,
        video_profile="High",
        audio_sample_rate=44100,
        audio_channels=2,
        has_bframes=True,  # x264's veryfast preset makes three between references
    )
    assert stream.bytes_in == sum(len(t.body) for t in tags)
    assert stream.video_frames == len(video_tags) and stream.audio_frames > 0
    assert stream.avc_config.nal_length_size == 4 and stream.aac_config.sample_rate == 44100
    assert stream.started_at == pub.started_at


@run
async def test_it_measures_over_the_last_five_seconds():
    hub = StreamHub()
    pub = hub.publish(KEY)
    for i in range(300):  # 10 s at 30 fps, then 10 s at 10 fps
        pub.push("video", i * 33, video(i % 30 == 0, 1000))
    for i in range(100):
        pub.push("video", 9900 + i * 100, video(i % 10 == 0, 1000))
    info = hub.stream(KEY).info()
    assert info.frame_rate == pytest.approx(10)
    assert info.video_bitrate == pytest.approx(80_000)


@run
async def test_it_counts_viewers_by_protocol_and_survives_an_unreadable_header():
    hub = StreamHub()
    pub = hub.publish(KEY)
    pub.push("video", 0, b"\x17\x00\x00\x00\x00\x01")  # a truncated configuration record
    subs = [hub.subscribe(KEY, protocol=p) for p in ("flv", "flv", "rtmp")]
    stream = hub.stream(KEY)
    assert stream.viewers() == {"flv": 2, "rtmp": 1} and stream.viewer_count == 3
    subs[0].close()
    assert stream.viewers() == {"flv": 1, "rtmp": 1}
    assert stream.info().width == 0 and stream.info().video_codec == "H264"
    # A subscription shared by several viewers (RTS) counts them; the node's
    # own HLS packager is no viewer.
    shared = hub.subscribe(KEY, protocol="rts")
    shared.viewers = 4
    hub.subscribe(KEY, protocol="hls-packager")
    assert stream.viewers() == {"flv": 1, "rtmp": 1, "rts": 4}


@run
async def test_a_caught_up_viewer_costs_well_under_64_kib():
    hub = StreamHub()
    pub = hub.publish(KEY)
    start(pub)
    ts = push_gop(pub, 0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        subs = [hub.subscribe(KEY, protocol="flv") for _ in range(1000)]
        for _ in range(30):
            pub.push("video", ts, video())
            for sub in subs:
                sub.drain()
            ts += 33
        per_viewer = (tracemalloc.get_traced_memory()[0] - before) / len(subs)
    finally:
        tracemalloc.stop()
    assert per_viewer < 64 * 1024 / 16, per_viewer


@run
async def test_it_restarts_the_measurements_when_a_track_jumps_back_in_time():
    hub = StreamHub()
    pub = hub.publish(KEY)
    for i in range(100):
        pub.push("video", 3_600_000 + i * 40, video(i == 0))
    for i in range(50):
        pub.push("video", i * 40, video(i == 0))
    # Without the restart the window would span from the old times to the new ones.
    assert hub.stream(KEY).info().frame_rate == pytest.approx(25)


def test_it_refuses_a_subscriber_bound_smaller_than_the_gop_cache():
    StreamHub(gop_cache_max_bytes=1000, subscriber_max_bytes=1000)
    with pytest.raises(ValueError, match="subscriber_max_bytes must hold the GOP cache"):
        StreamHub(gop_cache_max_bytes=1000, subscriber_max_bytes=999)


# --- timestamp jumps (issue 11) -------------------------------------------------------


def track(frames: list[MediaFrame], kind: str) -> list[int]:
    return [f.timestamp for f in frames if f.kind == kind and not f.is_header]


@run
async def test_it_carries_a_forward_jump_through_without_disconnecting_viewers():
    hub = StreamHub()
    pub = hub.publish(KEY)
    start(pub)
    sub = hub.subscribe(KEY, protocol="flv")
    next_ts = push_gop(pub, 0)  # 0 .. 957 (video), audio 1 ms after each
    # The publisher's clock leaps 30 s: more than SUBSCRIBER_MAX_LAG_MS (20 s).
    push_gop(pub, next_ts + 30_000)
    frames = sub.drain()
    assert not sub.lagging_disconnect and not sub.ended
    video_ts, audio_ts = track(frames, "video"), track(frames, "audio")
    assert video_ts == sorted(video_ts) and audio_ts == sorted(audio_ts)
    # The jump is rebased to one frame (33 ms) after the last output, then the clock goes on.
    assert video_ts[29:32] == [957, 990, 1023] and audio_ts[29:32] == [958, 991, 1024]
    assert max(b - a for a, b in zip(video_ts, video_ts[1:], strict=False)) == 33
    assert hub.stream(KEY).counters.timestamp_jumps == 2  # one per track


@run
async def test_it_rebases_a_jump_back_past_the_tolerance_and_holds_a_small_step_back():
    hub = StreamHub()
    pub = hub.publish(KEY)
    sub = hub.subscribe(KEY)
    next_ts = push_gop(pub, 10_000, frames=3)  # video 10000, 10033, 10066
    out = [pub.push("video", ts, video()).timestamp for ts in (5_000, 5_033, 4_983, 5_066)]
    # 5 s back: a discontinuity, one frame (the last step, 33 ms) on; 50 ms
    # back: held at the last time (jitter), the clock unchanged after it.
    assert out == [next_ts, next_ts + 33, next_ts + 33, next_ts + 66]
    video_ts = track(sub.drain(), "video")
    assert video_ts == sorted(video_ts)
    assert hub.stream(KEY).counters.timestamp_jumps == 2  # every step back counts, as before


@run
async def test_it_reads_a_32_bit_wrap_as_a_step_forward():
    hub = StreamHub()
    pub = hub.publish(KEY)
    sub = hub.subscribe(KEY, protocol="flv")
    start(pub, 0xFFFF_FF00)
    next_ts = push_gop(pub, 0xFFFF_FF00, frames=10)  # crosses 2**32
    assert next_ts > 1 << 32
    push_gop(pub, next_ts & 0xFFFF_FFFF, frames=10)  # what the publisher sends: wrapped
    frames = sub.drain()
    video_ts = track(frames, "video")
    assert video_ts == [0xFFFF_FF00 + 33 * i for i in range(20)]
    assert hub.stream(KEY).counters.timestamp_jumps == 0 and not sub.lagging_disconnect
    # The FLV tag carries the 32-bit value, as RTMP does.
    tag = frames[-2].flv_tag if frames[-2].kind == "video" else frames[-1].flv_tag
    assert int.from_bytes(tag[4:7], "big") | tag[7] << 24 == (0xFFFF_FF00 + 33 * 19) & 0xFFFF_FFFF


@run
async def test_it_continues_after_one_frame_stamped_near_2_to_the_32():
    hub = StreamHub()
    pub = hub.publish(KEY)
    sub = hub.subscribe(KEY, protocol="flv")
    start(pub)
    pub.push("video", 0xFFFF_FFF0, video(True))  # one bad frame first
    for i in range(1, 60):
        pub.push("video", 33 * i, video(i % 30 == 0))
        pub.push("audio", 33 * i + 1, audio())
    frames = sub.drain()
    video_ts, audio_ts = track(frames, "video"), track(frames, "audio")
    assert video_ts == sorted(video_ts) and audio_ts == sorted(audio_ts)
    # Frames stay 33 ms apart after the bad one, and audio joins video's timeline.
    assert all(b - a == 33 for a, b in zip(video_ts[1:], video_ts[2:], strict=False))
    assert abs(audio_ts[0] - video_ts[1]) <= 2000 and not sub.lagging_disconnect


@run
async def test_it_keeps_a_gap_in_one_track_that_the_other_track_went_through():
    hub = StreamHub()
    pub = hub.publish(KEY)
    push_gop(pub, 0)  # video and audio to 958
    for ts in range(990, 4000, 23):  # video freezes 3 s; audio goes on
        pub.push("audio", ts, audio())
    # Video comes back at its real time: not rebased, or it would be 3 s behind audio.
    assert pub.push("video", 3990, video(True)).timestamp == 3990
    assert hub.stream(KEY).counters.timestamp_jumps == 1
