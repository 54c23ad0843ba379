"""The calibrator's timecode (livecenter/media/timecode.py): the bit layout,
painting and reading back, and surviving H.264 at a low bitrate."""

from __future__ import annotations

import ast
import fractions
from pathlib import Path

import av
import pytest

from livecenter.media import timecode
from livecenter.media.timecode import (
    BITS,
    COLUMNS,
    MIN_WIDTH_PX,
    ROWS,
    TimecodeError,
    band_height_px,
    bits_to_time,
    block_px,
    crc16,
    decode_luma,
    encode_band,
    timecode_bits,
)

NOW_MS = 1_780_000_000_123


def frame_plane(epoch_ms: int, width: int, height: int, background: int = 90) -> bytes:
    """A luma plane: the band, then a flat background."""
    band = encode_band(epoch_ms, width)
    return band + bytes([background]) * (width * (height - len(band) // width))


def test_it_uses_the_published_crc():
    # CRC-16/CCITT-FALSE check value; player.js computes the same one.
    assert crc16(b"123456789") == 0x29B1


def test_it_lays_out_marker_time_and_checksum():
    bits = timecode_bits(NOW_MS)
    assert len(bits) == BITS == 96
    assert int("".join(map(str, bits[:16])), 2) == 0xA5C3
    assert int("".join(map(str, bits[16:80])), 2) == NOW_MS
    assert int("".join(map(str, bits[80:])), 2) == crc16(NOW_MS.to_bytes(8, "big"))
    assert bits_to_time(bits) == NOW_MS


@pytest.mark.parametrize("epoch_ms", [0, 1, NOW_MS, (1 << 64) - 1])
def test_it_round_trips_the_time_range(epoch_ms):
    assert bits_to_time(timecode_bits(epoch_ms)) == epoch_ms


@pytest.mark.parametrize("epoch_ms", [-1, 1 << 64])
def test_it_refuses_a_time_outside_64_bits(epoch_ms):
    with pytest.raises(TimecodeError, match="must fit in 64 bits"):
        timecode_bits(epoch_ms)


def test_it_rejects_a_flipped_bit_and_a_wrong_marker():
    bits = timecode_bits(NOW_MS)
    for i in (0, 15, 16, 50, 79, 80, 95):
        flipped = list(bits)
        flipped[i] ^= 1
        assert bits_to_time(flipped) is None, i
    assert bits_to_time(bits[:-1]) is None


def test_it_sizes_blocks_from_the_frame_width():
    assert block_px(640) == 20 and band_height_px(640) == 60
    assert block_px(1280) == 40 and band_height_px(1280) == 120
    assert block_px(MIN_WIDTH_PX) == 16
    with pytest.raises(TimecodeError, match="at least 512 px"):
        block_px(MIN_WIDTH_PX - 1)


@pytest.mark.parametrize(("width", "height", "stride"), [(640, 360, 640), (1280, 720, 1280), (642, 360, 704)])
def test_it_reads_back_what_it_paints(width, height, stride):
    band = encode_band(NOW_MS, width, stride)
    assert len(band) == band_height_px(width) * stride
    plane = band + bytes([200]) * (stride * (height - band_height_px(width)))
    assert decode_luma(plane, width, height, stride) == NOW_MS


def test_it_paints_white_ones_black_zeros_and_grey_beyond_the_grid():
    width = 650  # 20 px blocks, 10 px of grey to the right of the grid
    band = encode_band(NOW_MS, width)
    bits = timecode_bits(NOW_MS)
    line = band[:width]
    assert [line[c * 20 + 10] == 235 for c in range(COLUMNS)] == [bool(b) for b in bits[:COLUMNS]]
    assert set(line[COLUMNS * 20 :]) == {128}
    assert len(band) == ROWS * 20 * width


def test_it_finds_nothing_in_ordinary_pictures():
    assert decode_luma(bytes([128]) * 640 * 360, 640, 360) is None
    assert decode_luma(bytes(range(256)) * 900, 640, 360) is None
    assert decode_luma(bytes([128]) * 320 * 180, 320, 180) is None  # too narrow to carry one
    assert decode_luma(b"", 640, 360) is None  # truncated


@pytest.mark.parametrize(("width", "height", "bit_rate"), [(640, 360, 100_000), (1280, 720, 300_000)])
def test_it_survives_h264_at_a_low_bitrate(width, height, bit_rate):
    """Encode changing timecodes over a noisy background with libx264 at a
    starved bitrate, decode, and read every time back exactly."""
    times = [NOW_MS + i * 33 + (i * 7919 % 1000) for i in range(20)]
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = fractions.Fraction(1, 30)
    encoder.bit_rate = bit_rate
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "g": "30", "bf": "0"}
    decoder = av.CodecContext.create("h264", "r")
    decoded = []
    for i, epoch_ms in enumerate(times):
        frame = av.VideoFrame(width, height, "yuv420p")
        band = encode_band(epoch_ms, width, frame.planes[0].line_size)
        rest = frame.planes[0].buffer_size - len(band)
        # A picture that moves every frame, as the calibrator's does, so the
        # encoder spends its bits on the whole frame and not on the band alone.
        line = bytes((x * 3 + i * 24) % 220 + 16 for x in range(frame.planes[0].line_size))
        frame.planes[0].update(band + (line * (rest // len(line) + 1))[:rest])
        for plane in frame.planes[1:]:
            plane.update(bytes([128]) * plane.buffer_size)
        frame.pts = i
        for packet in encoder.encode(frame):
            decoded += decoder.decode(packet)
    for packet in encoder.encode(None):
        decoded += decoder.decode(packet)
    decoded += decoder.decode(None)
    assert len(decoded) == len(times)
    read = [decode_luma(bytes(f.planes[0]), f.width, f.height, f.planes[0].line_size) for f in decoded]
    assert read == times


def test_it_is_pure():
    """Like the engine's protocol modules: no asyncio, socket, time, av, django."""
    tree = ast.parse(Path(timecode.__file__).read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not imported & {"asyncio", "socket", "time", "av", "django", "numpy"}
