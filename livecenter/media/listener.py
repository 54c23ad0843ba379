"""Accepting connections for the media node's servers (RTMP and HTTP, and
over TLS: tls.py).

`asyncio.start_server` accepts whatever comes, and at the process's
descriptor limit it logs a traceback for every failed accept (tens of
thousands a minute) while the console in the same process cannot accept
either. This accept loop, used by both servers, adds what a server facing
the Internet needs:

- a cap on the node's connections and on those from one source address
  (`ConnectionGate`, shared by the node's listeners); a connection over
  either is closed at once;
- a node cap no higher than the descriptor limit less a reserve, so the
  rest of the process (console, database, RTS sockets, log files) keeps
  the descriptors it needs;
- on EMFILE/ENFILE (descriptors taken by something else) a spare descriptor
  is given up to accept and close the waiting connection, so its peer is
  told at once, and accepting pauses briefly (backing off) instead of
  spinning;
- accept errors and refusals logged once, then counted and summed up in
  one line per interval (`LogSummary`), never a traceback per error.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
from collections import Counter
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

# Connections waiting in the kernel for accept(); asyncio's default is 100,
# too few for a thousand viewers joining at once (the kernel caps it at
# net.core.somaxconn).
LISTEN_BACKLOG = 1024
# Accepts per wake-up, so one busy listener does not starve the loop.
ACCEPTS_PER_WAKEUP = 128
# After a failed accept for want of descriptors or memory: the first pause,
# doubled on each failure that follows, up to the last.
ACCEPT_PAUSE_SECONDS = 0.1
MAX_ACCEPT_PAUSE_SECONDS = 2.0
# After a first error or refusal is logged, how often the ones that follow
# are summed up in one line.
LOG_SUMMARY_SECONDS = 10.0

_OUT_OF_RESOURCES = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
# The peer went before we took its connection: nothing to say.
_PEER_GONE = frozenset((errno.ECONNABORTED, errno.EPROTO, errno.ECONNRESET))

_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def descriptor_limit() -> int | None:
    """The process's soft limit on open descriptors; None if unlimited or unknown."""
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def raise_descriptor_limit() -> None:
    """Raise the soft descriptor limit to the hard one, as servers do (Go's
    runtime does it for every program): the soft default (often 1,024) is
    a shell's, not a media server's."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            log.info("descriptor limit raised from %d to %d", soft, hard)
    except (ImportError, ValueError, OSError):
        pass


class ConnectionGate:
    """How many connections a node holds, in all and per source address,
    against its caps. One gate is shared by all of a node's listeners."""

    def __init__(self, max_connections: int, max_per_address: int) -> None:
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.open = 0
        self._by_address: Counter[str] = Counter()

    def admit(self, address: str) -> str | None:
        """Count a new connection from `address`; None if it may stay, else
        why not (and it is not counted)."""
        if self.open >= self.max_connections:
            return f"node connection limit ({self.max_connections})"
        if self._by_address[address] >= self.max_per_address:
            return f"connection limit per address ({self.max_per_address})"
        self.open += 1
        self._by_address[address] += 1
        return None

    def release(self, address: str) -> None:
        self.open -= 1
        left = self._by_address[address] - 1
        if left:
            self._by_address[address] = left
        else:
            del self._by_address[address]

    def count(self, address: str) -> int:
        return self._by_address.get(address, 0)


class LogSummary:
    """The first of a run of like events logged in full; those that follow
    within `interval_seconds` of the last line counted by kind and summed up
    in one line per interval."""

    def __init__(self, logger: logging.Logger, what: str, interval_seconds: float | None = None) -> None:
        self.logger = logger
        self.what = what
        self.interval_seconds = LOG_SUMMARY_SECONDS if interval_seconds is None else interval_seconds
        self.total = 0  # every event noted, for tests and stats
        self._counts: Counter[str] = Counter()
        self._timer: asyncio.TimerHandle | None = None

    def note(self, kind: str, detail: str = "") -> None:
        self.total += 1
        if self._timer is None:
            self.logger.warning("%s: %s%s (more are counted, one line each %gs)", self.what, kind,
                                f" {detail}" if detail else "", self.interval_seconds)  # fmt: skip
            self._timer = asyncio.get_running_loop().call_later(self.interval_seconds, self._flush)
        else:
            self._counts[kind] += 1

    def _flush(self) -> None:
        self._timer = None
        if self._counts:
            parts = ", ".join(f"{kind}: {n}" for kind, n in self._counts.most_common())
            self.logger.warning("%s: %d more in the last %gs (%s)", self.what, sum(self._counts.values()),
                                self.interval_seconds, parts)  # fmt: skip
            self._counts.clear()
            # Still going on: keep counting for another interval.
            self._timer = asyncio.get_running_loop().call_later(self.interval_seconds, self._flush)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._counts:
            parts = ", ".join(f"{kind}: {n}" for kind, n in self._counts.most_common())
            self.logger.warning("%s: %d more (%s)", self.what, sum(self._counts.values()), parts)
            self._counts.clear()


