"""Adaptive bitrate for RTS (issue 18; livecenter/media/rts/abr.py, media.py).

Without sockets: a viewer of a stream and of its rendition, both published
in a real hub and sent through the fast path's writer into a fake socket,
keeps its RTP sequence numbers and timestamps continuous across a switch,
which happens at the rendition's keyframe and not before; a rendition that
ends sends its viewers back; a receiver report that shows a viewer cannot
keep up skips it to the next keyframe, and no one else. The ladder a
`{stream}_{group}.whep` URL names comes from the policy's template group.

With sockets (tests/test_rts_abr_network.py has the aiortc viewer behind a
rate-limited relay)."""

from __future__ import annotations

import asyncio
import struct
from types import SimpleNamespace

import pytest

from livecenter.media.flv import AUDIO, VIDEO
from livecenter.media.hub import StreamHub
from livecenter.media.policy import MemoryPolicy, RenditionGroup, StreamKey
from livecenter.media.renditions import RenditionSpec
from livecenter.media.rts.abr import RtsAbr, abr_ladder, live_step
from livecenter.media.rts.bitrate import DOWN_HOLD_SECONDS, SWITCH_COOLDOWN_SECONDS
from livecenter.media.rts.fastpath import RtpStreamParameters, RtpWriter
from livecenter.media.rts.media import VIEWER_SKIP_FRACTION_LOST, FastTrackSender, RtsSource
from tests.test_mpegts import ffmpeg_flv, flv_tags

KEY = StreamKey("push.test", "live", "cam1")
LOW = StreamKey("push.test", "live", "cam1_lld")
KINDS = {AUDIO: "audio", VIDEO: "video"}
MARKER = 0x80


class FakeTransport:
    """What FastTrackSender sends on: the packets, unprotected (protect is bytes)."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def sendto(self, data: bytes, address) -> None:
        self.sent.append(data)


def service(hub):
    closed = []
    node = SimpleNamespace(hub=hub, config=SimpleNamespace(rts_fast_path=True))
    return SimpleNamespace(node=node, source_closed=closed.append, closed=closed)


def fast_viewer(source: RtsSource):
    viewer = source.add_viewer(may_transcode=False)
    viewer.video.fast_wanted = True
    transport = FakeTransport()
    writer = RtpWriter(RtpStreamParameters(ssrc=1234, payload_type=96), 40_000, 123_456)
    viewer.start_fast("video", FastTrackSender(writer, bytes, None, (transport, ("127.0.0.1", 9))))
    return viewer, transport


def video_tags(size: str):
    return [t for t in flv_tags(ffmpeg_flv(seconds=4, size=size)) if t.tag_type == VIDEO]


def headers(packets: list[bytes]) -> list[tuple[int, int, bool]]:
    """(sequence number, timestamp, marker) of each RTP packet."""
    return [(seq, ts, bool(pt & MARKER)) for pt, seq, ts in (struct.unpack_from("!BHL", p, 1) for p in packets)]


def consecutive(packets: list[bytes]) -> bool:
    """Whether the packets' sequence numbers follow each other (mod 2^16)."""
    sequence = [seq for seq, _, _ in headers(packets)]
    return all((b - a) % 65536 == 1 for a, b in zip(sequence, sequence[1:], strict=False))


def is_keyframe_start(packet: bytes) -> bool:
    """An RTP H.264 payload (RFC 6184) that starts an IDR picture's access
    unit: a STAP-A or FU-A start holding SPS (7) or IDR (5)."""
    payload = packet[12:]
    nal_type = payload[0] & 0x1F
    if nal_type == 24:  # STAP-A: the first NAL unit's header after its 2-byte size
        return payload[3] & 0x1F in (5, 7)
    if nal_type == 28:  # FU-A: the start bit and the fragmented unit's type
        return bool(payload[1] & 0x80) and payload[1] & 0x1F in (5, 7)
    return nal_type in (5, 7)


