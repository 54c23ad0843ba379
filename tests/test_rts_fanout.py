"""One native call per frame for all of a track's viewers (issue 18, step 5;
livecenter/media/rts/fanout.py, `Group` in _rtssend.c) against each viewer
sent on its own (media.FastTrackSender) and against the pure-Python
fallback: the same datagrams on the wire, byte for byte, with UDP GSO on
and off; the writers' bookkeeping (sequence numbers, NACK answers, sender
reports) the same after a stretch in a group; a viewer leaving and joining
again (skipped to a keyframe, switched to another rendition and back,
its kernel buffer full, ICE nominating another pair); through a real hub
and RtsSource with real sockets, the node's own path, the same datagrams
with and without the native sender."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from types import SimpleNamespace

import pytest

from livecenter.media.flv import VIDEO
from livecenter.media.hub import StreamHub
from livecenter.media.policy import StreamKey
from livecenter.media.rts import fanout, media, srtp
from livecenter.media.rts.fanout import SWEEP_FRAMES, FanoutGroup
from livecenter.media.rts.fastpath import FastPathError, RtpPacketHistory, RtpWriter
from livecenter.media.rts.media import VIEWER_SKIP_FRACTION_LOST, FastTrackSender, RtsSource
from livecenter.media.rts.threads import OPUS_TIME_BASE, av_packet
from tests.test_mpegts import ffmpeg_flv, flv_tags
from tests.test_rts_fastpath import _libsrtp_receiver
from tests.test_rts_native import (
    PARAMETERS,
    _BufferingTransport,
    _drain,
    _Dtls,
    _frames_of,
    _history,
    _Pair,
    _receiver,
)

needs_native = pytest.mark.skipif(srtp.native is None, reason="the native sender is not built (make native)")

KEY = StreamKey("push.test", "live", "cam1")
LOW = StreamKey("push.test", "live", "cam1_lld")


@pytest.fixture(params=["gso", "no-gso"])
def gso(request):
    """The native sender's UDP GSO on, then off (restored after)."""
    if srtp.native is None:
        yield None
        return
    before = srtp.native.gso()
    srtp.native.gso(request.param == "gso")
    yield request.param
    srtp.native.gso(before)


async def _senders(count: int, key_and_salt: bytes, implementation: str, first_sequence: int = 65000):
    """`count` FastTrackSenders on asyncio datagram transports, each to a
    receiving socket of its own, writers starting at different sequence numbers."""
    loop = asyncio.get_running_loop()
    senders, receivers = [], []
    for i in range(count):
        receiver = _receiver()
        transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        address = receiver.getsockname()
        protect = srtp.protector(srtp.AEAD_AES_256_GCM, key_and_salt, implementation).protect
        writer = RtpWriter(PARAMETERS, first_sequence + 200 * i, 1000 * i, 7 * i)
        senders.append(FastTrackSender(writer, protect, _Dtls(_Pair(transport, address)), (transport, address)))
        receivers.append(receiver)
    return senders, receivers


def _close(senders, receivers) -> None:
    for sender in senders:
        sender.transport.close()
    for receiver in receivers:
        receiver.close()


@needs_native
def test_a_group_sends_each_viewer_what_it_would_have_been_sent_on_its_own(gso):
    """Three viewers in a group and three on their own, the same keys and
    sequence numbers: the same datagrams, across the sequence-number wrap,
    for frames of 1 to 150 packets; after it the writers answer NACKs and
    report alike, leave the group and go on alike."""
    key_and_salt = os.urandom(44)

    async def run():
        grouped, grouped_in = await _senders(3, key_and_salt, "native")
        alone, alone_in = await _senders(3, key_and_salt, "native")
        history = RtpPacketHistory()
        for count in (3, 1, 6, 150, 6, 1, 64, 65, 2):
            _history(1, count, history)
        frames = _frames_of(history)
        group = FanoutGroup()
        for sender in grouped + alone:  # each sends the first frame on its own, then joins
            sender.send(history, frames[0], 0x123456, 7, 100)
        for sender in grouped:
            assert not group.join(sender, RtpPacketHistory()), "not the history it sends from"
        for sender in grouped:
            assert group.join(sender, history)
            assert not group.join(sender, history), "once"
        assert len(group) == 3 and all(s.group is group for s in grouped)
        _send_all(group, alone, history, frames[1:])
        await asyncio.sleep(0)
        for a, b in zip(grouped_in, alone_in, strict=True):
            got = _drain(a)
            assert len(got) == history.next_index and got == _drain(b)
        for a, b in zip(grouped, alone, strict=True):
            assert a.report() == b.report()
            assert a.writer.sequence_number == b.writer.sequence_number
            lost = [(a.writer.sequence_number - back) % 65536 for back in (1, 5, 150, 200)]
            assert a.writer.resend(lost) == b.writer.resend(lost)
        group.leave(grouped[1])
        assert grouped[1].group is None and len(group) == 2
        _history(1, 4, history)
        last = _frames_of(history)[-1]
        group.send(history, last, 0x123456, 8, 400)
        for sender in [grouped[1], *alone]:
            sender.send(history, last, 0x123456, 8, 400)
        await asyncio.sleep(0)
        got = [_drain(r) for r in grouped_in]
        assert got == [_drain(r) for r in alone_in]
        assert [len(g) for g in got] == [4, 4, 4]
        receiver = _libsrtp_receiver(srtp.AEAD_AES_256_GCM, key_and_salt)
        header_bytes = grouped[0].writer.template.header_bytes
        assert [receiver.unprotect(d)[header_bytes:] for d in got[0]] == [history.get(i).payload for i in last]
        group.clear()
        assert not group and all(s.group is None for s in grouped)
        _close(grouped + alone, grouped_in + alone_in)

    asyncio.run(run())


