"""collector.CollectorPauses: the garbage collector's pauses, by generation (fake clocks)."""

from __future__ import annotations

import gc

from livecenter.media.collector import RECENT_KEPT, CollectorPauses


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def collect(pauses: CollectorPauses, clock: FakeClock, generation: int, seconds: float) -> None:
    pauses.callback("start", {"generation": generation})
    clock.now += seconds
    pauses.callback("stop", {"generation": generation, "collected": 0, "uncollectable": 0})


def test_it_counts_collections_and_their_time_by_generation_and_keeps_the_long_ones():
    clock = FakeClock()
    pauses = CollectorPauses(clock=clock, wall=lambda: 1_700_000_000.0)
    collect(pauses, clock, 0, 0.001)
    collect(pauses, clock, 0, 0.002)
    collect(pauses, clock, 2, 0.4)
    figures = pauses.figures()
    assert figures["collections"] == [2, 0, 1]
    assert figures["total_ms"] == [3.0, 0.0, 400.0]
    # Only the pause past RECENT_MIN_MS is kept, with its generation.
    assert figures["recent"] == [[1_700_000_000.0, 2, 400.0]]


def test_it_keeps_only_the_latest_long_pauses():
    clock = FakeClock()
    pauses = CollectorPauses(clock=clock)
    for i in range(RECENT_KEPT + 5):
        collect(pauses, clock, 1, 0.010 + i / 1000)
    recent = pauses.figures()["recent"]
    assert len(recent) == RECENT_KEPT
    assert recent[-1][2] == round(10 + RECENT_KEPT + 4, 1)


def test_a_stop_without_its_start_is_not_counted():
    pauses = CollectorPauses(clock=FakeClock())
    pauses.callback("stop", {"generation": 2})
    assert pauses.figures()["collections"] == [0, 0, 0]


def test_installed_it_sees_a_real_collection_and_uninstalled_it_is_gone():
    pauses = CollectorPauses()
    pauses.install()
    pauses.install()  # once only
    try:
        assert gc.callbacks.count(pauses.callback) == 1
        gc.collect()
        assert pauses.figures()["collections"][2] >= 1
    finally:
        pauses.uninstall()
    assert pauses.callback not in gc.callbacks
