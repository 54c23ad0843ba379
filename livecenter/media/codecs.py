"""H.264 and AAC configuration: what a stream is, from its sequence headers.

- The AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.2.4.1) that an FLV/RTMP
  AVC sequence header carries, and its first sequence parameter set (ITU-T
  H.264 7.3.2.1.1) for profile, level and the displayed size.
- The AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) of an AAC sequence header.
- AVCC (length-prefixed NAL units, as FLV/MP4 carry them) to Annex B (start
  codes, as MPEG-TS and WebRTC carry them).

Pure: no I/O. Everything here reads bytes a publisher sent, so every failure
is a CodecError and every peer-controlled count has a named limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .flv import (
    AAC_BODY_HEADER_BYTES,
    AVC_BODY_HEADER_BYTES,
    PACKET_SEQUENCE_HEADER,
    VIDEO_CODEC_AVC,
    audio_is_sequence_header,
    avc_packet_type,
    video_codec_id,
)

# A real SPS is 10-100 bytes (with VUI and HRD a few hundred). We read only up
# to the cropping fields, but refuse anything longer than this, so that a
# hostile SPS cannot make the bit reader work on a 64 KiB integer.
MAX_SPS_BYTES = 4096
# H.264 9.1: ue(v)/se(v) values fit 32 bits, so at most 31 leading zeros.
MAX_EXP_GOLOMB_LEADING_ZEROS = 31
# H.264 A.3.1 (f): PicWidthInMbs <= Sqrt(MaxFS * 8); level 6.2's MaxFS is
# 139264 macroblocks, so no conforming picture is wider or taller than this.
MAX_PICTURE_SIDE_MBS = 1055
# H.264 7.4.2.1.1: num_ref_frames_in_pic_order_cnt_cycle is 0..255.
MAX_REF_FRAMES_IN_POC_CYCLE = 255
# NAL units in one access unit: parameter sets, SEI and slices; a picture cut
# into a slice per macroblock row of 4K (135 rows) stays below this. Past it
# the frame is refused, so that a publisher cannot make every frame cost a
# Python loop per four bytes (a run of zero-length units).
MAX_NAL_UNITS_PER_ACCESS_UNIT = 256

ANNEXB_START_CODE = b"\x00\x00\x00\x01"

# The profiles whose SPS has chroma_format_idc and the fields after it (7.3.2.1.1).
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
# The names libavcodec gives (libavcodec/profiles.c), so ours match ffprobe's.
_PROFILE_NAMES = {
    66: "Baseline",
    77: "Main",
    88: "Extended",
    100: "High",
    110: "High 10",
    122: "High 4:2:2",
    244: "High 4:4:4 Predictive",
    44: "CAVLC 4:4:4",
    118: "Multiview High",
    128: "Stereo High",
    83: "Scalable Baseline",
    86: "Scalable High",
}
_INTRA_CAPABLE = {110: "High 10 Intra", 122: "High 4:2:2 Intra", 244: "High 4:4:4 Intra"}

# ISO/IEC 14496-3 1.6.3.4 samplingFrequencyIndex; 13 and 14 are reserved.
AAC_SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
# 1.6.3.5 channelConfiguration (0: the program config element says).
_AAC_CHANNELS = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 8, 11: 7, 12: 8, 13: 24, 14: 8}
# Audio object types as libavcodec names the profiles.
_AAC_PROFILE_NAMES = {1: "Main", 2: "LC", 3: "SSR", 4: "LTP", 5: "HE-AAC", 23: "LD", 29: "HE-AACv2", 39: "ELD"}
_AOT_SBR = 5
_AOT_PS = 29


class CodecError(Exception):
    """A codec configuration or bitstream that cannot be read."""


# --- bits ------------------------------------------------------------------------


def rbsp_from_nal(nal: bytes) -> bytes:
    """The NAL unit's payload with emulation prevention bytes removed (H.264
    7.4.1: every 0x000003 inside a NAL unit stands for 0x0000). The replace
    resumes after each match, as a decoder resets its zero count after the
    0x03, so the two agree."""
    return bytes(nal).replace(b"\x00\x00\x03", b"\x00\x00")


class BitReader:
    """Big-endian bit reader with exp-Golomb codes (H.264 9.1)."""

    __slots__ = ("_value", "_bits", "_pos")

    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._bits = len(data) * 8
        self._pos = 0

    def u(self, n: int) -> int:
        end = self._pos + n
        if end > self._bits:
            raise CodecError("bitstream ended early")
        self._pos = end
        return (self._value >> (self._bits - end)) & ((1 << n) - 1)

    def flag(self) -> bool:
        return bool(self.u(1))

    def ue(self) -> int:
        remaining = self._bits - self._pos
        rest = self._value & ((1 << remaining) - 1)
        if rest == 0:
            raise CodecError("bitstream ended early")
        zeros = remaining - rest.bit_length()
        if zeros > MAX_EXP_GOLOMB_LEADING_ZEROS:
            raise CodecError(f"exp-Golomb code with {zeros} leading zeros (at most {MAX_EXP_GOLOMB_LEADING_ZEROS})")
        self._pos += zeros
        return self.u(zeros + 1) - 1

    def se(self) -> int:
        k = self.ue()
        # 9.1.1: 1, 2, 3, 4 ... map to 1, -1, 2, -2 ...
        return (k + 1) // 2 if k & 1 else -(k // 2)


# --- H.264 ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class H264Sps:
    profile_idc: int
    constraint_flags: int  # constraint_set0_flag is bit 7, as in the byte
    level_idc: int
    chroma_format_idc: int
    bit_depth_luma: int
    width: int  # displayed, after cropping
    height: int
    frame_mbs_only: bool  # False: interlaced coding possible

    def constraint_set(self, n: int) -> bool:
        return bool(self.constraint_flags & (0x80 >> n))

    @property
    def profile_name(self) -> str:
        # libavcodec's h264_ps.c: constraint_set1 makes Baseline "Constrained",
        # constraint_set3 makes the High 10/4:2:2/4:4:4 profiles "Intra".
        if self.profile_idc == 66 and self.constraint_set(1):
            return "Constrained Baseline"
        if self.profile_idc in _INTRA_CAPABLE and self.constraint_set(3):
            return _INTRA_CAPABLE[self.profile_idc]
        return _PROFILE_NAMES.get(self.profile_idc, f"profile {self.profile_idc}")

    @property
    def level(self) -> str:
        """As H.264 Table A-1 writes it: "1b", "3", "3.1"."""
        if self.level_idc == 9 or (
            self.level_idc == 11 and self.constraint_set(3) and self.profile_idc in (66, 77, 88)
        ):
            return "1b"
        major, minor = divmod(self.level_idc, 10)
        return f"{major}.{minor}" if minor else str(major)


def _skip_scaling_list(bits: BitReader, size: int) -> None:
    # H.264 7.3.2.1.1.1
    last = nxt = 8
    for _ in range(size):
        if nxt:
            nxt = (last + bits.se() + 256) % 256
        last = nxt or last


def parse_sps(nal: bytes) -> H264Sps:
    """Parse a sequence parameter set NAL unit (with its 1-byte NAL header)."""
    if len(nal) > MAX_SPS_BYTES:
        raise CodecError(f"SPS of {len(nal)} bytes exceeds MAX_SPS_BYTES ({MAX_SPS_BYTES})")
    if not nal or nal[0] & 0x1F != 7:
        raise CodecError("not an SPS NAL unit (type 7)")
    bits = BitReader(rbsp_from_nal(nal[1:]))
    profile_idc = bits.u(8)
    constraint_flags = bits.u(8)
    level_idc = bits.u(8)
    bits.ue()  # seq_parameter_set_id
    chroma_format_idc, separate_colour_plane, bit_depth_luma = 1, False, 8
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = bits.ue()
        if chroma_format_idc > 3:
            raise CodecError(f"chroma_format_idc {chroma_format_idc} is not 0-3")
        if chroma_format_idc == 3:
            separate_colour_plane = bits.flag()
        bit_depth_luma = bits.ue() + 8
        bits.ue()  # bit_depth_chroma_minus8
        bits.flag()  # qpprime_y_zero_transform_bypass_flag
        if bits.flag():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if bits.flag():  # seq_scaling_list_present_flag[i]
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    pic_order_cnt_type = bits.ue()
    if pic_order_cnt_type == 0:
        bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif pic_order_cnt_type == 1:
        bits.flag()  # delta_pic_order_always_zero_flag
        bits.se()  # offset_for_non_ref_pic
        bits.se()  # offset_for_top_to_bottom_field
        cycle = bits.ue()
        if cycle > MAX_REF_FRAMES_IN_POC_CYCLE:
            raise CodecError(f"num_ref_frames_in_pic_order_cnt_cycle {cycle} exceeds {MAX_REF_FRAMES_IN_POC_CYCLE}")
        for _ in range(cycle):
            bits.se()  # offset_for_ref_frame[i]
    elif pic_order_cnt_type != 2:
        raise CodecError(f"pic_order_cnt_type {pic_order_cnt_type} is not 0-2")
    bits.ue()  # max_num_ref_frames
    bits.flag()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_map_units = bits.ue() + 1
    frame_mbs_only = bits.flag()
    if not frame_mbs_only:
        bits.flag()  # mb_adaptive_frame_field_flag
    bits.flag()  # direct_8x8_inference_flag
    # 7.4.2.1.1: a field-coded picture is two map units tall per macroblock row.
    height_mbs = height_map_units * (1 if frame_mbs_only else 2)
    if width_mbs > MAX_PICTURE_SIDE_MBS or height_mbs > MAX_PICTURE_SIDE_MBS:
        raise CodecError(
            f"picture of {width_mbs}x{height_mbs} macroblocks exceeds MAX_PICTURE_SIDE_MBS ({MAX_PICTURE_SIDE_MBS})"
        )
    width, height = width_mbs * 16, height_mbs * 16
    if bits.flag():  # frame_cropping_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        # 7.4.2.1.1: CropUnitX/Y from ChromaArrayType (0 with a separate colour plane).
        chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
        if chroma_array_type == 0:
            unit_x, unit_y = 1, 2 - frame_mbs_only
        else:
            sub_width = 2 if chroma_array_type in (1, 2) else 1
            sub_height = 2 if chroma_array_type == 1 else 1
            unit_x, unit_y = sub_width, sub_height * (2 - frame_mbs_only)
        width -= unit_x * (left + right)
        height -= unit_y * (top + bottom)
        if width <= 0 or height <= 0:
            raise CodecError("frame cropping removes the whole picture")
    return H264Sps(
        profile_idc=profile_idc,
        constraint_flags=constraint_flags,
        level_idc=level_idc,
        chroma_format_idc=chroma_format_idc,
        bit_depth_luma=bit_depth_luma,
        width=width,
        height=height,
        frame_mbs_only=frame_mbs_only,
    )


@dataclass(frozen=True, slots=True)
class AvcConfig:
    """An AVCDecoderConfigurationRecord and what its first SPS says."""

    profile_idc: int
    profile_compatibility: int
    level_idc: int
    nal_length_size: int  # 1, 2 or 4 (3 is read too, as libavcodec does)
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]
    sps_info: H264Sps

    @property
    def width(self) -> int:
        return self.sps_info.width

    @property
    def height(self) -> int:
        return self.sps_info.height

    @property
    def profile_name(self) -> str:
        return self.sps_info.profile_name

    @property
    def level(self) -> str:
        return self.sps_info.level

    def annexb_parameter_sets(self) -> bytes:
        """SPS and PPS with start codes, to put before a keyframe in Annex B."""
        return b"".join(ANNEXB_START_CODE + nal for nal in (*self.sps, *self.pps))


def parse_avc_decoder_config(record: bytes) -> AvcConfig:
    """ISO/IEC 14496-15 5.2.4.1.1. The High-profile extension after the PPS
    list is optional in practice and not needed here, so it is not read."""
    view = memoryview(record)
    if len(view) < 7:
        raise CodecError("AVC decoder configuration record is shorter than 7 bytes")
    if view[0] != 1:
        raise CodecError(f"AVC decoder configuration record version {view[0]} is not 1")
    nal_length_size = (view[4] & 3) + 1
    pos = 5
    lists: list[tuple[bytes, ...]] = []
    # The SPS count is 5 bits (at most 31), the PPS count 8 bits; both are
    # bounded by the record's own length, which the caller bounded.
    for count_mask in (0x1F, 0xFF):
        if pos >= len(view):
            raise CodecError("AVC decoder configuration record ends before its parameter sets")
        count = view[pos] & count_mask
        pos += 1
        units = []
        for _ in range(count):
            if pos + 2 > len(view):
                raise CodecError("AVC decoder configuration record ends inside a parameter set")
            size = int.from_bytes(view[pos : pos + 2], "big")
            pos += 2
            if pos + size > len(view):
                raise CodecError("AVC decoder configuration record ends inside a parameter set")
            units.append(bytes(view[pos : pos + size]))
            pos += size
        lists.append(tuple(units))
    sps, pps = lists
    if not sps:
        raise CodecError("AVC decoder configuration record has no SPS")
    return AvcConfig(
        profile_idc=view[1],
        profile_compatibility=view[2],
        level_idc=view[3],
        nal_length_size=nal_length_size,
        sps=sps,
        pps=pps,
        sps_info=parse_sps(sps[0]),
    )


def parse_avc_sequence_header(body: bytes) -> AvcConfig:
    """From an FLV video tag body (or RTMP video message) that is an AVC
    sequence header: frame/codec byte, AVCPacketType 0, CompositionTime, record."""
    if (
        len(body) < AVC_BODY_HEADER_BYTES
        or video_codec_id(body) != VIDEO_CODEC_AVC
        or avc_packet_type(body) != PACKET_SEQUENCE_HEADER
    ):
        raise CodecError("not an AVC sequence header")
    return parse_avc_decoder_config(body[AVC_BODY_HEADER_BYTES:])


def iter_nal_units(data: bytes, nal_length_size: int) -> Iterator[memoryview]:
    """The NAL units of an AVCC access unit (each prefixed by its length in
    `nal_length_size` bytes), as views into `data`. Empty units are skipped
    but count towards MAX_NAL_UNITS_PER_ACCESS_UNIT."""
    if not 1 <= nal_length_size <= 4:
        raise ValueError("nal_length_size must be 1-4")
    view = memoryview(data)
    end = len(view)
    pos = units = 0
    while pos < end:
        units += 1
        if units > MAX_NAL_UNITS_PER_ACCESS_UNIT:
            raise CodecError(f"more than {MAX_NAL_UNITS_PER_ACCESS_UNIT} NAL units in one access unit")
        if pos + nal_length_size > end:
            raise CodecError("AVCC data ends inside a NAL unit length")
        size = int.from_bytes(view[pos : pos + nal_length_size], "big")
        pos += nal_length_size
        if pos + size > end:
            raise CodecError(f"AVCC NAL unit of {size} bytes runs past the end of the data")
        if size:
            yield view[pos : pos + size]
        pos += size


def avcc_to_annexb(data: bytes, nal_length_size: int) -> bytes:
    """Replace each NAL unit's length prefix with a 4-byte start code."""
    parts = []
    for nal in iter_nal_units(data, nal_length_size):
        parts.append(ANNEXB_START_CODE)
        parts.append(nal)
    return b"".join(parts)


