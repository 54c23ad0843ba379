"""The GOP cache: the frames from the latest keyframe on, so that a viewer
who joins sees a picture at once instead of waiting up to a GOP for the next
keyframe.

One implementation for both caches the engine keeps: the hub's of FLV tag
bodies, which every protocol's joiner gets after the stream's headers
(hub.py), and RTS's of the Annex B access units it hands WebRTC viewers
(rts/media.py). The headers are not cached here: a joiner needs them before
the GOP whatever the cache holds, so their owner keeps them, and restarts the
cache when a new one arrives (what is cached was coded with the old one).

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

Frame = TypeVar("Frame")


class GopCache(Generic[Frame]):
    """The frames since the latest keyframe, at most `max_bytes` of them
    (each frame's size as the caller counts it) and, if set, `max_frames`.

    A GOP that would pass either bound is not cached: the cache empties and
    waits for the next keyframe, as it does after `restart()`. A keyframe
    larger than `max_bytes` is not cached either. Frames before the first
    keyframe are not cached: a joiner could not decode them."""

    __slots__ = ("max_bytes", "max_frames", "_frames", "_bytes")

    def __init__(self, max_bytes: int, max_frames: int | None = None) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must not be negative, not {max_bytes}")
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be at least 1 (or None for no bound), not {max_frames}")
        self.max_bytes = max_bytes
        self.max_frames = max_frames
        self._frames: list[Frame] = []
        self._bytes = -1  # -1 while waiting for a keyframe

    def add(self, frame: Frame, size: int, keyframe: bool) -> None:
        """The next frame of the stream, `size` bytes."""
        if keyframe:
            if size <= self.max_bytes:
                self._frames, self._bytes = [frame], size
            else:
                self.restart()
        elif self._bytes >= 0:
            max_frames = self.max_frames
            if self._bytes + size > self.max_bytes or (max_frames is not None and len(self._frames) >= max_frames):
                self.restart()
            else:
                self._frames.append(frame)
                self._bytes += size

    def restart(self) -> None:
        """Drop what is cached and wait for the next keyframe."""
        self._frames, self._bytes = [], -1

    @property
    def frames(self) -> tuple[Frame, ...]:
        """What a joiner gets: the cached frames, the keyframe first."""
        return tuple(self._frames)

    @property
    def nbytes(self) -> int:
        """The size of what is cached (0 while waiting for a keyframe)."""
        return max(self._bytes, 0)

    @property
    def waiting_for_keyframe(self) -> bool:
        return self._bytes < 0

    def __len__(self) -> int:
        return len(self._frames)

    def __iter__(self) -> Iterator[Frame]:
        return iter(self._frames)