def _send_all(group, alone, history, frames) -> None:
    for indexes in frames:
        size = sum(len(history.get(i).payload) for i in indexes)
        assert group.send(history, indexes, 0x123456, 7, size) == len(group)
        for sender in alone:
            sender.send(history, indexes, 0x123456, 7, size)


@needs_native
def test_a_group_starts_over_when_the_frames_do_not_follow_on():
    async def run():
        senders, receivers = await _senders(2, os.urandom(44), "native")
        history = _history(3, 2)
        group = FanoutGroup()
        for sender in senders:
            sender.send(history, range(0, 2), 0, 0, 0)
            assert group.join(sender, history)
        assert group.send(history, range(4, 6), 0, 0, 0) == 0, "frame 2-3 was skipped"
        assert not group and all(s.group is None for s in senders)
        assert all(s.writer.next_index == 2 for s in senders), "nothing was claimed for them"
        _close(senders, receivers)

    asyncio.run(run())


@needs_native
def test_a_member_whose_kernel_buffer_fills_leaves_with_the_rest_in_asyncios_buffer():
    """An AF_UNIX datagram pair (its queue bounded in datagrams): the
    group sends what fits, hands the rest, protected, to the viewer's
    transport, and the viewer leaves; together they are the packets the
    Python path would have sent."""
    key_and_salt = os.urandom(44)
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setblocking(False)
    peer.setblocking(False)
    try:
        transport = _BufferingTransport(ours)
        transport.buffered = 0
        protect = srtp.protector(srtp.AEAD_AES_256_GCM, key_and_salt, "native").protect
        dtls = _Dtls(_Pair(transport, None))
        sender = FastTrackSender(RtpWriter(PARAMETERS, 100, 0), protect, dtls, (transport, None))
        sender.fd, sender.sockaddr = ours.fileno(), b""  # connected: no address
        history = _history(2, 12)
        sender.writer.claim(history, range(0, 12))
        group = FanoutGroup()
        assert group.join(sender, history)
        while True:
            try:
                ours.send(b"filler")
            except BlockingIOError:
                break
        fillers = len(_drain(peer))
        for _ in range(fillers - 3):
            ours.send(b"filler")
        assert group.send(history, range(12, 24), 0, 0, 1200) == 1
        assert len(group) == 1 and sender.group is group, "a member until the next send: not sent this frame again"
        sent = [d for d in _drain(peer) if d != b"filler"]
        assert sent and transport.sent  # what fitted (the queue is bounded in datagrams and bytes), the rest
        python = srtp.protector(srtp.AEAD_AES_256_GCM, key_and_salt, "libsrtp")
        again = RtpWriter(PARAMETERS, 100, 0)
        expected = [bytes(python.protect(again.write(history, index))) for index in range(24)]
        assert sent + transport.sent == expected[12:]
        assert sender.writer.sequence_number == again.sequence_number and sender.report()[2] == 24
        _history(1, 3, history)
        assert group.send(history, range(24, 27), 0, 0, 300) == 0, "gone at the next send"
        assert not group and sender.group is None and sender.writer.next_index == 24
    finally:
        ours.close()
        peer.close()


@needs_native
def test_a_member_whose_ice_pair_changes_leaves_at_the_next_sweep():
    async def run():
        senders, receivers = await _senders(2, os.urandom(44), "native")
        history = _history(SWEEP_FRAMES + 2, 1)
        group = FanoutGroup()
        for sender in senders:
            sender.send(history, range(0, 1), 0, 0, 0)
            assert group.join(sender, history)
        senders[0].dtls.nominate(_Pair(senders[0].transport, senders[0].address))  # another pair
        for index in range(1, SWEEP_FRAMES + 1):
            assert group.send(history, range(index, index + 1), 0, 0, 0) == 2
        assert senders[0].group is group, "still a member for the rest of this frame"
        assert group.send(history, range(SWEEP_FRAMES + 1, SWEEP_FRAMES + 2), 0, 0, 0) == 1
        assert senders[0].group is None and senders[1].group is group
        assert senders[0].ready() and senders[0].writer.next_index == SWEEP_FRAMES + 1
        _close(senders, receivers)

    asyncio.run(run())