def test_a_switch_waits_for_the_renditions_keyframe_and_keeps_the_rtp_continuous():
    async def run():
        hub = StreamHub()
        top, low = hub.publish(KEY), hub.publish(LOW)
        top_tags, low_tags = video_tags("320x240"), video_tags("160x120")
        source = RtsSource(service(hub), KEY)
        rendition = RtsSource(service(hub), LOW)
        viewer, transport = fast_viewer(source)
        pairs = list(zip(top_tags, low_tags, strict=False))
        for top_tag, low_tag in pairs[:45]:  # 1.5 s: a keyframe of each at 0 and 1 s
            top.push("video", top_tag.timestamp, top_tag.body)
            low.push("video", low_tag.timestamp, low_tag.body)
        before = len(transport.sent)
        assert before > 0 and viewer.video_source is source
        # Asked to switch mid-GOP: it keeps the top rendition's frames until the
        # rendition's keyframe at 2 s.
        viewer.switch_video(rendition)
        assert viewer in rendition.switching and viewer.switching_to is rendition
        switch_at = first = keyframe = None
        for top_tag, low_tag in pairs[45:]:
            top.push("video", top_tag.timestamp, top_tag.body)
            mark = len(transport.sent)
            low.push("video", low_tag.timestamp, low_tag.body)
            if switch_at is None and viewer.video_source is rendition:
                switch_at, first = low_tag.timestamp, mark
                keyframe = rendition.video_history.get(rendition.gop.frames[0].indexes.start)
        assert switch_at is not None and switch_at % 1000 < 40, "at the rendition's keyframe (1 s GOP)"
        # The first packet after the switch is the rendition's keyframe's first.
        assert keyframe.keyframe and transport.sent[first][12:] == keyframe.payload
        assert is_keyframe_start(transport.sent[first])
        assert viewer.video_source is rendition and viewer.switching_to is None
        assert viewer in rendition.video_viewers and viewer not in source.video_viewers
        assert viewer in source.viewers, "its stream still carries its audio and its life"
        assert viewer.rendition_switches == 1 and viewer.skips == 0
        assert source.subscription.viewers == 0 and rendition.subscription.viewers == 1
        # What the node's samples count (stats.py): an RTS viewer on the rendition it watches.
        assert hub.stream(LOW).viewers() == {"rts": 1} and hub.stream(KEY).viewers() == {"rts": 0}
        sent = headers(transport.sent)
        assert consecutive(transport.sent), "no gap, no repeat"
        # Timestamps never go back, and step by about a frame (33 or 34 ms
        # of FLV time, at 90 kHz) between frames, the switch too.
        frames = [ts for _, ts, marker in sent if marker]
        steps = [(b - a) % (1 << 32) for a, b in zip(frames, frames[1:], strict=False)]
        assert all(2900 <= step <= 3100 for step in steps), sorted(set(steps))
        viewer.close()
        assert rendition.closed, "a rendition no viewer uses any more lets go of its stream"
        assert source.closed

    asyncio.run(run())


def test_a_rendition_that_ends_sends_its_viewers_back_to_the_stream():
    async def run():
        hub = StreamHub(reconnect_grace_seconds=0)  # an unpublish ends the stream's viewers at once
        top, low = hub.publish(KEY), hub.publish(LOW)
        top_tags, low_tags = video_tags("320x240"), video_tags("160x120")
        source = RtsSource(service(hub), KEY)
        rendition = RtsSource(service(hub), LOW)
        viewer, transport = fast_viewer(source)
        viewer.switch_video(rendition)
        for top_tag, low_tag in zip(top_tags[:40], low_tags[:40], strict=False):
            top.push("video", top_tag.timestamp, top_tag.body)
            low.push("video", low_tag.timestamp, low_tag.body)
        assert viewer.video_source is rendition
        low.close()  # the transcode stopped
        assert rendition.closed
        assert viewer.video_source is source and viewer in source.video_viewers
        assert not viewer.ended.is_set()
        count = len(transport.sent)
        for tag in top_tags[40:]:
            top.push("video", tag.timestamp, tag.body)
        assert is_keyframe_start(transport.sent[count]), "back at the stream's next keyframe"
        assert consecutive(transport.sent)
        viewer.close()

    asyncio.run(run())


