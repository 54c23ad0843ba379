"""The calibrator's timecode: a frame's capture wall-clock time painted into
the picture so that a player can read it back from the decoded frame and
measure glass-to-glass latency (DESIGN.md, the numbers; issue 4).

The pattern, which static/js/player.js decodes the same way:

- 96 bits in a grid of `COLUMNS` x `ROWS` square blocks at the top-left
  corner of the frame, bit `i` at row `i // COLUMNS`, column `i % COLUMNS`,
  most significant bit first.
- Block size `block = width // COLUMNS` pixels (at least `MIN_BLOCK_PX`),
  so the pattern scales with the frame and the player can find it from the
  frame width alone; the band is `ROWS * block` lines high.
- Bits 0-15: the sync marker `SYNC_MARKER`; bits 16-79: the capture time in
  Unix epoch milliseconds, unsigned 64-bit; bits 80-95: CRC-16/CCITT-FALSE
  (poly 0x1021, init 0xFFFF, `binascii.crc_hqx`) of those eight bytes,
  big-endian.
- A one is a white block (luma `WHITE_LUMA`), a zero a black one
  (`BLACK_LUMA`): video range, so they stay the extremes after any
  conversion. Anything to the right of the grid in the band is mid grey.
- Reading: the mean luma of the middle half of each block (edges are where
  H.264's blocking and ringing sit) against `THRESHOLD_LUMA`. A frame
  whose marker or checksum does not match carries no timecode.

Large, high-contrast blocks of at least 16 px survive H.264 at a few hundred
kbit/s; the marker and the checksum make a false reading from ordinary
video negligible. Pure: no numpy (PyAV does not bring it), planes are bytes.
"""

from __future__ import annotations

import binascii
import struct

COLUMNS = 32
ROWS = 3
BITS = COLUMNS * ROWS
SYNC_MARKER = 0xA5C3
SYNC_BITS = 16
TIME_BITS = 64
CRC_BITS = 16
MIN_BLOCK_PX = 16
MIN_WIDTH_PX = COLUMNS * MIN_BLOCK_PX  # 512: a 640x360 frame has 20 px blocks
WHITE_LUMA = 235
BLACK_LUMA = 16
GREY_LUMA = 128
THRESHOLD_LUMA = 128


class TimecodeError(ValueError):
    """The caller asked for a pattern that cannot be painted (frame too narrow
    or time out of range)."""


def block_px(width: int) -> int:
    """The block size for a frame `width` pixels wide."""
    block = width // COLUMNS
    if block < MIN_BLOCK_PX:
        raise TimecodeError(f"frame width must be at least {MIN_WIDTH_PX} px for the timecode, not {width}")
    return block


def band_height_px(width: int) -> int:
    return ROWS * block_px(width)


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE; crc16(b"123456789") == 0x29B1."""
    return binascii.crc_hqx(data, 0xFFFF)


def timecode_bits(epoch_ms: int) -> list[int]:
    """The 96 bits of the pattern for a capture time, most significant first."""
    if not 0 <= epoch_ms < 1 << TIME_BITS:
        raise TimecodeError(f"epoch milliseconds must fit in 64 bits, not {epoch_ms}")
    time_bytes = struct.pack(">Q", epoch_ms)
    value = (SYNC_MARKER << (TIME_BITS + CRC_BITS)) | (epoch_ms << CRC_BITS) | crc16(time_bytes)
    return [(value >> (BITS - 1 - i)) & 1 for i in range(BITS)]


def bits_to_time(bits: list[int]) -> int | None:
    """The capture time the bits carry, or None when the marker or the
    checksum does not match."""
    if len(bits) != BITS:
        return None
    value = 0
    for bit in bits:
        value = (value << 1) | (1 if bit else 0)
    if value >> (TIME_BITS + CRC_BITS) != SYNC_MARKER:
        return None
    epoch_ms = (value >> CRC_BITS) & ((1 << TIME_BITS) - 1)
    if value & 0xFFFF != crc16(struct.pack(">Q", epoch_ms)):
        return None
    return epoch_ms


def encode_band(epoch_ms: int, width: int, stride: int | None = None) -> bytes:
    """The luma lines of the band (`band_height_px(width)` lines of `stride`
    bytes) that paint `epoch_ms` into a frame `width` pixels wide."""
    stride = width if stride is None else stride
    if stride < width:
        raise TimecodeError(f"stride must be at least the width ({width}), not {stride}")
    block = block_px(width)
    white, black = bytes([WHITE_LUMA]) * block, bytes([BLACK_LUMA]) * block
    tail = bytes([GREY_LUMA]) * (width - COLUMNS * block) + bytes(stride - width)
    bits = timecode_bits(epoch_ms)
    lines = []
    for row in range(ROWS):
        line = b"".join(white if bit else black for bit in bits[row * COLUMNS : (row + 1) * COLUMNS]) + tail
        lines.append(line * block)
    return b"".join(lines)


def decode_luma(plane: bytes | memoryview, width: int, height: int, stride: int | None = None) -> int | None:
    """The capture time painted into a luma plane, or None when the frame
    carries no (readable) timecode."""
    stride = width if stride is None else stride
    try:
        block = block_px(width)
    except TimecodeError:
        return None
    if height < ROWS * block or len(plane) < (ROWS * block - 1) * stride + width:
        return None
    plane = memoryview(plane)
    # The middle half of the block, in both directions.
    lo, hi = block // 4, block - block // 4
    span = hi - lo
    bits = []
    for i in range(BITS):
        row, column = divmod(i, COLUMNS)
        x0, y0 = column * block + lo, row * block + lo
        total = 0
        for y in range(y0, y0 + span):
            start = y * stride + x0
            total += sum(plane[start : start + span])
        bits.append(1 if total > THRESHOLD_LUMA * span * span else 0)
    return bits_to_time(bits)
