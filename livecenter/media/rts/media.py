"""One shared media source per stream for all its WebRTC viewers.

A stream's `RtsSource` is one hub subscriber (protocol "rts"). It turns each
frame into what RTP carries once, for every viewer:

- H.264 without B-frames passes through: each access unit becomes Annex B
  (rts/h264.py) in one `av.Packet` that every viewer's sender packetises.
- H.264 with B-frames, when the viewers' domains allow HTML5 auto-transcoding,
  is decoded and encoded again once (`VideoTranscoder`: libx264 Baseline,
  zerolatency, the seed's settings), in a thread of its own.
- AAC (and AC-3/E-AC-3, dolby.py, downmixed to stereo) is decoded and
  encoded to Opus once (`OpusTranscoder`), in a thread of its own:
  browsers' WebRTC plays neither.

The code that runs in those threads is in threads.py; everything here runs on
the event loop.

The conversions run in the engine's own threads rather than as Celery media
workers (DESIGN.md allows either): a worker would publish its output back
over RTMP and add its buffering and a network hop to every frame, which is
most of RTS's 80 ms budget; a thread adds one hand-off.

Every viewer (`RtsViewer`) has two bounded queues (its tracks) that its own
aiortc sender task empties, so a viewer that falls behind loses its queue and
waits for the next keyframe without holding back anyone else.

With the node's `rts_fast_path` on (issue 18), the source also cuts each
frame into RTP payloads once into an `RtpPacketHistory` per track
(fastpath.py), and once a viewer's DTLS handshake is done (session.py) its
tracks get a `FastTrackSender` instead: the source's one loop per frame
writes, protects (srtp.py) and sends that frame's packets for every such
viewer, with no queue, task or await per viewer; aiortc's sender task for
the track then gets nothing to send (its RTCP task stays, and reports the
fast path's counts). A fast viewer that falls behind is measured by its ICE
socket's unsent bytes (asyncio buffers what the kernel refused) and is
skipped to the next keyframe, as a queue's would be. With the native
sender, a fast viewer that keeps up joins its source's fan-out group
(fanout.py): each frame, and each loop turn's Opus packets, go to all of
the group in one native call. A viewer
joins at the latest keyframe: it is sent the frames from that keyframe on at
once, stamped one RTP tick apart, so the browser decodes them at once and
shows the newest, rather than replaying the GOP at its pace a GOP behind.

A viewer belongs to its stream's source (its audio, its life) but may take
its video from another: a rendition of its ABR template group (abr.py).
Each source keeps the viewers whose video it sends (`video_viewers`) and
those switching to it at its next keyframe (`switching`); a source nobody
uses in any of these ways lets go of its hub subscription.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections import deque
from collections.abc import Iterator

import av
from aiortc import clock
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..codecs import AvcConfig, CodecError, parse_aac_sequence_header, parse_avc_sequence_header
from ..dolby import DECODER_OF_FOURCC
from ..flv import (
    AAC_BODY_HEADER_BYTES,
    AUDIO_CODEC_AAC,
    AUDIO_PACKET_CODED_FRAMES,
    EX_AUDIO_BODY_HEADER_BYTES,
    PACKET_NALU,
    VIDEO_CODEC_AVC,
    FrameKind,
    audio_codec_id,
    audio_fourcc,
    avc_packet_type,
    ex_audio_packet_type,
    video_codec_id,
    video_is_keyframe,
)
from ..gop import GopCache
from ..policy import StreamKey
from . import srtp
from .aiortc_compat import ice_datagram_path, ice_nominated_pair
from .fanout import FanoutGroup
from .fastpath import ResendBudget, RtpPacketHistory, RtpWriter, abs_send_time_of
from .h264 import flv_video_to_access_unit
from .threads import (
    OPUS_TIME_BASE,
    TRANSCODE_PROFILE,
    TRANSCODE_TUNE,
    ConversionThread,
    H264Transcoding,
    OpusEncoding,
    av_packet,
)

log = logging.getLogger(__name__)


VIDEO_CLOCK_HZ = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_HZ)
# A viewer's queue of video frames before it is skipped to the next
# keyframe: 2 s at 30 fps. Frames are shared packets, so this bounds lag,
# not memory.
VIEWER_MAX_VIDEO_FRAMES = 60
# A viewer's queue of Opus packets (20 ms each): 1 s; past it the oldest go.
VIEWER_MAX_AUDIO_PACKETS = 50
# A fast-path viewer's unsent bytes (its ICE socket's asyncio buffer, what
# the kernel would not take) past which it is skipped to the next keyframe:
# 2 s of a 2 Mbit/s stream, the lag VIEWER_MAX_VIDEO_FRAMES allows.
VIEWER_MAX_UNSENT_BYTES = 512 * 1024
# A viewer whose receiver report says it lost this fraction of the packets
# since its last report (RFC 3550 6.4.1) cannot keep up: sending it the
# rest of the GOP only adds to what it cannot repair, so it is skipped to
# the next keyframe. Far above what retransmission repairs (a few per cent,
# tests/test_rts_loss.py).
VIEWER_SKIP_FRACTION_LOST = 0.5
# A frame's duration at 30 fps, in 90 kHz ticks: what a rendition switch
# stamps its first frame after the last one sent before a source has shown
# its own frame rate.
DEFAULT_FRAME_TICKS = VIDEO_CLOCK_HZ // 30
# A fast-path joiner's GOP burst is sent this many packets a turn, a turn
# every JOIN_BURST_PAUSE_SECONDS: sent at once (hundreds of packets for a 2 s
# GOP, in a millisecond) it overflows the browser's socket buffer, and the
# losses cost NACK round trips and a keyframe request before the first
# picture. 64 packets every 2 ms is 38 MB/s: a 2 s 2 Mbit/s GOP in ~20 ms.
JOIN_BURST_PACKETS_PER_TURN = 64
JOIN_BURST_PAUSE_SECONDS = 0.002
# The frames from the latest keyframe on that a joiner is sent at once; a
# longer GOP is not cached and a joiner waits for the next keyframe.
SOURCE_GOP_MAX_BYTES = 8 * 1024 * 1024
# Frames waiting for a transcoder thread before it drops input up to the next
# keyframe: 5 s of video at 30 fps (a joiner's GOP arrives at once), about 5 s
# of AAC.
TRANSCODER_MAX_PENDING = 150
AUDIO_TRANSCODER_MAX_PENDING = 250
# A keyframe request (PLI/FIR) from a viewer of the transcoded rendition
# makes the encoder emit an IDR at most this often, for all its viewers.
TRANSCODE_MIN_KEYFRAME_INTERVAL_MS = 1000

PASSTHROUGH = "passthrough"
TRANSCODE = "transcode"


class VideoUnit:
    """One video access unit as every viewer's sender gets it."""

    __slots__ = ("packet", "data", "pts", "keyframe", "payloads", "indexes", "payload_bytes")

    def __init__(self, data: bytes, pts: int, keyframe: bool) -> None:
        self.data = data
        self.pts = pts  # 90 kHz
        self.keyframe = keyframe
        self.packet = av_packet(data, pts, VIDEO_TIME_BASE)
        self.payloads = None  # RTP payloads, packetised once (session.SharedH264Encoder)
        self.indexes: range | None = None  # its packets in the source's video history (fast path)
        self.payload_bytes = 0


