"""FLV reader, writer and tag body helpers (livecenter/media/flv.py)."""

from __future__ import annotations

import functools
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecenter.media import flv
from livecenter.media.flv import (
    AUDIO,
    MAX_BUFFERED_BYTES,
    MAX_HEADER_BYTES,
    MAX_TAG_BYTES,
    SCRIPT,
    VIDEO,
    FlvHeader,
    FlvProtocolError,
    FlvReader,
    FlvTag,
    FrameKind,
    encode_tag,
    flv_header,
    parse_tag_header,
)


@functools.cache
def ffmpeg_flv(
    size: str = "320x240",
    seconds: float = 1.0,
    rate: int = 30,
    profile: str = "high",
    audio: str | None = "-c:a aac -ar 44100 -ac 2",
    extra: str = "",
    preset: str = "veryfast",
) -> bytes:
    """A generated H.264 (+ AAC) stream in FLV, made by the ffmpeg CLI."""
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    cmd += ["-t", str(seconds), "-c:v", "libx264", "-preset", preset, "-g", str(rate), "-pix_fmt", "yuv420p"]
    if profile:
        cmd += ["-profile:v", profile]
    cmd += extra.split()
    cmd += audio.split() if audio else ["-an"]
    cmd += ["-f", "flv", "-"]
    return subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout


def read_all(data: bytes) -> list[FlvTag]:
    reader = FlvReader()
    tags = reader.receive_data(data)
    tags += reader.receive_data(b"")
    return tags


