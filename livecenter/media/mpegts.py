"""An MPEG-TS muxer for HLS: one program, one H.264 video and one audio
stream, AAC or Dolby (ISO/IEC 13818-1, "MPEG-2 Systems").

What goes in is what the hub carries: FLV tag bodies with millisecond
timestamps. What comes out is whole 188-byte transport packets:

- `psi()`: a PAT and a PMT, to start every segment (and every independent
  LL-HLS part) so that a player can begin decoding there.
- `mux(kind, timestamp_ms, body)`: one PES packet per frame. Video becomes an
  Annex B access unit (an access unit delimiter first, then SPS and PPS before
  every keyframe, then the frame's NAL units) with PTS and DTS in 90 kHz
  (DTS is the FLV timestamp, PTS adds the AVC CompositionTime); the first TS
  packet of each video PES carries the PCR and, on keyframes, the
  random_access_indicator. Audio becomes ADTS frames built from the
  AudioSpecificConfig, with a PTS. AC-3 and E-AC-3 (Enhanced RTMP FourCC
  audio, dolby.py) pass through untouched: each access unit one PES on
  private_stream_1 with a PTS, the stream typed as ATSC A/52 Annex A and G
  and Apple's HLS say, 0x81 (AC-3) and 0x87 (E-AC-3), with the registration
  descriptor 'AC-3'/'EAC3' (what FFmpeg writes).

Continuity counters run per PID across calls, so consecutive segments
concatenate into one valid stream; `restart()` resets them (a new publisher,
announced to players with EXT-X-DISCONTINUITY).

Pure: no I/O, no clock. Bad input (a frame before its sequence header, a
truncated NAL unit, an AAC profile ADTS cannot carry) raises TsMuxError and
leaves the muxer as it was, so the caller may drop the frame and go on.
"""

from __future__ import annotations

import struct

from .codecs import AAC_SAMPLE_RATES, ANNEXB_START_CODE, AvcConfig, BitReader, CodecError, parse_avc_sequence_header
from .flv import (
    AAC_BODY_HEADER_BYTES,
    AUDIO_CODEC_AAC,
    AUDIO_CODEC_EX_HEADER,
    AUDIO_FOURCC_AC3,
    AUDIO_FOURCC_EAC3,
    AUDIO_PACKET_CODED_FRAMES,
    AUDIO_PACKET_SEQUENCE_START,
    AVC_BODY_HEADER_BYTES,
    EX_AUDIO_BODY_HEADER_BYTES,
    MAX_TAG_BYTES,
    PACKET_NALU,
    PACKET_SEQUENCE_HEADER,
    VIDEO_CODEC_AVC,
    FrameKind,
    aac_packet_type,
    audio_codec_id,
    audio_fourcc,
    audio_is_sequence_header,
    avc_composition_time,
    avc_packet_type,
    video_codec_id,
    video_is_keyframe,
)

TS_PACKET_BYTES = 188
TS_PAYLOAD_BYTES = TS_PACKET_BYTES - 4
SYNC_BYTE = 0x47

# PIDs as FFmpeg's mpegts muxer assigns them, so our segments look familiar
# in any analyser: PMT 0x1000, the first stream 0x100, the next 0x101.
PAT_PID = 0x0000
PMT_PID = 0x1000
VIDEO_PID = 0x0100
AUDIO_PID = 0x0101
PROGRAM_NUMBER = 1
TRANSPORT_STREAM_ID = 1

# 2.4.4.9 Table 2-34 stream_type: AVC video, and ISO/IEC 13818-7 (ADTS) audio.
STREAM_TYPE_H264 = 0x1B
STREAM_TYPE_AAC_ADTS = 0x0F
# 2.4.3.7 Table 2-22 stream_id: the first video and audio elementary streams.
STREAM_ID_VIDEO = 0xE0
STREAM_ID_AUDIO = 0xC0
# ATSC A/52 Annex A and G (and Apple's HLS): AC-3 and E-AC-3 as stream types
# 0x81 and 0x87 on private_stream_1, with a registration descriptor (2.6.8)
# naming the format, as FFmpeg writes them.
STREAM_TYPE_AC3 = 0x81
STREAM_TYPE_EAC3 = 0x87
STREAM_ID_PRIVATE_1 = 0xBD
_DOLBY_STREAMS = {
    AUDIO_FOURCC_AC3: (STREAM_TYPE_AC3, b"\x05\x04AC-3"),
    AUDIO_FOURCC_EAC3: (STREAM_TYPE_EAC3, b"\x05\x04EAC3"),
}