class FastTrackSender:
    """One viewer's track on the fast path: its RTP writer (the SSRC,
    payload types and header extensions its answer negotiated), the SRTP
    protector of its DTLS transport's exported keys (srtp.py), and the ICE
    pair it sends on; plus what its RTCP sender reports say (RFC 3550
    6.4.1): the NTP time of its last packet, and its payload octets.

    With the native sender (srtp.native, built by `make native`) a frame
    goes out in one call: headers written, protected and sent with one
    sendmmsg on the ICE socket's fd, unless asyncio holds unsent bytes for
    that socket (they go first: the frame takes the Python path behind
    them). What the kernel refuses (EAGAIN) comes back protected and is
    handed to asyncio's transport, which buffers it: the caller's check of
    the unsent bytes (VIEWER_MAX_UNSENT_BYTES) sees it as before."""

    __slots__ = (
        "writer", "protect", "dtls", "transport", "address", "pair", "ntp", "octets",
        "srtp", "fd", "sockaddr", "resend_budget", "group",
    )  # fmt: skip

    def __init__(self, writer: RtpWriter, protect, dtls, path: tuple) -> None:
        self.writer = writer
        self.protect = protect
        self.dtls = dtls
        self.srtp = srtp.native_session(protect)  # None: the Python path
        self.ntp = 0
        self.octets = 0
        self.resend_budget = ResendBudget()
        self.group: FanoutGroup | None = None  # the fan-out group sending its frames (fanout.py), if any
        self._use(path, ice_nominated_pair(dtls))

    def _use(self, path: tuple, pair) -> None:
        self.transport, self.address = path
        self.pair = pair
        self.fd, self.sockaddr = -1, b""
        if self.srtp is not None:
            self.fd, self.sockaddr = srtp.native_destination(self.transport, self.address)

    def ready(self) -> bool:
        """Whether the ICE pair can take a packet; its transport is read
        again when ICE nominated another pair or the one held is closing."""
        pair = ice_nominated_pair(self.dtls)
        if pair is not self.pair or self.transport.is_closing():
            path = ice_datagram_path(self.dtls)
            if path is None:
                return False
            self._use(path, pair)
        return True

    def send(self, history: RtpPacketHistory, indexes: range, abs_send_time: int, ntp: int, size: int) -> None:
        transport = self.transport
        if self.fd >= 0 and not transport.get_write_buffer_size():
            writer = self.writer
            sequence_number, offset = writer.claim(history, indexes)
            template = writer.template
            try:
                unsent = srtp.native.send_frame(
                    self.srtp, self.fd, self.sockaddr, template.buffer, template.header_bytes, template.abs_offset,
                    template.payload_type, sequence_number, offset, abs_send_time, history.packets(indexes),
                )  # fmt: skip
            except OSError as error:
                # The kernel refused this viewer's socket or address (EBADF,
                # EINVAL: what send_frame does not count as a lost packet).
                # Its other viewers and the caller's loop over them go on;
                # this one takes asyncio's transport, which reports its own
                # errors, until its ICE pair changes (_use). The packets
                # claimed are lost to it: its NACKs get them again.
                log.warning("rts viewer %s: native send refused (%s), on asyncio's transport now",
                            self.address, error.strerror or error)  # fmt: skip
                self.fd = -1
                unsent = None
            if unsent:
                for data in unsent:
                    transport.sendto(data, self.address)
        else:
            write, protect, sendto, address = self.writer.write, self.protect, transport.sendto, self.address
            for index in indexes:
                sendto(protect(write(history, index, abs_send_time)), address)
        self.ntp = ntp
        self.octets += size

    def resend(self, lost: list[int]) -> None:
        """Answer a NACK from the shared history (RtpWriter.resend), within
        the track's budget (fastpath.ResendBudget: aiortc hands in one
        sequence number a call, and receivers ask again)."""
        if not self.ready():
            return
        if self.group is not None:
            self.group.sync(self)
        now, allow = time.monotonic(), self.resend_budget.allow
        wanted = [sequence_number for sequence_number in lost if allow(now, sequence_number)]
        if not wanted:
            return
        abs_send_time = abs_send_time_of(clock.current_ntp_time())
        for packet in self.writer.resend(wanted, abs_send_time):
            self.transport.sendto(self.protect(packet), self.address)

    def leave_group(self) -> None:
        """Back to its own path (fanout.FanoutGroup.leave), if in a group."""
        if self.group is not None:
            self.group.leave(self)

    def report(self) -> tuple[int, int, int, int] | None:
        """(NTP time, RTP timestamp, packets, octets) for the sender report."""
        if self.group is not None:
            self.group.sync(self)
        writer = self.writer
        if writer.last_timestamp is None:
            return None
        return self.ntp, writer.last_timestamp, writer.packets, self.octets


