"""H.264 Annex B access units to the hub's FLV AVC bodies, for publishers
that send Annex B: SRT's MPEG-TS (mpegts_demux.py) and WHIP's RTP
(rts/ingest.py).

The hub carries H.264 as RTMP does: an AVC sequence header (an
AVCDecoderConfigurationRecord, made here from the SPS and PPS NAL units
the publisher sends in band) whenever the parameter sets change, then each
access unit as 4-byte-length-prefixed NAL units with the FLV video tag
header (keyframe when it holds an IDR slice, the composition time). Access
unit delimiters, end of sequence/stream and filler units mean nothing to
the hub's readers and are dropped (H.264 7.4.1.2.3).

Pure: no I/O, no clock.
"""

from __future__ import annotations

from .codecs import CodecError, avc_decoder_config_record, iter_annexb_nal_units, parse_avc_decoder_config
from .flv import PACKET_NALU, PACKET_SEQUENCE_HEADER, VIDEO_CODEC_AVC

NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8
# AUD, end of sequence, end of stream, filler data (H.264 Table 7-1).
_DROPPED_NAL_TYPES = frozenset({9, 10, 11, 12})
# FLV's CompositionTime is a signed 24-bit count of ms.
SI24_MAX = (1 << 23) - 1
FLV_KEYFRAME = 0x10  # FLV E.4.3.1 FrameType 1 in the upper nibble
FLV_INTERFRAME = 0x20  # FrameType 2


class AnnexBToFlv:
    """One publisher's H.264 track. `bodies()` raises CodecError for an
    access unit that cannot be read (a bad start code run, parameter sets
    the hub could not parse); it returns no body for one that cannot be
    decoded yet (slices before the first SPS and PPS)."""

    __slots__ = ("sps", "pps", "undecodable")

    def __init__(self) -> None:
        self.sps: tuple[bytes, ...] = ()
        self.pps: tuple[bytes, ...] = ()
        self.undecodable = 0  # frames dropped for coming before their parameter sets

    def bodies(self, data: bytes | bytearray, start: int = 0, cts_ms: int = 0) -> list[bytes]:
        """The FLV video bodies for the Annex B access unit at data[start:]:
        a sequence header first when it brings new parameter sets, then the
        frame (none if it holds no slices)."""
        sps: list[bytes] = []
        pps: list[bytes] = []
        units: list[bytes | memoryview] = []
        keyframe = False
        for nal in iter_annexb_nal_units(data, start):
            nal_type = nal[0] & 0x1F
            if nal_type == NAL_SPS:
                sps.append(bytes(nal))
            elif nal_type == NAL_PPS:
                pps.append(bytes(nal))
            elif nal_type not in _DROPPED_NAL_TYPES:
                keyframe = keyframe or nal_type == NAL_IDR
                units.append(len(nal).to_bytes(4, "big"))
                units.append(nal)
        out = []
        if sps or pps:
            new_sps, new_pps = tuple(sps) or self.sps, tuple(pps) or self.pps
            if (new_sps, new_pps) != (self.sps, self.pps) and new_sps and new_pps:
                record = avc_decoder_config_record(new_sps, new_pps)
                parse_avc_decoder_config(record)  # the hub and the muxers read it so: CodecError if not
                self.sps, self.pps = new_sps, new_pps
                out.append(bytes((FLV_KEYFRAME | VIDEO_CODEC_AVC, PACKET_SEQUENCE_HEADER, 0, 0, 0)) + record)
        if not units:
            return out
        if not self.sps:
            self.undecodable += 1
            return out
        cts = min(max(cts_ms, -SI24_MAX), SI24_MAX)
        frame_type = FLV_KEYFRAME if keyframe else FLV_INTERFRAME
        units.insert(0, bytes((frame_type | VIDEO_CODEC_AVC, PACKET_NALU)) + (cts & 0xFFFFFF).to_bytes(3, "big"))
        out.append(b"".join(units))
        return out


def has_idr(access_unit: bytes | bytearray) -> bool:
    """Whether an Annex B access unit holds an IDR slice (a keyframe)."""
    try:
        return any(nal[0] & 0x1F == NAL_IDR for nal in iter_annexb_nal_units(access_unit))
    except CodecError:
        return False


__all__ = ["AnnexBToFlv", "CodecError", "has_idr"]