CLOCK_HZ = 90_000
CLOCK_TICKS_PER_MS = CLOCK_HZ // 1000
# 2.4.3.7: PTS and DTS are 33 bits; they wrap after 26.5 hours.
TIMESTAMP_WRAP = 1 << 33

# The largest video frame accepted: the largest FLV tag body the engine reads
# at all (flv.MAX_TAG_BYTES), since that is where frames come from.
MAX_VIDEO_FRAME_BYTES = MAX_TAG_BYTES
# ISO/IEC 13818-7 6.2: an ADTS frame_length is 13 bits and counts the 7-byte
# header, so a raw AAC frame can be at most this long.
ADTS_HEADER_BYTES = 7
MAX_AAC_FRAME_BYTES = 0x1FFF - ADTS_HEADER_BYTES
# A Dolby access unit is one PES whose PES_packet_length (16 bits) also
# counts 3 flag bytes and the 5-byte PTS. An E-AC-3 sync frame is at most
# 4096 bytes (A/52 E.1.3.1.4), so this holds any unit with its substreams.
MAX_DOLBY_ACCESS_UNIT_BYTES = 0xFFFF - 8

# H.264 7.3.2.4: an access unit delimiter, primary_pic_type 7 (any slice type).
AUD_NAL = ANNEXB_START_CODE + b"\x09\xf0"
_NAL_SPS = 7
_NAL_PPS = 8
_NAL_AUD = 9

_TS_HEADER = struct.Struct(">BHB")  # sync, PUSI|PID, scrambling|adaptation|continuity
_PES_HEADER = struct.Struct(">3sBHBBB")  # start code prefix, stream_id, length, flags, flags, header length


class TsMuxError(Exception):
    """A frame or configuration that cannot be muxed into MPEG-TS."""


def _crc32_mpeg2_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return tuple(table)


_CRC_TABLE = _crc32_mpeg2_table()


def crc32_mpeg2(data: bytes) -> int:
    """Annex A: the PSI sections' CRC (not zlib's reflected CRC-32). Sections
    are a few dozen bytes, so a table-driven loop is fine here."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[(crc >> 24) ^ byte]
    return crc


def _timestamp_field(prefix: int, ticks: int) -> bytes:
    # 2.4.3.7: '00xx' prefix, then 33 bits split 3/15/15, each followed by a marker bit.
    return bytes(
        (
            (prefix << 4) | ((ticks >> 29) & 0x0E) | 1,
            (ticks >> 22) & 0xFF,
            ((ticks >> 14) & 0xFE) | 1,
            (ticks >> 7) & 0xFF,
            ((ticks << 1) & 0xFE) | 1,
        )
    )


def _pcr_field(ticks: int) -> bytes:
    # 2.4.3.5: program_clock_reference_base (33 bits), 6 reserved bits, extension (9 bits, 0).
    return bytes(
        (
            (ticks >> 25) & 0xFF,
            (ticks >> 17) & 0xFF,
            (ticks >> 9) & 0xFF,
            (ticks >> 1) & 0xFF,
            ((ticks & 1) << 7) | 0x7E,
            0,
        )
    )


class AdtsConfig:
    """What an ADTS header needs from an AudioSpecificConfig (ISO/IEC 14496-3
    1.6.2.1): the profile, the sampling frequency index and the channel
    configuration. HE-AAC (SBR, PS) is written as its AAC-LC core, which
    decoders extend implicitly, as FFmpeg's ADTS muxer does."""

    __slots__ = ("profile", "sampling_index", "channel_config")

    def __init__(self, profile: int, sampling_index: int, channel_config: int) -> None:
        self.profile = profile
        self.sampling_index = sampling_index
        self.channel_config = channel_config

    def header(self, raw_bytes: int) -> bytes:
        """13818-7 6.2.1: adts_fixed_header and adts_variable_header, no CRC."""
        length = raw_bytes + ADTS_HEADER_BYTES
        return bytes(
            (
                0xFF,
                0xF1,  # syncword, MPEG-4, layer 0, protection_absent
                (self.profile << 6) | (self.sampling_index << 2) | (self.channel_config >> 2),
                ((self.channel_config & 3) << 6) | (length >> 11),
                (length >> 3) & 0xFF,
                ((length & 7) << 5) | 0x1F,  # buffer fullness 0x7FF: variable bitrate
                0xFC,  # ... and one raw data block
            )
        )


