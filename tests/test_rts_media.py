"""The shared RTS source (livecenter/media/rts/media.py) fed by a real hub
with a stream the ffmpeg CLI makes in the test, without sockets or browsers:
joiners start at the latest keyframe, a viewer that does not read is bounded
and skipped to a keyframe without holding back another, audio is converted
once for all viewers, and B-frames switch the source to one transcode."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import av

from livecenter.media.flv import AUDIO, VIDEO
from livecenter.media.hub import StreamHub
from livecenter.media.policy import StreamKey
from livecenter.media.rts import media
from livecenter.media.rts.media import PASSTHROUGH, TRANSCODE, VIEWER_MAX_VIDEO_FRAMES, RtsSource
from tests.test_mpegts import ffmpeg_flv, flv_tags

KEY = StreamKey("push.test", "live", "cam1")
KINDS = {AUDIO: "audio", VIDEO: "video"}


def service(hub):
    closed = []
    return SimpleNamespace(node=SimpleNamespace(hub=hub), source_closed=closed.append, closed=closed)


def tags(bframes=0):
    return [t for t in flv_tags(ffmpeg_flv(seconds=4, bframes=bframes)) if t.tag_type in KINDS]


async def settle(source, seconds=10.0):
    """Let the conversion threads finish what they were given."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        workers = [w for w in (source.opus, source.transcoder) if w is not None]
        if all(w.pending == 0 for w in workers):
            return
        await asyncio.sleep(0.02)


def keyframe(packet) -> bool:
    data = bytes(packet)
    return b"\x00\x00\x00\x01\x65" in data or b"\x00\x00\x01\x65" in data


def test_it_starts_a_joiner_at_the_latest_keyframe_and_bounds_a_viewer_that_does_not_read():
    async def run():
        hub = StreamHub()
        publication = hub.publish(KEY)
        stream_tags = tags()
        # 1.5 s in: the GOP cache holds the frames since the keyframe at 1 s.
        head = [t for t in stream_tags if t.timestamp <= 1500]
        for tag in head:
            publication.push(KINDS[tag.tag_type], tag.timestamp, tag.body)
        source = RtsSource(service(hub), KEY)
        reader = source.add_viewer(may_transcode=False)
        idle = source.add_viewer(may_transcode=False)
        joined = list(reader.video.queue)
        assert joined and keyframe(joined[0]), "a joiner starts at the latest keyframe"
        assert not any(keyframe(p) for p in joined[1:])
        # One RTP tick apart, ending at the newest frame's time.
        assert [p.pts for p in joined] == list(range(joined[-1].pts - len(joined) + 1, joined[-1].pts + 1))
        assert len(joined) < 30
        taken = []
        for tag in stream_tags[len(head) :]:
            publication.push(KINDS[tag.tag_type], tag.timestamp, tag.body)
            while reader.video.queue:
                taken.append(await reader.video.recv())
        await settle(source)
        # The reader got every frame; the idle viewer's queue stayed bounded,
        # it was skipped and starts again at a keyframe.
        last_keyframe = max(t.timestamp for t in head if t.tag_type == VIDEO and t.body[0] >> 4 == 1)
        video_frames = sum(
            1 for t in stream_tags if t.tag_type == VIDEO and t.body[1] == 1 and t.timestamp >= last_keyframe
        )
        assert reader.dropped == 0 and reader.skips == 0
        assert source.video_units == video_frames
        assert len(idle.video.queue) <= VIEWER_MAX_VIDEO_FRAMES
        assert idle.skips >= 1 and idle.dropped > 0
        assert keyframe(idle.video.queue[0])
        # Audio: one Opus encoder for both, the same packets to each.
        assert source.audio_packets > 100
        assert [id(p) for p in reader.audio.queue][-10:] == [id(p) for p in idle.audio.queue][-10:]
        reader.close()
        idle.close()
        assert source.closed and source.subscription.ended

    asyncio.run(run())


def test_it_drops_the_cached_audio_a_new_source_is_handed():
    async def run():
        hub = StreamHub()
        publication = hub.publish(KEY)
        for tag in tags():
            if tag.timestamp <= 1900:
                publication.push(KINDS[tag.tag_type], tag.timestamp, tag.body)
        source = RtsSource(service(hub), KEY)
        viewer = source.add_viewer(may_transcode=False)
        await settle(source)
        assert source.audio_packets == 0 and not viewer.audio.queue
        source.close()

    asyncio.run(run())


def test_it_transcodes_b_frames_once_for_all_viewers():
    async def run():
        hub = StreamHub()
        publication = hub.publish(KEY)
        source = RtsSource(service(hub), KEY)
        first = source.add_viewer(may_transcode=True)
        refused = source.add_viewer(may_transcode=False)
        for tag in tags(bframes=2):
            publication.push(KINDS[tag.tag_type], tag.timestamp, tag.body)
            await asyncio.sleep(0)
        await settle(source, 60)
        assert source.mode == TRANSCODE
        assert refused.ended.is_set(), "a viewer whose domain does not transcode is ended"
        packets = list(first.video.queue)
        assert packets and keyframe(packets[0])
        decoder = av.CodecContext.create("h264", "r")
        frames = []
        for packet in packets:
            frames += decoder.decode(av.Packet(bytes(packet)))
            # Out in presentation order: no B-frames left.
        assert len(frames) >= len(packets) - 2
        pts = [p.pts for p in packets]
        assert pts == sorted(pts)
        # A keyframe request makes the shared encoder emit an IDR soon.
        first.video.queue.clear()
        first.video.request_keyframe()
        assert first.need_keyframe
        source.close()

    asyncio.run(run())


def test_it_passes_through_a_stream_without_b_frames():
    async def run():
        hub = StreamHub()
        publication = hub.publish(KEY)
        source = RtsSource(service(hub), KEY)
        viewer = source.add_viewer(may_transcode=True)
        for tag in tags():
            publication.push(KINDS[tag.tag_type], tag.timestamp, tag.body)
        assert source.mode == PASSTHROUGH and source.transcoder is None
        assert keyframe(viewer.video.queue[0])
        source.close()
        assert media.RtsSource is RtsSource

    asyncio.run(run())


def test_its_shared_subscription_names_its_viewers_for_unique_counts():
    async def run():
        hub = StreamHub()
        hub.publish(KEY)
        source = RtsSource(service(hub), KEY)
        first = source.add_viewer(may_transcode=False, identity="00000000000000a1")
        again = source.add_viewer(may_transcode=False, identity="00000000000000a1")  # a second tab
        other = source.add_viewer(may_transcode=False, identity="00000000000000b2")
        assert set(source.subscription.identities) == {"00000000000000a1", "00000000000000b2"}
        source.remove(first)
        assert set(source.subscription.identities) == {"00000000000000a1", "00000000000000b2"}
        source.remove(again)
        source.remove(again)  # twice: no harm
        assert set(source.subscription.identities) == {"00000000000000b2"}
        assert source.subscription.viewers == 1
        source.remove(other)

    asyncio.run(run())
