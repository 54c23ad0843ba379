"""Whether a host name resolves, asked of the system's resolver (getaddrinfo:
/etc/hosts, then DNS, as browsers, OBS and ffmpeg on this machine ask it)
within a time limit, with the answers cached. Framework-free.

A page that hands out URLs asks it (domains/direct.py); a resolver that
hangs must not hang the page, and getaddrinfo cannot be cancelled. So each
lookup runs in a daemon thread the caller waits on for at most
`timeout_seconds`: a lookup still running then counts as "does not
resolve" for this answer, and the next caller waits on the same thread
rather than starting another. At most `MAX_PENDING_LOOKUPS` threads run at
once (a resolver that hangs on every name costs that many threads, no
more), and at most `MAX_CACHED_NAMES` answers are kept.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Lookups running at once; past it a name not yet cached counts as not resolving.
MAX_PENDING_LOOKUPS = 16
# Answers kept; past it the oldest is dropped (a console names a few dozen domains).
MAX_CACHED_NAMES = 1024

Lookup = Callable[[str], tuple[str, ...]]


def system_lookup(name: str) -> tuple[str, ...]:
    """The addresses getaddrinfo gives for `name`, () when it has none."""
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return ()
    return tuple(dict.fromkeys(info[4][0] for info in infos))


@dataclass
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    addresses: tuple[str, ...] = ()


class BoundedResolver:
    """`addresses(name)`: what `lookup` gives within `timeout_seconds`,
    cached for `ttl_seconds` (an answer that timed out is not cached)."""

    def __init__(
        self,
        timeout_seconds: float,
        ttl_seconds: float,
        lookup: Lookup = system_lookup,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.ttl_seconds = ttl_seconds
        self.lookup = lookup
        self.clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._pending: dict[str, _Pending] = {}

    def addresses(self, name: str) -> tuple[str, ...]:
        name = name.lower().rstrip(".")
        with self._lock:
            cached = self._cache.get(name)
            if cached is not None and cached[0] > self.clock():
                return cached[1]
            pending = self._pending.get(name)
            if pending is None:
                if len(self._pending) >= MAX_PENDING_LOOKUPS:
                    return ()
                pending = self._pending[name] = _Pending()
                threading.Thread(target=self._run, args=(name, pending), name="resolve", daemon=True).start()
        pending.done.wait(self.timeout_seconds)
        return pending.addresses

    def resolves(self, name: str) -> bool:
        return bool(self.addresses(name))

    def forget(self) -> None:
        """Drop every cached answer (lookups running go on)."""
        with self._lock:
            self._cache.clear()

    def _run(self, name: str, pending: _Pending) -> None:
        try:
            addresses = self.lookup(name)
        except Exception:  # a lookup that fails says nothing resolves
            addresses = ()
        with self._lock:
            pending.addresses = addresses
            self._pending.pop(name, None)
            if len(self._cache) >= MAX_CACHED_NAMES:
                self._cache.pop(next(iter(self._cache)))
            self._cache[name] = (self.clock() + self.ttl_seconds, addresses)
        pending.done.set()
