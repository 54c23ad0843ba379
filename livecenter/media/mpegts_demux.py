"""An MPEG-TS demuxer for SRT ingest (ISO/IEC 13818-1), the mirror of mpegts.py.

`TsDemuxer.receive_data(bytes)` takes the transport stream in pieces of any
size (`b""` says it ended) and returns events in stream order:

- `ProgramReceived`: the program's PMT, when first seen and when it changes.
- `StreamRefused`: an elementary stream this demuxer does not take, with the
  codec named and why (H.265, MPEG audio, a second video stream ...).
- `FrameReceived`: what the hub takes from a publisher, exactly as RTMP ingest
  gives it: a FrameKind, a millisecond timestamp and an FLV tag body, for
  `Publication.push(event.kind, event.timestamp_ms, event.body)`. H.264 access
  units become AVC NALU bodies (4-byte NAL lengths; SPS, PPS and AUDs taken
  out), with a sequence header (an AVCDecoderConfigurationRecord made from
  the SPS and PPS) before the first frame and whenever they change; AAC ADTS
  frames become raw AAC bodies, with a sequence header (the
  AudioSpecificConfig the ADTS header implies) likewise.
- `PassthroughAudioReceived`: AC-3 and E-AC-3 (Dolby Digital, Dolby Digital
  Plus with Atmos) access units, which FLV cannot carry, for the outputs that
  can (HLS, SRT playback, recordings).

Timestamps: PTS and DTS are 33-bit 90 kHz values that wrap after 26.5 hours;
they are unwrapped onto one timeline for the program (each step read as the
signed 33-bit difference from the previous value) that starts at
TIMELINE_START_MS. After a discontinuity_indicator on the PCR PID (2.4.3.5:
a new time base) a jump past TIMESTAMP_JUMP_MS is not taken: the timeline
goes on where it was. Other jumps are kept, for the hub to rebase as it does
RTMP's (hub.py). A video frame's timestamp
is its DTS, its CompositionTime PTS - DTS; the ADTS frames (and Dolby sync
frames) of one PES are spaced by their sample counts from the PES's PTS.

The TS is read the way a receiver must read one that arrived over a lossy
link: nothing a peer sends is fatal except a program too large to be an
ingest (MAX_PROGRAMS, MAX_ELEMENTARY_STREAMS: TsDemuxError, after which
every call raises it again). Everything else is dropped and counted in
`counters`: bytes skipped to regain the 0x47 packet sync, packets with the
transport_error_indicator, PSI sections with a bad CRC32, a PES broken by a
continuity counter gap (the PES is dropped; the next one starting with
payload_unit_start_indicator is read), PES packets past the size limits, and
frames that cannot be read. One PES is taken to be one video access unit,
as every muxer we know writes it (FFmpeg, GStreamer, OBS, hardware encoders
in SRT mode).

When a PES ends: one with a PES_packet_length as soon as its bytes are in.
One of unbounded length (PES_packet_length 0, what FFmpeg's muxer writes for
video, hence OBS and most SRT encoders) where the next one on its PID
starts, or at the end of input; that is one frame interval late (33 ms at
30 fps), with the SRT latency on top. A muxer fills the TS packets of a PES
with its payload and pads only the last one, with adaptation-field
stuffing (2.4.3.5; FFmpeg's mpegtsenc, ours in mpegts.py): so a packet with
stuffing ends its PES, which is then emitted at once. That is a habit, not
a rule of the standard, so it is learnt per PID: stuffing ends a PES once a
stuffed packet has been seen followed by the start of the next PES, and
never again on that PID once one is followed by more of the same PES (a
muxer that stuffs mid-PES; counted in `pes_cut_by_stuffing` if a PES was
already cut there: that frame went out short, the rest of it is dropped).

Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from .avc_flv import AnnexBToFlv
from .codecs import (
    AAC_SAMPLE_RATES,
    CodecError,
)
from .flv import (
    AUDIO_CODEC_AAC,
    MAX_TAG_BYTES,
    PACKET_NALU,
    PACKET_SEQUENCE_HEADER,
    TIMESTAMP_JUMP_MS,
    FrameKind,
)
from .mpegts import (
    CLOCK_TICKS_PER_MS,
    PAT_PID,
    STREAM_TYPE_AAC_ADTS,
    STREAM_TYPE_H264,
    SYNC_BYTE,
    TIMESTAMP_WRAP,
    TS_PACKET_BYTES,
    crc32_mpeg2,
)

# --- limits ---------------------------------------------------------------------------

# The largest video PES: the largest frame the hub carries at all (an FLV tag
# body, flv.MAX_TAG_BYTES), since a bigger one could not be pushed anyway.
MAX_VIDEO_PES_BYTES = MAX_TAG_BYTES
# The largest audio PES: the largest one PES_packet_length (16 bits) can
# announce. Muxers put a few hundred milliseconds of audio in one PES at most.
MAX_AUDIO_PES_BYTES = 6 + 0xFFFF
# All PES packets being reassembled at once: one video frame and one audio PES.
# A second audio track (AAC and Dolby side by side) fits unless both are at
# their limit; then the PES that grows past this is dropped.
MAX_BUFFERED_BYTES = MAX_VIDEO_PES_BYTES + MAX_AUDIO_PES_BYTES
# Programs in the PAT. An ingest is one program (a few for a contribution
# multiplex); a PAT listing more is a broadcast multiplex, not a publish.
MAX_PROGRAMS = 16
# Elementary streams in the PMT: video, a few audio languages, subtitles, data.
MAX_ELEMENTARY_STREAMS = 16
# ADTS or Dolby frames in one audio PES: FFmpeg packs about 10; 64 is a
# second of 48 kHz AAC. Past it the rest of the PES is dropped, so that a
# PES of tiny frames cannot make one PES cost thousands of events.
MAX_AUDIO_FRAMES_PER_PES = 64

# The first timestamp seen is put here, so that a track whose first frame is a
# little earlier than the other's (B-frame delay, audio sent ahead) does not
# go below zero. Anything earlier still is held at zero.
TIMELINE_START_MS = 1_000

# 2.4.4.3, 2.4.4.8: section_length is at most 1021 for the PAT and the PMT.
MAX_SECTION_LENGTH = 1021
NULL_PID = 0x1FFF
TABLE_ID_PAT = 0x00
TABLE_ID_PMT = 0x02

# 2.4.4.9 Table 2-34, and the private types ATSC A/52 assigns to Dolby audio.
STREAM_TYPE_H265 = 0x24
STREAM_TYPE_AC3 = 0x81
STREAM_TYPE_EAC3 = 0x87
STREAM_TYPE_PRIVATE_PES = 0x06
STREAM_TYPE_NAMES = {
    0x01: "MPEG-1 video",
    0x02: "MPEG-2 video",
    0x03: "MPEG-1 audio",
    0x04: "MPEG-2 audio",
    0x06: "private data",
    STREAM_TYPE_AAC_ADTS: "AAC",
    0x10: "MPEG-4 video",
    0x11: "AAC (LATM)",
    0x15: "ID3 metadata",
    STREAM_TYPE_H264: "H.264",
    0x24: "H.265",
    0x42: "AVS",
    0x81: "AC-3",
    0x86: "SCTE-35",
    0x87: "E-AC-3",
}
# Descriptors that say what a stream_type 0x06 carries: DVB (EN 300 468 Annex D)
# AC-3 and enhanced AC-3 descriptors, and a registration descriptor
# (2.6.8) with the SMPTE-registered format identifier.
_DESCRIPTOR_REGISTRATION = 0x05
_DESCRIPTOR_CODECS = {0x6A: "AC-3", 0x7A: "E-AC-3"}
_REGISTRATION_CODECS = {b"AC-3": "AC-3", b"EAC3": "E-AC-3", b"Opus": "Opus", b"HEVC": "H.265", b"KLVA": "KLV"}

CODEC_H264 = "H.264"
CODEC_AAC = "AAC"
CODEC_AC3 = "AC-3"
CODEC_EAC3 = "E-AC-3"

# 2.4.3.7 Table 2-22: stream_ids whose PES has no optional header (and no PTS).
_STREAM_IDS_WITHOUT_HEADER = frozenset({0xBC, 0xBE, 0xBF, 0xF0, 0xF1, 0xF2, 0xF8, 0xFF})


class TsDemuxError(Exception):
    """The transport stream is not one this demuxer takes (fatal)."""


@dataclass(slots=True)
class TsDemuxCounters:
    """What was dropped, for the session's monitoring and its log line."""

    packets: int = 0
    sync_losses: int = 0  # times the 0x47 sync was lost and searched for again
    skipped_bytes: int = 0  # bytes outside any packet (before sync, garbage, a truncated tail)
    transport_errors: int = 0  # packets marked in error, scrambled, or with a bad header
    continuity_errors: int = 0  # continuity_counter gaps (packets lost)
    duplicate_packets: int = 0  # 2.4.3.3: a packet sent twice, dropped
    section_errors: int = 0  # PSI sections with a bad CRC or that do not parse
    pes_dropped: int = 0  # PES packets broken by loss, too large, or malformed
    frames_dropped: int = 0  # frames in a PES that cannot be read or used
    pes_cut_by_stuffing: int = 0  # PES ended at stuffing that was not their end (module docstring)


