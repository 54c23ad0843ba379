"""FLV, the container of HTTP-FLV and of RTMP's media (Adobe FLV spec v10, annex E).

A file is a 9-byte header, PreviousTagSize0 (always 0), then tags, each
followed by its PreviousTagSize (11 + DataSize):

    tag = TagType u8 | DataSize u24 | Timestamp u24 | TimestampExtended u8
          | StreamID u24 (0) | body | PreviousTagSize u32

RTMP audio and video messages carry exactly an FLV tag body, so the body
helpers here classify both. This module is pure: no I/O, no clock.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import StrEnum

AUDIO = 8
VIDEO = 9
SCRIPT = 18

FLV_HEADER_BYTES = 9
TAG_HEADER_BYTES = 11
PREVIOUS_TAG_SIZE_BYTES = 4

# The largest tag body the reader accepts. DataSize is 24 bits (16 MiB); a 4K
# keyframe at a high bitrate is a few MiB, so 8 MiB leaves room without letting
# one peer make us buffer 16 MiB.
MAX_TAG_BYTES = 8 * 1024 * 1024
# A header's DataOffset larger than this is refused. Version 1 headers are 9
# bytes; the field exists for larger future headers, which we skip up to here.
MAX_HEADER_BYTES = 1024
# What the reader can hold while waiting for the rest of a tag: one tag whole
# (an incomplete header is always smaller). Complete tags are handed out as
# soon as they arrive, so this bound follows from MAX_TAG_BYTES.
MAX_BUFFERED_BYTES = TAG_HEADER_BYTES + MAX_TAG_BYTES + PREVIOUS_TAG_SIZE_BYTES

# A forward step between two frames of one track larger than this is a
# timestamp jump (a discontinuity, not a gap): no encoder leaves 2 s between
# frames. The hub rebases past it (hub.py); the stats count it (stats.py).
TIMESTAMP_JUMP_MS = 2_000
# A step back smaller than this is jitter (audio and video interleaved
# loosely, a muxer's rounding): held at the last time. Past it, a jump.
TIMESTAMP_BACKWARD_TOLERANCE_MS = 100
# FLV and RTMP timestamps are 32-bit milliseconds: they wrap after 49.7 days.
TIMESTAMP_WRAP_MS = 1 << 32

# E.4.3.1 VIDEODATA: FrameType (high 4 bits), CodecID (low 4 bits).
VIDEO_FRAME_KEY = 1
VIDEO_FRAME_INTER = 2
VIDEO_FRAME_DISPOSABLE_INTER = 3
VIDEO_FRAME_GENERATED_KEY = 4
VIDEO_FRAME_INFO = 5
VIDEO_CODEC_AVC = 7
# Not in Adobe's spec: the id Chinese CDNs (and ApsaraVideo) use for H.265 in
# FLV and RTMP, with AVC's packet layout.
VIDEO_CODEC_HEVC = 12
VIDEO_CODEC_NAMES = {2: "H263", 3: "SCREEN", 4: "VP6", 5: "VP6A", 6: "SCREEN2", 7: "H264", 12: "H265"}

# E.4.2.1 AUDIODATA: SoundFormat (4 bits), SoundRate (2), SoundSize (1), SoundType (1).
AUDIO_CODEC_MP3 = 2
AUDIO_CODEC_AAC = 10
AUDIO_CODEC_NAMES = {
    0: "PCM",
    1: "ADPCM",
    2: "MP3",
    3: "PCM",
    4: "NELLYMOSER",
    5: "NELLYMOSER",
    6: "NELLYMOSER",
    7: "G711A",
    8: "G711U",
    10: "AAC",
    11: "SPEEX",
    14: "MP3",
}
# Enhanced RTMP v2 ("Enhancing Audio"): SoundFormat 9 is ExHeader, after
# which the low 4 bits are an AudioPacketType and a FourCC names the codec:
#     ExAudioTagHeader = SoundFormat 9 (4 bits) | AudioPacketType (4) | FourCC (4 bytes)
# FFmpeg (7.1 and later) writes and reads AC-3 and E-AC-3 this way: an empty
# SequenceStart, then each access unit (its sync frames) as CodedFrames.
AUDIO_CODEC_EX_HEADER = 9
AUDIO_PACKET_SEQUENCE_START = 0
AUDIO_PACKET_CODED_FRAMES = 1
AUDIO_PACKET_SEQUENCE_END = 2
AUDIO_PACKET_MULTICHANNEL_CONFIG = 4
EX_AUDIO_BODY_HEADER_BYTES = 5
AUDIO_FOURCC_AC3 = b"ac-3"
AUDIO_FOURCC_EAC3 = b"ec-3"
AUDIO_FOURCC_NAMES = {b"ac-3": "AC-3", b"ec-3": "E-AC-3", b"Opus": "OPUS", b"fLaC": "FLAC", b".mp3": "MP3",
                      b"mp4a": "AAC"}  # fmt: skip
# SoundRate: 5.5, 11, 22 or 44 kHz (AAC always says 44 kHz; its real rate is
# in the AudioSpecificConfig).
AUDIO_SAMPLE_RATES = (5512, 11025, 22050, 44100)

# AVCPacketType / AACPacketType (the body's second byte).
PACKET_SEQUENCE_HEADER = 0
PACKET_NALU = 1  # AAC: raw frame
PACKET_END_OF_SEQUENCE = 2
# What comes before the codec's own data in a body. E.4.3.1 AVC (and HEVC):
# FrameType and CodecID, AVCPacketType, CompositionTime (SI24). E.4.2.1 AAC:
# the SoundFormat byte, AACPacketType.
AVC_BODY_HEADER_BYTES = 5
AAC_BODY_HEADER_BYTES = 2


class FrameKind(StrEnum):
    """What one tag body carries, by name: the kind of a hub frame
    (hub.MediaFrame) and of what the muxers take. A str, so it prints and
    compares as its value."""

    VIDEO = "video"
    AUDIO = "audio"
    META = "meta"  # script data: AMF0 onMetaData

    @property
    def tag_type(self) -> int:
        """The FLV TagType (E.4.1), which is also the RTMP message type."""
        return _TAG_TYPE_OF_KIND[self]

    @classmethod
    def of_tag_type(cls, tag_type: int) -> FrameKind | None:
        """The kind of an FLV TagType, None for any other type."""
        return _KIND_OF_TAG_TYPE.get(tag_type)


_TAG_TYPE_OF_KIND = {FrameKind.VIDEO: VIDEO, FrameKind.AUDIO: AUDIO, FrameKind.META: SCRIPT}
_KIND_OF_TAG_TYPE = {tag_type: kind for kind, tag_type in _TAG_TYPE_OF_KIND.items()}

_TAG_HEADER = struct.Struct(">II3x")  # type << 24 | size, timestamp u24 << 8 | extended, stream id 0
_U32 = struct.Struct(">I")
_HEADER = struct.Struct(">3sBBI")  # "FLV", version, flags, data offset


class FlvProtocolError(Exception):
    """The bytes are not an FLV stream this reader accepts."""


@dataclass(frozen=True, slots=True)
class FlvHeader:
    version: int
    has_audio: bool
    has_video: bool


@dataclass(frozen=True, slots=True)
class FlvTag:
    tag_type: int  # AUDIO, VIDEO, SCRIPT, or whatever the peer sent
    timestamp: int  # milliseconds, 32 bits with TimestampExtended
    body: bytes

    def __bytes__(self) -> bytes:
        return encode_tag(self.tag_type, self.timestamp, self.body)


def flv_header(has_audio: bool = True, has_video: bool = True) -> bytes:
    """The file header and PreviousTagSize0: what an HTTP-FLV response starts with."""
    flags = (4 if has_audio else 0) | (1 if has_video else 0)
    return _HEADER.pack(b"FLV", 1, flags, FLV_HEADER_BYTES) + bytes(PREVIOUS_TAG_SIZE_BYTES)


FLV_HEADER = flv_header()


def encode_tag(tag_type: int, timestamp_ms: int, body: bytes) -> bytes:
    """One tag with its PreviousTagSize. Timestamps wrap at 2**32 ms (49.7
    days), as RTMP's do."""
    size = len(body)
    if size > 0xFFFFFF:
        raise ValueError(f"tag body of {size} bytes does not fit DataSize (24 bits)")
    if timestamp_ms < 0:
        raise ValueError("timestamp_ms must not be negative")
    ts = timestamp_ms & 0xFFFFFFFF
    # E.4.1: the low 24 bits, then TimestampExtended holds bits 24-31.
    head = _TAG_HEADER.pack((tag_type << 24) | size, ((ts & 0xFFFFFF) << 8) | (ts >> 24))
    return b"".join((head, body, _U32.pack(TAG_HEADER_BYTES + size)))


