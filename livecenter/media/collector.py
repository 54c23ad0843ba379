"""The cyclic garbage collector's pauses of the media node's loop (issue 18,
bench/README.md "bench/rts: latency under load").

CPython's collector stops every thread while it runs, and a collection of
the oldest generation walks every tracked object the process holds: with
500 WebRTC viewers (aiortc keeps ~1,700 objects a peer connection) that is
a pause of hundreds of milliseconds, and every viewer's frames arrive that
much late at once; a browser's jitter buffer then grows to it and takes
seconds to shrink. `CollectorPauses` counts the collections and their time
by generation and keeps the recent long ones, for /_node/status.

With the node's `gc_full_seconds` set, full collections run on the node's
timer every that many seconds instead of whenever CPython's allocation
counts call for one (`schedule_full_collections`), and what the process
held at start is frozen out of them: the long pauses come at a known rate,
each shorter by the startup's objects.
"""

from __future__ import annotations

import gc
import threading
import time
from collections import deque

GENERATIONS = 3
# Pauses at least this long are kept (with when they ended and their
# generation) for /_node/status; the shorter ones are only counted.
RECENT_MIN_MS = 5.0
RECENT_KEPT = 32


class CollectorPauses:
    """gc.callbacks' view of the collections while installed: how many of
    each generation, their total time, and the last RECENT_KEPT pauses of
    RECENT_MIN_MS or more as (wall-clock end, generation, ms, the thread's
    name). The time is from the start callback to the stop callback in the
    thread that collected: in another thread than the loop's (a conversion
    thread's allocations start collections too) it may include the loop's
    own work, since the GIL can change hands while a callback runs."""

    def __init__(self, clock=time.perf_counter, wall=time.time) -> None:
        self._clock, self._wall = clock, wall
        self.collections = [0] * GENERATIONS
        self.total_s = [0.0] * GENERATIONS
        self.recent: deque[tuple[float, int, float]] = deque(maxlen=RECENT_KEPT)
        self._began: float | None = None

    def install(self) -> None:
        if self.callback not in gc.callbacks:
            gc.callbacks.append(self.callback)

    def uninstall(self) -> None:
        if self.callback in gc.callbacks:
            gc.callbacks.remove(self.callback)

    def callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._began = self._clock()
            return
        if self._began is None:
            return
        seconds = self._clock() - self._began
        self._began = None
        generation = info.get("generation", GENERATIONS - 1)
        self.collections[generation] += 1
        self.total_s[generation] += seconds
        if seconds * 1000 >= RECENT_MIN_MS:
            thread = threading.current_thread().name
            self.recent.append((round(self._wall(), 3), generation, round(seconds * 1000, 1), thread))

    def figures(self) -> dict:
        return {
            "collections": list(self.collections),
            "total_ms": [round(s * 1000, 1) for s in self.total_s],
            "recent": [list(pause) for pause in self.recent],
        }


# With scheduled full collections, the third threshold (full collections
# after this many collections of the middle generation, CPython's
# gc.set_threshold) is set past what a node ever reaches: the node's own
# timer runs them instead.
NEVER = 1 << 30
_taken: list[tuple[int, int, int]] = []  # the thresholds before the first node took over


def schedule_full_collections() -> None:
    """The loop's timer, not the allocation count, decides when the oldest
    generation is collected (`collect_all`): what the process holds now
    (the modules, Django, the node itself) is collected once and then
    frozen out of every later collection (gc.freeze), and automatic
    collections keep to the young generations. Those find nearly all
    garbage (most cycles die young); what was long-lived when it became
    garbage (a closed viewer's peer connection) waits for the next
    `collect_all`. Nested calls (several nodes in one process) count."""
    if not _taken:
        gc.collect()
        gc.freeze()
        first, second, _ = gc.get_threshold()
        _taken.append(gc.get_threshold())
        gc.set_threshold(first, second, NEVER)
    else:
        _taken.append(_taken[0])


def collect_all() -> int:
    """A full collection now (a pause the length of everything not frozen)."""
    return gc.collect()


def unschedule_full_collections() -> None:
    """Undo schedule_full_collections (the last of nested calls)."""
    if not _taken:
        return
    thresholds = _taken.pop()
    if not _taken:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