class RtsTrack(MediaStreamTrack):
    """One viewer's audio or video track: a bounded queue its sender empties."""

    def __init__(self, kind: str, viewer: RtsViewer) -> None:
        super().__init__()
        self.kind = kind
        self.viewer = viewer
        self.queue: deque = deque()
        self._waiter: asyncio.Future | None = None
        self._closed = False
        # The fast path: wanted (session.py: its frames wait for the DTLS
        # handshake rather than queue), then its sender once set up.
        self.fast_wanted = False
        self.fast: FastTrackSender | None = None

    def put(self, item) -> None:
        self.queue.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def finish(self) -> None:
        self._closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def recv(self):
        while not self.queue:
            if self._closed or self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.queue.popleft()

    def request_keyframe(self) -> None:
        """A PLI or FIR from the browser (the sender's keyframe hook)."""
        self.viewer.keyframe_requested()


class VideoViewerIdentities:
    """The stats.viewer_identity of each viewer a source sends its video to
    (`video_viewers`, where its viewers are counted), for the samples' unique
    viewers (stats.py): read from the viewers, nothing kept."""

    __slots__ = ("source",)

    def __init__(self, source: RtsSource) -> None:
        self.source = source

    def __iter__(self) -> Iterator[str]:
        return (viewer.identity for viewer in self.source.video_viewers if viewer.identity)