def iter_annexb_nal_units(data: bytes | bytearray, start: int = 0) -> Iterator[memoryview]:
    """The NAL units of Annex B data (H.264 B.1: each after a 0x000001 start
    code) from `start` on, as views into `data`, without the zero bytes before
    the next start code (trailing_zero_8bits, or a 4-byte start code's first
    byte: a NAL unit never ends in 0x00, 7.4.2.10). Bytes before the first
    start code are not a NAL unit and are skipped."""
    view = memoryview(data)
    end = len(data)
    pos = data.find(b"\x00\x00\x01", start)
    units = 0
    while pos >= 0:
        pos += 3
        following = data.find(b"\x00\x00\x01", pos)
        stop = end if following < 0 else following
        while stop > pos and data[stop - 1] == 0:
            stop -= 1
        if stop > pos:
            units += 1
            if units > MAX_NAL_UNITS_PER_ACCESS_UNIT:
                raise CodecError(f"more than {MAX_NAL_UNITS_PER_ACCESS_UNIT} NAL units in one access unit")
            yield view[pos:stop]
        pos = following


# ISO/IEC 14496-15 5.3.3.1.2: numOfSequenceParameterSets is 5 bits, the PPS count 8 bits.
MAX_RECORD_SPS = 31
MAX_RECORD_PPS = 255


