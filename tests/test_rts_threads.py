"""RTS's conversion threads (livecenter/media/rts/threads.py) and their loop
side (media.VideoTranscoder, media.OpusTranscoder), driven from the event
loop while the threads run: a keyframe request made on the loop travels
with the next frame and makes a keyframe (none is lost), output comes back
on the loop's thread only, input past the limit is refused, nothing comes
back after close, and a frame that does not decode makes the thread wait
for the next source keyframe."""

from __future__ import annotations

import asyncio
import threading

import av
import pytest

from livecenter.media.codecs import parse_avc_sequence_header
from livecenter.media.flv import AUDIO, VIDEO, video_is_keyframe
from livecenter.media.rts.h264 import flv_video_to_access_unit
from livecenter.media.rts.media import TRANSCODE_MIN_KEYFRAME_INTERVAL_MS, OpusTranscoder, VideoTranscoder
from livecenter.media.rts.threads import (
    OPUS_CLOCK_HZ,
    OPUS_FRAME_MS,
    OPUS_FRAME_SAMPLES,
    ConversionThread,
    H264Transcoding,
    use_opus_frame_ms,
)
from tests.test_mpegts import ffmpeg_flv, flv_tags

WAIT_SECONDS = 60.0  # a loaded machine's worst case; the tests poll


def video(bframes=2):
    """(AvcConfig, [(access unit, pts ms, dts ms, keyframe)]) of a 4 s stream, GOP 30 at 30 fps."""
    tags = [t for t in flv_tags(ffmpeg_flv(seconds=4, bframes=bframes)) if t.tag_type == VIDEO]
    config = parse_avc_sequence_header(tags[0].body)
    frames = []
    for tag in tags[1:]:
        if tag.body[1] != 1:
            continue
        access_unit, cts = flv_video_to_access_unit(tag.body, config)
        frames.append((access_unit, tag.timestamp + cts, tag.timestamp, video_is_keyframe(tag.body)))
    return config, frames