def parse_tag_header(data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int, int]:
    """The tag header (E.4.1) at `offset`, which must hold TAG_HEADER_BYTES:
    (the TagType byte as sent, Reserved and Filter bits included; DataSize;
    Timestamp with TimestampExtended as its bits 24-31)."""
    type_and_size, ts = _TAG_HEADER.unpack_from(data, offset)
    return type_and_size >> 24, type_and_size & 0xFFFFFF, (ts >> 8) | ((ts & 0xFF) << 24)


class FlvReader:
    """A sans-IO FLV reader: feed bytes, get the tags they complete.

    `receive_data(b"")` says the input ended; ending inside the header or a
    tag is an error. After an FlvProtocolError every later call raises it
    again: the stream cannot be resynchronised.
    """

    def __init__(self) -> None:
        self.header: FlvHeader | None = None
        self._buffer = bytearray()
        self._error: FlvProtocolError | None = None
        self._ended = False

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def receive_data(self, data: bytes) -> list[FlvTag]:
        if self._error is not None:
            raise self._error
        if self._ended:
            raise RuntimeError("receive_data called after the end of input")
        try:
            if not data:
                self._ended = True
                if self._buffer or self.header is None:
                    raise FlvProtocolError(f"input ended inside {'a tag' if self.header else 'the header'}")
                return []
            self._buffer += data
            return self._parse()
        except FlvProtocolError as exc:
            self._error = exc
            self._buffer = bytearray()
            raise

    def _parse(self) -> list[FlvTag]:
        buf = self._buffer
        offset = 0
        if self.header is None:
            offset = self._parse_header(buf)
            if offset == 0:
                return []
        tags = []
        end = len(buf)
        view = memoryview(buf)
        try:
            while end - offset >= TAG_HEADER_BYTES:
                tag_byte, size, timestamp = parse_tag_header(buf, offset)
                # E.4.1: Reserved (2 bits), Filter (1 bit), TagType (5 bits).
                if tag_byte & 0x20:
                    raise FlvProtocolError("encrypted (filtered) tags are not supported")
                if size > MAX_TAG_BYTES:
                    raise FlvProtocolError(f"tag of {size} bytes exceeds MAX_TAG_BYTES ({MAX_TAG_BYTES})")
                total = TAG_HEADER_BYTES + size + PREVIOUS_TAG_SIZE_BYTES
                if end - offset < total:
                    break
                body_at = offset + TAG_HEADER_BYTES
                # PreviousTagSize is not checked: some muxers write it wrong,
                # and DataSize alone frames the stream.
                tags.append(FlvTag(tag_byte & 0x1F, timestamp, bytes(view[body_at : body_at + size])))
                offset += total
        finally:
            view.release()
        del buf[:offset]
        return tags

    def _parse_header(self, buf: bytearray) -> int:
        """Consume the header and PreviousTagSize0; 0 while incomplete."""
        if len(buf) < FLV_HEADER_BYTES:
            if not b"FLV".startswith(bytes(buf[:3])):
                raise FlvProtocolError("not an FLV stream (no 'FLV' signature)")
            return 0
        signature, version, flags, data_offset = _HEADER.unpack_from(buf, 0)
        if signature != b"FLV":
            raise FlvProtocolError("not an FLV stream (no 'FLV' signature)")
        if data_offset < FLV_HEADER_BYTES:
            raise FlvProtocolError(f"header DataOffset {data_offset} is shorter than the header")
        if data_offset > MAX_HEADER_BYTES:
            raise FlvProtocolError(f"header DataOffset {data_offset} exceeds MAX_HEADER_BYTES ({MAX_HEADER_BYTES})")
        if len(buf) < data_offset + PREVIOUS_TAG_SIZE_BYTES:
            return 0
        self.header = FlvHeader(version, bool(flags & 4), bool(flags & 1))
        return data_offset + PREVIOUS_TAG_SIZE_BYTES