class RtsViewer:
    """One WebRTC viewer's side of a source."""

    def __init__(self, source: RtsSource, may_transcode: bool, identity: str = "") -> None:
        self.source = source  # its stream: its audio, and its life
        # Whose video it gets: its stream's, or with ABR (abr.py) one of the
        # group's renditions; and the rendition it switches to at that
        # rendition's next keyframe (RtsSource.switching).
        self.video_source = source
        self.switching_to: RtsSource | None = None
        self.abr = None  # abr.RtsAbr, for a viewer of a template group
        self.may_transcode = may_transcode
        self.identity = identity  # stats.viewer_identity, for unique viewers
        self.video = RtsTrack("video", self)
        self.audio = RtsTrack("audio", self)
        self._need_keyframe = True
        self.joined = False  # False until the source has a picture to start with
        self.video_frames = 0
        self.dropped = 0  # video frames this viewer did not get
        self.skips = 0  # times it was skipped to a keyframe
        self.keyframe_requests = 0
        self.rendition_switches = 0
        self.estimate_bps = 0  # its receiver's last REMB
        self.ended = asyncio.Event()
        # A fast-path joiner's frames not sent yet: (unit, timestamp or None), paced (_send_burst).
        self._burst: deque | None = None

    @property
    def need_keyframe(self) -> bool:
        """Whether its video resumes at the next keyframe only. Set, it
        leaves its source's fan-out group (fanout.py): waiting for a
        keyframe is the per-viewer path's."""
        return self._need_keyframe

    @need_keyframe.setter
    def need_keyframe(self, value: bool) -> None:
        self._need_keyframe = value
        if value and self.video.fast is not None:
            self.video.fast.leave_group()

    def _at_keyframe_if_needed(self, unit: VideoUnit) -> bool:
        """Whether `unit` may go to a viewer that must resume at a keyframe
        (it counts as dropped when not); the keyframe clears the need."""
        if self.need_keyframe:
            if not unit.keyframe:
                self.dropped += 1
                return False
            self.need_keyframe = False
        return True

    def offer_video(self, unit: VideoUnit, abs_send_time: int = 0, ntp: int = 0) -> None:
        queue = self.video.queue
        if not self.joined:
            return
        track = self.video
        if track.fast_wanted:
            fast = track.fast
            if fast is None:
                return  # its DTLS handshake is not done: it joins then
            if not fast.ready() or fast.transport.get_write_buffer_size() > VIEWER_MAX_UNSENT_BYTES:
                # Too slow (or no path): resume at a keyframe once drained.
                self.dropped += 1
                if not self.need_keyframe:
                    self.skips += 1
                    self.need_keyframe = True
                return
            source = self.video_source
            if self._burst is not None:
                self._burst.append((unit, None))  # behind the joiner's burst
                self.video_frames += 1
                source.subscription.count_sent(unit.packet.size)
                return
            if not self._at_keyframe_if_needed(unit):
                return
            fast.send(source.video_history, unit.indexes, abs_send_time, ntp, unit.payload_bytes)
            self.video_frames += 1
            source.subscription.count_sent(unit.packet.size)
            # Steady now: the next frames go with everyone's (fanout.py).
            source.video_group.join(fast, source.video_history, self)
            return
        if not self._at_keyframe_if_needed(unit):
            return
        if len(queue) >= VIEWER_MAX_VIDEO_FRAMES:
            # Too slow: what is queued is stale; resume at a keyframe.
            self.dropped += len(queue)
            self.skips += 1
            queue.clear()
            if not unit.keyframe:
                self.need_keyframe = True
                self.dropped += 1
                return
        self.video_frames += 1
        self.video.put(unit.packet)
        self.video_source.subscription.count_sent(unit.packet.size)

    def loss_reported(self, fraction_lost: float) -> None:
        """A receiver report about its video (aiortc_compat.on_receiver_feedback)."""
        self.fell_behind(fraction_lost)
        if self.abr is not None:
            self.abr.on_loss(fraction_lost)

    def estimate_reported(self, bps: int) -> None:
        """Its receiver's bandwidth estimate (REMB)."""
        self.estimate_bps = bps
        if self.abr is not None:
            self.abr.on_estimate(bps)

    def fell_behind(self, fraction_lost: float) -> None:
        """A receiver report's fraction lost (0..1): past
        VIEWER_SKIP_FRACTION_LOST the viewer resumes at the next keyframe,
        as one whose queue or socket filled does; nobody else waits."""
        if fraction_lost < VIEWER_SKIP_FRACTION_LOST or self.need_keyframe:
            return
        self.skips += 1
        self.need_keyframe = True
        self.dropped += len(self.video.queue)
        self.video.queue.clear()
        if self._burst is not None:
            self.dropped += len(self._burst)
            self._burst = None

    def switch_video(self, target: RtsSource) -> None:
        """Get video from `target` (a rendition of the viewer's template
        group, abr.py) from its next keyframe on; until then from where it
        comes now, so the picture never stops. Only a fast-path track
        switches: its writer keeps the viewer's sequence numbers and
        timestamps continuous (fastpath.RtpWriter.switch_source)."""
        pending = self.switching_to
        if pending is target:
            return
        if pending is not None:
            self.switching_to = None
            pending.stop_switching(self)
        if target is self.video_source:
            return
        self.switching_to = target
        target.start_switching(self)

    def switched(self, target: RtsSource) -> bool:
        """`target`'s keyframe is here (RtsSource._video_out): the viewer
        now takes its video from `target`, starting with that keyframe.
        False (it waits for the next) while a joiner's burst of the old
        rendition's GOP is still going out."""
        fast = self.video.fast
        if fast is None or self._burst is not None or not fast.ready():
            return False
        old = self.video_source
        fast.leave_group()
        fast.writer.switch_source(old.frame_ticks)
        self.switching_to = None
        self.video_source = target
        self.rendition_switches += 1
        old.stop_video(self)
        return True

    def offer_audio(
        self, packet: av.Packet, indexes: range | None = None, abs_send_time: int = 0, ntp: int = 0
    ) -> None:
        track = self.audio
        if track.fast_wanted:
            fast = track.fast
            if fast is not None and indexes is not None and fast.ready():
                source = self.source
                fast.send(source.audio_history, indexes, abs_send_time, ntp, packet.size)
                source.subscription.count_sent(packet.size)
                source.audio_group.join(fast, source.audio_history)
            return
        queue = self.audio.queue
        if len(queue) >= VIEWER_MAX_AUDIO_PACKETS:
            queue.popleft()
        self.audio.put(packet)
        self.source.subscription.count_sent(packet.size)

    def join(self, gop: tuple[VideoUnit, ...]) -> None:
        """Start at the latest keyframe: the cached frames from it on, one
        RTP tick apart, ending at the newest frame's time."""
        self.joined = True
        self.need_keyframe = True
        if self.video.fast_wanted:
            if self.video.fast is not None:
                self._fast_join(gop)
            return  # else when its DTLS handshake is done (start_fast)
        self.video.queue.clear()
        if not gop:
            return
        last = gop[-1].pts
        count = len(gop)
        for i, unit in enumerate(gop):
            self.video.put(av_packet(unit.data, last - (count - 1 - i), VIDEO_TIME_BASE))
        self.video_frames += count
        self.need_keyframe = False

    def _fast_join(self, gop: tuple[VideoUnit, ...]) -> None:
        """join() on the fast path: the GOP's packets from the shared
        history, stamped as join() stamps them, paced (JOIN_BURST_*)."""
        history = self.video_source.video_history
        if not gop or gop[0].indexes is None or history.get(gop[0].indexes.start) is None:
            return  # not held (any more): the next keyframe
        last = gop[-1].pts
        count = len(gop)
        self._burst = deque((unit, last - (count - 1 - i)) for i, unit in enumerate(gop))
        self.video_frames += count
        self.need_keyframe = False
        self._send_burst()

    def _send_burst(self) -> None:
        burst, fast = self._burst, self.video.fast
        if burst is None or fast is None:
            self._burst = None
            return
        history = self.video_source.video_history
        if not fast.ready() or history.get(burst[0][0].indexes.start) is None:
            self._burst = None
            self.dropped += len(burst)
            self.need_keyframe = True
            return
        ntp = clock.current_ntp_time()
        abs_send_time = abs_send_time_of(ntp)
        write, protect, sendto, address = fast.writer.write, fast.protect, fast.transport.sendto, fast.address
        budget = JOIN_BURST_PACKETS_PER_TURN
        while burst and budget > 0:
            unit, timestamp = burst.popleft()
            for index in unit.indexes:
                sendto(protect(write(history, index, abs_send_time, timestamp)), address)
            budget -= len(unit.indexes)
            fast.octets += unit.payload_bytes
        fast.ntp = ntp
        if burst:
            asyncio.get_running_loop().call_later(JOIN_BURST_PAUSE_SECONDS, self._send_burst)
        else:
            self._burst = None

    def start_fast(self, kind: str, sender: FastTrackSender | None) -> None:
        """The track's fast path is set up (`sender`), or could not be
        (None: it goes back to its aiortc sender's queue). Video joins now
        at the latest keyframe, either way."""
        track = self.video if kind == "video" else self.audio
        if not track.fast_wanted or track.fast is not None:
            return
        if sender is None:
            track.fast_wanted = False
        else:
            track.fast = sender
            # What was queued for aiortc's sender before the fast path was
            # wanted (the join at add_viewer): its RTP task, which starts on
            # the next turn, must send nothing on the SSRC the fast path uses.
            track.queue.clear()
        if kind == "video" and self.joined:
            self.join(self.video_source.gop.frames)

    def keyframe_requested(self) -> None:
        self.keyframe_requests += 1
        self.video_source.keyframe_requested(self)

    def video_source_closed(self, source: RtsSource) -> None:
        """A rendition it gets (or waits for) video from ended: back to its
        own stream's video, at its next keyframe."""
        if self.switching_to is source:
            self.switching_to = None
        if self.video_source is source:
            self.video_source = self.source
            self.source.video_viewers[self] = None
            self.need_keyframe = True
            fast = self.video.fast
            if fast is not None:
                fast.writer.switch_source(source.frame_ticks)
            self.source.keyframe_requested(self)

    def end(self) -> None:
        for track in (self.video, self.audio):
            if track.fast is not None:
                track.fast.leave_group()
        self.video.finish()
        self.audio.finish()
        self.video.fast = self.audio.fast = None
        self.ended.set()

    def close(self) -> None:
        self.end()
        self.switch_video(self.video_source)  # no switch pending
        if self.video_source is not self.source:
            self.video_source.stop_video(self)
        self.source.remove(self)