async def until(condition, seconds=WAIT_SECONDS):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_keyframe_requests_made_on_the_loop_while_the_thread_transcodes_each_make_a_keyframe():
    config, frames = video()
    source_keyframes = sum(1 for f in frames if f[3])
    assert source_keyframes == 4

    async def run():
        loop_thread = threading.get_ident()
        out = []

        def on_unit(data, pts, keyframe):
            out.append((pts, keyframe, threading.get_ident()))

        transcoder = VideoTranscoder(on_unit)
        transcoder.configure(config)
        # Requests half a GOP from the source's keyframes (at 0, 30, 60, 90),
        # one second apart by the clock they are given, and one too soon.
        requests = {15: 0, 45: 2000, 50: 2000 + TRANSCODE_MIN_KEYFRAME_INTERVAL_MS - 1, 75: 4000}
        for index, frame in enumerate(frames):
            transcoder.push(*frame)
            if index in requests:
                transcoder.request_keyframe(requests[index])
            await asyncio.sleep(0)  # the thread runs meanwhile
        await until(lambda: transcoder.pending == 0)
        transcoder.close()
        assert out and {thread for _, _, thread in out} == {loop_thread}, "output is handed to the loop"
        keyframes = [pts for pts, keyframe, _ in out if keyframe]
        # Each source keyframe, and one per request not refused as too soon.
        assert len(keyframes) == source_keyframes + 3, keyframes
        source_pts = {f[1] for f in frames if f[3]}
        forced = [pts // 90 for pts in keyframes if pts // 90 not in source_pts]
        assert len(forced) == 3
        # Each near the frame after the one its request came with (the
        # decoder holds up to two frames back for the B-frames).
        for request_index, pts_ms in zip((15, 45, 75), forced, strict=True):
            assert abs(pts_ms - frames[request_index + 1][1]) <= 4 * 34

    asyncio.run(run())


def test_a_frame_that_does_not_decode_makes_the_thread_wait_for_a_source_keyframe():
    config, frames = video()
    transcoding = H264Transcoding()
    assert transcoding.transcode(*frames[0], False) == [], "not configured yet"
    transcoding.configure(config)
    out = []
    for index, frame in enumerate(frames[:40]):
        if index == 10:
            frame = (b"\x00\x00\x00\x01\x41" + bytes(range(256)) * 4, *frame[1:])
        out.append(transcoding.transcode(*frame, False))
    assert out[9] and not any(out[10:30]), "nothing until the source keyframe at 30"
    assert any(units for units in out[30:])


def transcode_four_seconds_of_aac(on_packet) -> None:
    """Four seconds of ffmpeg's AAC through an OpusTranscoder on a loop of
    this thread; `on_packet` gets each Opus packet."""
    tags = [t for t in flv_tags(ffmpeg_flv(seconds=4)) if t.tag_type == AUDIO]

    async def run():
        opus = OpusTranscoder(on_packet)
        opus.configure(bytes(tags[0].body[2:]))
        for tag in tags[1:]:
            opus.push(bytes(tag.body[2:]), tag.timestamp)
            await asyncio.sleep(0)
        await until(lambda: opus.pending == 0)
        opus.close()

    asyncio.run(run())


def test_opus_packets_come_back_on_the_loop_in_order():
    out = []
    transcode_four_seconds_of_aac(lambda packet: out.append((packet.pts, threading.get_ident())))
    assert {thread for _, thread in out} == {threading.get_ident()}  # the loop's thread, not the transcoder's
    pts = [p for p, _ in out]
    assert pts == list(range(pts[0], pts[0] + OPUS_FRAME_SAMPLES * len(pts), OPUS_FRAME_SAMPLES))
    assert len(pts) >= 190  # 4 s of 20 ms packets, less the codecs' delay


def test_a_node_may_send_longer_opus_frames_for_fewer_packets():
    packets = []
    use_opus_frame_ms(60)
    try:
        transcode_four_seconds_of_aac(packets.append)
    finally:
        use_opus_frame_ms(OPUS_FRAME_MS)
    step = OPUS_CLOCK_HZ * 60 // 1000
    pts = [packet.pts for packet in packets]
    assert pts == list(range(pts[0], pts[0] + step * len(pts), step))
    assert 60 <= len(pts) <= 67  # 4 s of 60 ms packets, less the codecs' delay
    # Each packet's TOC byte (RFC 6716 3.1) says how long it is: a decoder
    # (a browser's) needs nothing else to get 60 ms of sound from each.
    decoder = av.CodecContext.create("libopus", "r")
    samples = sum(frame.samples for packet in packets[5:10] for frame in decoder.decode(av.Packet(bytes(packet))))
    assert samples == 5 * step


def test_the_opus_frame_duration_is_one_rfc_7587_and_browsers_take():
    for frame_ms in (10, 30, 120):
        with pytest.raises(ValueError, match="Opus frame duration"):
            use_opus_frame_ms(frame_ms)


def test_the_conversion_thread_refuses_input_past_its_limit_and_hands_nothing_back_after_close():
    async def run():
        release, started = threading.Event(), threading.Event()
        out = []
        thread = ConversionThread("test-conv", 3, out.append)

        def job(value):
            started.set()
            release.wait(WAIT_SECONDS)
            if value == "boom":
                raise RuntimeError("a failed job is logged, not fatal")
            return [value, value * 2]

        assert thread.submit(job, 1) and thread.submit(job, "boom") and thread.submit(job, 3)
        assert not thread.submit(job, 4), "past max_pending"
        assert thread.pending == 3
        release.set()
        await until(lambda: thread.pending == 0)
        assert out == [1, 2, 3, 6]
        release.clear()
        started.clear()
        assert thread.submit(job, 5)
        await until(started.is_set)  # running when the loop closes it
        thread.close()
        assert not thread.submit(job, 6), "closed"
        release.set()
        await until(lambda: thread.pending == 0)
        assert out == [1, 2, 3, 6], "nothing after close"

    asyncio.run(run())