def avc_decoder_config_record(sps: tuple[bytes, ...], pps: tuple[bytes, ...]) -> bytes:
    """An AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.2.4.1.1) for
    these parameter sets, with 4-byte NAL unit lengths, as parse_avc_decoder_config
    reads it. Profile, compatibility and level come from the first SPS. The
    High-profile extension (chroma format, bit depths) is optional in
    practice, as the parser notes, and left out."""
    if not sps or not pps:
        raise CodecError("an AVC decoder configuration record needs an SPS and a PPS")
    if len(sps) > MAX_RECORD_SPS or len(pps) > MAX_RECORD_PPS:
        raise CodecError(f"{len(sps)} SPS and {len(pps)} PPS do not fit a record ({MAX_RECORD_SPS}, {MAX_RECORD_PPS})")
    first = sps[0]
    if len(first) < 4:
        raise CodecError(f"SPS of {len(first)} bytes is shorter than its header (4)")
    if max(len(nal) for nal in (*sps, *pps)) > 0xFFFF:
        raise CodecError("a parameter set does not fit its 16-bit length")
    # version 1, profile, compatibility, level, '111111' + lengthSizeMinusOne 3, '111' + SPS count
    out = bytearray((1, first[1], first[2], first[3], 0xFF, 0xE0 | len(sps)))
    out += b"".join(len(nal).to_bytes(2, "big") + nal for nal in sps)
    out.append(len(pps))
    out += b"".join(len(nal).to_bytes(2, "big") + nal for nal in pps)
    return bytes(out)