def test_a_viewer_whose_reports_show_it_cannot_keep_up_is_skipped_to_the_next_keyframe():
    async def run():
        hub = StreamHub()
        top = hub.publish(KEY)
        tags = video_tags("320x240")
        source = RtsSource(service(hub), KEY)
        slow, slow_transport = fast_viewer(source)
        other, other_transport = fast_viewer(source)
        slow_sent, other_sent = slow_transport.sent, other_transport.sent
        for tag in tags[:45]:
            top.push("video", tag.timestamp, tag.body)
        slow.loss_reported(VIEWER_SKIP_FRACTION_LOST / 2)  # lossy, but retransmission copes
        assert slow.skips == 0
        slow.loss_reported(VIEWER_SKIP_FRACTION_LOST)
        assert slow.skips == 1 and slow.need_keyframe
        count, others = len(slow_sent), len(other_sent)
        for tag in tags[45:55]:  # the rest of the GOP: none to the slow viewer
            top.push("video", tag.timestamp, tag.body)
        assert len(slow_sent) == count and len(other_sent) > others
        for tag in tags[55:]:
            top.push("video", tag.timestamp, tag.body)
        assert is_keyframe_start(slow_sent[count]), "it resumes at the next keyframe"
        assert other.skips == 0 and other.dropped == 0
        slow.close()
        other.close()

    asyncio.run(run())


def test_a_group_url_names_the_ladder_lowest_first_with_the_stream_on_top():
    policy = MemoryPolicy(
        groups={
            ("push.test", "live", "abr"): RenditionGroup(
                "abr", (RenditionSpec("lhd", 1500, short_side=648), RenditionSpec("lld", 470, short_side=360))
            )
        }
    )

    async def run():
        ladder = await abr_ladder(policy, StreamKey("push.test", "live", "cam1_abr"))
        assert [k.stream for k in ladder.keys] == ["cam1_lld", "cam1_lhd", "cam1"]
        assert ladder.template_ids == ("lld", "lhd")
        assert ladder.nominal_bps[:2] == (470_000, 1_500_000)
        assert ladder.group.stream == "cam1_abr"
        assert await abr_ladder(policy, KEY) is None, "no suffix: a stream"
        assert await abr_ladder(policy, StreamKey("push.test", "live", "cam1_lld")) is None, "a template, not a group"
        assert await abr_ladder(policy, StreamKey("push.test", "other", "cam1_abr")) is None, "another app's"
        assert await abr_ladder(SimpleNamespace(), StreamKey("push.test", "live", "cam1_abr")) is None

    asyncio.run(run())


@pytest.mark.parametrize("fraction", [0.0, 0.02, VIEWER_SKIP_FRACTION_LOST - 0.01])
def test_loss_retransmission_repairs_skips_no_one(fraction):
    async def run():
        hub = StreamHub()
        hub.publish(KEY)
        source = RtsSource(service(hub), KEY)
        viewer, _ = fast_viewer(source)
        viewer.loss_reported(fraction)
        assert viewer.skips == 0
        viewer.close()

    asyncio.run(run())


class AbrRig:
    """A viewer of `cam1_abr` with its RtsAbr on a fake clock, the renditions
    asked for recorded, and the sources the node would make."""

    def __init__(self, hub: StreamHub, ladder) -> None:
        self.requested: list[tuple[StreamKey, str]] = []
        self.sources: dict[StreamKey, RtsSource] = {}
        node = SimpleNamespace(
            hub=hub,
            config=SimpleNamespace(rts_fast_path=True),
            request_rendition=lambda source, template: self.requested.append((source, template)),
        )
        self.rts = SimpleNamespace(node=node, source_closed=lambda source: None, source=self.source_of)
        self.viewer, _ = fast_viewer(self.source_of(KEY))
        self.abr = self.viewer.abr = RtsAbr(self.rts, self.viewer, ladder)
        self.clock = [0.0]
        self.abr._loop = SimpleNamespace(time=lambda: self.clock[0])  # a fake clock for the controller

    def source_of(self, key: StreamKey) -> RtsSource:
        if key not in self.sources or self.sources[key].closed:
            self.sources[key] = RtsSource(self.rts, key)
        return self.sources[key]

    def lose(self, fraction: float, seconds: float) -> None:
        """Receiver reports of `fraction` lost every quarter second for `seconds`."""
        end = self.clock[0] + seconds
        while self.clock[0] <= end:
            self.viewer.loss_reported(fraction)
            self.clock[0] += 0.25


