"""The GOP cache (livecenter/media/gop.py) that the hub and RTS share."""

from __future__ import annotations

import pytest

from livecenter.media.gop import GopCache


def feed(cache: GopCache, frames: str, size: int = 10) -> None:
    """`K` a keyframe, `v` an inter frame; each frame is its index as a string."""
    for i, kind in enumerate(frames):
        cache.add(f"{kind}{i}", size, kind == "K")


def test_it_starts_at_a_keyframe():
    cache = GopCache(max_bytes=1000)
    feed(cache, "vvv")
    assert cache.frames == () and cache.waiting_for_keyframe and cache.nbytes == 0
    feed(cache, "Kvv")
    assert cache.frames == ("K0", "v1", "v2") and cache.nbytes == 30 and not cache.waiting_for_keyframe


def test_it_keeps_only_the_latest_gop():
    cache = GopCache(max_bytes=1000)
    feed(cache, "KvvKv")
    assert cache.frames == ("K3", "v4") and len(cache) == 2 and list(cache) == ["K3", "v4"]


def test_it_caches_up_to_its_byte_bound_and_drops_the_gop_one_byte_past_it():
    cache = GopCache(max_bytes=100)
    cache.add("K", 60, True)
    cache.add("v1", 40, False)
    assert cache.frames == ("K", "v1") and cache.nbytes == 100  # at the bound
    cache.add("v2", 1, False)
    assert cache.frames == () and cache.waiting_for_keyframe  # one past: the rest of this GOP is not cached
    cache.add("v3", 1, False)
    assert cache.frames == ()
    cache.add("K2", 100, True)
    assert cache.frames == ("K2",)
    cache.add("K3", 101, True)  # a keyframe larger than the bound alone
    assert cache.frames == () and cache.waiting_for_keyframe


def test_it_caches_up_to_its_frame_bound_and_drops_the_gop_one_frame_past_it():
    cache = GopCache(max_bytes=1000, max_frames=3)
    feed(cache, "Kvv")
    assert len(cache) == 3  # at the bound
    cache.add("v3", 10, False)
    assert cache.frames == () and cache.waiting_for_keyframe
    feed(cache, "Kv")
    assert cache.frames == ("K0", "v1")


def test_it_has_no_frame_bound_unless_given_one():
    cache = GopCache(max_bytes=10_000)
    feed(cache, "K" + "v" * 999)
    assert len(cache) == 1000


def test_it_restarts_and_waits_for_the_next_keyframe():
    # What a new sequence header does: the frames were coded with the old one.
    cache = GopCache(max_bytes=1000)
    feed(cache, "Kvv")
    cache.restart()
    assert cache.frames == () and cache.nbytes == 0
    feed(cache, "vv")
    assert cache.frames == ()


def test_it_gives_a_copy_that_later_frames_do_not_change():
    cache = GopCache(max_bytes=1000)
    feed(cache, "Kv")
    frames = cache.frames
    feed(cache, "v")
    assert frames == ("K0", "v1") and len(cache) == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_bytes": -1}, "max_bytes must not be negative, not -1"),
        ({"max_bytes": 10, "max_frames": 0}, r"max_frames must be at least 1 \(or None for no bound\), not 0"),
    ],
)
def test_it_refuses_bad_bounds(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GopCache(**kwargs)