def _bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for every address `host` resolves to (as
    asyncio.start_server binds them)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    seen = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class MediaListener:
    """Accepts connections on a host and port and runs `handler(reader,
    writer)` for each one the gate admits, like asyncio.start_server."""

    def __init__(self, name: str, handler: Handler, gate: ConnectionGate) -> None:
        self.name = name
        self.handler = handler
        self.gate = gate
        self.sockets: list[socket.socket] = []
        self.refusals = LogSummary(log, f"{name}: connection refused")
        self.accept_errors = LogSummary(log, f"{name}: accept failed")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._spare: int | None = None
        self._pause_seconds = 0.0
        self._resume: asyncio.TimerHandle | None = None
        self._closed = False
        self._tasks: set[asyncio.Task] = set()  # the loop keeps only weak references

    @property
    def port(self) -> int:
        return self.sockets[0].getsockname()[1]

    async def start(self, host: str, port: int) -> None:
        self._loop = asyncio.get_running_loop()
        self.sockets = _bind(host, port)
        self._take_spare()
        self._watch()

    def close(self) -> None:
        self._closed = True
        self._unwatch()
        if self._resume is not None:
            self._resume.cancel()
        for sock in self.sockets:
            sock.close()
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None
        self.refusals.close()
        self.accept_errors.close()

    async def wait_closed(self) -> None:
        """For symmetry with asyncio's servers: the handlers are the node's to wait for."""

    # --- accepting ---------------------------------------------------------------

    def _watch(self) -> None:
        for sock in self.sockets:
            self._loop.add_reader(sock.fileno(), self._on_readable, sock)

    def _unwatch(self) -> None:
        if self._loop is None:
            return
        for sock in self.sockets:
            if sock.fileno() >= 0:
                self._loop.remove_reader(sock.fileno())

    def _take_spare(self) -> None:
        if self._spare is None:
            try:
                self._spare = os.open(os.devnull, os.O_RDONLY)
            except OSError:
                pass  # still out of descriptors: try again after the next pause

    def _on_readable(self, sock: socket.socket) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                conn, address = sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno in _PEER_GONE:
                    continue
                self.accept_errors.note(os.strerror(exc.errno) if exc.errno else str(exc))
                if exc.errno in _OUT_OF_RESOURCES:
                    self._shed(sock)
                self._pause()
                return
            self._pause_seconds = 0.0
            self._take_spare()
            self._admit(conn, address)

    def _shed(self, sock: socket.socket) -> None:
        """Use the spare descriptor to take the connection that could not be
        accepted and close it, so its peer hears at once (libev's and
        nginx's way out of EMFILE)."""
        if self._spare is None:
            return
        os.close(self._spare)
        self._spare = None
        try:
            conn, _ = sock.accept()
        except OSError:
            pass
        else:
            conn.close()
        self._take_spare()

    def _pause(self) -> None:
        self._pause_seconds = min(MAX_ACCEPT_PAUSE_SECONDS, max(ACCEPT_PAUSE_SECONDS, self._pause_seconds * 2))
        self._unwatch()
        self._resume = self._loop.call_later(self._pause_seconds, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._resume = None
        if not self._closed:
            self._take_spare()
            self._watch()

    def _admit(self, conn: socket.socket, address) -> None:
        host = address[0] if isinstance(address, tuple) else str(address)
        refusal = self.gate.admit(host)
        if refusal is not None:
            self.refusals.note(refusal, f"from {host}")
            # Closed with a reset: nothing of ours waits in a TIME_WAIT.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            conn.close()
            return
        conn.setblocking(False)
        task = self._loop.create_task(self._serve(conn, host))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, conn: socket.socket, protocol: asyncio.BaseProtocol, host: str):
        """The connection's transport, or None when it was refused (and
        closed); a TLS listener (tls.py) runs its handshake here."""
        transport, _ = await self._loop.connect_accepted_socket(lambda: protocol, conn)
        return transport

    async def _serve(self, conn: socket.socket, host: str) -> None:
        try:
            reader = asyncio.StreamReader()
            protocol = asyncio.StreamReaderProtocol(reader)
            try:
                transport = await self._connect(conn, protocol, host)
            except OSError:
                conn.close()
                return
            if transport is None:
                return
            writer = asyncio.StreamWriter(transport, protocol, reader, self._loop)
            try:
                await self.handler(reader, writer)
            except Exception:
                log.exception("%s: connection handler failed", self.name)
            finally:
                if not transport.is_closing():
                    transport.abort()
        finally:
            self.gate.release(host)


def effective_max_connections(configured: int, reserve_descriptors: int) -> int:
    """The node cap: the configured one, but no higher than the descriptor
    limit less `reserve_descriptors` for everything else in the process."""
    limit = descriptor_limit()
    if limit is None:
        return configured
    return max(1, min(configured, limit - reserve_descriptors))


async def listen(name: str, handler: Handler, gate: ConnectionGate, host: str, port: int) -> MediaListener:
    listener = MediaListener(name, handler, gate)
    await listener.start(host, port)
    return listener


def peer_name(addr) -> str:
    """`host:port` of a socket address, an IPv6 host in brackets (`[::1]:5000`),
    as logs and the console's client address read it."""
    if not addr:
        return "?:0"
    host, port = str(addr[0]), addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
