"""H.264 for WebRTC (livecenter/media/rts/h264.py): FLV access units to
Annex B and B-frame detection, on streams the ffmpeg CLI makes in the test,
without sockets. The Annex B output is judged by decoding it with PyAV."""

from __future__ import annotations

import av
import pytest

from livecenter.media.codecs import ANNEXB_START_CODE, CodecError, parse_avc_sequence_header
from livecenter.media.flv import VIDEO, video_is_keyframe, video_is_sequence_header
from livecenter.media.rts.h264 import (
    SLICE_B,
    SLICE_I,
    SLICE_P,
    avcc_to_access_unit,
    flv_video_has_b_slices,
    flv_video_to_access_unit,
    slice_type,
)
from tests.test_mpegts import ffmpeg_flv, flv_tags


def video_tags(bframes: int) -> list:
    return [t for t in flv_tags(ffmpeg_flv(bframes=bframes)) if t.tag_type == VIDEO]


def split(tags):
    header = next(t for t in tags if video_is_sequence_header(t.body))
    frames = [t for t in tags if t.body[1] == 1]  # coded frames, not the end of sequence
    return parse_avc_sequence_header(header.body), frames


def nal_types(access_unit: bytes) -> list[int]:
    return [unit[0] & 0x1F for unit in access_unit.split(ANNEXB_START_CODE) if unit]


@pytest.mark.parametrize(("bframes", "expected"), [(0, False), (2, True)])
def test_it_detects_b_frames_in_generated_streams(bframes, expected):
    config, frames = split(video_tags(bframes))
    found = [flv_video_has_b_slices(t.body, config.nal_length_size) for t in frames]
    assert any(found) is expected
    # Keyframes are never B.
    assert not any(f for f, t in zip(found, frames, strict=True) if video_is_keyframe(t.body))


def test_it_reads_slice_types():
    config, frames = split(video_tags(0))
    au, _ = flv_video_to_access_unit(frames[0].body, config)
    idr = next(u for u in au.split(ANNEXB_START_CODE) if u and u[0] & 0x1F == 5)
    assert slice_type(idr) == SLICE_I
    au, _ = flv_video_to_access_unit(frames[1].body, config)
    slice_ = next(u for u in au.split(ANNEXB_START_CODE) if u and u[0] & 0x1F == 1)
    assert slice_type(slice_) == SLICE_P
    # first_mb_in_slice 0 (bit 1), slice_type 1 (010): 0b1010_0000
    assert slice_type(bytes([0x01, 0b1010_0000])) == SLICE_B
    # slice_type 6 is B again (Table 7-6): ue 6 = 00111
    assert slice_type(bytes([0x01, 0b1001_1100])) == SLICE_B
    assert slice_type(bytes([0x67, 0x42])) is None  # an SPS is no slice


@pytest.mark.parametrize("nal", [b"\x01", b"\x01\x00", bytes([0x01, 0b1000_0101, 0x80])])
def test_it_refuses_unreadable_slice_headers(nal):
    with pytest.raises(CodecError):
        slice_type(nal)


def test_it_puts_parameter_sets_before_keyframes_only():
    config, frames = split(video_tags(0))
    for tag in frames[:40]:
        au, cts = flv_video_to_access_unit(tag.body, config)
        types = nal_types(au)
        assert cts == 0
        assert 9 not in types  # no AUD
        if video_is_keyframe(tag.body):
            assert types[:2] == [7, 8] and 5 in types, types
        else:
            assert 7 not in types and 5 not in types, types


def test_it_does_not_repeat_parameter_sets_a_keyframe_carries():
    config, frames = split(video_tags(0))
    keyframe = next(t for t in frames if video_is_keyframe(t.body))
    au = avcc_to_access_unit(keyframe.body[5:], config, True)
    sps = ANNEXB_START_CODE + config.sps[0]
    avcc_sps = len(config.sps[0]).to_bytes(4, "big") + config.sps[0]
    avcc_pps = len(config.pps[0]).to_bytes(4, "big") + config.pps[0]
    with_own = avcc_to_access_unit(avcc_sps + avcc_pps + keyframe.body[5:], config, True)
    assert au.count(sps) == 1 and with_own.count(sps) == 1


def test_it_makes_access_units_a_decoder_plays_from_any_keyframe():
    config, frames = split(video_tags(0))
    # Join at the second keyframe, as a late WebRTC viewer does.
    keyframes = [i for i, t in enumerate(frames) if video_is_keyframe(t.body)]
    assert len(keyframes) >= 2
    decoder = av.CodecContext.create("h264", "r")
    decoded = 0
    for tag in frames[keyframes[1] :]:
        au, _ = flv_video_to_access_unit(tag.body, config)
        for frame in decoder.decode(av.Packet(au)):
            assert (frame.width, frame.height) == (320, 240)
            decoded += 1
    decoded += len(decoder.decode(None))
    assert decoded == len(frames) - keyframes[1]


def test_it_refuses_what_is_not_a_coded_avc_frame():
    config, frames = split(video_tags(0))
    with pytest.raises(CodecError, match="not an FLV AVC video tag body"):
        flv_video_to_access_unit(b"\x17\x01", config)
    with pytest.raises(CodecError, match="AVCPacketType 0 is not a coded frame"):
        flv_video_to_access_unit(b"\x17\x00\x00\x00\x00", config)
    with pytest.raises(CodecError, match="runs past the end"):
        flv_video_to_access_unit(frames[0].body[:5] + b"\x00\x00\x10\x00\x65", config)
    assert not flv_video_has_b_slices(b"\x17\x00\x00\x00\x00", 4)
    assert not flv_video_has_b_slices(b"\x12\x01\x00\x00\x00\x00", 4)
