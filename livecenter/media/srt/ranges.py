"""Sets of packet positions kept as ranges, like libsrt's CRcvLossList: the
receiver's lost packets and the slots a drop request told it to forget.

A gap of 8,191 packets or a drop request over the whole window is one
range, so what a datagram costs does not grow with how many packets it
names. Positions are plain integers that never wrap (the connection counts
sequence numbers on from the first one, as its heap of held packets does);
turning them back into 31-bit sequence numbers is the caller's business.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator


class SrtSeqRanges:
    """Disjoint half-open ranges [start, end) of integers, sorted, each with
    a stamp (an int the owner keeps with it: the loss list's "NAK due at").
    Adding merges with what overlaps or touches; removing splits. Every
    operation is a binary search plus the ranges it changes (list slice
    moves are over at most a window's worth of ranges)."""

    __slots__ = ("_starts", "_ends", "_stamps", "count")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._stamps: list[int] = []
        self.count = 0  # integers held

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __contains__(self, value: int) -> bool:
        i = bisect_right(self._starts, value) - 1
        return i >= 0 and value < self._ends[i]

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        """(start, end, stamp) of each range, lowest first."""
        return zip(self._starts, self._ends, self._stamps, strict=True)

    @property
    def ranges(self) -> int:
        return len(self._starts)

    def first(self) -> int | None:
        return self._starts[0] if self._starts else None

    def range_at(self, value: int) -> tuple[int, int] | None:
        """The range holding `value`, if one does."""
        i = bisect_right(self._starts, value) - 1
        if i >= 0 and value < self._ends[i]:
            return self._starts[i], self._ends[i]
        return None

    def add(self, start: int, end: int, stamp: int = 0) -> None:
        """Hold [start, end); merged ranges keep the smallest stamp."""
        if start >= end:
            return
        starts, ends, stamps = self._starts, self._ends, self._stamps
        if not starts or start > ends[-1]:  # the usual case: a new gap at the end
            starts.append(start)
            ends.append(end)
            stamps.append(stamp)
            self.count += end - start
            return
        lo = bisect_left(ends, start)  # the first range that ends at or after start
        hi = bisect_right(starts, end)  # past the last one that starts at or before end
        if lo < hi:
            new_start, new_end = min(start, starts[lo]), max(end, ends[hi - 1])
            stamp = min(stamp, *stamps[lo:hi])
            self.count -= sum(e - s for s, e in zip(starts[lo:hi], ends[lo:hi], strict=True))
        else:
            new_start, new_end = start, end
        starts[lo:hi] = [new_start]
        ends[lo:hi] = [new_end]
        stamps[lo:hi] = [stamp]
        self.count += new_end - new_start

    def remove(self, start: int, end: int) -> None:
        """Stop holding [start, end); a range it cuts in two keeps its stamp in both."""
        if start >= end:
            return
        starts, ends, stamps = self._starts, self._ends, self._stamps
        lo = bisect_right(ends, start)  # the first range that ends after start
        hi = bisect_left(starts, end)  # past the last one that starts before end
        if lo >= hi:
            return
        self.count -= sum(e - s for s, e in zip(starts[lo:hi], ends[lo:hi], strict=True))
        keep_starts, keep_ends, keep_stamps = [], [], []
        if starts[lo] < start:
            keep_starts.append(starts[lo])
            keep_ends.append(start)
            keep_stamps.append(stamps[lo])
        if ends[hi - 1] > end:
            keep_starts.append(end)
            keep_ends.append(ends[hi - 1])
            keep_stamps.append(stamps[hi - 1])
        self.count += sum(e - s for s, e in zip(keep_starts, keep_ends, strict=True))
        starts[lo:hi] = keep_starts
        ends[lo:hi] = keep_ends
        stamps[lo:hi] = keep_stamps

    def remove_below(self, value: int) -> None:
        """Stop holding everything below `value`."""
        if self._starts and self._starts[0] < value:
            self.remove(self._starts[0], value)

    def within(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of [start, end) held, as (start, end) ranges."""
        starts, ends = self._starts, self._ends
        lo = bisect_right(ends, start)
        hi = bisect_left(starts, end)
        return [(max(starts[i], start), min(ends[i], end)) for i in range(lo, hi)]

    def restamp(self, index: int, stamp: int) -> None:
        """Set the stamp of the `index`-th range (in the order of iteration)."""
        self._stamps[index] = stamp