def small_stream() -> bytes:
    return flv_header() + b"".join(
        encode_tag(t, ts, body)
        for t, ts, body in [
            (SCRIPT, 0, b"\x02\x00\x0aonMetaData"),
            (VIDEO, 0, b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f"),
            (AUDIO, 0, b"\xaf\x00\x12\x10"),
            (VIDEO, 33, b"\x17\x01\x00\x00\x42body"),
            (AUDIO, 0x1234567, b"\xaf\x01aac"),
        ]
    )


# --- writing ----------------------------------------------------------------------


def test_it_writes_the_header_with_previous_tag_size_zero():
    assert flv_header() == b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"
    assert flv_header(has_audio=False) == b"FLV\x01\x01\x00\x00\x00\x09\x00\x00\x00\x00"
    assert flv_header(has_video=False) == b"FLV\x01\x04\x00\x00\x00\x09\x00\x00\x00\x00"
    assert flv.FLV_HEADER == flv_header()


def test_it_writes_a_tag_with_extended_timestamp_and_previous_tag_size():
    # E.4.1: Timestamp holds the low 24 bits, TimestampExtended the high 8.
    tag = encode_tag(VIDEO, 0x12345678, b"abc")
    assert tag == b"\x09\x00\x00\x03\x34\x56\x78\x12\x00\x00\x00abc\x00\x00\x00\x0e"


def test_it_wraps_timestamps_at_32_bits_and_refuses_negative_ones():
    assert encode_tag(AUDIO, 2**32 + 5, b"") == encode_tag(AUDIO, 5, b"")
    with pytest.raises(ValueError, match="must not be negative"):
        encode_tag(AUDIO, -1, b"")


def test_it_refuses_a_body_larger_than_data_size_allows():
    encode_tag(VIDEO, 0, bytes(0xFFFFFF))
    with pytest.raises(ValueError, match="does not fit DataSize"):
        encode_tag(VIDEO, 0, bytes(0x1000000))


# --- reading ----------------------------------------------------------------------


def test_it_parses_a_tag_header_at_an_offset_with_the_type_byte_as_sent():
    tag = encode_tag(VIDEO, 0x12345678, b"body")
    assert parse_tag_header(tag) == (VIDEO, 4, 0x12345678)
    assert parse_tag_header(b"xx" + tag, 2) == (VIDEO, 4, 0x12345678)
    filtered = bytes([0x20 | AUDIO]) + b"\xff\xff\xff" + bytes(7)  # Filter bit, largest DataSize
    assert parse_tag_header(filtered) == (0x20 | AUDIO, 0xFFFFFF, 0)  # the reader refuses it, not the parser


def test_it_names_frame_kinds_by_their_tag_types():
    assert [(kind, kind.tag_type) for kind in FrameKind] == [
        (FrameKind.VIDEO, VIDEO),
        (FrameKind.AUDIO, AUDIO),
        (FrameKind.META, SCRIPT),
    ]
    assert all(FrameKind.of_tag_type(kind.tag_type) is kind for kind in FrameKind)
    assert FrameKind.of_tag_type(99) is None
    assert FrameKind.VIDEO == "video" and f"{FrameKind.META}" == "meta" and FrameKind("audio") is FrameKind.AUDIO


def test_it_reads_what_it_writes_whole_and_byte_by_byte():
    data = small_stream()
    whole = read_all(data)
    assert [(t.tag_type, t.timestamp) for t in whole] == [
        (SCRIPT, 0),
        (VIDEO, 0),
        (AUDIO, 0),
        (VIDEO, 33),
        (AUDIO, 0x1234567),
    ]
    assert b"".join(bytes(t) for t in whole) == data[13:]

    reader = FlvReader()
    split = []
    for i in range(len(data)):
        split += reader.receive_data(data[i : i + 1])
    assert split == whole
    assert reader.header == FlvHeader(version=1, has_audio=True, has_video=True)


def test_it_keeps_a_partial_tag_until_the_rest_arrives():
    data = small_stream()
    reader = FlvReader()
    first = reader.receive_data(data[:-3])
    assert len(first) == 4
    assert reader.buffered_bytes == len(encode_tag(AUDIO, 0, b"\xaf\x01aac")) - 3
    assert [t.body for t in reader.receive_data(data[-3:])] == [b"\xaf\x01aac"]
    assert reader.buffered_bytes == 0


def test_it_reads_ffmpegs_flv_and_writes_it_back_byte_for_byte():
    data = ffmpeg_flv()
    tags = read_all(data)
    kinds = {t.tag_type for t in tags}
    assert kinds == {SCRIPT, VIDEO, AUDIO}
    header_size = 13
    assert flv_header() == data[:header_size]
    assert b"".join(bytes(t) for t in tags) == data[header_size:]


def test_it_skips_a_larger_header_up_to_the_limit():
    def stream(offset: int) -> bytes:
        header = b"FLV\x01\x05" + offset.to_bytes(4, "big") + bytes(offset - 9)
        return header + bytes(4) + encode_tag(VIDEO, 7, b"\x17\x01")

    assert [t.timestamp for t in read_all(stream(MAX_HEADER_BYTES))] == [7]
    with pytest.raises(FlvProtocolError, match=r"DataOffset 1025 exceeds MAX_HEADER_BYTES \(1024\)"):
        read_all(stream(MAX_HEADER_BYTES + 1))
    with pytest.raises(FlvProtocolError, match="DataOffset 8 is shorter than the header"):
        FlvReader().receive_data(b"FLV\x01\x05\x00\x00\x00\x08")


def test_it_accepts_a_tag_at_max_tag_bytes_and_refuses_one_byte_more():
    reader = FlvReader()
    reader.receive_data(flv_header())
    (tag,) = reader.receive_data(encode_tag(VIDEO, 0, bytes(MAX_TAG_BYTES)))
    assert len(tag.body) == MAX_TAG_BYTES

    # The refusal comes from the tag header alone, before the body is buffered.
    reader = FlvReader()
    reader.receive_data(flv_header())
    with pytest.raises(FlvProtocolError, match=r"tag of 8388609 bytes exceeds MAX_TAG_BYTES \(8388608\)"):
        reader.receive_data(encode_tag(VIDEO, 0, bytes(MAX_TAG_BYTES + 1))[:11])


def test_it_buffers_at_most_one_whole_tag():
    tag = encode_tag(VIDEO, 0, bytes(MAX_TAG_BYTES))
    assert len(tag) == MAX_BUFFERED_BYTES
    reader = FlvReader()
    reader.receive_data(flv_header())
    assert reader.receive_data(tag[:-1]) == []
    assert reader.buffered_bytes == MAX_BUFFERED_BYTES - 1
    assert len(reader.receive_data(tag[-1:])) == 1
    assert reader.buffered_bytes == 0


def test_it_refuses_what_is_not_flv_from_the_first_bytes():
    with pytest.raises(FlvProtocolError, match="no 'FLV' signature"):
        FlvReader().receive_data(b"GET / HTTP/1.1\r\n")
    with pytest.raises(FlvProtocolError, match="no 'FLV' signature"):
        FlvReader().receive_data(b"FX")


def test_it_refuses_encrypted_tags():
    with pytest.raises(FlvProtocolError, match="encrypted"):
        read_all(flv_header() + encode_tag(VIDEO | 0x20, 0, b"\x17\x01"))


def test_it_refuses_input_that_ends_inside_the_header_or_a_tag():
    with pytest.raises(FlvProtocolError, match="input ended inside the header"):
        read_all(b"FLV\x01")
    with pytest.raises(FlvProtocolError, match="input ended inside a tag"):
        read_all(small_stream()[:-1])
    assert read_all(flv_header()) == []


def test_it_stays_in_error_after_a_protocol_error():
    reader = FlvReader()
    with pytest.raises(FlvProtocolError):
        reader.receive_data(b"XYZ")
    with pytest.raises(FlvProtocolError, match="no 'FLV' signature"):
        reader.receive_data(flv_header())


def test_it_refuses_data_after_the_end_of_input():
    reader = FlvReader()
    reader.receive_data(flv_header())
    reader.receive_data(b"")
    with pytest.raises(RuntimeError):
        reader.receive_data(b"more")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=6))