# --- AAC -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AacConfig:
    object_type: int  # the signalled one: 5 (SBR) or 29 (PS) for HE-AAC
    sample_rate: int  # the output rate: the SBR rate for HE-AAC
    channels: int  # 0 when a program config element defines them
    core_sample_rate: int

    @property
    def profile_name(self) -> str:
        return _AAC_PROFILE_NAMES.get(self.object_type, f"object type {self.object_type}")


def _object_type(bits: BitReader) -> int:
    aot = bits.u(5)
    return 32 + bits.u(6) if aot == 31 else aot  # 1.6.2.1: escape value


def _sample_rate(bits: BitReader) -> int:
    index = bits.u(4)
    if index == 0xF:
        return bits.u(24)  # explicit samplingFrequency
    if index >= len(AAC_SAMPLE_RATES):
        raise CodecError(f"AAC samplingFrequencyIndex {index} is reserved")
    return AAC_SAMPLE_RATES[index]


def parse_audio_specific_config(data: bytes) -> AacConfig:
    """ISO/IEC 14496-3 1.6.2.1, up to the explicit SBR/PS signalling."""
    bits = BitReader(bytes(data[:16]))  # everything read here is within 10 bytes
    object_type = _object_type(bits)
    core_rate = _sample_rate(bits)
    channel_config = bits.u(4)
    sample_rate = core_rate
    if object_type in (_AOT_SBR, _AOT_PS):
        sample_rate = _sample_rate(bits)  # extensionSamplingFrequency
    if channel_config not in _AAC_CHANNELS and channel_config != 0:
        raise CodecError(f"AAC channelConfiguration {channel_config} is reserved")
    # Parametric stereo makes stereo out of a mono core.
    channels = 2 if object_type == _AOT_PS else _AAC_CHANNELS.get(channel_config, 0)
    return AacConfig(object_type, sample_rate, channels, core_rate)


def parse_aac_sequence_header(body: bytes) -> AacConfig:
    """From an FLV audio tag body (or RTMP audio message) that is an AAC
    sequence header: sound format byte, AACPacketType 0, AudioSpecificConfig."""
    # An AudioSpecificConfig is at least 2 bytes (ISO 14496-3 1.6.2.1).
    if len(body) < AAC_BODY_HEADER_BYTES + 2 or not audio_is_sequence_header(body):
        raise CodecError("not an AAC sequence header")
    return parse_audio_specific_config(body[AAC_BODY_HEADER_BYTES:])
