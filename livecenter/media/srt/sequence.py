"""Circular arithmetic on SRT's 31-bit packet sequence numbers and 32-bit
microsecond timestamps (draft-sharabayko-srt 3.1: both wrap around).

A sequence number is compared with another one within half the number
space of it, as libsrt's CSeqNo does: 2**30 packets apart is "ahead", never
"behind", whatever the wrap.
"""

from __future__ import annotations

SEQ_BITS = 31
SEQ_MODULUS = 1 << SEQ_BITS
SEQ_MASK = SEQ_MODULUS - 1
_SEQ_HALF = SEQ_MODULUS >> 1

TIMESTAMP_MODULUS_US = 1 << 32
_TIMESTAMP_HALF_US = TIMESTAMP_MODULUS_US >> 1


def seq_inc(seq: int, n: int = 1) -> int:
    """`seq` plus `n` (negative for minus), wrapped into 31 bits."""
    return (seq + n) & SEQ_MASK


def seq_offset(first: int, second: int) -> int:
    """How many steps from `first` forward to `second`; negative if `second`
    comes before `first`. Exact while they are less than 2**30 apart."""
    return ((second - first + _SEQ_HALF) & SEQ_MASK) - _SEQ_HALF


def seq_cmp(a: int, b: int) -> int:
    """-1, 0 or 1 as `a` comes before, is, or comes after `b`."""
    offset = seq_offset(b, a)
    return (offset > 0) - (offset < 0)


def timestamp_offset_us(first: int, second: int) -> int:
    """Microseconds from 32-bit timestamp `first` to `second`, across a wrap."""
    return ((second - first + _TIMESTAMP_HALF_US) % TIMESTAMP_MODULUS_US) - _TIMESTAMP_HALF_US