# --- tag body helpers (E.4.2.1, E.4.3.1) ---------------------------------------
# Each takes a tag body (or an RTMP audio/video message) and never raises: an
# empty or short body is simply not a keyframe, not a header, codec 0.


def video_frame_type(body: bytes) -> int:
    return body[0] >> 4 if body else 0


def video_codec_id(body: bytes) -> int:
    return body[0] & 0x0F if body else 0


def video_is_keyframe(body: bytes) -> bool:
    return bool(body) and body[0] >> 4 in (VIDEO_FRAME_KEY, VIDEO_FRAME_GENERATED_KEY)


def avc_packet_type(body: bytes) -> int:
    """AVCPacketType of an AVC (or HEVC) body: PACKET_SEQUENCE_HEADER,
    PACKET_NALU or PACKET_END_OF_SEQUENCE; -1 for other codecs, which have
    none, and for a body too short to say."""
    if len(body) >= 2 and body[0] & 0x0F in (VIDEO_CODEC_AVC, VIDEO_CODEC_HEVC):
        return body[1]
    return -1


def video_is_sequence_header(body: bytes) -> bool:
    """An AVC (or HEVC) decoder configuration record: AVCPacketType 0."""
    return avc_packet_type(body) == PACKET_SEQUENCE_HEADER