def parse_adts_config(body: bytes) -> AdtsConfig:
    """From an FLV AAC sequence header body: format byte, AACPacketType 0,
    AudioSpecificConfig."""
    # An AudioSpecificConfig is at least 2 bytes (ISO 14496-3 1.6.2.1).
    if len(body) < AAC_BODY_HEADER_BYTES + 2 or not audio_is_sequence_header(body):
        raise TsMuxError("not an AAC sequence header")
    try:
        bits = BitReader(bytes(body[AAC_BODY_HEADER_BYTES : AAC_BODY_HEADER_BYTES + 16]))
        object_type = bits.u(5)
        if object_type == 31:
            object_type = 32 + bits.u(6)
        index = bits.u(4)
        if index == 0xF:
            rate = bits.u(24)
            if rate not in AAC_SAMPLE_RATES:
                raise TsMuxError(f"AAC sampling frequency {rate} Hz has no ADTS index")
            index = AAC_SAMPLE_RATES.index(rate)
        channel_config = bits.u(4)
    except CodecError as exc:
        raise TsMuxError(f"unreadable AudioSpecificConfig: {exc}") from exc
    if index >= len(AAC_SAMPLE_RATES):
        raise TsMuxError(f"AAC samplingFrequencyIndex {index} is reserved")
    if object_type in (5, 29):  # SBR, PS: the core is AAC-LC
        object_type = 2
    if not 1 <= object_type <= 4:
        raise TsMuxError(f"AAC object type {object_type} cannot be carried in ADTS (only 1-4)")
    if channel_config > 7:
        raise TsMuxError(f"AAC channelConfiguration {channel_config} cannot be carried in ADTS (only 0-7)")
    return AdtsConfig(object_type - 1, index, channel_config)