def test_without_the_native_sender_nobody_joins(monkeypatch):
    async def run():
        senders, receivers = await _senders(1, os.urandom(44), "libsrtp")
        history = _history(2, 2)
        group = FanoutGroup()
        senders[0].send(history, range(0, 2), 0, 0, 0)
        assert not group.join(senders[0], history), "a Python protector: the per-viewer path"
        monkeypatch.setattr(fanout.srtp, "native", None)
        assert FanoutGroup().native is None
        _close(senders, receivers)

    asyncio.run(run())


def test_advance_keeps_the_books_claim_keeps():
    history = _history(5, 3)
    claimed, advanced = RtpWriter(PARAMETERS, 65530, 99), RtpWriter(PARAMETERS, 65530, 99)
    for writer in (claimed, advanced):
        writer.claim(history, range(0, 3))
    claimed.claim(history, range(3, 15))
    advanced.advance(history, 12, history.get(14).timestamp)
    assert claimed.sequence_number == advanced.sequence_number
    assert claimed.packets == advanced.packets and claimed.last_timestamp == advanced.last_timestamp
    lost = [(claimed.sequence_number - back) % 65536 for back in range(1, 16)]
    assert claimed.resend(lost) == advanced.resend(lost)
    with pytest.raises(FastPathError, match="follows on"):
        advanced.advance(RtpPacketHistory(), 1, 0)


# --- through the hub and RtsSource: the node's own path ------------------------------------


def _service(hub):
    node = SimpleNamespace(hub=hub, config=SimpleNamespace(rts_fast_path=True))
    return SimpleNamespace(node=node, source_closed=lambda source: None)


async def _fast_viewer(source: RtsSource, key_and_salt: bytes, implementation: str, index: int):
    """A viewer whose video and audio are on the fast path, each on a socket of its own."""
    viewer = source.add_viewer(may_transcode=False)
    receivers = []
    for kind in ("video", "audio"):
        getattr(viewer, kind).fast_wanted = True
        (sender,), (receiver,) = await _senders(1, key_and_salt, implementation, 30_000 + 1000 * index)
        viewer.start_fast(kind, sender)
        receivers.append(receiver)
    return viewer, receivers


def _headers(datagrams: list[bytes]) -> list[tuple[int, int, bool]]:
    return [(seq, ts, bool(pt & 0x80)) for pt, seq, ts in (struct.unpack_from("!BHL", d, 1) for d in datagrams)]


def _video_tags(size: str):
    return [t for t in flv_tags(ffmpeg_flv(seconds=4, size=size)) if t.tag_type == VIDEO]


def _through_the_node(implementation: str, key_and_salt: bytes, top_tags, low_tags):
    """Three viewers of a stream through a real hub and RtsSource: one is
    skipped to a keyframe mid-GOP, one switches to a rendition and back.
    Returns each viewer's datagrams and its (frames, skips, switches), and
    how many were in the stream's fan-out group at each frame."""

    async def run():
        hub = StreamHub()
        top, low = hub.publish(KEY), hub.publish(LOW)
        source, rendition = RtsSource(_service(hub), KEY), RtsSource(_service(hub), LOW)
        viewers = [await _fast_viewer(source, key_and_salt, implementation, i) for i in range(3)]
        (steady, _), (skipped, _), (switcher, _) = viewers
        grouped = []
        for i, (top_tag, low_tag) in enumerate(zip(top_tags, low_tags, strict=False)):
            source._audio_out(av_packet(bytes([i % 256]) * 80, i * 960, OPUS_TIME_BASE))
            if i == 20:
                skipped.loss_reported(VIEWER_SKIP_FRACTION_LOST)
            if i == 40:
                switcher.switch_video(rendition)
            if i == 80:
                switcher.switch_video(source)
            top.push("video", top_tag.timestamp, top_tag.body)
            low.push("video", low_tag.timestamp, low_tag.body)
            grouped.append((len(source.video_group), len(source.audio_group)))
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)
        got = [[_drain(receiver) for receiver in receivers] for _, receivers in viewers]
        reports = [(v.video.fast.report(), v.audio.fast.report()) for v, _ in viewers]
        books = [(v.video_frames, v.skips, v.rendition_switches, v.dropped) for v, _ in viewers]
        for viewer, receivers in viewers:
            for track in (viewer.video, viewer.audio):
                track.fast.transport.close()
            viewer.close()
            for receiver in receivers:
                receiver.close()
        return got, reports, books, grouped

    return asyncio.run(run())