# --- events -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TsElementaryStream:
    pid: int
    stream_type: int
    codec: str  # "H.264", "AAC", "E-AC-3" ..., or "stream type 0x.." when unknown


@dataclass(frozen=True, slots=True)
class ProgramReceived:
    program_number: int
    pmt_pid: int
    version: int
    pcr_pid: int
    streams: tuple[TsElementaryStream, ...]


@dataclass(frozen=True, slots=True)
class StreamRefused:
    """An elementary stream that is not demuxed, and why."""

    pid: int
    stream_type: int
    codec: str
    reason: str


@dataclass(frozen=True, slots=True)
class FrameReceived:
    """An FLV tag body for the hub: `Publication.push(kind, timestamp_ms, body)`."""

    kind: FrameKind
    timestamp_ms: int
    body: bytes
    pid: int


@dataclass(frozen=True, slots=True)
class PassthroughAudioReceived:
    """One AC-3 or E-AC-3 access unit: an independent sync frame and the
    dependent substream frames that belong to it (ATSC A/52 Annex E)."""

    codec: str
    pid: int
    timestamp_ms: int
    data: bytes
    sample_rate: int
    samples: int


TsEvent = ProgramReceived | StreamRefused | FrameReceived | PassthroughAudioReceived


# --- timestamps --------------------------------------------------------------------------