class TsMuxer:
    """Muxes one stream's frames into MPEG-TS packets (module docstring)."""

    def __init__(self) -> None:
        self.video_config: AvcConfig | None = None
        self.audio_config: AdtsConfig | None = None
        self.dolby_fourcc = b""  # b"ac-3" or b"ec-3" when the audio is Dolby
        self._parameter_sets = b""
        self._pmt_version = 0
        self._continuity: dict[int, int] = {}

    # --- configuration -------------------------------------------------------------

    def set_video_config(self, body: bytes) -> None:
        """From an FLV AVC sequence header body."""
        try:
            config = parse_avc_sequence_header(body)
        except CodecError as exc:
            raise TsMuxError(f"unreadable AVC sequence header: {exc}") from exc
        if self.video_config is None:
            self._pmt_version = (self._pmt_version + 1) & 0x1F
        self.video_config = config
        self._parameter_sets = config.annexb_parameter_sets()

    def set_audio_config(self, body: bytes) -> None:
        """From an FLV AAC sequence header body."""
        config = parse_adts_config(body)
        if self.audio_config is None:
            self._pmt_version = (self._pmt_version + 1) & 0x1F
        self.audio_config = config
        self.dolby_fourcc = b""

    def set_dolby_audio(self, fourcc: bytes) -> None:
        """AC-3 (b"ac-3") or E-AC-3 (b"ec-3") audio, from Enhanced RTMP."""
        if fourcc not in _DOLBY_STREAMS:
            raise TsMuxError(f"audio FourCC {fourcc!r} is not AC-3 or E-AC-3")
        if fourcc != self.dolby_fourcc:
            self._pmt_version = (self._pmt_version + 1) & 0x1F
        self.dolby_fourcc = fourcc
        self.audio_config = None

    @property
    def has_audio(self) -> bool:
        return self.audio_config is not None or bool(self.dolby_fourcc)

    def restart(self) -> None:
        """Reset the continuity counters: the output starts a new stream."""
        self._continuity.clear()

    @property
    def pcr_pid(self) -> int:
        return VIDEO_PID if self.video_config is not None or not self.has_audio else AUDIO_PID

    # --- output --------------------------------------------------------------------

    def psi(self) -> bytes:
        """A PAT and a PMT (two TS packets) describing the configured streams."""
        # 2.4.4.3 program_association_section: one program, its PMT PID.
        pat = struct.pack(">HH", PROGRAM_NUMBER, 0xE000 | PMT_PID)
        # 2.4.4.8 TS_program_map_section: PCR PID, no program descriptors, the streams.
        pmt = bytearray(struct.pack(">HH", 0xE000 | self.pcr_pid, 0xF000))
        if self.video_config is not None:
            pmt += struct.pack(">BHH", STREAM_TYPE_H264, 0xE000 | VIDEO_PID, 0xF000)
        if self.audio_config is not None:
            pmt += struct.pack(">BHH", STREAM_TYPE_AAC_ADTS, 0xE000 | AUDIO_PID, 0xF000)
        elif self.dolby_fourcc:
            stream_type, descriptor = _DOLBY_STREAMS[self.dolby_fourcc]
            pmt += struct.pack(">BHH", stream_type, 0xE000 | AUDIO_PID, 0xF000 | len(descriptor)) + descriptor
        return self._section(PAT_PID, 0x00, TRANSPORT_STREAM_ID, 0, pat) + self._section(
            PMT_PID, 0x02, PROGRAM_NUMBER, self._pmt_version, bytes(pmt)
        )

    def mux(self, kind: FrameKind, timestamp_ms: int, body: bytes) -> bytes:
        """One FLV tag body in, whole TS packets out (b"" for sequence
        headers, which configure the muxer, and for metadata)."""
        if timestamp_ms < 0:
            raise TsMuxError(f"timestamp {timestamp_ms} ms is negative")
        if kind == FrameKind.VIDEO:
            return self._mux_video(timestamp_ms, body)
        if kind == FrameKind.AUDIO:
            return self._mux_audio(timestamp_ms, body)
        if kind == FrameKind.META:
            return b""
        raise ValueError(f"frame kind must be 'video', 'audio' or 'meta', not {kind!r}")

    def _mux_video(self, timestamp_ms: int, body: bytes) -> bytes:
        if len(body) < AVC_BODY_HEADER_BYTES:
            raise TsMuxError(
                f"video tag body of {len(body)} bytes is shorter than the AVC header ({AVC_BODY_HEADER_BYTES})"
            )
        if video_codec_id(body) != VIDEO_CODEC_AVC:
            raise TsMuxError(f"video codec {video_codec_id(body)} is not H.264 (7)")
        packet_type = avc_packet_type(body)
        if packet_type == PACKET_SEQUENCE_HEADER:
            self.set_video_config(body)
            return b""
        if packet_type != PACKET_NALU:
            return b""  # end of sequence: nothing to show
        config = self.video_config
        if config is None:
            raise TsMuxError("video frame before the AVC sequence header")
        if len(body) > MAX_VIDEO_FRAME_BYTES:
            limit = MAX_VIDEO_FRAME_BYTES
            raise TsMuxError(f"video frame of {len(body)} bytes exceeds MAX_VIDEO_FRAME_BYTES ({limit})")
        keyframe = video_is_keyframe(body)
        access_unit = self._annexb(body, config.nal_length_size, keyframe)
        dts = (timestamp_ms * CLOCK_TICKS_PER_MS) % TIMESTAMP_WRAP
        # A negative CompositionTime would put PTS before DTS, which 2.7.5 forbids.
        cts = max(avc_composition_time(body), 0)
        pts = ((timestamp_ms + cts) * CLOCK_TICKS_PER_MS) % TIMESTAMP_WRAP
        if pts == dts:
            header = _PES_HEADER.pack(b"\x00\x00\x01", STREAM_ID_VIDEO, 0, 0x80, 0x80, 5) + _timestamp_field(2, pts)
        else:
            header = (
                _PES_HEADER.pack(b"\x00\x00\x01", STREAM_ID_VIDEO, 0, 0x80, 0xC0, 10)
                + _timestamp_field(3, pts)
                + _timestamp_field(1, dts)
            )
        # 2.4.3.7: PES_packet_length 0 (unbounded) is allowed for video in a TS.
        pcr = dts if self.pcr_pid == VIDEO_PID else None
        return self._packetize(VIDEO_PID, header + access_unit, pcr, keyframe)

    def _annexb(self, body: bytes, nal_length_size: int, keyframe: bool) -> bytes:
        """AUD, then SPS/PPS on keyframes (unless the frame brings its own),
        then the frame's NAL units with start codes. The frame's own AUDs are
        dropped: an access unit has at most one, and it comes first."""
        view = memoryview(body)
        end = len(view)
        pos = AVC_BODY_HEADER_BYTES
        units: list[bytes | memoryview] = []
        has_parameter_sets = False
        while pos < end:
            if pos + nal_length_size > end:
                raise TsMuxError("video frame ends inside a NAL unit length")
            size = int.from_bytes(view[pos : pos + nal_length_size], "big")
            pos += nal_length_size
            if pos + size > end:
                raise TsMuxError(f"NAL unit of {size} bytes runs past the end of the video frame")
            if size:
                nal_type = view[pos] & 0x1F
                if nal_type in (_NAL_SPS, _NAL_PPS):
                    has_parameter_sets = True
                if nal_type != _NAL_AUD:
                    units.append(ANNEXB_START_CODE)
                    units.append(view[pos : pos + size])
            pos += size
        head = AUD_NAL + self._parameter_sets if keyframe and not has_parameter_sets else AUD_NAL
        return head + b"".join(units)

    def _mux_audio(self, timestamp_ms: int, body: bytes) -> bytes:
        if body[:1] and body[0] >> 4 == AUDIO_CODEC_EX_HEADER:
            return self._mux_dolby(timestamp_ms, body)
        if len(body) < AAC_BODY_HEADER_BYTES:
            raise TsMuxError(
                f"audio tag body of {len(body)} bytes is shorter than the AAC header ({AAC_BODY_HEADER_BYTES})"
            )
        if audio_codec_id(body) != AUDIO_CODEC_AAC:
            raise TsMuxError(f"audio format {audio_codec_id(body)} is not AAC (10)")
        if aac_packet_type(body) == PACKET_SEQUENCE_HEADER:
            self.set_audio_config(body)
            return b""
        config = self.audio_config
        if config is None:
            raise TsMuxError("audio frame before the AAC sequence header")
        raw = len(body) - AAC_BODY_HEADER_BYTES
        if raw > MAX_AAC_FRAME_BYTES:
            raise TsMuxError(f"AAC frame of {raw} bytes exceeds MAX_AAC_FRAME_BYTES ({MAX_AAC_FRAME_BYTES})")
        if raw == 0:
            return b""
        pts = (timestamp_ms * CLOCK_TICKS_PER_MS) % TIMESTAMP_WRAP
        payload_bytes = ADTS_HEADER_BYTES + raw
        # PES_packet_length counts the 3 flag bytes, the 5 PTS bytes and the payload.
        header = _PES_HEADER.pack(b"\x00\x00\x01", STREAM_ID_AUDIO, 8 + payload_bytes, 0x80, 0x80, 5)
        pes = b"".join((header, _timestamp_field(2, pts), config.header(raw), memoryview(body)[AAC_BODY_HEADER_BYTES:]))
        pcr = pts if self.pcr_pid == AUDIO_PID else None
        return self._packetize(AUDIO_PID, pes, pcr, False)

    def _mux_dolby(self, timestamp_ms: int, body: bytes) -> bytes:
        fourcc = audio_fourcc(body)
        if not fourcc:
            raise TsMuxError(f"Enhanced RTMP audio body of {len(body)} bytes is shorter than its header")
        packet_type = body[0] & 0x0F
        if packet_type == AUDIO_PACKET_SEQUENCE_START:
            self.set_dolby_audio(fourcc)
            return b""
        if packet_type != AUDIO_PACKET_CODED_FRAMES:
            return b""  # SequenceEnd, MultichannelConfig: the sync frames say all a decoder needs
        if fourcc != self.dolby_fourcc:
            if self.dolby_fourcc or self.audio_config is not None or fourcc not in _DOLBY_STREAMS:
                raise TsMuxError(f"audio frame {fourcc!r} is not the stream's audio codec")
            self.set_dolby_audio(fourcc)  # AC-3 frames describe themselves: no SequenceStart needed
        data = memoryview(body)[EX_AUDIO_BODY_HEADER_BYTES:]
        if len(data) > MAX_DOLBY_ACCESS_UNIT_BYTES:
            limit = MAX_DOLBY_ACCESS_UNIT_BYTES
            raise TsMuxError(f"Dolby access unit of {len(data)} bytes exceeds MAX_DOLBY_ACCESS_UNIT_BYTES ({limit})")
        if not data:
            return b""
        pts = (timestamp_ms * CLOCK_TICKS_PER_MS) % TIMESTAMP_WRAP
        header = _PES_HEADER.pack(b"\x00\x00\x01", STREAM_ID_PRIVATE_1, 8 + len(data), 0x80, 0x80, 5)
        pes = b"".join((header, _timestamp_field(2, pts), data))
        pcr = pts if self.pcr_pid == AUDIO_PID else None
        return self._packetize(AUDIO_PID, pes, pcr, False)

    # --- packets -------------------------------------------------------------------

    def _next_continuity(self, pid: int) -> int:
        counter = self._continuity.get(pid, -1)
        counter = (counter + 1) & 0x0F
        self._continuity[pid] = counter
        return counter

    def _section(self, pid: int, table_id: int, table_id_extension: int, version: int, body: bytes) -> bytes:
        """One PSI section in one TS packet, filled with 0xFF (2.4.4)."""
        # section_syntax_indicator 1, '0', reserved '11', section_length (12 bits):
        # 5 bytes of header after the length, the body, the CRC.
        length = 5 + len(body) + 4
        section = struct.pack(
            ">BHHBBB", table_id, 0xB000 | length, table_id_extension, 0xC1 | (version << 1), 0, 0
        )  # current_next_indicator 1, section 0 of 0
        section += body
        section += struct.pack(">I", crc32_mpeg2(section))
        header = _TS_HEADER.pack(SYNC_BYTE, 0x4000 | pid, 0x10 | self._next_continuity(pid))
        packet = header + b"\x00" + section  # pointer_field 0
        return packet + b"\xff" * (TS_PACKET_BYTES - len(packet))

    def _packetize(self, pid: int, pes: bytes, pcr: int | None, random_access: bool) -> bytes:
        """Split one PES packet into TS packets. The first carries the PCR and
        the random_access_indicator in its adaptation field; the last is
        padded with adaptation-field stuffing (2.4.3.5), never by the payload."""
        out = bytearray()
        view = memoryview(pes)
        total = len(view)
        pos = 0
        pid_word = 0x4000 | pid  # payload_unit_start_indicator on the first packet
        first_field = b""
        if pcr is not None or random_access:
            flags = (0x40 if random_access else 0) | (0x10 if pcr is not None else 0)
            first_field = bytes((flags,)) + (_pcr_field(pcr) if pcr is not None else b"")
        field = first_field
        while pos < total:
            remaining = total - pos
            room = TS_PAYLOAD_BYTES - (1 + len(field) if field else 0)
            if remaining < room:
                # Stuff: an adaptation field (grown by 0xFF bytes) fills the packet.
                stuffing = room - remaining
                if field:
                    field += b"\xff" * stuffing
                elif stuffing == 1:
                    field = None  # adaptation_field_length 0: just the length byte
                else:
                    field = b"\x00" + b"\xff" * (stuffing - 2)
                room = remaining
            counter = self._next_continuity(pid)
            if field is None:
                out += _TS_HEADER.pack(SYNC_BYTE, pid_word, 0x30 | counter)
                out += b"\x00"
            elif field:
                out += _TS_HEADER.pack(SYNC_BYTE, pid_word, 0x30 | counter)
                out.append(len(field))
                out += field
            else:
                out += _TS_HEADER.pack(SYNC_BYTE, pid_word, 0x10 | counter)
            out += view[pos : pos + room]
            pos += room
            pid_word = pid
            field = b""
        return bytes(out)