@pytest.fixture
def fixed_clock(monkeypatch):
    """abs-send-time from a clock that stands still: runs compare byte for byte."""
    monkeypatch.setattr(media.clock, "current_ntp_time", lambda: 0x1234_5678_9ABC_DEF0)


@needs_native
def test_through_the_node_the_group_sends_what_the_python_fallback_sends(gso, fixed_clock):
    """The same stream, viewers and keys with the native sender (its
    groups) and without it (every viewer on its own, pure Python): the same
    datagrams, byte for byte, and the same counts; with the native sender
    the viewers were in the stream's group but while skipped or away."""
    key_and_salt = os.urandom(44)
    top_tags, low_tags = _video_tags("320x240")[:110], _video_tags("160x120")[:110]
    got, reports, books, grouped = _through_the_node("native", key_and_salt, top_tags, low_tags)
    python = _through_the_node("libsrtp", key_and_salt, top_tags, low_tags)
    assert python[3] == [(0, 0)] * len(top_tags), "no group without a native session"
    assert [[len(d) for d in g] for g in got] == [[len(d) for d in g] for g in python[0]]
    assert got == python[0]
    assert reports == python[1] and books == python[2]
    assert books[1][1] == 1 and books[2][2] == 2, "one skip, two switches"
    video, audio = [v for v, _ in grouped], [a for _, a in grouped]
    assert max(video) == 3 and 1 <= min(video[5:]) < 3, "all in the group, some away a while"
    assert audio[1:] == [3] * (len(audio) - 1), "audio: everyone from the second packet on"
    assert all(len(audio) == len(top_tags) for _, audio in got)
    for datagrams, _ in got:
        sequence = [seq for seq, _, _ in _headers(datagrams)]
        assert all((b - a) % 65536 == 1 for a, b in zip(sequence, sequence[1:], strict=False))
        frames = [ts for _, ts, marker in _headers(datagrams) if marker]
        assert all(0 < (b - a) % (1 << 32) < 90_000 for a, b in zip(frames, frames[1:], strict=False))


def test_without_the_native_sender_the_node_sends_every_viewer_on_its_own(monkeypatch):
    monkeypatch.setattr(media.srtp, "native", None)
    key_and_salt = os.urandom(44)
    top_tags, low_tags = _video_tags("320x240")[:60], _video_tags("160x120")[:60]
    got, _, books, grouped = _through_the_node("libsrtp", key_and_salt, top_tags, low_tags)
    assert grouped == [(0, 0)] * len(top_tags)
    assert all(video and audio for video, audio in got) and books[0][0] >= 50


@needs_native
def test_a_member_that_leaves_during_a_frame_is_not_sent_that_frame_again():
    """Through RtsSource: a member whose send fails leaves the group, and
    the source's per-viewer loop for that frame does not send it again."""

    async def run():
        hub = StreamHub()
        top = hub.publish(KEY)
        source = RtsSource(_service(hub), KEY)
        key_and_salt = os.urandom(44)
        (failing, (video_in, _)), (other, _) = [await _fast_viewer(source, key_and_salt, "native", i) for i in range(2)]
        tags = _video_tags("320x240")
        for tag in tags[:5]:
            top.push("video", tag.timestamp, tag.body)
        assert len(source.video_group) == 2
        _drain(video_in)
        group, native = source.video_group, source.video_group.native
        slot = group.members[failing.video.fast].slot

        class Failing:  # the real group, reporting one member's send as failed
            def send(self, packets, abs_send_time):
                native.send(packets, abs_send_time)
                return [(slot, None, OSError("refused for the test"))]

            def add(self, *args):
                return native.add(*args)

            def remove(self, slot):
                return native.remove(slot)

        group.native = Failing()
        top.push("video", tags[5].timestamp, tags[5].body)
        group.native = native
        sent = len(source.video_history.packets(source.gop.frames[-1].indexes))
        await asyncio.sleep(0.01)
        assert len(_drain(video_in)) == sent, "the frame once, not twice"
        assert failing.video.fast.group is group and len(group) == 2
        top.push("video", tags[6].timestamp, tags[6].body)
        await asyncio.sleep(0.01)
        # The next frame on its own path (once), after which, steady, it joins again.
        assert len(_drain(video_in)) == len(source.video_history.packets(source.gop.frames[-1].indexes))
        assert failing.video.fast.group is group and other.video.fast.group is group
        for viewer in (failing, other):
            for track in (viewer.video, viewer.audio):
                track.fast.transport.close()
            viewer.close()

    asyncio.run(run())
