"""The stream hub: one publisher and many subscribers per stream (issue 3).

A publisher's server pushes FLV tag bodies into a `Publication`; each push
becomes one `MediaFrame`, shared by reference with every subscriber and with
the stream's GOP cache, and encoded at most once per output format (the frame
carries the cache). A viewer's server takes frames from its `Subscription`.

What a subscriber gets (DESIGN.md, "Bad input"):

- On joining: the metadata, the video and audio sequence headers and the
  cached GOP (from the latest keyframe on, gop.py), so the first frame shows
  at once; then live frames.
- Its queue is bounded in bytes and frames. When a frame would go past either
  bound, the subscriber skips: its queued media is dropped and it resumes at
  the next keyframe, audio included so picture and sound stay in step.
  Sequence headers and metadata are never dropped (only older duplicates).
- Its lag is the stream time between the oldest frame it has not taken since
  it was last caught up (or the last one it took) and the newest frame. Past
  `subscriber_max_lag_ms` it is disconnected: `get()` returns None and
  `lagging_disconnect` is set. A viewer that never reads therefore holds at
  most one bounded queue of references, and not for long.

When the publisher goes away while subscribers are attached, they wait up to
`reconnect_grace_seconds` for a new publisher on the same key. Its timestamps
are rebased to continue one frame after the last ones, its sequence headers
reach the subscribers first, and they resume at its first keyframe, so an
HTTP-FLV viewer sees one unbroken stream. Nobody within the grace period: the
subscribers end.

A publisher's timestamps are rebased within a publication too, per track,
so every output timeline only goes forward (issue 11): a step forward of
more than TIMESTAMP_JUMP_MS, or back by more than
TIMESTAMP_BACKWARD_TOLERANCE_MS, is a discontinuity, and the track goes on
one frame after its last output (unless the other track already made that
step: then it was a gap in this track, kept so the tracks stay in step); a
smaller step back is held at the last time. A 32-bit wrap (49.7 days, or a
publisher that starts near 2**32) is read as the small step forward it is.
A track that starts far from the other joins the other's timeline. Viewers
therefore never see a jump:
none is cut as a laggard because the publisher's clock leapt, and the HLS
packager's segments keep ageing. Output timestamps may pass 2**32; every
encoder (FLV, RTMP, MPEG-TS, RTP) wraps them as its format does.

A stream with Dolby audio (dolby.py: Enhanced RTMP FourCC 'ac-3'/'ec-3')
has what legacy FLV/RTMP players cannot decode. A subscription made with
`legacy_audio` (an HTTP-FLV or RTMP viewer that is not a media worker) gets
AAC in its place: the stream runs one AacTranscoder (legacy_audio.py) while
it has such subscribers and Dolby audio, offers them its AAC frames instead
of the Dolby ones, and gives a joiner the AAC sequence header and the AAC
of its cached GOP (at most LEGACY_AAC_CACHE_MAX_FRAMES). Its video frames
are the shared ones; everyone else keeps the Dolby frames.

The hub runs in one event loop and is not thread-safe.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable

from .codecs import (
    AacConfig,
    AvcConfig,
    CodecError,
    parse_aac_sequence_header,
    parse_avc_sequence_header,
    parse_dolby_sync_frame,
)
from .dolby import DECODER_OF_FOURCC
from .flv import (
    AUDIO_CODEC_AAC,
    AUDIO_PACKET_CODED_FRAMES,
    EX_AUDIO_BODY_HEADER_BYTES,
    TIMESTAMP_BACKWARD_TOLERANCE_MS,
    TIMESTAMP_JUMP_MS,
    TIMESTAMP_WRAP_MS,
    VIDEO_CODEC_AVC,
    VIDEO_CODEC_NAMES,
    FrameKind,
    audio_channels,
    audio_codec_name,
    audio_fourcc,
    audio_is_sequence_header,
    audio_sample_rate,
    encode_tag,
    ex_audio_packet_type,
    video_codec_id,
    video_is_keyframe,
    video_is_sequence_header,
)
from .gop import GopCache
from .legacy_audio import AacTranscoder
from .policy import StreamInfo, StreamKey
from .rts.h264 import flv_video_has_b_slices
from .stats import StreamCounters

log = logging.getLogger(__name__)

# Subscriptions that are the node's own work, not viewers.
INTERNAL_PROTOCOLS = frozenset({"hls-packager", "rts-probe"})

# B-frames are looked for in the first frames of a publication: an encoder
# that uses them sends one within its first GOP (x264: the third frame), and
# settings change only with a new publication. Ten seconds at 30 fps.
BFRAME_DETECTION_FRAMES = 300

# The GOP a late joiner gets at once. 1 s GOPs of 720p at 2 Mbit/s are 250 KB;
# 8 MiB holds 8 s GOPs at 8 Mbit/s. A longer GOP is not cached: the cache
# restarts at the next keyframe, and joiners wait for it.
GOP_CACHE_MAX_BYTES = 8 * 1024 * 1024
# A subscriber's queue in bytes of frame bodies. The bodies are shared, so
# this bounds how far behind a viewer may fall, not memory per viewer; it must
# hold the whole GOP cache, which a joiner receives at once.
SUBSCRIBER_MAX_BYTES = 2 * GOP_CACHE_MAX_BYTES
# A subscriber's queue in frames: 4096 references are 32 KiB, half of
# DESIGN.md's 64 KiB per viewer, and 50 s of 30 fps video with 48 kHz AAC.
SUBSCRIBER_MAX_FRAMES = 4096
# Stream time a viewer may fall behind before it is disconnected: longer than
# any GOP we cache plus a stall, short enough that a dead viewer goes soon.
SUBSCRIBER_MAX_LAG_MS = 20_000
# The AAC frames made for legacy viewers (module docstring) kept for joiners:
# those of the cached GOP. 1024 AAC frames are 21.8 s at 48 kHz, longer than
# any GOP the cache keeps at a useful bitrate, and about 400 KB at 128 kbit/s.
LEGACY_AAC_CACHE_MAX_FRAMES = 1024
# How long viewers wait for a publisher that went away to come back; OBS
# retries after 2 s by default (then 4, 8 ...).
RECONNECT_GRACE_SECONDS = 10.0
# The window of recent frames that frame rate and bitrates are measured over.
STATS_WINDOW_MS = 5_000
# The step between the old and the new timestamps when a publisher comes back
# and its frame interval cannot be measured (25 fps).
DEFAULT_FRAME_INTERVAL_MS = 40


class AlreadyPublishing(Exception):
    """Someone is already publishing this stream."""

    def __init__(self, key: StreamKey) -> None:
        super().__init__(f"{key} is already being published")
        self.key = key


class MediaFrame:
    """One pushed tag body, shared by every subscriber and the GOP cache.
    Treat it as immutable; `encoded` is a cache a server fills once per
    output format (e.g. RTMP chunks per chunk size), read by all its viewers.

    `kind` is a FrameKind (flv.py). `keyframe` means a viewer may start
    here: a video keyframe, or any audio frame of a stream that has no video."""

    __slots__ = ("kind", "timestamp", "body", "keyframe", "sequence_header", "encoded", "_flv_tag")

    def __init__(
        self, kind: FrameKind, timestamp: int, body: bytes, keyframe: bool = False, sequence_header: bool = False
    ):
        self.kind = kind
        self.timestamp = timestamp
        self.body = body
        self.keyframe = keyframe
        self.sequence_header = sequence_header
        self.encoded: dict = {}
        self._flv_tag: bytes | None = None

    @property
    def is_header(self) -> bool:
        """Metadata or a sequence header: never dropped, sent to every joiner."""
        return self.sequence_header or self.kind is FrameKind.META

    @property
    def flv_tag(self) -> bytes:
        """The FLV tag (with PreviousTagSize), encoded on first use."""
        tag = self._flv_tag
        if tag is None:
            tag = self._flv_tag = encode_tag(self.kind.tag_type, self.timestamp, self.body)
        return tag

    def __repr__(self) -> str:
        flags = ("K" if self.keyframe else "") + ("H" if self.sequence_header else "")
        return f"<MediaFrame {self.kind} {self.timestamp} ms {len(self.body)} B {flags}>"


class _RateWindow:
    """Frames of one kind over the last STATS_WINDOW_MS of stream time."""

    __slots__ = ("_frames", "_bytes")

    def __init__(self) -> None:
        self._frames: deque[tuple[int, int]] = deque()
        self._bytes = 0

    def add(self, timestamp: int, size: int) -> None:
        frames = self._frames
        if frames and timestamp < frames[-1][0]:
            # A track's timestamps only go forward; after a jump back, the old
            # frames could not be trimmed by time, so start over.
            frames.clear()
            self._bytes = 0
        frames.append((timestamp, size))
        self._bytes += size
        while frames[0][0] < timestamp - STATS_WINDOW_MS:
            self._bytes -= frames.popleft()[1]

    def _span_ms(self) -> int:
        return self._frames[-1][0] - self._frames[0][0] if len(self._frames) > 1 else 0

    def frame_rate(self) -> float:
        span = self._span_ms()
        return (len(self._frames) - 1) * 1000 / span if span > 0 else 0.0

    def bitrate(self) -> float:
        # Each frame but the last fills the interval up to the next one.
        span = self._span_ms()
        return (self._bytes - self._frames[-1][1]) * 8000 / span if span > 0 else 0.0

    def interval_ms(self) -> int:
        span = self._span_ms()
        return round(span / (len(self._frames) - 1)) if span > 0 else 0


class LiveStream:
    """A key's state in the hub: its publication (if live), subscribers,
    headers, GOP cache and the measurements of its current publication."""

    def __init__(self, hub: StreamHub, key: StreamKey) -> None:
        self.hub = hub
        self.key = key
        self.publication: Publication | None = None
        self.subscribers: dict[Subscription, None] = {}  # insertion-ordered set
        self.metadata: MediaFrame | None = None
        self.video_header: MediaFrame | None = None
        self.audio_header: MediaFrame | None = None
        self.avc_config: AvcConfig | None = None
        self.aac_config: AacConfig | None = None
        self._gop: GopCache[MediaFrame] = GopCache(hub.gop_cache_max_bytes)
        self._last_timestamp: int | None = None  # newest media timestamp sent out
        self._grace_timer: asyncio.TimerHandle | None = None
        # AAC for the legacy_audio subscribers of a Dolby stream (module docstring).
        self.legacy_subscribers = 0
        self.legacy_aac: AacTranscoder | None = None
        self.legacy_audio_header: MediaFrame | None = None
        self._legacy_cache: deque[MediaFrame] = deque(maxlen=LEGACY_AAC_CACHE_MAX_FRAMES)
        self._reset_measurements()

    def _reset_measurements(self) -> None:
        self.bytes_in = 0
        self._video = _RateWindow()
        self._audio = _RateWindow()
        self._video_codec = 0
        self._audio_body = b""  # the latest audio body: its codec, rate and channels
        # Whether a B slice was seen (WebRTC plays none; rts/h264.py).
        self.has_bframes = False
        self.counters = StreamCounters()  # for the per-second samples (stats.py)

    # --- what callers read ---------------------------------------------------------

    @property
    def is_live(self) -> bool:
        return self.publication is not None

    @property
    def started_at(self) -> float | None:
        """When the current publication started (Unix seconds)."""
        return self.publication.started_at if self.publication else None

    @property
    def headers(self) -> list[MediaFrame]:
        """What a joiner gets before the GOP: metadata, video, audio headers."""
        return [f for f in (self.metadata, self.video_header, self.audio_header) if f is not None]

    @property
    def gop(self) -> tuple[MediaFrame, ...]:
        return self._gop.frames

    @property
    def gop_bytes(self) -> int:
        return self._gop.nbytes

    @property
    def video_frames(self) -> int:
        """Video frames of this publication (its StreamCounters count them)."""
        return self.counters.video_frames

    @property
    def audio_frames(self) -> int:
        return self.counters.audio_frames

    @property
    def bitrate(self) -> float:
        """Video and audio bit/s over the last STATS_WINDOW_MS (0 until measured)."""
        return self._video.bitrate() + self._audio.bitrate()

    @property
    def video_bitrate(self) -> float:
        """Video bit/s over the last STATS_WINDOW_MS (0 until measured)."""
        return self._video.bitrate()

    @property
    def viewer_count(self) -> int:
        return len(self.subscribers)

    def viewers(self) -> dict[str, int]:
        """Viewers by protocol tag, e.g. {"flv": 3, "rtmp": 1, "rts": 5}: a
        subscription shared by several (RTS's one per stream) counts them,
        the node's own work (INTERNAL_PROTOCOLS: the HLS packager) none. HLS
        viewers hold no subscription; the samples count them by request
        (stats.py)."""
        # Plain dict arithmetic: Counter's ABC checks cost more than the rest
        # of a sampling tick (stats.py).
        counts: dict[str, int] = {}
        for sub in self.subscribers:
            protocol = sub.protocol
            if protocol not in INTERNAL_PROTOCOLS:
                counts[protocol] = counts.get(protocol, 0) + sub.viewers
        return counts

    def info(self) -> StreamInfo:
        avc, aac, audio = self.avc_config, self.aac_config, self._audio_body
        sample_rate = channels = 0
        if aac is not None and audio[:1] and audio[0] >> 4 == AUDIO_CODEC_AAC:
            sample_rate, channels = aac.sample_rate, aac.channels
        elif audio_fourcc(audio):
            # Enhanced RTMP: AC-3/E-AC-3 frames say their rate and channels themselves.
            try:
                dolby = parse_dolby_sync_frame(audio[EX_AUDIO_BODY_HEADER_BYTES:])
            except CodecError:
                pass
            else:
                sample_rate, channels = dolby.sample_rate, dolby.channels
        elif audio:
            sample_rate, channels = audio_sample_rate(audio), audio_channels(audio)
        return StreamInfo(
            video_codec=VIDEO_CODEC_NAMES.get(self._video_codec, ""),
            audio_codec=audio_codec_name(audio),
            width=avc.width if avc else 0,
            height=avc.height if avc else 0,
            frame_rate=self._video.frame_rate(),
            video_bitrate=self._video.bitrate(),
            audio_bitrate=self._audio.bitrate(),
            video_profile=avc.profile_name if avc else "",
            audio_sample_rate=sample_rate,
            audio_channels=channels,
            has_bframes=self.has_bframes,
        )

    # --- publication ----------------------------------------------------------------

    def _start(self, publication: Publication) -> None:
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        self.publication = publication
        self._reset_measurements()
        for sub in self.subscribers:
            sub._need_keyframe = True

    def _next_timestamp(self) -> int | None:
        """Where a returning publisher's timestamps continue: one frame after
        the last ones. None when nothing was sent yet (nothing to continue)."""
        if self._last_timestamp is None:
            return None
        step = self._video.interval_ms() or self._audio.interval_ms() or DEFAULT_FRAME_INTERVAL_MS
        return self._last_timestamp + step

    def _accept(self, frame: MediaFrame) -> None:
        body = frame.body
        size = len(body)
        self.bytes_in += size
        kind = frame.kind
        if kind is FrameKind.VIDEO:
            self._video_codec = video_codec_id(body)
        elif kind is FrameKind.AUDIO:
            self._audio_body = body
        if kind is FrameKind.META:
            self.metadata = frame
        elif frame.sequence_header:
            if kind is FrameKind.VIDEO:
                self.video_header = frame
                self.avc_config = (
                    self._parse(parse_avc_sequence_header, body) if video_codec_id(body) == VIDEO_CODEC_AVC else None
                )
            else:
                self.audio_header = frame
                self.aac_config = self._parse(parse_aac_sequence_header, body)
                if self.legacy_subscribers:
                    self._update_legacy_aac(restart=True)
            # Frames cached so far were coded with the old configuration.
            self._gop.restart()
        else:
            if self._last_timestamp is None or frame.timestamp > self._last_timestamp:
                self._last_timestamp = frame.timestamp
            if kind is FrameKind.VIDEO:
                self.counters.video(frame.timestamp, size, frame.keyframe)
                self._video.add(frame.timestamp, size)
                if (
                    not self.has_bframes
                    and self.avc_config is not None
                    and self.counters.video_frames <= BFRAME_DETECTION_FRAMES
                ):
                    self._detect_bframes(body)
            else:
                self._audio.add(frame.timestamp, size)
                self.counters.audio(frame.timestamp, size)
            self._gop.add(frame, size, frame.keyframe)
        hub, header = self.hub, frame.is_header
        if self.legacy_subscribers and kind is FrameKind.AUDIO and audio_fourcc(body) in DECODER_OF_FOURCC:
            # Dolby audio: the legacy subscribers get its AAC instead (module docstring).
            if self.legacy_aac is not None and ex_audio_packet_type(body) == AUDIO_PACKET_CODED_FRAMES:
                self.legacy_aac.push([(body[EX_AUDIO_BODY_HEADER_BYTES:], frame.timestamp)])
            for sub in tuple(self.subscribers):
                if not sub.legacy_audio:
                    sub._offer(frame, size, header, hub)
            return
        for sub in tuple(self.subscribers):
            sub._offer(frame, size, header, hub)

    # --- AAC for legacy subscribers (module docstring) ---------------------------------

    def _join_frames(self, legacy_audio: bool) -> list[MediaFrame]:
        """What a joiner is offered: the headers and the cached GOP; for a
        legacy subscriber of a Dolby stream, with the AAC in place of the Dolby audio."""
        if not legacy_audio or self.legacy_aac is None:
            return [*self.headers, *self._gop]
        headers = [f for f in (self.metadata, self.video_header, self.legacy_audio_header) if f is not None]
        gop = self._gop.frames
        if not gop:
            return headers
        start = gop[0].timestamp
        aac = [f for f in self._legacy_cache if f.timestamp >= start]
        video = [f for f in gop if f.kind is not FrameKind.AUDIO]
        # By time, the keyframe first: a joiner's first media frame must be one.
        return [*headers, *heapq.merge(video, aac, key=lambda f: f.timestamp)]

    def _update_legacy_aac(self, restart: bool = False) -> None:
        """Run the AAC conversion while the stream has legacy subscribers and
        Dolby audio, and only then; `restart`: a new audio header came."""
        header = self.audio_header
        decoder = DECODER_OF_FOURCC.get(audio_fourcc(header.body)) if header is not None else None
        want = decoder is not None and self.legacy_subscribers > 0
        if self.legacy_aac is not None and (restart or not want):
            self.legacy_aac.close()
            self.legacy_aac = self.legacy_audio_header = None
            self._legacy_cache.clear()
        if self.legacy_aac is None and want:
            self.legacy_aac = AacTranscoder(self._legacy_output)
            self.legacy_aac.configure(decoder, header.timestamp)
            # The cached GOP's audio, for joiners to hear from its keyframe on.
            self.legacy_aac.push([
                (f.body[EX_AUDIO_BODY_HEADER_BYTES:], f.timestamp)
                for f in self._gop
                if f.kind is FrameKind.AUDIO and ex_audio_packet_type(f.body) == AUDIO_PACKET_CODED_FRAMES
            ])  # fmt: skip

    def _legacy_output(self, timestamp: int, body: bytes, header: bool) -> None:
        """An AAC body from the conversion thread, on the loop."""
        if header:
            frame = self.legacy_audio_header = MediaFrame(FrameKind.AUDIO, timestamp, body, sequence_header=True)
        else:
            frame = MediaFrame(FrameKind.AUDIO, timestamp, body, keyframe=self.video_header is None)
            self._legacy_cache.append(frame)
        hub, size = self.hub, len(body)
        for sub in tuple(self.subscribers):
            if sub.legacy_audio:
                sub._offer(frame, size, header, hub)

    def _detect_bframes(self, body: bytes) -> None:
        try:
            self.has_bframes = flv_video_has_b_slices(body, self.avc_config.nal_length_size)
        except CodecError as exc:
            log.debug("stream %s: unreadable slice header: %s", self.key, exc)
            return
        if self.has_bframes:
            log.info("stream %s: has B-frames", self.key)

    def _parse(self, parser: Callable, body: bytes):
        try:
            return parser(body)
        except CodecError as exc:
            log.info("stream %s: unreadable sequence header: %s", self.key, exc)
            return None

    def _end_publication(self) -> None:
        self.publication = None
        # The next publisher brings its own headers and keyframes.
        self.metadata = self.video_header = self.audio_header = None
        self.avc_config = self.aac_config = None
        self._gop.restart()
        self._update_legacy_aac()
        if not self.subscribers:
            self.hub._forget(self)
            return
        grace = self.hub.reconnect_grace_seconds
        if grace > 0:
            self._grace_timer = asyncio.get_running_loop().call_later(grace, self._grace_expired)
        else:
            self._grace_expired()

    def _grace_expired(self) -> None:
        self._grace_timer = None
        if self.publication is not None:
            return
        subscribers, self.subscribers = self.subscribers, {}
        self.legacy_subscribers = 0
        for sub in subscribers:
            sub._end()
        self.hub._forget(self)

    def _detach(self, sub: Subscription) -> None:
        if sub in self.subscribers:
            del self.subscribers[sub]
            if sub.legacy_audio:
                self.legacy_subscribers -= 1
                self._update_legacy_aac()
        if self.publication is None and not self.subscribers:
            self.hub._forget(self)


class _Track:
    """One track's rebasing state: output = input + offset, kept monotonic."""

    __slots__ = ("last_in", "last_out", "offset", "interval")

    def __init__(self, last_in: int, last_out: int) -> None:
        self.last_in = last_in
        self.last_out = last_out
        self.offset = last_out - last_in
        self.interval = DEFAULT_FRAME_INTERVAL_MS  # the last normal step, for rebasing

    def rebase(self, timestamp: int, other: _Track | None) -> tuple[int, bool]:
        """The output time of a frame at input `timestamp`, and whether its
        step was a jump (any step back, or forward past TIMESTAMP_JUMP_MS).
        `other` is the stream's other track, if it has one."""
        # The step as a signed 32-bit difference: across a wrap, a small step.
        step = (timestamp - self.last_in + TIMESTAMP_WRAP_MS // 2) % TIMESTAMP_WRAP_MS - TIMESTAMP_WRAP_MS // 2
        jump = step < 0 or step > TIMESTAMP_JUMP_MS
        # A long step forward that the other track has already made is a gap
        # in this track (video frozen while audio went on), not a jump:
        # closing it would put the tracks out of step.
        gap = (
            step > TIMESTAMP_JUMP_MS
            and other is not None
            and other.last_out >= self.last_out + step - TIMESTAMP_JUMP_MS
        )
        if gap:
            jump = False  # it reaches the stats as it is, and they count it
        if -TIMESTAMP_BACKWARD_TOLERANCE_MS <= step <= TIMESTAMP_JUMP_MS or gap:
            # Continuation: the offset changes only across a wrap (by 2**32).
            self.offset = self.last_in + self.offset + step - timestamp
            out = max(timestamp + self.offset, self.last_out)
            if 0 < step <= TIMESTAMP_JUMP_MS:
                self.interval = step
        else:
            # A discontinuity: go on one frame after the last output.
            out = self.last_out + self.interval
            self.offset = out - timestamp
        self.last_in, self.last_out = timestamp, out
        return out, jump


class Publication:
    """The live publisher of one stream. `push` each audio, video and
    metadata tag body; `close` when the publisher goes. `kicked` is set when
    the hub ends it (forbid): the server then closes the connection."""

    def __init__(self, stream: LiveStream, floor: int | None) -> None:
        self.stream = stream
        self.key = stream.key
        self.started_at = time.time()
        self.kicked = asyncio.Event()
        self.closed = False
        self.close_reason = ""
        self._has_video = False
        # Rebasing (module docstring): the first publication's timestamps pass
        # through; a returning publisher's start at `floor`, the offset fixed
        # at its first audio or video frame.
        self._floor = 0 if floor is None else floor
        self._offset: int | None = 0 if floor is None else None
        # Each track's own rebasing within the publication (module docstring).
        self._tracks: dict[FrameKind, _Track] = {}

    def push(self, kind: FrameKind | str, timestamp: int, body: bytes) -> MediaFrame | None:
        """Classify, rebase, cache and fan out one tag body. Returns the
        frame, or None once the publication is closed (the frame is dropped)."""
        if self.closed:
            return None
        if type(kind) is not FrameKind:
            try:
                kind = FrameKind(kind)
            except ValueError:
                kinds = ", ".join(repr(k.value) for k in FrameKind)
                raise ValueError(f"frame kind must be one of {kinds}, not {kind!r}") from None
        if type(body) is not bytes:
            body = bytes(body)
        if kind is FrameKind.VIDEO:
            header = video_is_sequence_header(body)
            keyframe = not header and video_is_keyframe(body)
            self._has_video = True
        elif kind is FrameKind.AUDIO:
            header = audio_is_sequence_header(body)
            keyframe = not header and not self._has_video
        else:
            header = keyframe = False
        timestamp = self._rebase(kind, timestamp, header)
        frame = MediaFrame(kind, timestamp, body, keyframe, header)
        self.stream._accept(frame)
        return frame

    def offset_of(self, kind: FrameKind) -> int:
        """What the rebasing adds to `kind`'s input timestamps now: 0 for a
        first publication until a jump, the stream's continuation for a
        returning one. For a server that sends some of the publisher's
        media on beside the hub (WHIP's Opus to WHEP viewers, rts/ingest.py)."""
        track = self._tracks.get(kind)
        if track is not None:
            return track.offset
        return self._offset or 0

    def close(self, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self.stream._end_publication()

    def _rebase(self, kind: FrameKind, timestamp: int, header: bool) -> int:
        tracks = self._tracks
        if kind is FrameKind.META or header:
            # No media time of its own: stamped where its track (or the stream) is.
            track = tracks.get(kind) or tracks.get(FrameKind.VIDEO) or tracks.get(FrameKind.AUDIO)
            if track is not None:
                return track.last_out
            return self._floor if self._offset is None else max(timestamp + self._offset, self._floor)
        track = tracks.get(kind)
        other = tracks.get(FrameKind.AUDIO if kind is FrameKind.VIDEO else FrameKind.VIDEO)
        if track is not None:
            out, jump = track.rebase(timestamp, other)
            if jump:
                self.stream.counters.timestamp_jumps += 1
            return out
        if self._offset is None:
            self._offset = self._floor - timestamp
        # A frame older than the new publication's first one (audio and
        # video interleave loosely) must not go back past the old stream.
        out = max(timestamp + self._offset, self._floor)
        if other is not None and abs(out - other.last_out) > TIMESTAMP_JUMP_MS:
            # A track that starts far from the other one (one of them began
            # with a wild timestamp): join the other track's timeline.
            out = max(other.last_out, self._floor)
            self.stream.counters.timestamp_jumps += 1
        tracks[kind] = _Track(timestamp, out)
        return out


class Subscription:
    """One viewer's bounded queue of shared frames.

    Take frames with `await get()` (None when the subscription is over), or
    with `drain()` from an `on_ready` callback, which the hub calls when the
    queue stops being empty and when the subscription ends."""

    __slots__ = (
        "key",
        "protocol",
        "legacy_audio",
        "viewers",
        "identities",
        "dropped",
        "skips",
        "lagging_disconnect",
        "_stream",
        "_queue",
        "_queued_bytes",
        "_need_keyframe",
        "_position",
        "_ended",
        "_waiter",
        "_on_ready",
    )

    def __init__(self, stream: LiveStream, protocol: str, legacy_audio: bool = False, viewer: str = "") -> None:
        self.key = stream.key
        self.protocol = protocol
        # AAC in place of Dolby audio (module docstring).
        self.legacy_audio = legacy_audio
        self.viewers = 1  # how many viewers it serves: a shared one (RTS) sets its count
        # Its viewers' stats.viewer_identity, for unique viewers (stats.py):
        # the one viewer's, or a shared one's (RTS) set of them.
        self.identities: Iterable[str] = (viewer,) if viewer else ()
        self.dropped = 0  # frames this viewer did not get
        self.skips = 0  # times it was skipped to a keyframe
        self.lagging_disconnect = False
        self._stream = stream
        self._queue: deque[MediaFrame] = deque()
        self._queued_bytes = 0
        self._need_keyframe = True
        # Timestamp of the last media frame taken, or of the first queued
        # since the viewer was last caught up; None while caught up.
        self._position: int | None = None
        self._ended = False
        self._waiter: asyncio.Future | None = None
        self._on_ready: Callable[[Subscription], None] | None = None

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    @property
    def queued_frames(self) -> int:
        return len(self._queue)

    @property
    def ended(self) -> bool:
        """No frame will be queued any more (what is queued may still be taken)."""
        return self._ended

    async def get(self) -> MediaFrame | None:
        while not self._queue:
            if self._ended:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._pop()

    def drain(self, max_frames: int | None = None) -> list[MediaFrame]:
        """Take what is queued now, without waiting."""
        count = len(self._queue) if max_frames is None else min(max_frames, len(self._queue))
        return [self._pop() for _ in range(count)]

    def count_sent(self, nbytes: int) -> None:
        """The viewer's server wrote `nbytes` of this stream (once per write,
        not per frame): the stream's bytes out for its protocol."""
        self._stream.counters.sent(self.protocol, nbytes)

    def close(self) -> None:
        self._queue.clear()
        self._queued_bytes = 0
        if not self._ended:
            self._end()
        self._stream._detach(self)

    # --- the hub's side -------------------------------------------------------------

    def _pop(self) -> MediaFrame:
        frame = self._queue.popleft()
        self._queued_bytes -= len(frame.body)
        if not self._queue:
            self._position = None
        elif not frame.is_header:
            self._position = frame.timestamp
        return frame

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._on_ready is not None:
            self._on_ready(self)

    def _end(self) -> None:
        self._ended = True
        self._wake()

    def _offer(self, frame: MediaFrame, size: int, header: bool, hub: StreamHub) -> None:
        if not header:
            position = self._position
            if position is not None and frame.timestamp - position > hub.subscriber_max_lag_ms:
                self._disconnect_lagging()
                return
            if self._need_keyframe:
                if not frame.keyframe:
                    self.dropped += 1
                    return
                self._need_keyframe = False
        queue = self._queue
        if self._queued_bytes + size > hub.subscriber_max_bytes or len(queue) >= hub.subscriber_max_frames:
            self._skip()
            if not header:
                if not frame.keyframe:
                    self.dropped += 1
                    return
                self._need_keyframe = False
        if not header and self._position is None:
            self._position = frame.timestamp
        queue.append(frame)
        self._queued_bytes += size
        if len(queue) == 1:
            self._wake()

    def _skip(self) -> None:
        """Drop the queued media and wait for the next keyframe, keeping the
        newest header of each kind."""
        queue = self._queue
        headers: dict[tuple[FrameKind, bool], MediaFrame] = {}
        for frame in queue:
            if frame.is_header:
                headers[frame.kind, frame.sequence_header] = frame
        self.dropped += len(queue) - len(headers)
        self.skips += 1
        queue.clear()
        queue.extend(headers.values())
        self._queued_bytes = sum(len(f.body) for f in queue)
        self._need_keyframe = True

    def _disconnect_lagging(self) -> None:
        self.lagging_disconnect = True
        self.dropped += len(self._queue)
        self.close()


class StreamHub:
    """Every stream a media node carries, by StreamKey."""

    def __init__(
        self,
        *,
        gop_cache_max_bytes: int = GOP_CACHE_MAX_BYTES,
        subscriber_max_bytes: int = SUBSCRIBER_MAX_BYTES,
        subscriber_max_frames: int = SUBSCRIBER_MAX_FRAMES,
        subscriber_max_lag_ms: int = SUBSCRIBER_MAX_LAG_MS,
        reconnect_grace_seconds: float = RECONNECT_GRACE_SECONDS,
    ) -> None:
        if subscriber_max_bytes < gop_cache_max_bytes:
            raise ValueError("subscriber_max_bytes must hold the GOP cache (at least gop_cache_max_bytes)")
        self.gop_cache_max_bytes = gop_cache_max_bytes
        self.subscriber_max_bytes = subscriber_max_bytes
        self.subscriber_max_frames = subscriber_max_frames
        self.subscriber_max_lag_ms = subscriber_max_lag_ms
        self.reconnect_grace_seconds = reconnect_grace_seconds
        self._streams: dict[StreamKey, LiveStream] = {}
        # Told of every key a viewer starts waiting for (the node asks for a
        # rendition's transcode, renditions.py).
        self.on_wait: Callable[[StreamKey], None] | None = None
        self._live_waiters: dict[StreamKey, set[asyncio.Future]] = {}

    def publish(self, key: StreamKey) -> Publication:
        """Start publishing `key`. Raises AlreadyPublishing if it is live."""
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = LiveStream(self, key)
        elif stream.publication is not None:
            raise AlreadyPublishing(key)
        publication = Publication(stream, stream._next_timestamp())
        stream._start(publication)
        for waiter in self._live_waiters.pop(key, ()):
            if not waiter.done():
                waiter.set_result(None)
        return publication

    def subscribe(
        self,
        key: StreamKey,
        *,
        protocol: str = "",
        on_ready: Callable[[Subscription], None] | None = None,
        legacy_audio: bool = False,
        viewer: str = "",
    ) -> Subscription:
        """Watch `key`, live or not yet. The headers and cached GOP are queued
        before this returns; `on_ready` is called for what comes after. A
        subscription to a stream that never goes live waits until closed:
        servers ask `wait_live` first. `legacy_audio`: a player that knows
        only the legacy FLV SoundFormats, which gets AAC for Dolby audio.
        `viewer`: the viewer's stats.viewer_identity (unique viewers)."""
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = LiveStream(self, key)
        sub = Subscription(stream, protocol, legacy_audio, viewer)
        stream.subscribers[sub] = None
        if legacy_audio:
            stream.legacy_subscribers += 1
            stream._update_legacy_aac()
        for frame in stream._join_frames(legacy_audio):
            sub._offer(frame, len(frame.body), frame.is_header, self)
        sub._on_ready = on_ready
        return sub

    def is_live(self, key: StreamKey) -> bool:
        stream = self._streams.get(key)
        return stream is not None and stream.publication is not None

    def waiting_keys(self) -> list[StreamKey]:
        """Keys viewers are waiting (`wait_live`) to go live."""
        return list(self._live_waiters)

    def live_keys(self) -> list[StreamKey]:
        return [key for key, stream in self._streams.items() if stream.publication is not None]

    def stream(self, key: StreamKey) -> LiveStream | None:
        """The stream's state, if it is live or has subscribers waiting."""
        return self._streams.get(key)

    async def wait_live(self, key: StreamKey, timeout: float) -> bool:
        """Whether `key` is live, waiting up to `timeout` seconds for it."""
        if self.is_live(key) or timeout <= 0:
            return self.is_live(key)
        if self.on_wait is not None:
            self.on_wait(key)
        waiter = asyncio.get_running_loop().create_future()
        waiters = self._live_waiters.setdefault(key, set())
        waiters.add(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            pass
        finally:
            waiters.discard(waiter)
            if not waiters and self._live_waiters.get(key) is waiters:
                del self._live_waiters[key]
        return self.is_live(key)

    def kick(self, key: StreamKey) -> bool:
        """End the live publication of `key` and set its `kicked` event."""
        stream = self._streams.get(key)
        if stream is None or stream.publication is None:
            return False
        publication = stream.publication
        publication.kicked.set()
        publication.close("kicked")
        return True

    def _forget(self, stream: LiveStream) -> None:
        if stream._grace_timer is not None:
            stream._grace_timer.cancel()
            stream._grace_timer = None
        if self._streams.get(stream.key) is stream:
            del self._streams[stream.key]