class OpusTranscoder:
    """AAC to Opus, once per stream, in a thread of its own: the loop's side
    of threads.OpusEncoding."""

    def __init__(self, on_packet) -> None:
        self._encoding = OpusEncoding()
        self._thread = ConversionThread("rts-opus", AUDIO_TRANSCODER_MAX_PENDING, on_packet)

    @property
    def pending(self) -> int:
        return self._thread.pending

    def configure(self, audio_specific_config: bytes, decoder_name: str = "aac") -> None:
        self._thread.submit(self._encoding.configure, audio_specific_config, decoder_name)

    def push(self, raw: bytes, timestamp_ms: int) -> None:
        self._thread.submit(self._encoding.encode, raw, timestamp_ms)

    def close(self) -> None:
        self._thread.close()


class VideoTranscoder:
    """H.264 with B-frames to a B-frame-free rendition (Baseline,
    zerolatency), once per stream, in a thread of its own: the loop's side of
    threads.H264Transcoding (or, with `decoder_name` "vp8", a WHIP
    publisher's VP8 to H.264: rts/ingest.py). The rendition's keyframes follow the source's,
    and a viewer's keyframe request may add one: the request travels with
    the next frame submitted, so each side keeps to its own state."""

    def __init__(self, on_unit, decoder_name: str = "h264", max_pending: int = TRANSCODER_MAX_PENDING) -> None:
        self._transcoding = H264Transcoding()
        self._decoder_name = decoder_name
        self._thread = ConversionThread("rts-x264", max_pending, lambda unit: on_unit(*unit))
        self._force_keyframe = False  # for the next frame submitted
        self._last_forced_ms = None
        self._need_keyframe = True  # input refused: resume at a source keyframe

    @property
    def pending(self) -> int:
        return self._thread.pending

    def configure(self, config: AvcConfig | None) -> None:
        """`config` None: a codec whose frames need none (VP8, from a WHIP publisher)."""
        self._need_keyframe = True
        self._thread.submit(self._transcoding.configure, config, self._decoder_name)

    def push(self, access_unit: bytes, pts_ms: int, dts_ms: int, keyframe: bool) -> None:
        if self._need_keyframe and not keyframe:
            return
        force = self._force_keyframe
        if self._thread.submit(self._transcoding.transcode, access_unit, pts_ms, dts_ms, keyframe, force):
            self._need_keyframe = self._force_keyframe = False
        else:
            self._need_keyframe = True

    def request_keyframe(self, now_ms: int) -> None:
        if self._last_forced_ms is None or now_ms - self._last_forced_ms >= TRANSCODE_MIN_KEYFRAME_INTERVAL_MS:
            self._last_forced_ms = now_ms
            self._force_keyframe = True

    def close(self) -> None:
        self._thread.close()


