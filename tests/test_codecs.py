"""H.264 and AAC configuration parsing, AVCC to Annex B (livecenter/media/codecs.py).

Streams are made in the test by the ffmpeg CLI (libx264, ffmpeg's AAC) and
what we read is checked against what libavcodec (PyAV) reads from the same
bytes.
"""

from __future__ import annotations

import io

import av
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecenter.media.codecs import (
    MAX_EXP_GOLOMB_LEADING_ZEROS,
    MAX_NAL_UNITS_PER_ACCESS_UNIT,
    MAX_PICTURE_SIDE_MBS,
    MAX_RECORD_SPS,
    MAX_REF_FRAMES_IN_POC_CYCLE,
    MAX_SPS_BYTES,
    BitReader,
    CodecError,
    avc_decoder_config_record,
    avcc_to_annexb,
    iter_annexb_nal_units,
    iter_nal_units,
    parse_aac_sequence_header,
    parse_audio_specific_config,
    parse_avc_decoder_config,
    parse_avc_sequence_header,
    parse_sps,
    rbsp_from_nal,
)
from livecenter.media.flv import AUDIO, VIDEO, FlvReader
from tests.test_flv import ffmpeg_flv


def tag_bodies(data: bytes, tag_type: int) -> list[bytes]:
    reader = FlvReader()
    return [t.body for t in reader.receive_data(data) if t.tag_type == tag_type]


def libav_video(data: bytes):
    with av.open(io.BytesIO(data), format="flv") as container:
        ctx = container.streams.video[0].codec_context
        return ctx.width, ctx.height, ctx.profile, ctx.level