def test_it_yields_tags_or_a_protocol_error_for_any_bytes(data, cuts):
    feed_in_pieces(data, cuts)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_it_yields_tags_or_a_protocol_error_for_mutated_streams(draw):
    data = bytearray(small_stream())
    for _ in range(draw.draw(st.integers(1, 4))):
        data[draw.draw(st.integers(0, len(data) - 1))] = draw.draw(st.integers(0, 255))
    cut = draw.draw(st.integers(0, len(data)))
    feed_in_pieces(bytes(data[:cut]), draw.draw(st.lists(st.integers(0, cut), max_size=6)))


def feed_in_pieces(data: bytes, cuts: list[int]) -> None:
    reader = FlvReader()
    points = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    try:
        for start, end in zip(points, points[1:], strict=False):
            for tag in reader.receive_data(data[start:end]):
                assert isinstance(tag, FlvTag)
        reader.receive_data(b"")
    except FlvProtocolError:
        pass


# --- tag bodies -------------------------------------------------------------------


def test_it_classifies_ffmpegs_video_and_audio_tags():
    tags = read_all(ffmpeg_flv(seconds=2.0))
    video = [t.body for t in tags if t.tag_type == VIDEO]
    audio = [t.body for t in tags if t.tag_type == AUDIO]
    # The first video and audio tags are the decoder configurations.
    assert flv.video_is_sequence_header(video[0]) and flv.video_is_keyframe(video[0])
    assert flv.audio_is_sequence_header(audio[0])
    assert not any(flv.video_is_sequence_header(b) for b in video[1:])
    assert not any(flv.audio_is_sequence_header(b) for b in audio[1:])
    # -g 30: a keyframe every 30 frames.
    keyframes = [i for i, b in enumerate(video[1:]) if flv.video_is_keyframe(b)]
    assert len(video) > 60 and keyframes == list(range(0, len(video) - 1, 30))
    assert {flv.video_codec_id(b) for b in video} == {flv.VIDEO_CODEC_AVC}
    assert {flv.audio_codec_id(b) for b in audio} == {flv.AUDIO_CODEC_AAC}
    assert flv.audio_sample_rate(audio[0]) == 44100 and flv.audio_channels(audio[0]) == 2
    # The high profile's default B-frames show as composition time offsets.
    assert any(flv.avc_composition_time(b) > 0 for b in video[1:])


def test_it_reads_negative_composition_times():
    assert flv.avc_composition_time(b"\x27\x01\xff\xff\xdf") == -33
    assert flv.avc_composition_time(b"\x27\x01\x00\x00\x21") == 33
    assert flv.avc_composition_time(b"\x27\x01") == 0


def test_it_reads_the_packet_type_of_avc_hevc_and_aac_bodies_only():
    assert flv.avc_packet_type(b"\x17\x00\x00\x00\x00") == flv.PACKET_SEQUENCE_HEADER
    assert flv.avc_packet_type(b"\x27\x01\x00\x00\x00") == flv.PACKET_NALU
    assert flv.avc_packet_type(b"\x1c\x02") == flv.PACKET_END_OF_SEQUENCE  # HEVC, the CDN codec id
    assert flv.aac_packet_type(b"\xaf\x00\x12\x10") == flv.PACKET_SEQUENCE_HEADER
    assert flv.aac_packet_type(b"\xaf\x01") == flv.PACKET_NALU
    # Other codecs have no packet type, whatever their second byte.
    assert flv.avc_packet_type(b"\x12\x00") == -1  # Sorenson H.263
    assert flv.aac_packet_type(b"\x2f\x00") == -1  # MP3
    for helper in (flv.avc_packet_type, flv.aac_packet_type):
        assert helper(b"") == -1
    assert flv.avc_packet_type(b"\x17") == -1 and flv.aac_packet_type(b"\xaf") == -1


def test_it_treats_empty_and_short_bodies_as_nothing_special():
    for helper in (flv.video_is_keyframe, flv.video_is_sequence_header, flv.audio_is_sequence_header):
        assert helper(b"") is False
    assert flv.video_is_sequence_header(b"\x17") is False
    assert flv.video_codec_id(b"") == 0 and flv.audio_codec_id(b"") == 0
    assert flv.audio_sample_rate(b"") == 0 and flv.audio_channels(b"") == 0


def test_it_knows_hevc_sequence_headers_by_the_cdn_codec_id():
    assert flv.video_is_sequence_header(b"\x1c\x00\x00\x00\x00")
    assert not flv.video_is_sequence_header(b"\x12\x00")  # Sorenson H.263 has no packet type
    assert flv.video_is_keyframe(b"\x4c\x01")  # generated keyframe
    assert not flv.video_is_keyframe(b"\x27\x01")
