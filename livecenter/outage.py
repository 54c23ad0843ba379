"""Riding out a database outage (issue 11, Faults).

A media node keeps its streams while the database is unreachable: the
policy serves its last good answers (nodes/bridge.py), and what the node
reports meanwhile — publish and unpublish events, monitoring samples — waits
in a bounded `OutageBuffer` and is written once the database answers again.

`database` is this process's view of the database's health, shared by the
policy and the sinks: after a failure nobody tries again for
LIVECENTER_DB_RETRY_SECONDS, so an outage costs one connect timeout per
window, not one per event on the single ORM thread.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

log = logging.getLogger(__name__)

T = TypeVar("T")

# What "the database is unreachable" raises: a refused or timed-out connect,
# a dropped socket (OperationalError), a connection already closed
# (InterfaceError). Other database errors are bugs, not outages.
UNREACHABLE = (OperationalError, InterfaceError)


class DatabaseHealth:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.down_since: float | None = None
        self._next_try = 0.0

    @property
    def up(self) -> bool:
        return self.down_since is None

    def should_try(self) -> bool:
        """False while a recent failure says the database is still down."""
        return self.down_since is None or self._clock() >= self._next_try

    def failed(self, exc: BaseException) -> None:
        now = self._clock()
        if self.down_since is None:
            self.down_since = now
            log.warning("the database is unreachable (%s); serving from caches and buffering writes", exc)
        self._next_try = now + settings.LIVECENTER_DB_RETRY_SECONDS

    def succeeded(self) -> None:
        if self.down_since is not None:
            log.warning("the database answers again after %.1f s", self._clock() - self.down_since)
            self.down_since = None


database = DatabaseHealth()


def drop_connection() -> None:
    """After an outage error: close this thread's connection so that the next
    query connects afresh (SQLite's is_usable() never notices; never inside a
    transaction, a test's)."""
    if connection.in_atomic_block:
        return
    try:
        connection.close()
    except Exception:  # the socket is already gone
        log.debug("closing a broken database connection failed", exc_info=True)


class OutageBuffer(Generic[T]):
    """Items that could not be written, oldest first, at most `max_items`:
    past that the oldest are dropped and counted (a bounded memory cost for
    an outage of any length)."""

    def __init__(self, name: str, max_items: int) -> None:
        self.name = name
        self.max_items = max_items
        self._items: deque[T] = deque()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: T) -> None:
        self._items.append(item)
        while len(self._items) > self.max_items:
            self._items.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("%s: buffer full (%d), %d dropped so far", self.name, self.max_items, self.dropped)

    def items(self) -> list[T]:
        return list(self._items)

    def peek(self) -> T:
        return self._items[0]

    def pop(self) -> T:
        return self._items.popleft()