class BitWriter:
    """Writes H.264 syntax elements, for hand-made parameter sets."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> BitWriter:
        self.bits += [(value >> (n - 1 - i)) & 1 for i in range(n)]
        return self

    def ue(self, value: int) -> BitWriter:
        code = value + 1
        return self.u(code.bit_length() - 1, 0).u(code.bit_length(), code)

    def se(self, value: int) -> BitWriter:
        return self.ue(2 * value - 1 if value > 0 else -2 * value)

    def rbsp(self) -> bytes:
        bits = [*self.bits, 1]  # rbsp_stop_one_bit, then zeros to a byte
        bits += [0] * (-len(bits) % 8)
        return int("".join(map(str, bits)), 2).to_bytes(len(bits) // 8, "big")


def nal(nal_type: int, rbsp: bytes) -> bytes:
    """A NAL unit with emulation prevention bytes (H.264 7.4.1)."""
    out = bytearray([0x60 | nal_type])
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def make_sps(
    profile_idc=66,
    constraint_flags=0xC0,
    level_idc=30,
    sps_id=0,
    chroma_format_idc=1,
    scaling_lists=None,
    poc_type=0,
    poc_cycle=(),
    width_mbs=20,
    height_map_units=15,
    frame_mbs_only=True,
    crop=None,
) -> bytes:
    w = BitWriter().u(8, profile_idc).u(8, constraint_flags).u(8, level_idc).ue(sps_id)
    if profile_idc in (100, 110, 122, 244, 44):
        w.ue(chroma_format_idc)
        if chroma_format_idc == 3:
            w.u(1, 0)  # separate_colour_plane_flag
        w.ue(0).ue(0).u(1, 0)  # bit depths, transform bypass
        w.u(1, scaling_lists is not None)
        if scaling_lists is not None:
            for deltas in scaling_lists:
                w.u(1, deltas is not None)
                for delta in deltas or ():
                    w.se(delta)
    w.ue(0).ue(poc_type)  # log2_max_frame_num_minus4
    if poc_type == 0:
        w.ue(0)
    elif poc_type == 1:
        w.u(1, 0).se(0).se(0).ue(len(poc_cycle))
        for offset in poc_cycle:
            w.se(offset)
    w.ue(1).u(1, 0).ue(width_mbs - 1).ue(height_map_units - 1).u(1, frame_mbs_only)
    if not frame_mbs_only:
        w.u(1, 0)
    w.u(1, 1).u(1, crop is not None)  # direct_8x8_inference_flag, frame_cropping_flag
    for value in crop or ():
        w.ue(value)
    w.u(1, 0)  # vui_parameters_present_flag
    return nal(7, w.rbsp())


# --- real H.264 from libx264 ---------------------------------------------------------

STREAMS = [
    # size, x264 profile, pixel format, extra x264 params, the name libavcodec gives
    ("1920x1080", "high", "yuv420p", "", "High"),
    ("854x480", "main", "yuv420p", "", "Main"),
    ("320x240", "baseline", "yuv420p", "", "Constrained Baseline"),
    ("1280x720", "high", "yuv420p", "", "High"),
    ("426x240", "baseline", "yuv420p", "", "Constrained Baseline"),
    ("1366x766", "main", "yuv420p", "", "Main"),
    ("640x360", "high422", "yuv422p", "", "High 4:2:2"),
    ("854x480", "high444", "yuv444p", "", "High 4:4:4 Predictive"),
    ("1920x1080", "high", "yuv420p", "interlaced=1", "High"),
    ("854x480", "high444", "yuv444p", "interlaced=1", "High 4:4:4 Predictive"),
]


@pytest.mark.parametrize(("size", "profile", "pix_fmt", "params", "name"), STREAMS)
def test_it_reads_profile_level_and_size_of_libx264_streams(size, profile, pix_fmt, params, name):
    extra = f"-pix_fmt {pix_fmt}" + (f" -x264-params {params}" if params else "")
    data = ffmpeg_flv(size=size, seconds=0.1, profile=profile, audio=None, extra=extra)
    config = parse_avc_sequence_header(tag_bodies(data, VIDEO)[0])
    width, height = map(int, size.split("x"))
    assert (config.width, config.height) == (width, height)
    assert config.profile_name == name
    assert (width, height, name, config.level_idc) == libav_video(data)
    assert config.profile_idc == config.sps_info.profile_idc
    assert config.sps_info.frame_mbs_only is ("interlaced" not in params)
    assert (len(config.sps), len(config.pps), config.nal_length_size) == (1, 1, 4)


def test_it_names_levels_as_table_a1_does():
    assert parse_sps(make_sps(level_idc=31)).level == "3.1"
    assert parse_sps(make_sps(level_idc=40)).level == "4"
    assert parse_sps(make_sps(level_idc=9)).level == "1b"
    assert parse_sps(make_sps(level_idc=11, constraint_flags=0x10)).level == "1b"
    assert parse_sps(make_sps(level_idc=11)).level == "1.1"


def test_it_names_profiles_as_libavcodec_does():
    assert parse_sps(make_sps(constraint_flags=0)).profile_name == "Baseline"
    assert parse_sps(make_sps(constraint_flags=0x40)).profile_name == "Constrained Baseline"
    assert parse_sps(make_sps(profile_idc=110, constraint_flags=0x10)).profile_name == "High 10 Intra"
    assert parse_sps(make_sps(profile_idc=77, constraint_flags=0)).profile_name == "Main"
    assert parse_sps(make_sps(profile_idc=99, constraint_flags=0)).profile_name == "profile 99"


def test_its_annex_b_decodes_in_libavcodec():
    data = ffmpeg_flv(size="854x480", seconds=0.1, profile="high", audio=None)
    sequence_header, keyframe = tag_bodies(data, VIDEO)[:2]
    config = parse_avc_sequence_header(sequence_header)
    annexb = config.annexb_parameter_sets() + avcc_to_annexb(keyframe[5:], config.nal_length_size)
    assert annexb.startswith(b"\x00\x00\x00\x01\x67")
    codec = av.CodecContext.create("h264", "r")
    frames = [*codec.decode(av.Packet(annexb)), *codec.decode(None)]
    assert [(f.width, f.height) for f in frames] == [(854, 480)]


# --- hand-made parameter sets: the rarer syntax and the limits --------------------------


def test_it_crops_in_chroma_units():
    # 4:2:0 progressive: CropUnitX = 2, CropUnitY = 2.
    sps = parse_sps(make_sps(width_mbs=80, height_map_units=45, crop=(1, 2, 3, 4)))
    assert (sps.width, sps.height) == (1280 - 6, 720 - 14)
    # 4:2:0 interlaced: map units are field rows, CropUnitY = 4.
    sps = parse_sps(make_sps(width_mbs=120, height_map_units=34, frame_mbs_only=False, crop=(0, 0, 0, 2)))
    assert (sps.width, sps.height) == (1920, 1080)
    # 4:4:4: CropUnitX = CropUnitY = 1.
    sps = parse_sps(make_sps(profile_idc=244, chroma_format_idc=3, width_mbs=4, height_map_units=4, crop=(1, 1, 1, 1)))
    assert (sps.width, sps.height, sps.chroma_format_idc) == (62, 62, 3)
    # Monochrome (chroma_format_idc 0): CropUnitX = 1, CropUnitY = 2 - frame_mbs_only.
    sps = parse_sps(make_sps(profile_idc=100, chroma_format_idc=0, width_mbs=4, height_map_units=4, crop=(1, 0, 1, 0)))
    assert (sps.width, sps.height) == (63, 63)


def test_it_refuses_cropping_that_removes_the_picture():
    parse_sps(make_sps(width_mbs=1, height_map_units=1, crop=(7, 0, 7, 0)))
    with pytest.raises(CodecError, match="cropping removes the whole picture"):
        parse_sps(make_sps(width_mbs=1, height_map_units=1, crop=(4, 4, 0, 0)))


def test_it_skips_scaling_lists_including_ones_that_end_early():
    # x264 sends its quantisation matrices in the PPS, so SPS scaling lists
    # are hand-made. A list ends where delta_scale makes nextScale 0 (7.3.2.1.1.1); an 8x8
    # list of 64 deltas is read whole. 12 lists for 4:4:4.
    lists = [[-8], None, [1] * 16, None, None, [0] * 16, [2] * 64, None, [-8], None, [3] * 64, None]
    sps = parse_sps(
        make_sps(profile_idc=244, chroma_format_idc=3, scaling_lists=lists, width_mbs=5, height_map_units=3)
    )
    assert (sps.width, sps.height) == (80, 48)


def test_it_reads_pic_order_cnt_type_1_up_to_the_cycle_limit():
    cycle = [(-1) ** i * i for i in range(MAX_REF_FRAMES_IN_POC_CYCLE)]
    assert parse_sps(make_sps(poc_type=1, poc_cycle=cycle)).width == 320
    with pytest.raises(CodecError, match="num_ref_frames_in_pic_order_cnt_cycle 256 exceeds 255"):
        parse_sps(make_sps(poc_type=1, poc_cycle=[0] * (MAX_REF_FRAMES_IN_POC_CYCLE + 1)))
    assert parse_sps(make_sps(poc_type=2)).height == 240
    with pytest.raises(CodecError, match="pic_order_cnt_type 3 is not 0-2"):
        parse_sps(make_sps(poc_type=3))


def test_it_accepts_pictures_up_to_the_side_limit_and_refuses_larger():
    side = MAX_PICTURE_SIDE_MBS
    assert parse_sps(make_sps(width_mbs=side, height_map_units=1)).width == side * 16
    assert parse_sps(make_sps(width_mbs=1, height_map_units=side)).height == side * 16
    message = r"exceeds MAX_PICTURE_SIDE_MBS \(1055\)"
    with pytest.raises(CodecError, match=message):
        parse_sps(make_sps(width_mbs=side + 1, height_map_units=1))
    with pytest.raises(CodecError, match=message):
        parse_sps(make_sps(width_mbs=1, height_map_units=side + 1))
    # Interlaced: the map units count twice.
    with pytest.raises(CodecError, match=message):
        parse_sps(make_sps(width_mbs=1, height_map_units=side // 2 + 1, frame_mbs_only=False))


def test_it_reads_an_sps_at_max_sps_bytes_and_refuses_one_byte_more():
    sps = make_sps()
    padded = sps + bytes(MAX_SPS_BYTES - len(sps))  # what follows the cropping is not read
    assert parse_sps(padded).width == 320
    with pytest.raises(CodecError, match=r"SPS of 4097 bytes exceeds MAX_SPS_BYTES \(4096\)"):
        parse_sps(padded + b"\x00")


def test_it_reads_exp_golomb_codes_up_to_31_leading_zeros():
    # The largest ue(v): 31 zeros, then 32 bits.
    largest = BitWriter().ue(2**32 - 2).rbsp()
    assert BitReader(largest).ue() == 2**32 - 2
    too_long = BitWriter().u(MAX_EXP_GOLOMB_LEADING_ZEROS + 1, 0).u(33, 2**32).rbsp()
    with pytest.raises(CodecError, match="exp-Golomb code with 32 leading zeros"):
        BitReader(too_long).ue()
    values = [0, 1, -1, 2, -2, 127, -128]
    assert [BitReader(BitWriter().se(v).rbsp()).se() for v in values] == values


def test_it_removes_emulation_prevention_bytes():
    assert rbsp_from_nal(b"\x00\x00\x03\x00\x00\x03") == b"\x00\x00\x00\x00"
    assert rbsp_from_nal(b"\x00\x00\x03\x03\x01") == b"\x00\x00\x03\x01"
    # profile 66, flags 0, level 0, then ue(63) starts with 0x02: 00 00 02 needs an escape.
    sps = make_sps(constraint_flags=0, level_idc=0, sps_id=63)
    assert sps[1:5] == b"\x42\x00\x00\x03"
    assert (parse_sps(sps).width, parse_sps(sps).height) == (320, 240)


def test_it_refuses_broken_sps():
    with pytest.raises(CodecError, match="not an SPS NAL unit"):
        parse_sps(b"\x68\xce\x38\x80")  # a PPS
    with pytest.raises(CodecError, match="not an SPS NAL unit"):
        parse_sps(b"")
    with pytest.raises(CodecError, match="bitstream ended early"):
        parse_sps(make_sps()[:5])
    with pytest.raises(CodecError, match="chroma_format_idc 4 is not 0-3"):
        parse_sps(make_sps(profile_idc=100, chroma_format_idc=4))


def test_it_reads_the_decoder_configuration_record_and_refuses_truncated_ones():
    body = tag_bodies(ffmpeg_flv(seconds=0.1, audio=None), VIDEO)[0]
    record = body[5:]
    config = parse_avc_decoder_config(record)
    assert config.sps[0][0] & 0x1F == 7 and config.pps[0][0] & 0x1F == 8
    end_of_pps = 5 + 1 + 2 + len(config.sps[0]) + 1 + 2 + len(config.pps[0])
    for cut in range(end_of_pps):
        with pytest.raises(CodecError):
            parse_avc_decoder_config(record[:cut])
    with pytest.raises(CodecError, match="version 2 is not 1"):
        parse_avc_decoder_config(b"\x02" + record[1:])
    with pytest.raises(CodecError, match="has no SPS"):
        parse_avc_decoder_config(record[:5] + b"\xe0\x00")
    with pytest.raises(CodecError, match="not an AVC sequence header"):
        parse_avc_sequence_header(b"\x27\x01\x00\x00\x00")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_it_raises_only_codec_error_on_any_bytes(data):
    for parser in (parse_sps, parse_avc_decoder_config, parse_audio_specific_config):
        try:
            parser(data)
        except CodecError:
            pass
    try:
        avcc_to_annexb(data, 4)
    except CodecError:
        pass


# --- AVCC and Annex B ----------------------------------------------------------------


def test_it_splits_length_prefixed_nal_units():
    data = b"\x00\x00\x00\x02\x09\xf0" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x03\x65\x88\x84"
    assert [bytes(n) for n in iter_nal_units(data, 4)] == [b"\x09\xf0", b"\x65\x88\x84"]
    assert avcc_to_annexb(data, 4) == b"\x00\x00\x00\x01\x09\xf0\x00\x00\x00\x01\x65\x88\x84"
    assert avcc_to_annexb(b"\x02\x09\xf0\x01\x65", 1) == b"\x00\x00\x00\x01\x09\xf0\x00\x00\x00\x01\x65"
    assert avcc_to_annexb(b"", 4) == b""


def test_it_reads_at_most_max_nal_units_per_access_unit():
    unit = b"\x00\x00\x00\x01\x09"
    assert len(list(iter_nal_units(unit * MAX_NAL_UNITS_PER_ACCESS_UNIT, 4))) == MAX_NAL_UNITS_PER_ACCESS_UNIT
    # Empty units count too: a frame of zeros is refused, not walked four bytes at a time.
    for data in (unit * (MAX_NAL_UNITS_PER_ACCESS_UNIT + 1), bytes(4 * (MAX_NAL_UNITS_PER_ACCESS_UNIT + 1))):
        with pytest.raises(CodecError, match="more than 256 NAL units in one access unit"):
            list(iter_nal_units(data, 4))


def test_it_refuses_nal_units_that_run_past_the_data():
    with pytest.raises(CodecError, match="NAL unit of 3 bytes runs past the end"):
        avcc_to_annexb(b"\x00\x00\x00\x03\x65\x88", 4)
    with pytest.raises(CodecError, match="ends inside a NAL unit length"):
        avcc_to_annexb(b"\x00\x00\x00\x01\x65\x00\x00", 4)
    with pytest.raises(ValueError, match="nal_length_size must be 1-4"):
        avcc_to_annexb(b"", 0)


# --- AAC -------------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "channels"), [(44100, 2), (48000, 1), (22050, 6)])
def test_it_reads_ffmpegs_aac_configuration(rate, channels):
    data = ffmpeg_flv(seconds=0.2, audio=f"-c:a aac -ar {rate} -ac {channels}")
    config = parse_aac_sequence_header(tag_bodies(data, AUDIO)[0])
    assert (config.object_type, config.profile_name) == (2, "LC")
    assert (config.sample_rate, config.channels) == (rate, channels)
    with av.open(io.BytesIO(data), format="flv") as container:
        ctx = container.streams.audio[0].codec_context
        assert (ctx.sample_rate, ctx.channels) == (rate, channels)


def asc(object_type: int, rate_index: int, channels: int, *extension: tuple[int, int]) -> bytes:
    w = BitWriter()
    if object_type >= 32:
        w.u(5, 31).u(6, object_type - 32)
    else:
        w.u(5, object_type)
    w.u(4, rate_index)
    if rate_index == 15:
        w.u(24, 12345)
    w.u(4, channels)
    for bits, value in extension:
        w.u(bits, value)
    return w.rbsp()


def test_it_reads_he_aac_escapes_and_explicit_rates():
    # HE-AAC (SBR): the core runs at 24 kHz, the output at 48 kHz.
    he = parse_audio_specific_config(asc(5, 6, 2, (4, 3), (5, 2)))
    assert (he.profile_name, he.core_sample_rate, he.sample_rate, he.channels) == ("HE-AAC", 24000, 48000, 2)
    # HE-AACv2 (PS): a mono core played as stereo.
    ps = parse_audio_specific_config(asc(29, 6, 1, (4, 3), (5, 2)))
    assert (ps.profile_name, ps.sample_rate, ps.channels) == ("HE-AACv2", 48000, 2)
    # Object type 39 (ELD) is escaped as 31 + 7; rate index 15 is explicit.
    eld = parse_audio_specific_config(asc(39, 15, 7))
    assert (eld.object_type, eld.profile_name, eld.sample_rate, eld.channels) == (39, "ELD", 12345, 8)
    assert parse_audio_specific_config(asc(2, 3, 0)).channels == 0  # from a program config element


def test_it_refuses_reserved_aac_values():
    with pytest.raises(CodecError, match="samplingFrequencyIndex 13 is reserved"):
        parse_audio_specific_config(asc(2, 13, 2))
    with pytest.raises(CodecError, match="channelConfiguration 8 is reserved"):
        parse_audio_specific_config(asc(2, 4, 8))
    with pytest.raises(CodecError, match="bitstream ended early"):
        parse_audio_specific_config(b"\x12")
    with pytest.raises(CodecError, match="not an AAC sequence header"):
        parse_aac_sequence_header(b"\xaf\x01\x12\x10")


def test_it_splits_annex_b_at_3_and_4_byte_start_codes_without_trailing_zeros():
    data = b"\xaa\x00\x00\x00\x01\x09\xf0\x00\x00\x01\x65\x88\x00\x00\x00\x00\x01\x41\x9a\x00\x00"
    assert [bytes(n) for n in iter_annexb_nal_units(data)] == [b"\x09\xf0", b"\x65\x88", b"\x41\x9a"]
    assert [bytes(n) for n in iter_annexb_nal_units(data, 7)] == [b"\x65\x88", b"\x41\x9a"]
    assert list(iter_annexb_nal_units(b"\x65\x88")) == list(iter_annexb_nal_units(b"\x00\x00\x01")) == []


def test_it_splits_annex_b_into_at_most_max_nal_units_per_access_unit():
    unit = b"\x00\x00\x01\x09\xf0"
    assert len(list(iter_annexb_nal_units(unit * MAX_NAL_UNITS_PER_ACCESS_UNIT))) == MAX_NAL_UNITS_PER_ACCESS_UNIT
    with pytest.raises(CodecError, match=f"more than {MAX_NAL_UNITS_PER_ACCESS_UNIT} NAL units"):
        list(iter_annexb_nal_units(unit * (MAX_NAL_UNITS_PER_ACCESS_UNIT + 1)))


def test_it_writes_the_record_libx264_s_parameter_sets_came_in():
    body = tag_bodies(ffmpeg_flv(seconds=0.1, audio=None), VIDEO)[0]
    config = parse_avc_decoder_config(body[5:])
    record = avc_decoder_config_record(config.sps, config.pps)
    assert record == body[5 : 5 + len(record)]  # libx264's record, up to its High-profile extension
    assert parse_avc_decoder_config(record) == config
    sps = config.sps[0]
    assert avc_decoder_config_record((sps,) * MAX_RECORD_SPS, config.pps)[5] == 0xE0 | MAX_RECORD_SPS
    with pytest.raises(CodecError, match="32 SPS and 1 PPS do not fit a record"):
        avc_decoder_config_record((sps,) * (MAX_RECORD_SPS + 1), config.pps)
    with pytest.raises(CodecError, match="needs an SPS and a PPS"):
        avc_decoder_config_record(config.sps, ())