def _read_timestamp(data: bytearray, at: int) -> int:
    # 2.4.3.7: 33 bits split 3/15/15 after a 4-bit prefix, each part followed by a marker bit.
    return (
        ((data[at] & 0x0E) << 29)
        | (data[at + 1] << 22)
        | ((data[at + 2] & 0xFE) << 14)
        | (data[at + 3] << 7)
        | (data[at + 4] >> 1)
    )


class _Timeline:
    """33-bit 90 kHz timestamps to one unwrapped timeline in 90 kHz ticks."""

    __slots__ = ("_last_raw", "_ticks", "_continue")

    def __init__(self) -> None:
        self._last_raw: int | None = None
        self._ticks = TIMELINE_START_MS * CLOCK_TICKS_PER_MS
        self._continue = False

    def new_time_base(self) -> None:
        """A discontinuity_indicator on the PCR PID (2.4.3.5): if the next
        timestamp jumps, it continues the timeline instead of stepping from
        the old time base."""
        self._continue = True

    def unwrap(self, raw: int) -> int:
        last = self._last_raw
        if last is not None:
            # The step as a signed 33-bit difference: across a wrap, a small step.
            step = (raw - last + TIMESTAMP_WRAP // 2) % TIMESTAMP_WRAP - TIMESTAMP_WRAP // 2
            if not (self._continue and abs(step) > TIMESTAMP_JUMP_MS * CLOCK_TICKS_PER_MS):
                self._ticks += step
        self._continue = False
        self._last_raw = raw
        return self._ticks


def _ms(ticks: int) -> int:
    return max(ticks // CLOCK_TICKS_PER_MS, 0)


# --- elementary streams ------------------------------------------------------------------


class _Track:
    """One elementary stream being demuxed: its PES reassembly and its codec."""

    max_pes_bytes = MAX_VIDEO_PES_BYTES

    def __init__(self, demuxer: TsDemuxer, stream: TsElementaryStream) -> None:
        self.demuxer = demuxer
        self.stream = stream
        self.pes = bytearray()
        self.collecting = False  # inside a PES (from its first packet on)
        self.pes_bytes = 0  # the PES's length from PES_packet_length; 0 before it is read, -1 unbounded
        # Whether a stuffed packet ends an unbounded PES on this PID: None
        # until seen, then what the muxer showed (module docstring).
        self.stuffing_ends_pes: bool | None = None
        self.after_stuffing = False  # the last packet with payload had stuffing and ended no bounded PES

    def take_pes(self) -> bytearray:
        """The PES in progress, no longer held."""
        pes = self.pes
        self.demuxer._buffered -= len(pes)
        self.pes = bytearray()
        self.collecting = False
        return pes

    def reset(self) -> None:
        """Forget the PES in progress and anything carried over from the last
        (after a loss)."""
        self.take_pes()

    def on_pes(self, pts: int, dts: int, data: bytearray, start: int, events: list[TsEvent]) -> None:
        """A whole PES: its payload is data[start:], its times unwrapped ticks."""
        raise NotImplementedError


class _AvcTrack(_Track):
    """H.264 Annex B access units to AVC NALU bodies (avc_flv.py)."""

    def __init__(self, demuxer: TsDemuxer, stream: TsElementaryStream) -> None:
        super().__init__(demuxer, stream)
        self.avc = AnnexBToFlv()

    def on_pes(self, pts: int, dts: int, data: bytearray, start: int, events: list[TsEvent]) -> None:
        counters = self.demuxer.counters
        undecodable = self.avc.undecodable
        timestamp = _ms(dts)
        try:
            bodies = self.avc.bodies(data, start, _ms(pts) - timestamp)
        except CodecError:
            counters.frames_dropped += 1
            return
        counters.frames_dropped += self.avc.undecodable - undecodable
        for body in bodies:
            events.append(FrameReceived(FrameKind.VIDEO, timestamp, body, self.stream.pid))


class _AudioFrameTrack(_Track):
    """Audio whose PES payload is a run of self-delimiting frames (ADTS, Dolby
    sync frames). A frame cut at the end of one PES is finished from the
    start of the next (13818-1 lets a PES start anywhere in the stream); its
    time follows the frames before it."""

    max_pes_bytes = MAX_AUDIO_PES_BYTES
    header_bytes = 7  # enough of a frame header to know the frame's length
    sync = b""

    def __init__(self, demuxer: TsDemuxer, stream: TsElementaryStream) -> None:
        super().__init__(demuxer, stream)
        # The start of a frame the last PES cut: bytes, whole size, samples, rate, time.
        self.partial: tuple[bytes, int, int, int, int] | None = None

    def reset(self) -> None:
        super().reset()
        self.partial = None

    def frame_header(self, data: bytearray, at: int) -> tuple[int, int, int] | None:
        """(frame bytes, samples, sample rate) of the frame at `at`, or None
        if no valid frame header is there."""
        raise NotImplementedError

    def on_frame(self, frame: bytes | memoryview, ticks: int, samples: int, rate: int, events: list[TsEvent]) -> None:
        raise NotImplementedError

    def flush(self, events: list[TsEvent]) -> None:
        """The PES's frames are all out (Dolby emits its last access unit here)."""

    def on_pes(self, pts: int, dts: int, data: bytearray, start: int, events: list[TsEvent]) -> None:
        counters = self.demuxer.counters
        pos, end = start, len(data)
        if self.partial is not None:
            head, size, samples, rate, ticks = self.partial
            need = size - len(head)
            self.partial = None
            # A PES that starts with a frame of its own did not continue the cut one.
            if self.frame_header(data, pos) is None and end - pos >= need:
                self.on_frame(head + data[pos : pos + need], ticks, samples, rate, events)
                pos += need
            else:
                counters.frames_dropped += 1
        view = memoryview(data)
        base, elapsed, base_rate, frames = pts, 0, 0, 0
        while end - pos >= self.header_bytes:
            info = self.frame_header(data, pos)
            if info is None:
                # Not a frame: skip to the next sync word (garbage, or a frame
                # whose start was lost).
                counters.frames_dropped += 1
                found = data.find(self.sync, pos + 1)
                pos = found if found >= 0 else end
                continue
            size, samples, rate = info
            if rate != base_rate and base_rate:
                base, elapsed = base + elapsed * 90_000 // base_rate, 0  # the rate changed here
            base_rate = rate
            ticks = base + elapsed * 90_000 // rate
            if end - pos < size:
                self.partial = (bytes(data[pos:end]), size, samples, rate, ticks)
                pos = end
                break
            frames += 1
            if frames > MAX_AUDIO_FRAMES_PER_PES:
                counters.frames_dropped += 1
                pos = end
                break
            self.on_frame(view[pos : pos + size], ticks, samples, rate, events)
            elapsed += samples
            pos += size
        if pos < end:
            counters.frames_dropped += 1  # a tail too short for a frame header
        self.flush(events)


class _AdtsTrack(_AudioFrameTrack):
    """AAC in ADTS (ISO/IEC 13818-7 6.2) to raw AAC bodies (module docstring)."""

    sync = b"\xff"

    def __init__(self, demuxer: TsDemuxer, stream: TsElementaryStream) -> None:
        super().__init__(demuxer, stream)
        self.config = b""

    def frame_header(self, data: bytearray, at: int) -> tuple[int, int, int] | None:
        if len(data) - at < 7 or data[at] != 0xFF or data[at + 1] & 0xF6 != 0xF0:  # syncword, layer 0
            return None
        index = (data[at + 2] >> 2) & 0x0F
        length = ((data[at + 3] & 0x03) << 11) | (data[at + 4] << 3) | (data[at + 5] >> 5)
        header = 7 if data[at + 1] & 1 else 9  # protection_absent, else a CRC follows
        if index >= len(AAC_SAMPLE_RATES) or length <= header:
            return None
        blocks = (data[at + 6] & 0x03) + 1  # number_of_raw_data_blocks_in_frame + 1
        return length, 1024 * blocks, AAC_SAMPLE_RATES[index]

    def on_frame(self, frame: bytes | memoryview, ticks: int, samples: int, rate: int, events: list[TsEvent]) -> None:
        if samples != 1024:
            # Several raw data blocks in one frame: FLV carries one per body,
            # and without the CRC's block positions they cannot be split.
            self.demuxer.counters.frames_dropped += 1
            return
        profile, index = frame[2] >> 6, (frame[2] >> 2) & 0x0F
        channels = ((frame[2] & 0x01) << 2) | (frame[3] >> 6)
        # ISO/IEC 14496-3 1.6.2.1 AudioSpecificConfig: object type (profile + 1),
        # samplingFrequencyIndex, channelConfiguration, GASpecificConfig zeros.
        config = (((profile + 1) << 11) | (index << 7) | (channels << 3)).to_bytes(2, "big")
        timestamp = _ms(ticks)
        pid = self.stream.pid
        # SoundFormat AAC; FLV E.4.2.1 fixes the rate, size and type bits for AAC.
        flags = (AUDIO_CODEC_AAC << 4) | 0x0F
        if config != self.config:
            self.config = config
            events.append(
                FrameReceived(FrameKind.AUDIO, timestamp, bytes((flags, PACKET_SEQUENCE_HEADER)) + config, pid)
            )
        header = 7 if frame[1] & 1 else 9
        events.append(FrameReceived(FrameKind.AUDIO, timestamp, bytes((flags, PACKET_NALU)) + frame[header:], pid))


# ATSC A/52 Table 5.18: the AC-3 frame size in 16-bit words is
# bitrate * 1536 / (16 * sample rate); at 44.1 kHz the odd frmsizecod adds a word.
_AC3_BITRATES_KBPS = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 576, 640)
_AC3_SAMPLE_RATES = (48000, 44100, 32000)
_EAC3_REDUCED_SAMPLE_RATES = (24000, 22050, 16000)
_EAC3_BLOCKS = (1, 2, 3, 6)


class _DolbyTrack(_AudioFrameTrack):
    """AC-3 and E-AC-3 sync frames, grouped into access units (module docstring)."""

    sync = b"\x0b\x77"
    header_bytes = 6

    def __init__(self, demuxer: TsDemuxer, stream: TsElementaryStream) -> None:
        super().__init__(demuxer, stream)
        self.unit: list[bytes] = []
        self.unit_info = (CODEC_AC3, 0, 0, 0)  # codec, ticks, rate, samples

    def frame_header(self, data: bytearray, at: int) -> tuple[int, int, int] | None:
        if len(data) - at < 6 or data[at] != 0x0B or data[at + 1] != 0x77:
            return None
        bsid = data[at + 5] >> 3
        fscod = data[at + 4] >> 6
        if bsid <= 10:  # A/52 5.4.1: AC-3
            frmsizecod = data[at + 4] & 0x3F
            if fscod == 3 or frmsizecod >= 2 * len(_AC3_BITRATES_KBPS):
                return None
            rate = _AC3_SAMPLE_RATES[fscod]
            words = _AC3_BITRATES_KBPS[frmsizecod >> 1] * 96_000 // rate + (frmsizecod & 1 if fscod == 1 else 0)
            return 2 * words, 1536, rate
        if bsid > 16:
            return None
        # A/52 E.1.2.1-E.1.2.3: E-AC-3, frmsiz in 16-bit words minus one.
        size = ((((data[at + 2] & 0x07) << 8) | data[at + 3]) + 1) * 2
        if size < self.header_bytes:
            return None
        if fscod == 3:  # fscod2: half the rates, always six blocks
            fscod2 = (data[at + 4] >> 4) & 0x03
            if fscod2 == 3:
                return None
            rate, samples = _EAC3_REDUCED_SAMPLE_RATES[fscod2], 6 * 256
        else:
            rate, samples = _AC3_SAMPLE_RATES[fscod], 256 * _EAC3_BLOCKS[(data[at + 4] >> 4) & 0x03]
        if data[at + 2] >> 6 == 1:  # strmtyp 1: a dependent substream, at the time of its frame
            samples = 0
        return size, samples, rate

    def on_frame(self, frame: bytes | memoryview, ticks: int, samples: int, rate: int, events: list[TsEvent]) -> None:
        if samples == 0:  # a dependent substream: part of the current unit
            if self.unit:
                self.unit.append(bytes(frame))
            else:
                self.demuxer.counters.frames_dropped += 1
            return
        self.flush(events)
        codec = CODEC_AC3 if frame[5] >> 3 <= 10 else CODEC_EAC3
        self.unit = [bytes(frame)]
        self.unit_info = (codec, ticks, rate, samples)

    def flush(self, events: list[TsEvent]) -> None:
        if self.unit:
            codec, ticks, rate, samples = self.unit_info
            data = b"".join(self.unit)
            self.unit = []
            events.append(PassthroughAudioReceived(codec, self.stream.pid, _ms(ticks), data, rate, samples))

    def reset(self) -> None:
        super().reset()
        self.unit = []


# What each codec becomes: the track that demuxes it; the rest are refused.
_TRACKS: dict[str, type[_Track]] = {
    CODEC_H264: _AvcTrack,
    CODEC_AAC: _AdtsTrack,
    CODEC_AC3: _DolbyTrack,
    CODEC_EAC3: _DolbyTrack,
}
_REFUSALS = {
    "H.265": "H.265 video is not taken: the hub's outputs (HLS, RTS, FLV for ffmpeg) carry H.264 only",
    "Opus": "Opus in MPEG-TS is not taken: publish AAC (or AC-3/E-AC-3 for passthrough)",
}


def _stream_codec(stream_type: int, descriptors: bytes) -> str:
    if stream_type == STREAM_TYPE_PRIVATE_PES or stream_type in (STREAM_TYPE_AC3, STREAM_TYPE_EAC3):
        pos = 0
        while pos + 2 <= len(descriptors):
            tag, length = descriptors[pos], descriptors[pos + 1]
            body = descriptors[pos + 2 : pos + 2 + length]
            if tag in _DESCRIPTOR_CODECS:
                return _DESCRIPTOR_CODECS[tag]
            if tag == _DESCRIPTOR_REGISTRATION and body[:4] in _REGISTRATION_CODECS:
                return _REGISTRATION_CODECS[body[:4]]
            pos += 2 + length
    return STREAM_TYPE_NAMES.get(stream_type, f"stream type 0x{stream_type:02x}")


# --- the demuxer -----------------------------------------------------------------------


class TsDemuxer:
    """Demuxes one program of a transport stream (module docstring). The
    program is the first one the PAT lists; a PAT that names another moves to it."""

    def __init__(self) -> None:
        self.counters = TsDemuxCounters()
        self.program: ProgramReceived | None = None
        self._buffer = bytearray()
        self._synced = False
        self._ended = False
        self._error: TsDemuxError | None = None
        self._continuity: dict[int, int] = {}
        self._sections: dict[int, bytearray | None] = {PAT_PID: None}  # None: waiting for a section start
        self._program_number: int | None = None
        self._pmt_pid: int | None = None
        self._pmt_section = b""
        self._tracks: dict[int, _Track] = {}
        self._timeline = _Timeline()
        self._buffered = 0  # bytes of PES being reassembled, all tracks

    @property
    def buffered_bytes(self) -> int:
        """Bytes held between calls: part of a packet and unfinished PES packets."""
        return len(self._buffer) + self._buffered

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[TsEvent]:
        """Feed bytes; `b""` ends the input (unbounded PES packets complete)."""
        if self._error is not None:
            raise self._error
        if self._ended:
            raise RuntimeError("receive_data called after the end of input")
        events: list[TsEvent] = []
        try:
            if data:
                self._buffer += data
                self._read_packets(events, final=False)
            else:
                self._ended = True
                self._read_packets(events, final=True)
                self.counters.skipped_bytes += len(self._buffer)
                self._buffer.clear()
                for track in self._tracks.values():
                    if not track.collecting:
                        continue
                    if track.pes_bytes < 0 and track.stuffing_ends_pes:
                        # Its muxer ends a PES with a stuffed packet, which
                        # never came: cut short by the end (a libsrt caller
                        # closes without sending what it still holds).
                        self.counters.pes_dropped += 1
                        track.reset()
                    else:
                        self._end_pes(track, events)
        except TsDemuxError as exc:
            self._error = exc
            self._buffer = bytearray()
            for track in self._tracks.values():
                track.reset()
            raise
        return events

    # --- packets -----------------------------------------------------------------

    def _read_packets(self, events: list[TsEvent], final: bool) -> None:
        buf = self._buffer
        end = len(buf)
        pos = 0
        view = memoryview(buf)
        try:
            while end - pos >= TS_PACKET_BYTES:
                if buf[pos] == SYNC_BYTE:
                    if self._synced:
                        self._packet(view[pos : pos + TS_PACKET_BYTES], events)
                        pos += TS_PACKET_BYTES
                        continue
                    # Out of sync, a candidate: the next packet must start
                    # with a sync byte too (unless the input ends here).
                    following = pos + TS_PACKET_BYTES
                    if following >= end and not final:
                        break
                    if following >= end or buf[following] == SYNC_BYTE:
                        self._synced = True
                        continue
                elif self._synced:
                    self._synced = False
                    self.counters.sync_losses += 1
                found = buf.find(b"\x47", pos + 1)
                found = end if found < 0 else found
                self.counters.skipped_bytes += found - pos
                pos = found
        finally:
            view.release()
        del buf[:pos]

    def _packet(self, packet: memoryview, events: list[TsEvent]) -> None:
        """One 188-byte packet (2.4.3.2)."""
        counters = self.counters
        counters.packets += 1
        flags_pid, pid_low, control = packet[1], packet[2], packet[3]
        pid = ((flags_pid & 0x1F) << 8) | pid_low
        if pid == NULL_PID:
            return
        track = self._tracks.get(pid)
        if track is None and pid not in self._sections:
            return  # another program's, SI tables, PCR only: not ours
        # transport_error_indicator, scrambling, or adaptation_field_control '00' (reserved)
        if flags_pid & 0x80 or control & 0xC0 or not control & 0x30:
            counters.transport_errors += 1
            return
        payload_at = 4
        discontinuity = False
        stuffed = False
        if control & 0x20:
            field_bytes = packet[4]
            # 2.4.3.5: 183 bytes with no payload, at most 182 with one.
            if field_bytes > (182 if control & 0x10 else 183):
                counters.transport_errors += 1
                return
            if field_bytes:
                discontinuity = bool(packet[5] & 0x80)
                if discontinuity and self.program is not None and pid == self.program.pcr_pid:
                    self._timeline.new_time_base()
            if track is not None:
                stuffed = _has_stuffing(packet, field_bytes)
            payload_at = 5 + field_bytes
        if not control & 0x10:
            return  # an adaptation field alone: the counter does not advance
        # 2.4.3.3: continuity_counter, one more per packet with payload, except
        # for one duplicate and where the discontinuity_indicator says so.
        counter = control & 0x0F
        last = self._continuity.get(pid)
        self._continuity[pid] = counter
        lost = False
        if last is not None and not discontinuity:
            if counter == last:
                counters.duplicate_packets += 1
                return
            if counter != (last + 1) & 0x0F:
                counters.continuity_errors += 1
                lost = True
        payload = packet[payload_at:]
        start = bool(flags_pid & 0x40)
        if track is not None:
            self._pes_payload(track, payload, start, lost, stuffed, events)
        else:
            self._section_payload(pid, payload, start, lost, events)

    # --- PSI ---------------------------------------------------------------------

    def _section_payload(self, pid: int, payload: memoryview, start: bool, lost: bool, events: list[TsEvent]) -> None:
        """2.4.4: sections over packets, a pointer_field where one starts."""
        data = self._sections[pid]
        if lost:
            data = None
        if start:
            pointer = payload[0]
            if 1 + pointer > len(payload):
                self.counters.section_errors += 1
                self._sections[pid] = None
                return
            if data is not None:
                data += payload[1 : 1 + pointer]
                self._read_sections(pid, data, events)
            data = bytearray(payload[1 + pointer :])
        elif data is None:
            return  # the middle of a section whose start we missed
        else:
            data += payload
        self._sections[pid] = data
        self._read_sections(pid, data, events)

    def _read_sections(self, pid: int, data: bytearray, events: list[TsEvent]) -> None:
        while len(data) >= 3:
            if data[0] == 0xFF:  # stuffing: the rest of the packet
                data.clear()
                return
            length = ((data[1] & 0x0F) << 8) | data[2]
            if length > MAX_SECTION_LENGTH:
                self.counters.section_errors += 1
                data.clear()
                return
            if len(data) < 3 + length:
                return
            section = bytes(data[: 3 + length])
            del data[: 3 + length]
            # Annex A: the CRC over the whole section, CRC included, is 0.
            if length < 9 or not section[1] & 0x80 or crc32_mpeg2(section):
                self.counters.section_errors += 1
                continue
            if not section[5] & 0x01:
                continue  # current_next_indicator 0: not in force yet
            # Only section 0: PMTs have no other, and the first program is in the PAT's first.
            if section[6] != 0:
                continue
            if pid == PAT_PID and section[0] == TABLE_ID_PAT:
                self._pat(section)
            elif pid == self._pmt_pid and section[0] == TABLE_ID_PMT:
                self._pmt(section, events)

    def _pat(self, section: bytes) -> None:
        """2.4.4.3: (program_number, PID) pairs; program 0 is the network PID."""
        entries = section[8:-4]
        programs = [
            (int.from_bytes(entries[i : i + 2], "big"), int.from_bytes(entries[i + 2 : i + 4], "big") & 0x1FFF)
            for i in range(0, len(entries) - 3, 4)
        ]
        programs = [(number, pmt_pid) for number, pmt_pid in programs if number != 0]
        if len(programs) > MAX_PROGRAMS:
            raise TsDemuxError(f"the PAT lists {len(programs)} programs, more than MAX_PROGRAMS ({MAX_PROGRAMS})")
        if not programs or programs[0] == (self._program_number, self._pmt_pid):
            return
        self._program_number, pmt_pid = programs[0]
        self._forget_program()
        self._pmt_pid = pmt_pid
        self._sections[pmt_pid] = None

    def _forget_program(self) -> None:
        for pid in list(self._sections):
            if pid != PAT_PID:
                del self._sections[pid]
                self._continuity.pop(pid, None)
        for pid in list(self._tracks):
            self._drop_track(pid)
        self._pmt_pid = None
        self._pmt_section = b""
        self.program = None

    def _drop_track(self, pid: int) -> None:
        self._tracks.pop(pid).reset()
        self._continuity.pop(pid, None)

    def _pmt(self, section: bytes, events: list[TsEvent]) -> None:
        """2.4.4.8: the program's PCR PID and elementary streams."""
        if section == self._pmt_section:
            return  # repeated every 100 ms or so
        if int.from_bytes(section[3:5], "big") != self._program_number:
            return
        counters = self.counters
        end = len(section) - 4
        pcr_pid = int.from_bytes(section[8:10], "big") & 0x1FFF
        pos = 12 + (int.from_bytes(section[10:12], "big") & 0x0FFF)
        streams: list[TsElementaryStream] = []
        while pos + 5 <= end:
            stream_type = section[pos]
            pid = int.from_bytes(section[pos + 1 : pos + 3], "big") & 0x1FFF
            info_bytes = int.from_bytes(section[pos + 3 : pos + 5], "big") & 0x0FFF
            descriptors = section[pos + 5 : pos + 5 + info_bytes]
            pos += 5 + info_bytes
            streams.append(TsElementaryStream(pid, stream_type, _stream_codec(stream_type, descriptors)))
            if len(streams) > MAX_ELEMENTARY_STREAMS:
                raise TsDemuxError(
                    f"the PMT lists more than MAX_ELEMENTARY_STREAMS ({MAX_ELEMENTARY_STREAMS}) elementary streams"
                )
        if pos != end:
            counters.section_errors += 1
            return
        self._pmt_section = section
        program = ProgramReceived(
            self._program_number, self._pmt_pid, (section[5] >> 1) & 0x1F, pcr_pid, tuple(streams)
        )
        self.program = program
        events.append(program)
        # One track per hub kind (video, AAC) and one Dolby track; the rest refused.
        kept: dict[int, _Track] = {}
        taken: dict[type[_Track], int] = {}
        for stream in streams:
            track_type = _TRACKS.get(stream.codec)
            if pid_is_special(stream.pid) or stream.pid in kept or stream.pid == self._pmt_pid:
                refusal = f"PID 0x{stream.pid:04x} cannot carry an elementary stream here"
            elif track_type is None:
                refusal = _REFUSALS.get(stream.codec, f"{stream.codec} is not taken (H.264, AAC, AC-3 and E-AC-3 are)")
            elif track_type in taken:
                refusal = f"another {stream.codec} stream: only the first (PID 0x{taken[track_type]:04x}) is taken"
            else:
                refusal = ""
            if refusal:
                events.append(StreamRefused(stream.pid, stream.stream_type, stream.codec, refusal))
                continue
            taken[track_type] = stream.pid
            old = self._tracks.get(stream.pid)
            kept[stream.pid] = old if old is not None and old.stream == stream else track_type(self, stream)
        for pid, track in self._tracks.items():
            if kept.get(pid) is not track:
                track.reset()
                self._continuity.pop(pid, None)
        self._tracks = kept

    # --- PES ---------------------------------------------------------------------

    def _pes_payload(
        self, track: _Track, payload: memoryview, start: bool, lost: bool, stuffed: bool, events: list[TsEvent]
    ) -> None:
        counters = self.counters
        if track.after_stuffing and not lost:
            # What follows a stuffed packet shows whether this muxer stuffs the last packet of a PES only.
            if not start:
                if track.stuffing_ends_pes:
                    counters.pes_cut_by_stuffing += 1  # cut there: the rest is dropped below
                track.stuffing_ends_pes = False
            elif track.stuffing_ends_pes is None:
                track.stuffing_ends_pes = True
        track.after_stuffing = False
        if lost:
            if track.collecting:
                counters.pes_dropped += 1
            track.reset()  # and any frame carried over, which would be finished with the wrong bytes
        if start:
            if track.collecting:
                self._end_pes(track, events)
            track.collecting = True
            track.pes_bytes = 0
        elif not track.collecting:
            return  # the rest of a PES whose start was lost
        if len(track.pes) + len(payload) > track.max_pes_bytes or self._buffered + len(payload) > MAX_BUFFERED_BYTES:
            counters.pes_dropped += 1
            track.reset()
            return
        track.pes += payload
        self._buffered += len(payload)
        pes = track.pes
        if not track.pes_bytes and len(pes) >= 6:
            if pes[0] != 0 or pes[1] != 0 or pes[2] != 1:
                counters.pes_dropped += 1  # 2.4.3.6: packet_start_code_prefix
                track.reset()
                return
            length = (pes[4] << 8) | pes[5]
            track.pes_bytes = 6 + length if length else -1  # -1: unbounded
        if track.pes_bytes > 0 and len(pes) >= track.pes_bytes:
            self._end_pes(track, events)
        elif stuffed and track.pes_bytes < 0:
            track.after_stuffing = True
            if track.stuffing_ends_pes:
                self._end_pes(track, events)  # its last packet: now, not when the next frame starts

    def _end_pes(self, track: _Track, events: list[TsEvent]) -> None:
        """A whole PES: its header (2.4.3.6), then the codec's turn."""
        bounded = track.pes_bytes
        pes = track.take_pes()
        counters = self.counters
        if bounded > 0:
            if len(pes) < bounded:
                counters.pes_dropped += 1  # cut short by the next PES (or the end)
                return
            del pes[bounded:]
        if len(pes) < 9 or pes[3] in _STREAM_IDS_WITHOUT_HEADER or pes[6] & 0xC0 != 0x80:
            counters.pes_dropped += 1
            return
        pts_dts = pes[7] >> 6
        payload_at = 9 + pes[8]
        needed = {2: 5, 3: 10}.get(pts_dts)
        if needed is None or pes[8] < needed or payload_at > len(pes):
            counters.pes_dropped += 1  # no PTS (or PTS_DTS_flags '01', forbidden)
            return
        pts = self._timeline.unwrap(_read_timestamp(pes, 9))
        dts = self._timeline.unwrap(_read_timestamp(pes, 14)) if pts_dts == 3 else pts
        track.on_pes(pts, dts, pes, payload_at, events)


def _has_stuffing(packet: memoryview, field_bytes: int) -> bool:
    """Whether the adaptation field (2.4.3.4) is longer than its flags need:
    stuffing bytes, which pad a packet whose payload does not fill it."""
    if field_bytes == 0:
        return True  # the length byte alone: one byte of stuffing
    flags = packet[5]
    used = 1 + (6 if flags & 0x10 else 0) + (6 if flags & 0x08 else 0) + (1 if flags & 0x04 else 0)
    for flag in (0x02, 0x01):  # transport_private_data, adaptation_field_extension: a length, then the bytes
        if flags & flag:
            if used >= field_bytes:
                return False  # malformed: no guess
            used += 1 + packet[5 + used]
    return field_bytes > used


def pid_is_special(pid: int) -> bool:
    """2.4.3.3 Table 2-3: PIDs 0x0000-0x000F are reserved for tables, 0x1FFF is null."""
    return pid < 0x0010 or pid == NULL_PID