class RtsSource:
    """A stream's WebRTC media, shared by all its WHEP viewers."""

    def __init__(self, service, key: StreamKey) -> None:
        self.service = service
        self.key = key
        self.hub = service.node.hub
        self.viewers: dict[RtsViewer, None] = {}  # whose stream this is (their audio, their life)
        # Whose video comes from here (its own viewers but those of them on
        # another rendition, and ABR viewers of other streams on this one),
        # and those switching here at the next keyframe (abr.py).
        self.video_viewers: dict[RtsViewer, None] = {}
        self.switching: dict[RtsViewer, None] = {}
        self.frame_ticks = DEFAULT_FRAME_TICKS  # between its last two frames, 90 kHz
        self._last_pts: int | None = None
        self.mode = PASSTHROUGH
        self.avc_config: AvcConfig | None = None
        self.gop: GopCache[VideoUnit] = GopCache(SOURCE_GOP_MAX_BYTES)
        self.opus: OpusTranscoder | None = None
        self.transcoder: VideoTranscoder | None = None
        self.video_units = 0
        self.audio_packets = 0
        self.closed = False
        # The fast path (issue 18): each track's RTP payloads, cut once.
        self.fast_path = bool(getattr(getattr(service.node, "config", None), "rts_fast_path", False))
        self.video_history = RtpPacketHistory()
        self.audio_history = RtpPacketHistory()
        # Its steady fast viewers, sent each frame in one native call (fanout.py).
        self.video_group = FanoutGroup()
        self.audio_group = FanoutGroup()
        self._audio_batch: list = []  # the audio group's Opus packets of this loop turn
        self._video_packer = H264Encoder()
        self._audio_packer = OpusEncoder()
        # Whether a joiner can start at once. The transcoded rendition is not
        # ready until the transcoder has caught up with the GOP it started on.
        self.ready = True
        # The hub hands a new subscriber its cached GOP at once. Its video is
        # what a joiner starts with; its audio is old, and sent at once it
        # would make the browser's jitter buffer hold that much audio, and
        # delay the video to match (lip sync): it is dropped.
        self._joining = True
        # A WHIP publisher's (rts/ingest.py): its Opus goes to the viewers as
        # it came, and the hub's audio (AAC made from it) is not used.
        self.whip = None
        self.subscription = self.hub.subscribe(key, protocol="rts", on_ready=self._on_ready)
        # The identities of the viewers watching its picture, as its viewers are counted.
        self.subscription.identities = VideoViewerIdentities(self)
        self._on_ready(self.subscription)
        self._joining = False
        publisher = service.whip.by_key.get(key) if getattr(service, "whip", None) is not None else None
        if publisher is not None:
            self.attach_whip(publisher)

    # --- a WHIP publisher ------------------------------------------------------------

    def attach_whip(self, publisher) -> None:
        self.detach_whip()
        self.whip = publisher
        publisher.audio_listeners.add(self._whip_audio)

    def detach_whip(self, publisher=None) -> None:
        if self.whip is not None and (publisher is None or publisher is self.whip):
            self.whip.audio_listeners.discard(self._whip_audio)
            self.whip = None

    def _whip_audio(self, packet: bytes, pts: int) -> None:
        if not self.closed:
            self._audio_out(av_packet(packet, pts, OPUS_TIME_BASE))

    def _takes_hub_audio(self) -> bool:
        return self.whip is None or "audio" not in self.whip.taps

    # --- viewers ---------------------------------------------------------------------

    def add_viewer(self, may_transcode: bool, identity: str = "") -> RtsViewer:
        viewer = RtsViewer(self, may_transcode, identity)
        self.viewers[viewer] = None
        self.video_viewers[viewer] = None
        self._count_viewers()
        if self.ready:
            viewer.join(self.gop.frames)
        if self.whip is not None and not self.gop.frames:
            self.whip.request_keyframe("a viewer joined with no picture cached")
        return viewer

    def remove(self, viewer: RtsViewer) -> None:
        self.viewers.pop(viewer, None)
        self.stop_video(viewer)

    def start_switching(self, viewer: RtsViewer) -> None:
        """`viewer` switches here at the next keyframe; one is asked for."""
        self.switching[viewer] = None
        self.keyframe_requested(None)

    def stop_switching(self, viewer: RtsViewer) -> None:
        self.switching.pop(viewer, None)
        self._close_if_unused()

    def stop_video(self, viewer: RtsViewer) -> None:
        fast = viewer.video.fast
        if fast is not None and fast.group is self.video_group:
            self.video_group.leave(fast)
        self.video_viewers.pop(viewer, None)
        self.switching.pop(viewer, None)
        self._count_viewers()
        self._close_if_unused()

    def _count_viewers(self) -> None:
        # The stream's RTS viewers are those watching its picture: an ABR
        # viewer counts on the rendition it gets (node stats, monitoring).
        self.subscription.viewers = len(self.video_viewers)

    def _close_if_unused(self) -> None:
        if not (self.viewers or self.video_viewers or self.switching):
            self.close()

    def keyframe_requested(self, viewer: RtsViewer | None) -> None:
        """A viewer's PLI or FIR (None: a viewer switching here)."""
        if self.mode == TRANSCODE and self.transcoder is not None:
            self.transcoder.request_keyframe(int(asyncio.get_running_loop().time() * 1000))
            if viewer is not None:
                viewer.need_keyframe = True
        elif self.whip is not None:
            # A WHIP publisher is asked (at most once a second, for all viewers).
            self.whip.request_keyframe("a viewer asked")
        # Passthrough from RTMP or SRT: only the publisher makes keyframes,
        # and neither protocol can ask it for one; the viewer keeps what it
        # has and the next keyframe (at most a GOP away) repairs the picture.

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.video_group.clear()
        self.audio_group.clear()
        self.detach_whip()
        self.subscription.close()
        for worker in (self.opus, self.transcoder):
            if worker is not None:
                worker.close()
        viewers, self.viewers = self.viewers, {}
        guests = [v for v in {**self.video_viewers, **self.switching} if v not in viewers]
        self.video_viewers, self.switching = {}, {}
        for viewer in viewers:
            viewer.end()
        for viewer in guests:
            viewer.video_source_closed(self)
        self.service.source_closed(self)

    # --- from the hub --------------------------------------------------------------------

    def _on_ready(self, subscription) -> None:
        for frame in subscription.drain():
            try:
                if frame.kind is FrameKind.VIDEO:
                    self._video(frame)
                elif frame.kind is FrameKind.AUDIO:
                    self._audio(frame)
            except CodecError as exc:
                log.info("rts %s: frame dropped: %s", self.key, exc)
        if subscription.ended and not self.closed:
            self.close()

    def _video(self, frame) -> None:
        body = frame.body
        if len(body) < 2 or video_codec_id(body) != VIDEO_CODEC_AVC:
            return
        if frame.sequence_header:
            self.avc_config = parse_avc_sequence_header(body)
            self.gop.restart()
            if self.transcoder is not None:
                self.transcoder.configure(self.avc_config)
            return
        if avc_packet_type(body) != PACKET_NALU or self.avc_config is None:
            return
        if self.mode == PASSTHROUGH and self._has_bframes():
            self._start_transcoding()
            if self.closed:
                return
        access_unit, cts = flv_video_to_access_unit(body, self.avc_config)
        if not access_unit:
            return
        if self.mode == TRANSCODE:
            self.transcoder.push(access_unit, frame.timestamp + cts, frame.timestamp, video_is_keyframe(body))
        else:
            self._video_out(access_unit, (frame.timestamp + cts) * 90, frame.keyframe)

    def _has_bframes(self) -> bool:
        stream = self.hub.stream(self.key)
        return stream is not None and stream.has_bframes

    def _start_transcoding(self) -> None:
        """B-frames found: viewers whose domain allows HTML5 auto-transcoding
        get the transcoded rendition from the next keyframe; the others end."""
        for viewer in [v for v in {**self.viewers, **self.video_viewers} if not v.may_transcode]:
            log.info("rts %s: B-frames and HTML5 auto-transcoding is off: viewer ended", self.key)
            viewer.close()
        if self.closed:
            return
        self.mode = TRANSCODE
        self.ready = False
        self.video_group.clear()
        self.gop.restart()
        for viewer in self.video_viewers:
            viewer.joined = False
        self.transcoder = VideoTranscoder(self._video_out)
        self.transcoder.configure(self.avc_config)
        log.info("rts %s: B-frames: transcoding to %s, %s", self.key, TRANSCODE_PROFILE, TRANSCODE_TUNE)

    def _video_out(self, data: bytes, pts: int, keyframe: bool) -> None:
        if self.closed:
            return
        unit = VideoUnit(data, pts, keyframe)
        self.video_units += 1
        if self._last_pts is not None and 0 < pts - self._last_pts <= VIDEO_CLOCK_HZ:
            self.frame_ticks = pts - self._last_pts
        self._last_pts = pts
        abs_send_time = ntp = 0
        if self.fast_path:
            payloads, timestamp = self._video_packer.pack(unit.packet)
            unit.indexes = self.video_history.add_frame(payloads, timestamp, keyframe)
            unit.payload_bytes = sum(map(len, payloads))
            ntp = clock.current_ntp_time()
            abs_send_time = abs_send_time_of(ntp)
        self.gop.add(unit, len(data), keyframe)
        if not self.ready and self.gop and self.transcoder is not None and self.transcoder.pending <= 1:
            # The transcoder has caught up with its backlog: everyone waiting
            # starts at the newest picture.
            self.ready = True
            for viewer in self.video_viewers:
                if not viewer.joined:
                    viewer.join(self.gop.frames)
            return
        if keyframe and self.switching and unit.indexes is not None:
            # Switchers start here with this keyframe (RtsViewer.switched).
            for viewer in [v for v in self.switching if v.switched(self)]:
                del self.switching[viewer]
                self.video_viewers[viewer] = None
            self._count_viewers()
        if unit.indexes is not None and self.video_group:
            members = self.video_group.send(self.video_history, unit.indexes, abs_send_time, ntp, unit.payload_bytes)
            if members:
                self.subscription.count_sent(unit.packet.size * members)
        if len(self.video_group) == len(self.video_viewers):
            return  # all in the group (its members are some of video_viewers)
        for viewer in self.video_viewers:
            fast = viewer.video.fast
            if fast is None or fast.group is None:
                viewer.offer_video(unit, abs_send_time, ntp)

    def _audio(self, frame) -> None:
        if not self._takes_hub_audio():
            return
        body = frame.body
        decoder = DECODER_OF_FOURCC.get(audio_fourcc(body))
        if decoder is not None:  # AC-3/E-AC-3 (dolby.py): decoded to Opus like AAC
            if frame.sequence_header:
                if self.opus is None:
                    self.opus = OpusTranscoder(self._audio_out)
                self.opus.configure(b"", decoder)
            elif ex_audio_packet_type(body) == AUDIO_PACKET_CODED_FRAMES and self.opus is not None:
                if not self._joining:
                    self.opus.push(bytes(body[EX_AUDIO_BODY_HEADER_BYTES:]), frame.timestamp)
            return
        if len(body) < AAC_BODY_HEADER_BYTES or audio_codec_id(body) != AUDIO_CODEC_AAC:
            return
        if frame.sequence_header:
            parse_aac_sequence_header(body)  # refuses what cannot be decoded
            if self.opus is None:
                self.opus = OpusTranscoder(self._audio_out)
            self.opus.configure(bytes(body[AAC_BODY_HEADER_BYTES:]))
            return
        if self.opus is not None and not self._joining:
            self.opus.push(bytes(body[AAC_BODY_HEADER_BYTES:]), frame.timestamp)

    def _audio_out(self, packet: av.Packet) -> None:
        if self.closed:
            return
        self.audio_packets += 1
        indexes = None
        abs_send_time = ntp = 0
        if self.fast_path:
            payloads, timestamp = self._audio_packer.pack(packet)
            indexes = self.audio_history.add_frame(payloads, timestamp, True)
            ntp = clock.current_ntp_time()
            abs_send_time = abs_send_time_of(ntp)
        if indexes is not None and self.audio_group:
            # The fan-out group's viewers get the Opus packets of a loop
            # turn in one call (several when the loop runs late: the
            # busier the node, the fewer calls), the others with them.
            if not self._audio_batch:
                asyncio.get_running_loop().call_soon(self._send_audio_batch)
            self._audio_batch.append((packet, indexes, abs_send_time, ntp))
            return
        self._offer_audio(packet, indexes, abs_send_time, ntp)

    def _offer_audio(self, packet: av.Packet, indexes: range | None, abs_send_time: int, ntp: int) -> None:
        """An Opus packet to the viewers not in the audio fan-out group."""
        if len(self.audio_group) == len(self.viewers):
            return  # all in the group (its members are some of viewers)
        for viewer in self.viewers:
            fast = viewer.audio.fast
            if fast is None or fast.group is None:
                viewer.offer_audio(packet, indexes, abs_send_time, ntp)

    def _send_audio_batch(self) -> None:
        batch, self._audio_batch = self._audio_batch, []
        if self.closed or not batch:
            return
        first, last = batch[0], batch[-1]
        indexes = range(first[1].start, last[1].stop)
        size = sum(packet.size for packet, *_ in batch)
        members = self.audio_group.send(self.audio_history, indexes, last[2], last[3], size)
        if members:
            self.subscription.count_sent(size * members)
        for packet, indexes, abs_send_time, ntp in batch:
            self._offer_audio(packet, indexes, abs_send_time, ntp)
