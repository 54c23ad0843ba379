"""A live HLS and low-latency HLS packager (RFC 8216, draft-pantos-hls-rfc8216bis).

`HlsPackager` is fed what the hub carries (FLV tag bodies, millisecond
timestamps, the keyframe and sequence-header flags) and keeps, in memory:

- segments (MPEG-TS, from `mpegts.TsMuxer`) cut at keyframes once they reach
  the target duration, each made of LL-HLS parts (partial segments) that end
  at the frame boundary that keeps them within the part target;
- the media playlist in both flavours: plain (EXT-X-VERSION 3) and low-latency
  (EXT-X-VERSION 9 with EXT-X-PART, EXT-X-PRELOAD-HINT, EXT-X-SERVER-CONTROL).

Timing comes from the media: segment and part durations are differences of
DTS (video when there is video, else audio), so EXTINF matches the frames
exactly. The caller passes the wall clock (Unix seconds) with each frame; it
anchors EXT-X-PROGRAM-DATE-TIME at the first segment (and again after a
discontinuity), later dates follow the media time.

URIs, relative to the playlist (`uri_prefix` is put before each one; with the
playlist at `/{app}/{stream}.m3u8` and `uri_prefix="{stream}/"` they resolve
to `/{app}/{stream}/seg_12.ts`):

    seg_{msn}.ts?token={token}          a whole segment
    part_{msn}_{index}.ts?token={token} part `index` (from 0) of segment `msn`

`parse_media_uri` reads such a file name back. Segment bytes are the
concatenation of the segment's parts; every segment and every independent
part starts with a PAT and a PMT.

With `key_rotation_segments` set, the packager encrypts (hls_crypto.py):
every segment and every part with AES-128, a new key every that many
segments, and the playlist carries an EXT-X-KEY where the key changes,
naming

    key_{id}.key?token={token}          the key of segments from id*N on

Only the encrypted bytes are kept once a part or a segment is complete.

Serving (not here: the HTTP layer) goes like this. A playlist request with
`_HLS_msn`/`_HLS_part` asks `reload_decision()`: READY (answer now), WAIT
(hold the request and ask again after the next `push` that returns events, at
most `blocking_timeout_s`, then 503) or BAD_REQUEST (400 with the reason). A
part request asks `part_status()`: READY, WAIT (it is the part being built,
the one the preload hint names) or NOT_FOUND.

The segment and part URIs carry a token the server mints and checks
(signing.make_segment_token, with the other signing code); it hands them
out only in a playlist whose signed URL it has checked.

The timeline's timestamps should only go forward (the hub makes them so).
A step forward past TIMESTAMP_JUMP_MS, or back past
TIMESTAMP_BACKWARD_TOLERANCE_MS, is taken as a discontinuity (as when the
publisher changes): the segment ends there and the next one, from the next
keyframe, starts with EXT-X-DISCONTINUITY. A smaller step back is held at
the last time.

Pure: no I/O, no clock. A frame the muxer cannot use raises TsMuxError; the
frame is dropped and the packager stays usable.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import os
import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import quote

from .flv import TIMESTAMP_BACKWARD_TOLERANCE_MS, TIMESTAMP_JUMP_MS, FrameKind
from .hls_crypto import HlsKeyring, encrypt_aes128, key_file_name, key_tag, sequence_iv
from .mpegts import TsMuxer

# Target durations we accept, in whole seconds (RFC 8216 4.3.3.1 makes it an
# integer). Short segments are what makes plain HLS low in latency: hls.js
# starts three target durations from the live edge by default.
MIN_TARGET_DURATION_S = 1
MAX_TARGET_DURATION_S = 10
# Part targets we accept. Apple recommends 0.33-1 s, hls.js works from 0.2 s;
# every part costs a request, so below 0.1 s the overhead is not worth it.
MIN_PART_DURATION_S = 0.1
MAX_PART_DURATION_S = 1.0
# RFC 8216 6.2.2: a live playlist must last at least three target durations.
MIN_WINDOW_SEGMENTS = 3
MAX_WINDOW_SEGMENTS = 100
# A publisher whose keyframes are further apart than this still gets
# segments: the segment is cut at the next frame without one (a player joins
# late there, but TARGETDURATION stays bounded and memory with it).
MAX_SEGMENT_DURATION_MS = 10_000
# The same for bytes: 10 s at 25 Mbit/s. An open segment is the only thing
# the publisher can grow; past this it is cut at the next frame, of either
# track, whatever the timestamps say (a frozen clock must not hold it open),
# so what a packager holds is at most this times the segments it keeps.
MAX_SEGMENT_BYTES = 32 * 1024 * 1024
# Frame intervals remembered to predict where the next frame falls (part and
# segment cuts): their mean rides over one late frame and over the 33/34 ms
# alternation of 30 fps in whole milliseconds.
INTERVAL_HISTORY_FRAMES = 8
# Timestamps are whole milliseconds: a span of frames may last one more
# millisecond than its frame count says.
TIMESTAMP_ROUNDING_MS = 1
# How long the last frame before a discontinuity lasts when no interval was
# measured (25 fps, as the hub assumes), so no segment is 0 s long.
DEFAULT_FRAME_INTERVAL_MS = 40
# RFC 8216bis 4.4.3.8: PART-HOLD-BACK MUST be at least twice and SHOULD be
# three times the part target; three is also what hls.js aims at.
MIN_PART_HOLD_BACK_PARTS = 2
PART_HOLD_BACK_PARTS = 3
# RFC 8216bis 4.4.3.7: parts older than three target durations from the end
# may leave the playlist.
PARTS_LISTED_TARGET_DURATIONS = 3
# RFC 8216bis 6.2.5.2: a blocked reload should be answered within three
# target durations (else 503).
BLOCKING_TARGET_DURATIONS = 3
# The longest _HLS_msn/_HLS_part/msn/index we read (digits): far past any real
# sequence number, short enough that int() is cheap.
MAX_SEQUENCE_DIGITS = 18
# The Media Sequence Number of a stream's first segment (RFC 8216 6.2.1 lets a
# server start anywhere). Not 0: hls.js 1.7 (fragment-tracker.ts,
# detectEvictedFragments: `appendedPart?.fragment.sn || -1`) takes segment 0
# for "no part appended", so buffering a part of segment 0 evicts segment 0
# itself from its tracker; it forgets which parts it has, loads them all
# again, and its transmuxer appends the repeated video after what it had: the
# video runs a segment ahead of the audio and playback holds where the audio
# ends, about a second in, for a player that starts in the first segment (a
# stream's first viewer; issue 12).
FIRST_MEDIA_SEQUENCE = 1

TOKEN_QUERY = "token"
# Renderings of one packager state kept for reuse (low-latency or not, a
# token, the rendition reports: a handful in practice).
MAX_RENDERED_PLAYLISTS = 8
_MEDIA_URI = re.compile(rf"(?:seg_(\d{{1,{MAX_SEQUENCE_DIGITS}}})|part_(\d{{1,18}})_(\d{{1,6}}))\.ts", re.ASCII)
_KEY_URI = re.compile(rf"key_(\d{{1,{MAX_SEQUENCE_DIGITS}}})\.key", re.ASCII)


class Readiness(enum.Enum):
    READY = "ready"
    WAIT = "wait"
    BAD_REQUEST = "bad request"
    NOT_FOUND = "not found"


@dataclass(frozen=True, slots=True)
class ReloadDecision:
    readiness: Readiness
    reason: str = ""  # why, for a 400


READY = ReloadDecision(Readiness.READY)
WAIT = ReloadDecision(Readiness.WAIT)


@dataclass(frozen=True, slots=True)
class HlsPartCompleted:
    msn: int
    index: int


@dataclass(frozen=True, slots=True)
class HlsSegmentCompleted:
    msn: int


@dataclass(frozen=True, slots=True)
class MediaRef:
    """What a segment or part URI names; `part` is None for a whole segment."""

    msn: int
    part: int | None = None


@dataclass(frozen=True, slots=True)
class LlHlsPart:
    """A partial segment: a slice of its segment's bytes."""

    index: int
    offset: int
    size: int
    duration_ms: int
    independent: bool