def group_ladder(*specs: RenditionSpec):
    policy = MemoryPolicy(groups={("push.test", "live", "abr"): RenditionGroup("abr", specs)})
    return abr_ladder(policy, StreamKey("push.test", "live", "cam1_abr"))


def test_the_controller_is_carried_out_on_a_live_rendition_and_one_not_live_is_asked_for():
    async def run():
        hub = StreamHub()
        top = hub.publish(KEY)
        rig = AbrRig(hub, await group_ladder(RenditionSpec("lld", 300)))
        viewer, abr = rig.viewer, rig.abr
        for tag in video_tags("320x240")[:10]:
            top.push("video", tag.timestamp, tag.body)
        rig.lose(0.3, DOWN_HOLD_SECONDS + 0.5)  # too much loss: down, but cam1_lld is not live
        assert rig.requested == [(KEY, "lld")], "asked for again"
        assert viewer.switching_to is None and viewer.video_source.key == KEY and abr.controller.index == 1
        low = hub.publish(LOW)
        rig.lose(0.3, SWITCH_COOLDOWN_SECONDS + DOWN_HOLD_SECONDS + 0.5)
        assert viewer.switching_to is not None and viewer.switching_to.key == LOW
        pending = viewer.switching_to
        rig.lose(0.3, 1.0)
        assert viewer.switching_to is pending, "one pending switch, not a new one each report"
        for tag in video_tags("160x120")[:5]:
            low.push("video", tag.timestamp, tag.body)
        assert viewer.video_source is pending and abr.rendition == LOW
        viewer.close()
        assert pending.closed and rig.sources[KEY].closed

    asyncio.run(run())


@pytest.mark.parametrize(
    ("target", "current", "live", "expected"),
    [
        (0, 2, {0, 1, 2}, 0),  # live: the target
        (0, 1, {1, 2}, 1),  # down, nothing live at or below the target: stay, never up to the top
        (0, 2, {2}, 2),
        (1, 3, {0, 3}, 0),  # down: the nearest live one below the target
        (1, 3, {0, 2, 3}, 0),  # not one above the target, though nearer the current
        (2, 0, {0, 1}, 1),  # up: the nearest live one on the way
        (2, 1, {0, 1}, 1),  # up, nothing live above the current: stay, never down
        (1, 1, {0, 2}, 1),  # the current itself not live: stay (its end sends the viewer back)
    ],
)
def test_a_rendition_not_live_is_replaced_by_one_on_the_way_from_the_current(target, current, live, expected):
    assert live_step(target, current, live) == expected


def test_a_viewer_on_the_lowest_whose_publisher_reconnects_is_not_sent_up_while_losing():
    """The bug seen on a loaded machine: a viewer switched down to the lowest
    rendition, losing two thirds of its packets, was sent to the top because
    its rendition was briefly not live (its publisher within the hub's
    reconnect grace) and the top was then the nearest live one."""

    async def run():
        hub = StreamHub(reconnect_grace_seconds=60)
        top, low = hub.publish(KEY), hub.publish(LOW)
        rig = AbrRig(hub, await group_ladder(RenditionSpec("lld", 300)))
        viewer, abr = rig.viewer, rig.abr
        for tag in video_tags("320x240")[:10]:
            top.push("video", tag.timestamp, tag.body)
        rig.lose(0.68, DOWN_HOLD_SECONDS + 0.5)
        assert viewer.switching_to is not None and viewer.switching_to.key == LOW
        for tag in video_tags("160x120")[:5]:
            low.push("video", tag.timestamp, tag.body)
        assert abr.rendition == LOW and abr.controller.index == 0
        low.close("reconnecting")  # its viewers wait for the next publisher
        assert not hub.is_live(LOW) and not rig.sources[LOW].closed
        rig.lose(0.68, 3 * (SWITCH_COOLDOWN_SECONDS + DOWN_HOLD_SECONDS))
        assert (KEY, "lld") in rig.requested, "asked for again"
        assert abr.rendition == LOW and viewer.switching_to is None, "stays: never up while losing"
        assert abr.controller.index == 0
        viewer.close()

    asyncio.run(run())
