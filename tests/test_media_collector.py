"""collector.CollectorPauses: the garbage collector's pauses, by generation (fake clocks)."""

from __future__ import annotations

import gc
import threading
import weakref

from livecenter.media.collector import (
    NEVER,
    RECENT_KEPT,
    CollectorPauses,
    collect_all,
    schedule_full_collections,
    unschedule_full_collections,
)
from tests.mediasupport import NodeThread
from tests.workersupport import wait_until


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
    assert figures["recent"] == [[1_700_000_000.0, 2, 400.0, threading.current_thread().name]]


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


def test_scheduled_full_collections_freeze_the_startup_and_leave_the_young_generations_automatic():
    before = gc.get_threshold()
    schedule_full_collections()
    try:
        assert gc.get_threshold()[:2] == before[:2]
        assert gc.get_threshold()[2] == NEVER
        assert gc.get_freeze_count() > 0
        schedule_full_collections()  # a second node in the process
        unschedule_full_collections()
        assert gc.get_threshold()[2] == NEVER  # the first one still runs
    finally:
        unschedule_full_collections()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    unschedule_full_collections()  # once more: nothing to undo
    assert gc.get_threshold() == before


def test_a_full_collection_still_finds_a_long_lived_cycle_once_it_is_garbage():
    class Peer:
        pass

    schedule_full_collections()
    try:
        peer = Peer()
        peer.me = peer  # a cycle, as aiortc's peer connections have
        gc.collect(1)
        gc.collect(1)  # long-lived now: in the oldest generation, not frozen (it came after)
        ref = weakref.ref(peer)
        del peer
        gc.collect(1)
        assert ref() is not None  # the young collections do not look there
        collect_all()
        assert ref() is None
    finally:
        unschedule_full_collections()


def test_a_node_runs_its_full_collections_on_its_timer():
    node = NodeThread(gc_full_seconds=0.2).start()
    try:
        assert gc.get_threshold()[2] == NEVER
        first = node.run_sync(lambda: node.node.collector.figures()["collections"][2])
        assert wait_until(lambda: node.run_sync(lambda: node.node.collector.figures()["collections"][2]) >= first + 2)
    finally:
        node.stop()
    assert gc.get_threshold()[2] != NEVER
    assert gc.get_freeze_count() == 0