class HlsSegment:
    """A media segment; `data` is a bytearray while it is open, bytes after
    (encrypted, when the packager encrypts: then `encrypted_parts` holds
    each complete part's bytes, encrypted on its own)."""

    __slots__ = (
        "msn",
        "start_ms",
        "duration_ms",
        "program_date_time",
        "discontinuity",
        "discontinuity_sequence",
        "parts",
        "data",
        "closed_at",
        "key_id",
        "encrypted_parts",
    )

    def __init__(self, msn: int, start_ms: int, program_date_time: float, discontinuity: bool, sequence: int) -> None:
        self.msn = msn
        self.start_ms = start_ms
        self.duration_ms = 0
        self.program_date_time = program_date_time
        self.discontinuity = discontinuity
        # The discontinuity sequence number of this segment (RFC 8216 6.2.1):
        # discontinuities before it, itself included.
        self.discontinuity_sequence = sequence
        self.parts: list[LlHlsPart] = []
        self.data: bytes | bytearray = bytearray()
        self.closed_at = 0.0  # Unix seconds when its last frame came in (push's wallclock)
        self.key_id: int | None = None  # the key that encrypts it, None in clear
        self.encrypted_parts: list[bytes] = []

    def part_bytes(self, index: int) -> bytes:
        if self.key_id is not None:
            return self.encrypted_parts[index]
        part = self.parts[index]
        return bytes(self.data[part.offset : part.offset + part.size])