def avc_composition_time(body: bytes) -> int:
    """CompositionTime (SI24, milliseconds): presentation minus decoding time."""
    if len(body) < AVC_BODY_HEADER_BYTES:
        return 0
    cts = int.from_bytes(body[2:AVC_BODY_HEADER_BYTES], "big")
    return cts - 0x1000000 if cts & 0x800000 else cts


def audio_codec_id(body: bytes) -> int:
    return body[0] >> 4 if body else 0


def aac_packet_type(body: bytes) -> int:
    """AACPacketType of an AAC body: PACKET_SEQUENCE_HEADER (an
    AudioSpecificConfig) or PACKET_NALU (a raw frame); -1 for other
    formats, which have none, and for a body too short to say."""
    if len(body) >= 2 and body[0] >> 4 == AUDIO_CODEC_AAC:
        return body[1]
    return -1


def audio_is_sequence_header(body: bytes) -> bool:
    """An AAC AudioSpecificConfig (AACPacketType 0), or an Enhanced RTMP
    SequenceStart: what configures a decoder, sent to every joiner."""
    if len(body) >= 2 and body[0] >> 4 == AUDIO_CODEC_AAC:
        return body[1] == PACKET_SEQUENCE_HEADER
    return len(body) >= EX_AUDIO_BODY_HEADER_BYTES and body[0] == (AUDIO_CODEC_EX_HEADER << 4)


def audio_fourcc(body: bytes) -> bytes:
    """The FourCC of an Enhanced RTMP audio body (b"ac-3", b"ec-3" ...);
    b"" for the legacy SoundFormats and for a body too short to say."""
    if len(body) >= EX_AUDIO_BODY_HEADER_BYTES and body[0] >> 4 == AUDIO_CODEC_EX_HEADER:
        return bytes(body[1:EX_AUDIO_BODY_HEADER_BYTES])
    return b""


def ex_audio_packet_type(body: bytes) -> int:
    """The AudioPacketType of an Enhanced RTMP audio body, -1 for others."""
    return body[0] & 0x0F if audio_fourcc(body) else -1


def ex_audio_body(fourcc: bytes, packet_type: int, data: bytes = b"") -> bytes:
    """An Enhanced RTMP audio tag body: ExAudioTagHeader, then `data`."""
    return bytes(((AUDIO_CODEC_EX_HEADER << 4) | packet_type,)) + fourcc + data


def audio_codec_name(body: bytes) -> str:
    """The codec an audio body carries as monitoring names it ("AAC",
    "E-AC-3" ...); "" when there is no body."""
    if not body:
        return ""
    if body[0] >> 4 == AUDIO_CODEC_EX_HEADER:
        fourcc = audio_fourcc(body)
        return AUDIO_FOURCC_NAMES.get(fourcc, fourcc.decode("latin-1"))
    return AUDIO_CODEC_NAMES.get(body[0] >> 4, "")


def audio_sample_rate(body: bytes) -> int:
    """SoundRate in Hz as the tag header says it (not AAC's real rate)."""
    return AUDIO_SAMPLE_RATES[(body[0] >> 2) & 3] if body else 0


def audio_channels(body: bytes) -> int:
    """SoundType: 1 (mono) or 2 (stereo) as the tag header says it."""
    return (body[0] & 1) + 1 if body else 0
