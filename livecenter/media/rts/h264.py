"""H.264 for WebRTC: FLV video tag bodies (AVCC access units) to Annex B,
and whether a stream has B-frames.

RTP carries H.264 as NAL units (RFC 6184); aiortc's packetiser takes an
Annex B access unit and splits it at start codes. A browser joining at a
keyframe needs the SPS and PPS first, which an RTMP publisher sends once, in
the AVC sequence header: they go before every keyframe that does not bring
its own. Access unit delimiters and end-of-sequence units mean nothing to a
WebRTC receiver and are dropped.

Browsers' WebRTC decoders play no B-frames (the seed, "Auto transcoding for
HTML5 playback": frame skips), so the engine looks at every slice header's
`slice_type` (H.264 7.3.3) until it finds a B slice. The slice header's
first two fields are exp-Golomb codes of at most 32 bits each, so a few bytes
of each slice NAL unit are read, never the payload.

Pure: no I/O, no clock, no codecs library.
"""

from __future__ import annotations

from ..codecs import (
    ANNEXB_START_CODE,
    AvcConfig,
    BitReader,
    CodecError,
    iter_annexb_nal_units,
    iter_nal_units,
    rbsp_from_nal,
)
from ..flv import (
    AVC_BODY_HEADER_BYTES,
    PACKET_NALU,
    VIDEO_CODEC_AVC,
    avc_composition_time,
    avc_packet_type,
    video_codec_id,
    video_is_keyframe,
)

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9
NAL_END_OF_SEQUENCE = 10
NAL_END_OF_STREAM = 11
# H.264 Table 7-6: slice_type 0-9, the upper five repeat the lower ones.
SLICE_P, SLICE_B, SLICE_I, SLICE_SP, SLICE_SI = 0, 1, 2, 3, 4
# first_mb_in_slice and slice_type are two ue(v) of at most 32 bits each
# (9.1), so 9 bytes hold both; a few more cover emulation prevention bytes.
SLICE_HEADER_PREFIX_BYTES = 16
_DROPPED_NAL_TYPES = frozenset({NAL_AUD, NAL_END_OF_SEQUENCE, NAL_END_OF_STREAM})


def slice_type(nal: bytes | memoryview) -> int | None:
    """The slice_type (0-4) of a coded slice NAL unit (types 1 and 5, with
    the NAL header byte), or None for any other NAL unit. A slice header too
    short to hold it is a CodecError."""
    if not nal or nal[0] & 0x1F not in (NAL_SLICE, NAL_IDR):
        return None
    bits = BitReader(rbsp_from_nal(bytes(nal[1 : 1 + SLICE_HEADER_PREFIX_BYTES])))
    bits.ue()  # first_mb_in_slice
    value = bits.ue()
    if value > 9:
        raise CodecError(f"slice_type {value} is not 0-9")
    return value % 5


def _first_slice_is_b(nal_units) -> bool:
    """Whether an access unit's first slice is a B slice (an encoder gives a
    picture's slices one type; the rest need not be read)."""
    for nal in nal_units:
        kind = slice_type(nal)
        if kind is not None:
            return kind == SLICE_B
    return False


def avcc_has_b_slices(data: bytes | memoryview, nal_length_size: int) -> bool:
    """Whether an AVCC access unit holds a B slice."""
    return _first_slice_is_b(iter_nal_units(data, nal_length_size))


def annexb_has_b_slices(access_unit: bytes) -> bool:
    """Whether an Annex B access unit (a WHIP publisher's, rts/ingest.py)
    holds a B slice; False for one whose start codes do not read."""
    try:
        return _first_slice_is_b(iter_annexb_nal_units(access_unit))
    except CodecError:
        return False


def flv_video_has_b_slices(body: bytes, nal_length_size: int) -> bool:
    """Whether an FLV AVC video tag body (a coded frame, AVCPacketType 1)
    holds a B slice. Sequence headers and other codecs hold none."""
    if (
        len(body) <= AVC_BODY_HEADER_BYTES
        or video_codec_id(body) != VIDEO_CODEC_AVC
        or avc_packet_type(body) != PACKET_NALU
    ):
        return False
    return avcc_has_b_slices(memoryview(body)[AVC_BODY_HEADER_BYTES:], nal_length_size)


def avcc_to_access_unit(data: bytes | memoryview, config: AvcConfig, keyframe: bool) -> bytes:
    """An AVCC access unit as Annex B for RTP: the SPS and PPS first on a
    keyframe that does not carry its own, no AUD or end-of-sequence units."""
    units: list[bytes | memoryview] = []
    has_parameter_sets = False
    for nal in iter_nal_units(data, config.nal_length_size):
        nal_type = nal[0] & 0x1F
        if nal_type in _DROPPED_NAL_TYPES:
            continue
        if nal_type in (NAL_SPS, NAL_PPS):
            has_parameter_sets = True
        units.append(ANNEXB_START_CODE)
        units.append(nal)
    head = config.annexb_parameter_sets() if keyframe and not has_parameter_sets else b""
    return head + b"".join(units)


def flv_video_to_access_unit(body: bytes, config: AvcConfig) -> tuple[bytes, int]:
    """An FLV AVC video tag body (AVCPacketType 1) as (Annex B access unit,
    CompositionTime in ms). b"" for a frame with no NAL units left."""
    if len(body) < AVC_BODY_HEADER_BYTES or video_codec_id(body) != VIDEO_CODEC_AVC:
        raise CodecError("not an FLV AVC video tag body")
    if avc_packet_type(body) != PACKET_NALU:
        raise CodecError(f"AVCPacketType {avc_packet_type(body)} is not a coded frame (1)")
    access_unit = avcc_to_access_unit(memoryview(body)[AVC_BODY_HEADER_BYTES:], config, video_is_keyframe(body))
    return access_unit, avc_composition_time(body)