def _extinf(duration_ms: int) -> str:
    return f"{duration_ms // 1000}.{duration_ms % 1000:03d}"


def _rounded_seconds(duration_ms: int) -> int:
    # RFC 8216 4.3.3.1: EXTINF "rounded to the nearest integer" (halves up).
    return (duration_ms + 500) // 1000


def _date_time(unix_seconds: float) -> str:
    moment = dt.datetime.fromtimestamp(unix_seconds, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _sequence_number(value: str, name: str) -> int | str:
    """A non-negative decimal, or the reason it is not one."""
    if not (value.isascii() and value.isdigit()) or len(value) > MAX_SEQUENCE_DIGITS:
        return f"{name} must be a non-negative integer"
    return int(value)


def advance_part_limit(part_target_s: float) -> int:
    """RFC 8216bis 6.2.5.2: three divided by the part target when that is
    under a second, else three."""
    return int(3 / part_target_s) if part_target_s < 1 else 3


def decide_blocking_reload(
    hls_msn: str | None,
    hls_part: str | None,
    *,
    open_msn: int,
    open_parts: int,
    previous_parts: int,
    part_limit: int,
) -> ReloadDecision:
    """Whether a playlist request with these delivery directives (RFC 8216bis
    6.2.5.2; the raw query values, None when absent) can be answered now.

    `open_msn` is the segment being built (one past the last complete one),
    `open_parts` how many of its parts are complete, `previous_parts` how
    many parts the last complete segment has, `part_limit` the Advance Part
    Limit. A part "or later" satisfies a request, so once segment M is
    complete and a part of M+1 exists, any part of M is there."""
    if hls_msn is None:
        return ReloadDecision(Readiness.BAD_REQUEST, "_HLS_part without _HLS_msn") if hls_part is not None else READY
    msn = _sequence_number(hls_msn, "_HLS_msn")
    if isinstance(msn, str):
        return ReloadDecision(Readiness.BAD_REQUEST, msn)
    if msn > open_msn + 1:
        return ReloadDecision(Readiness.BAD_REQUEST, f"_HLS_msn {msn} is more than two segments past the last one")
    if hls_part is None:
        return READY if msn < open_msn else WAIT
    part = _sequence_number(hls_part, "_HLS_part")
    if isinstance(part, str):
        return ReloadDecision(Readiness.BAD_REQUEST, part)
    if msn < open_msn - 1:
        return READY
    if msn == open_msn - 1:
        return READY if part < previous_parts or open_parts > 0 else WAIT
    if msn == open_msn:
        if part < open_parts:
            return READY
        ahead = part - (open_parts - 1)
    else:  # the segment after the open one: at least the open part comes first
        ahead = part + 2
    if ahead > part_limit:
        return ReloadDecision(Readiness.BAD_REQUEST, f"_HLS_part {part} is more than {part_limit} parts ahead")
    return WAIT


def parse_media_uri(name: str) -> MediaRef | None:
    """`seg_12.ts` or `part_12_3.ts` (the last path component, without the
    query) as a MediaRef; None for anything else."""
    match = _MEDIA_URI.fullmatch(name)
    if match is None:
        return None
    segment, msn, part = match.groups()
    return MediaRef(int(segment)) if segment is not None else MediaRef(int(msn), int(part))


def parse_key_uri(name: str) -> int | None:
    """The key id of `key_3.key` (the last path component), or None."""
    match = _KEY_URI.fullmatch(name)
    return int(match[1]) if match is not None else None


class HlsPackager:
    """One live stream's segments, parts and playlists (module docstring)."""

    def __init__(
        self,
        target_duration_s: int = 1,
        part_duration_s: float = 1 / 3,
        window_segments: int = 6,
        retained_segments: int | None = None,
        uri_prefix: str = "",
        part_hold_back_parts: int = PART_HOLD_BACK_PARTS,
        key_rotation_segments: int = 0,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        """`retained_segments`: complete segments kept after they leave the
        playlist, so a client that loaded the playlist just before can still
        fetch them (RFC 8216 6.2.2: as long as the playlist lasts); by
        default as many as the window. `key_rotation_segments`: encrypt, with
        a new key (`random_bytes(16)`) every that many segments; 0: in clear.
        A key is destroyed once no segment held needs it (hls_crypto.KEY_MARGIN_KEYS
        later), so keys last as long as the window, the retained segments and a margin."""
        if not (isinstance(target_duration_s, int) and MIN_TARGET_DURATION_S <= target_duration_s):
            raise ValueError(f"target_duration_s must be an integer of at least {MIN_TARGET_DURATION_S}")
        if target_duration_s > MAX_TARGET_DURATION_S:
            raise ValueError(f"target_duration_s must be at most {MAX_TARGET_DURATION_S}")
        if not MIN_PART_DURATION_S <= part_duration_s <= MAX_PART_DURATION_S or part_duration_s >= target_duration_s:
            raise ValueError(
                f"part_duration_s must be {MIN_PART_DURATION_S}-{MAX_PART_DURATION_S} and less than the target duration"
            )
        if not MIN_WINDOW_SEGMENTS <= window_segments <= MAX_WINDOW_SEGMENTS:
            raise ValueError(f"window_segments must be {MIN_WINDOW_SEGMENTS}-{MAX_WINDOW_SEGMENTS}")
        if part_hold_back_parts < MIN_PART_HOLD_BACK_PARTS:
            raise ValueError(f"part_hold_back_parts must be at least {MIN_PART_HOLD_BACK_PARTS}")
        retained = window_segments if retained_segments is None else retained_segments
        if not 0 <= retained <= MAX_WINDOW_SEGMENTS:
            raise ValueError(f"retained_segments must be 0-{MAX_WINDOW_SEGMENTS}")
        self.configured_target_duration_s = target_duration_s
        # Milliseconds plus the rounding of whole-millisecond timestamps: six
        # frames of 30 fps video span 200 or 201 ms, ten span 333 or 334, and
        # PART-TARGET must hold the longer (RFC 8216bis 4.4.4.9: no part
        # exceeds it). Parts are cut to the configured duration, so they also
        # stay above 85 % of this (the same section).
        self.part_target_ms = math.floor(part_duration_s * 1000 + 1e-6) + TIMESTAMP_ROUNDING_MS
        self.part_hold_back_parts = part_hold_back_parts
        self.window_segments = window_segments
        self.uri_prefix = uri_prefix
        self.part_limit = advance_part_limit(self.part_target_ms / 1000)
        self._muxer = TsMuxer()
        self.keyring = (
            HlsKeyring(key_rotation_segments, FIRST_MEDIA_SEQUENCE, random_bytes) if key_rotation_segments else None
        )
        self._segments: deque[HlsSegment] = deque(maxlen=window_segments + retained)
        # Playlists as last rendered, until the next frame or discontinuity:
        # the viewers of a stream all ask for the same one as a part completes.
        self._version = 0
        self._rendered: dict[tuple, str] = {}
        self._rendered_version = -1
        self._open: HlsSegment | None = None
        self._part_start_ms = 0
        self._part_offset = 0
        self._part_independent = False
        self._next_msn = FIRST_MEDIA_SEQUENCE
        self._discontinuities = 0
        self._discontinuity_pending = False
        self._has_video = False
        self._last_ms: int | None = None
        self._intervals: deque[int] = deque(maxlen=INTERVAL_HISTORY_FRAMES)
        self._anchor: tuple[int, float] | None = None  # (media ms, Unix seconds)
        self._longest_ms = 0
        self._last_wallclock = 0.0

    # --- what the server reads -----------------------------------------------------

    @property
    def target_duration_s(self) -> int:
        """EXT-X-TARGETDURATION: the configured one, or more if a segment
        (because of the publisher's keyframe interval) was longer. RFC 8216
        4.3.3.1: no EXTINF, rounded, may exceed it."""
        return max(self.configured_target_duration_s, _rounded_seconds(self._longest_ms))

    @property
    def blocking_timeout_s(self) -> float:
        return BLOCKING_TARGET_DURATIONS * self.target_duration_s

    @property
    def part_hold_back_ms(self) -> int:
        return self.part_hold_back_parts * self.part_target_ms

    @property
    def held_bytes(self) -> int:
        """The bytes of every segment held, the open one included."""
        held = sum(len(segment.data) + sum(map(len, segment.encrypted_parts)) for segment in self._segments)
        if self._open is not None:
            held += len(self._open.data) + sum(map(len, self._open.encrypted_parts))
        return held

    @property
    def has_segments(self) -> bool:
        """A plain playlist lists something (a LL one may list parts before)."""
        return bool(self._segments)

    def segment_ends_within(self, margin_ms: int) -> bool:
        """Whether the open segment will likely be complete within
        `margin_ms`: it has lasted as long as the last complete one, less
        the margin (a publisher's keyframe interval is steady)."""
        if self._open is None or self._last_ms is None or not self._segments:
            return False
        return self._last_ms - self._open.start_ms + margin_ms >= self._segments[-1].duration_ms

    @property
    def building_part(self) -> tuple[int, int]:
        """(msn, index) of the part being built: the preload hint."""
        return self._next_part()

    def segment(self, msn: int) -> bytes | None:
        """A complete segment still held, or None."""
        found = self._find(msn)
        return found.data if found is not None and found is not self._open else None

    def part(self, msn: int, index: int) -> bytes | None:
        """A complete part still held (of a complete or the open segment), or None."""
        found = self._find(msn)
        if found is None or not 0 <= index < len(found.parts):
            return None
        return found.part_bytes(index)

    def key(self, key_id: int) -> bytes | None:
        """A key still kept, or None (also for a packager in clear)."""
        return self.keyring.get(key_id) if self.keyring is not None else None

    def part_status(self, msn: int, index: int) -> Readiness:
        """READY when part() has it, WAIT for the part being built (the
        preload hint), else NOT_FOUND."""
        if self.part(msn, index) is not None:
            return Readiness.READY
        return Readiness.WAIT if (msn, index) == self._next_part() else Readiness.NOT_FOUND

    def last_msn_part(self) -> tuple[int, int] | None:
        """(msn, index) of the newest complete part, or None: what an
        EXT-X-RENDITION-REPORT of this stream says."""
        if self._open is not None and self._open.parts:
            return self._open.msn, len(self._open.parts) - 1
        if self._segments:
            last = self._segments[-1]
            return last.msn, len(last.parts) - 1
        return None

    def reload_decision(self, hls_msn: str | None, hls_part: str | None) -> ReloadDecision:
        """decide_blocking_reload() with this stream's live edge."""
        open_msn, open_parts = self._next_part()
        last = self._segments[-1] if self._segments else None
        previous_parts = len(last.parts) if last is not None and last.msn == open_msn - 1 else 0
        return decide_blocking_reload(
            hls_msn,
            hls_part,
            open_msn=open_msn,
            open_parts=open_parts,
            previous_parts=previous_parts,
            part_limit=self.part_limit,
        )

    def _find(self, msn: int) -> HlsSegment | None:
        if self._open is not None and self._open.msn == msn:
            return self._open
        if self._segments:
            index = msn - self._segments[0].msn
            if 0 <= index < len(self._segments):
                return self._segments[index]
        return None

    def _next_part(self) -> tuple[int, int]:
        """(msn, index) of the part being built, or the one that comes next."""
        if self._open is not None:
            return self._open.msn, len(self._open.parts)
        return self._next_msn, 0

    # --- input ---------------------------------------------------------------------

    def push(
        self,
        kind: FrameKind,
        timestamp_ms: int,
        body: bytes,
        keyframe: bool = False,
        sequence_header: bool = False,
        wallclock: float = 0.0,
    ) -> list[HlsPartCompleted | HlsSegmentCompleted]:
        """One hub frame. Returns the parts and segments it completed (the
        moment to wake blocked requests). Raises TsMuxError for a frame that
        cannot be muxed; it is dropped and nothing else changes."""
        self._version += 1  # a rendered playlist is stale from here on
        self._last_wallclock = wallclock
        if kind == FrameKind.META:
            return []
        if sequence_header:
            self._muxer.mux(kind, timestamp_ms, body)
            self._has_video = self._has_video or kind == FrameKind.VIDEO
            return []
        # The timeline: video decoding times, or audio's in a stream without video.
        timeline = kind == FrameKind.VIDEO or not self._has_video
        if timeline and self._last_ms is not None:
            step = timestamp_ms - self._last_ms
            if step > TIMESTAMP_JUMP_MS or step < -TIMESTAMP_BACKWARD_TOLERANCE_MS:
                self.discontinuity()  # a jump: clamping to the last time would freeze the segment
        opened = self._open
        at = timestamp_ms
        if opened is None and not (timeline and keyframe):
            return []  # a segment starts with a keyframe
        data = self._muxer.mux(kind, timestamp_ms, body)
        if not data:
            return []  # an AVC end of sequence, an empty AAC frame: nothing to play
        cut = None
        if timeline:
            if self._last_ms is not None:
                at = max(at, self._last_ms)  # DTS never goes back; a frame that does is cut as if on time
            if opened is not None:
                cut = self._cut(opened, at, keyframe)
        elif opened is not None and len(opened.data) >= MAX_SEGMENT_BYTES:
            # Only one track goes on (e.g. audio while video stalls): the
            # byte cap still cuts, at the timeline's last time.
            cut, at = "segment", max(self._last_ms if self._last_ms is not None else 0, opened.start_ms)
        events: list[HlsPartCompleted | HlsSegmentCompleted] = []
        if cut == "segment":
            self._close_segment(at, events)
        elif cut == "part":
            self._close_part(at, events)
        if timeline:
            if self._last_ms is not None and at > self._last_ms:
                self._intervals.append(at - self._last_ms)
            self._last_ms = at
        if self._open is None:
            self._open_segment(at, wallclock)
        segment = self._open
        assert segment is not None
        if cut is not None or len(segment.data) == 0:
            self._part_start_ms = at
            self._part_offset = len(segment.data)
            self._part_independent = keyframe
            if keyframe or not segment.data:
                # Where a player may start: tell it what the PIDs carry.
                segment.data += self._muxer.psi()
        segment.data += data
        return events

    def discontinuity(self) -> None:
        """The publisher went away (and may come back with other timestamps
        and parameters): close the open segment, start the next one with
        EXT-X-DISCONTINUITY at the next keyframe, restart the TS counters."""
        self._version += 1
        if self._open is not None and self._last_ms is not None:
            events: list[HlsPartCompleted | HlsSegmentCompleted] = []
            # The last frame lasts as long as the ones before it.
            interval = max(self._intervals, default=0) or DEFAULT_FRAME_INTERVAL_MS
            self._close_segment(self._last_ms + interval, events)
        if self._next_msn > FIRST_MEDIA_SEQUENCE or self._open is not None:
            self._discontinuity_pending = True
        self._muxer.restart()
        self._last_ms = None
        self._intervals.clear()
        self._anchor = None

    def _cut(self, segment: HlsSegment, at: int, keyframe: bool) -> str | None:
        """Whether the frame at `at` starts a new segment, a new part or
        neither. Predicting the next frame one interval later keeps parts
        within the part target (RFC 8216bis 4.4.4.9) and lets a segment end
        at a keyframe that lands a little short of the target."""
        # The mean, not the longest: a 34 ms interval of 30 fps video taken as
        # the next one would cut every part a frame early and leave a
        # one-frame part before each keyframe, which hls.js stalls on.
        interval = sum(self._intervals) / len(self._intervals) if self._intervals else 0
        elapsed = at - segment.start_ms
        if len(segment.data) >= MAX_SEGMENT_BYTES:
            return "segment"  # even with no time elapsed: bytes are what must stay bounded
        if elapsed > 0 and (
            (keyframe and elapsed + interval >= self.configured_target_duration_s * 1000)
            or elapsed >= MAX_SEGMENT_DURATION_MS
        ):
            return "segment"
        part_elapsed = at - self._part_start_ms
        if part_elapsed > 0 and part_elapsed + interval > self.part_target_ms:
            return "part"
        return None

    def _open_segment(self, at: int, wallclock: float) -> None:
        if self._anchor is None:
            self._anchor = (at, wallclock)
        anchor_ms, anchor_wallclock = self._anchor
        discontinuity, self._discontinuity_pending = self._discontinuity_pending, False
        self._discontinuities += discontinuity
        self._open = HlsSegment(
            self._next_msn,
            at,
            anchor_wallclock + (at - anchor_ms) / 1000,
            discontinuity,
            self._discontinuities,
        )
        if self.keyring is not None:
            self._open.key_id = self.keyring.key_for(self._next_msn)[0]
        self._next_msn += 1

    def _close_part(self, at: int, events: list) -> None:
        segment = self._open
        assert segment is not None
        index = len(segment.parts)
        size = len(segment.data) - self._part_offset
        segment.parts.append(
            LlHlsPart(index, self._part_offset, size, at - self._part_start_ms, self._part_independent)
        )
        if self.keyring is not None:
            key = self.keyring.key_for(segment.msn)[1]
            clear = bytes(segment.data[self._part_offset : self._part_offset + size])
            segment.encrypted_parts.append(encrypt_aes128(key, sequence_iv(segment.msn), clear))
        events.append(HlsPartCompleted(segment.msn, index))

    def _close_segment(self, at: int, events: list) -> None:
        segment = self._open
        assert segment is not None
        self._close_part(at, events)
        segment.duration_ms = at - segment.start_ms
        segment.data = bytes(segment.data)
        if self.keyring is not None:
            key = self.keyring.key_for(segment.msn)[1]
            segment.data = encrypt_aes128(key, sequence_iv(segment.msn), segment.data)
        segment.closed_at = self._last_wallclock
        self._longest_ms = max(self._longest_ms, segment.duration_ms)
        self._segments.append(segment)  # the deque's maxlen drops the oldest
        if self.keyring is not None:
            self.keyring.keep_from(self._segments[0].msn)
        self._open = None
        events.append(HlsSegmentCompleted(segment.msn))

    # --- the playlist --------------------------------------------------------------

    def uri(self, msn: int, part: int | None = None, token: str | None = None) -> str:
        return self._uri(f"seg_{msn}.ts" if part is None else f"part_{msn}_{part}.ts", token)

    def key_uri(self, key_id: int, token: str | None = None) -> str:
        return self._uri(key_file_name(key_id), token)

    def _uri(self, name: str, token: str | None) -> str:
        query = f"?{TOKEN_QUERY}={quote(token, safe='')}" if token else ""
        return f"{self.uri_prefix}{name}{query}"

    def playlist(
        self,
        low_latency: bool = False,
        token: str | None = None,
        rendition_reports: Iterable[tuple[str, int, int]] = (),
    ) -> str:
        """The media playlist. `rendition_reports`: (uri, last_msn,
        last_part) of the other renditions, for EXT-X-RENDITION-REPORT (RFC
        8216bis 4.4.5.4) once there are renditions."""
        key = (low_latency, token, tuple(rendition_reports))
        if self._rendered_version != self._version:
            self._rendered.clear()
            self._rendered_version = self._version
        elif key in self._rendered:
            return self._rendered[key]
        text = self._render(low_latency, token, key[2])
        if len(self._rendered) < MAX_RENDERED_PLAYLISTS:
            self._rendered[key] = text
        return text

    def _listed_segments(self) -> list[HlsSegment]:
        """The last `window_segments`, and before them the retained ones
        that completed within the window's span of wall-clock time of the
        newest: when media comes in a burst (a publisher's backlog after a
        stall, the node's loop catching up), segments are cut faster than
        they play, and a window counted in segments alone would take media
        off the playlist before a player on time has loaded it."""
        kept = list(self._segments)
        count = min(self.window_segments, len(kept))
        if count and kept[-1].closed_at:
            # Half a segment short of the window's span, so that segments cut
            # on time (give or take the loop's jitter) keep it at its count.
            since = kept[-1].closed_at - (self.window_segments - 0.5) * self.target_duration_s
            while count < len(kept) and kept[-count - 1].closed_at > since:
                count += 1
        return kept[len(kept) - count :]

    def _render(self, low_latency: bool, token: str | None, rendition_reports: tuple[tuple[str, int, int], ...]) -> str:
        segments = self._listed_segments()
        # The open segment shows once it has a part (its tags need something to apply to).
        opened = self._open if low_latency and self._open is not None and self._open.parts else None
        listed = [*segments, opened] if opened is not None else segments
        first = listed[0] if listed else None
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{9 if low_latency else 3}",
            f"#EXT-X-TARGETDURATION:{self.target_duration_s}",
        ]
        if low_latency:
            hold_back = _extinf(self.part_hold_back_ms)
            lines.append(f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={hold_back}")
            lines.append(f"#EXT-X-PART-INF:PART-TARGET={_extinf(self.part_target_ms)}")
        lines.append(f"#EXT-X-MEDIA-SEQUENCE:{first.msn if first else self._next_msn}")
        if first is not None:
            # RFC 8216 4.3.3.3: the discontinuity sequence number of the first segment.
            sequence = first.discontinuity_sequence - first.discontinuity
            if sequence:
                lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{sequence}")
        # Parts of the segments within PARTS_LISTED_TARGET_DURATIONS of the end.
        parts_from = len(segments)
        if low_latency:
            budget = PARTS_LISTED_TARGET_DURATIONS * self.target_duration_s * 1000
            budget -= self._last_ms - opened.start_ms if opened is not None and self._last_ms is not None else 0
            while parts_from > 0 and budget > 0:
                parts_from -= 1
                budget -= segments[parts_from].duration_ms
            # And those of the segments that completed within as long of
            # wall-clock time: media that comes faster than it plays (a
            # backlog) does not take parts off before a player on time has
            # loaded them (as _listed_segments does for segments).
            if segments and segments[-1].closed_at:
                since = segments[-1].closed_at - PARTS_LISTED_TARGET_DURATIONS * self.target_duration_s
                while parts_from > 0 and segments[parts_from - 1].closed_at > since:
                    parts_from -= 1
        key_id = None
        for position, segment in enumerate(listed):
            if segment.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if segment.key_id is not None and segment.key_id != key_id:
                # Before the segment's parts too: they are under its key.
                key_id = segment.key_id
                lines.append(key_tag(self.key_uri(key_id, token)))
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_date_time(segment.program_date_time)}")
            if position >= parts_from:
                for part in segment.parts:
                    independent = ",INDEPENDENT=YES" if part.independent else ""
                    uri = self.uri(segment.msn, part.index, token)
                    lines.append(f'#EXT-X-PART:DURATION={_extinf(part.duration_ms)},URI="{uri}"{independent}')
            if segment is not opened:
                lines.append(f"#EXTINF:{_extinf(segment.duration_ms)},")
                lines.append(self.uri(segment.msn, None, token))
        if low_latency:
            msn, index = self._next_part()
            if self.keyring is not None and self.keyring.key_id(msn) != key_id:
                # The hinted part opens a segment under a new key: EXT-X-KEY
                # applies to what follows it, so a player that loads the hint
                # ahead (Safari; hls.js takes it as its fragment hint's key)
                # decrypts it with the right one. Made now, if it is not yet.
                lines.append(key_tag(self.key_uri(self.keyring.key_for(msn)[0], token)))
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{self.uri(msn, index, token)}"')
            for uri, last_msn, last_part in rendition_reports:
                lines.append(f'#EXT-X-RENDITION-REPORT:URI="{uri}",LAST-MSN={last_msn},LAST-PART={last_part}')
        return "\n".join(lines) + "\n"
