"""A UDP (and TCP) network impairment relay for the tests and benches that
cross a network (issues 13 and 14).

This kernel has `tc` with `tbf` but no `netem` qdisc, so loss, delay, jitter,
reordering and duplication come from this relay, which sits between a client
side and a server side:

    client(s) ──> listen ──[upstream impairment]──> target (server)
    client(s) <── listen <─[downstream impairment]── target (server)

Each client address is a flow of its own with its own socket towards the
server, so the server sees several publishers through one relay as distinct
source ports. Each direction has its own `Impairment`; the decisions for the
n-th datagram of a flow in a direction are a function of (seed, flow number,
direction, n) only, so a run is reproducible whatever the timing.

Model, per direction (one "link" shared by the flows):
  loss → duplication → rate limit (serialisation at `rate_kbps`, a bounded
  backlog with tail drop) → fixed delay ± uniform jitter → reordering.
Jitter does not reorder: a datagram never leaves before the one in front of
it on the link (departure times are kept monotonic, like a real path whose
delay varies). Reordering is explicit: with probability `reorder` a datagram
is held back at its departure and sent right after the next datagram of its
flow in that direction (or after `reorder_hold_ms` if none comes).

Delays are scheduled with `loop.call_at` on one timer per direction over a
FIFO of departures, never a sleep per datagram. Memory is bounded by
`max_queued_datagrams` (all directions and held datagrams together) and
`max_flows`; what does not fit is dropped and counted.

In process:
    async with ImpairmentRelay(("127.0.0.1", 0), server, up=Impairment(loss=0.05)) as relay:
        relay.address  # where the client sends
    with ThreadedImpairmentRelay(...) as relay:  # from synchronous tests

As a process (prints "listening on HOST:PORT" first, counters as JSON on exit):
    python -m tests.netimpair --listen 127.0.0.1:0 --to 127.0.0.1:1105 \\
        --loss 0.05 --delay-ms 100 --jitter-ms 10 --reorder 0.01 --duplicate 0.01 --seed 7
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import random
import signal
import socket
import sys
import threading
from collections.abc import Callable

UP = "up"  # client -> server
DOWN = "down"  # server -> client
DIRECTIONS = (UP, DOWN)

MAX_DATAGRAM_BYTES = 65535
# 10 000 datagrams of at most 1500 bytes is 15 MB: 20 SRT publishers at
# 2 Mbit/s (≈ 3500 datagrams/s) behind 150 ms each way need about 1000.
MAX_QUEUED_DATAGRAMS = 10_000
MAX_FLOWS = 256
FLOW_IDLE_SECONDS = 60.0
# Datagrams read from one socket before the loop gets a turn again.
READ_BATCH_DATAGRAMS = 64
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33  # Linux socket(7); Python 3.12 names them
TCP_MAX_QUEUED_BYTES = 4 * 1024 * 1024
TCP_READ_BYTES = 65536
# What the TCP relay's loss is counted in: one segment of an Ethernet path.
MSS_BYTES = 1448
# Linux's TCP_RTO_MIN: a lost segment is resent this long after at the soonest.
TCP_MIN_RTO_MS = 200.0


@dataclasses.dataclass(frozen=True)
class Impairment:
    """What one direction does to the datagrams crossing it."""

    loss: float = 0.0  # probability a datagram is dropped
    delay_ms: float = 0.0  # fixed one-way delay
    jitter_ms: float = 0.0  # uniform in [-jitter, +jitter] added to the delay (never below 0)
    reorder: float = 0.0  # probability a datagram is sent after the next one of its flow
    duplicate: float = 0.0  # probability a datagram is sent twice
    rate_kbps: float | None = None  # link rate; None is unlimited
    queue_datagrams: int = 1000  # backlog waiting for the rate-limited link before tail drop
    reorder_hold_ms: float = 50.0  # longest a reordered datagram waits for the next one

    def __post_init__(self) -> None:
        for name in ("loss", "reorder", "duplicate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability between 0 and 1, not {value}")
        for name in ("delay_ms", "jitter_ms", "reorder_hold_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.rate_kbps is not None and self.rate_kbps <= 0:
            raise ValueError("rate_kbps must be positive (or None for no limit)")
        if self.queue_datagrams < 1:
            raise ValueError("queue_datagrams must be at least 1")


@dataclasses.dataclass
class DirectionStats:
    received: int = 0  # datagrams that entered the direction
    forwarded: int = 0  # datagrams sent on (duplicates included)
    dropped: int = 0  # dropped by the configured loss
    dropped_queue: int = 0  # tail drops: rate backlog full, memory cap, socket full
    duplicated: int = 0  # extra copies made
    reordered: int = 0  # datagrams sent after a later one of their flow
    delayed: int = 0  # datagrams that waited for their departure time
    bytes_forwarded: int = 0


class _FlowDirection:
    """One flow in one direction: its seeded random stream and held datagrams."""

    __slots__ = ("flow", "direction", "rng", "held", "hold_timer")

    def __init__(self, flow: _Flow, direction: str, seed: int | None) -> None:
        self.flow = flow
        self.direction = direction
        # A str seed is hashed with SHA-512: stable across runs and versions.
        self.rng = random.Random(None if seed is None else f"{seed}:{flow.number}:{direction}")
        self.held: list[bytes] = []
        self.hold_timer: asyncio.TimerHandle | None = None


class _Flow:
    __slots__ = ("number", "client", "sock", "last_active", "closed", "up", "down")

    def __init__(self, number: int, client: tuple, sock: socket.socket, now: float, seed: int | None) -> None:
        self.number = number
        self.client = client
        self.sock = sock
        self.last_active = now
        self.closed = False
        self.up = _FlowDirection(self, UP, seed)
        self.down = _FlowDirection(self, DOWN, seed)


class _Link:
    """One direction: its impairment, stats, rate-limit state and FIFO of departures."""

    def __init__(self, direction: str, impairment: Impairment) -> None:
        self.direction = direction
        self.impairment = impairment
        self.stats = DirectionStats()
        self.link_free_at = 0.0  # when the rate-limited link finishes its backlog
        self.backlog: collections.deque[float] = collections.deque()  # finish times on the link
        self.last_departure = 0.0
        # (departure, data, flow direction, hold)
        self.queue: collections.deque[tuple[float, bytes, _FlowDirection, bool]] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None


def parse_address(text: str) -> tuple[str, int]:
    """'HOST:PORT' or '[v6]:PORT' to (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address must be HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


def _resolve(address: tuple[str, int], kind: int) -> tuple[int, tuple]:
    family, _, _, _, sockaddr = socket.getaddrinfo(address[0], address[1], type=kind)[0]
    return family, sockaddr


class ImpairmentRelay:
    """The UDP impairment relay on the running event loop; see the module docstring."""

    def __init__(
        self,
        listen: tuple[str, int],
        target: tuple[str, int],
        *,
        up: Impairment | None = None,
        down: Impairment | None = None,
        seed: int | None = None,
        max_queued_datagrams: int = MAX_QUEUED_DATAGRAMS,
        max_flows: int = MAX_FLOWS,
        flow_idle_seconds: float = FLOW_IDLE_SECONDS,
    ) -> None:
        self.listen = listen
        self.target = target
        self.seed = seed
        self.max_queued_datagrams = max_queued_datagrams
        self.max_flows = max_flows
        self.flow_idle_seconds = flow_idle_seconds
        self.links = {UP: _Link(UP, up or Impairment()), DOWN: _Link(DOWN, down or Impairment())}
        self.flows: dict[tuple, _Flow] = {}
        self.flows_opened = 0
        self.flows_refused = 0
        self.address: tuple[str, int] | None = None
        self._queued = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sock: socket.socket | None = None
        self._target_family = socket.AF_INET
        self._target_addr: tuple = ()
        self._sweeper: asyncio.TimerHandle | None = None

    # -- lifecycle

    async def start(self) -> ImpairmentRelay:
        self._loop = asyncio.get_running_loop()
        self._target_family, self._target_addr = _resolve(self.target, socket.SOCK_DGRAM)
        family, listen_addr = _resolve(self.listen, socket.SOCK_DGRAM)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind(listen_addr)
            large_socket_buffers(sock)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.address = sock.getsockname()[:2]
        self._loop.add_reader(sock, self._read_listen)
        self._sweeper = self._loop.call_later(self.flow_idle_seconds / 2, self._sweep)
        return self

    async def stop(self) -> None:
        self.close()

    def close(self) -> None:
        """Stop at once: queued datagrams are discarded, sockets closed."""
        if self._loop is None:
            return
        for link in self.links.values():
            if link.timer is not None:
                link.timer.cancel()
            link.queue.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for flow in list(self.flows.values()):
            self._close_flow(flow)
        if self._sock is not None:
            self._loop.remove_reader(self._sock)
            self._sock.close()
            self._sock = None
        self._queued = 0
        self._loop = None

    async def __aenter__(self) -> ImpairmentRelay:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        self.close()

    # -- settings and counters

    def set_impairment(self, up: Impairment | None = None, down: Impairment | None = None) -> None:
        """Change a direction's impairment; datagrams already queued keep their departure."""
        if up is not None:
            self.links[UP].impairment = up
        if down is not None:
            self.links[DOWN].impairment = down

    @property
    def stats(self) -> dict[str, DirectionStats]:
        return {direction: link.stats for direction, link in self.links.items()}

    def snapshot(self) -> dict:
        """The counters as plain data (a copy: safe to read from another thread)."""
        return {
            **{direction: dataclasses.asdict(link.stats) for direction, link in self.links.items()},
            "flows": len(self.flows),
            "flows_opened": self.flows_opened,
            "flows_refused": self.flows_refused,
            "queued": self._queued,
        }

    # -- receiving

    def _read_listen(self) -> None:
        sock = self._sock
        for _ in range(READ_BATCH_DATAGRAMS):
            try:
                data, client = sock.recvfrom(MAX_DATAGRAM_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error from a client that went away
                continue
            flow = self.flows.get(client)
            if flow is None:
                flow = self._open_flow(client)
                if flow is None:
                    continue
            flow.last_active = self._loop.time()
            self._enter(self.links[UP], flow.up, data)

    def _read_flow(self, flow: _Flow) -> None:
        for _ in range(READ_BATCH_DATAGRAMS):
            try:
                data = flow.sock.recv(MAX_DATAGRAM_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ECONNREFUSED: nothing listens at the target (yet)
                continue
            flow.last_active = self._loop.time()
            self._enter(self.links[DOWN], flow.down, data)

    def _open_flow(self, client: tuple) -> _Flow | None:
        if len(self.flows) >= self.max_flows:
            self.flows_refused += 1
            return None
        sock = socket.socket(self._target_family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        large_socket_buffers(sock)
        try:
            sock.connect(self._target_addr)
        except OSError:
            sock.close()
            self.flows_refused += 1
            return None
        self.flows_opened += 1
        flow = _Flow(self.flows_opened, client, sock, self._loop.time(), self.seed)
        self.flows[client] = flow
        self._loop.add_reader(sock, self._read_flow, flow)
        return flow

    def _close_flow(self, flow: _Flow) -> None:
        flow.closed = True
        self.flows.pop(flow.client, None)
        for half in (flow.up, flow.down):
            if half.hold_timer is not None:
                half.hold_timer.cancel()
            self._queued -= len(half.held)
            half.held.clear()
        with contextlib.suppress(Exception):
            self._loop.remove_reader(flow.sock)
        flow.sock.close()

    def _sweep(self) -> None:
        now = self._loop.time()
        for flow in list(self.flows.values()):
            if now - flow.last_active > self.flow_idle_seconds:
                self._close_flow(flow)
        self._sweeper = self._loop.call_later(self.flow_idle_seconds / 2, self._sweep)

    # -- the impairment pipeline

    def _enter(self, link: _Link, half: _FlowDirection, data: bytes) -> None:
        imp = link.impairment
        stats = link.stats
        stats.received += 1
        # Always four draws per datagram, so the n-th datagram's fate does not
        # depend on what happened to the ones before it.
        rng = half.rng
        u_loss, u_dup, u_reorder, u_jitter = rng.random(), rng.random(), rng.random(), rng.random()
        if u_loss < imp.loss:
            stats.dropped += 1
            return
        copies = 1
        if u_dup < imp.duplicate:
            copies = 2
            stats.duplicated += 1
        now = self._loop.time()
        delay = imp.delay_ms + (2 * u_jitter - 1) * imp.jitter_ms if imp.jitter_ms else imp.delay_ms
        delay = max(0.0, delay) / 1000
        for copy in range(copies):
            if self._queued >= self.max_queued_datagrams:
                stats.dropped_queue += 1
                continue
            on_link = now
            if imp.rate_kbps is not None:
                backlog = link.backlog
                while backlog and backlog[0] <= now:
                    backlog.popleft()
                if len(backlog) >= imp.queue_datagrams:
                    stats.dropped_queue += 1  # tail drop, as a full router queue
                    continue
                link.link_free_at = max(now, link.link_free_at) + len(data) * 8 / (imp.rate_kbps * 1000)
                backlog.append(link.link_free_at)
                on_link = link.link_free_at
            # Jitter never lets a datagram overtake the one in front of it.
            departure = max(on_link + delay, link.last_departure)
            link.last_departure = departure
            if departure > now:
                stats.delayed += 1
            hold = copy == 0 and u_reorder < imp.reorder
            link.queue.append((departure, data, half, hold))
            self._queued += 1
        self._arm(link)

    def _arm(self, link: _Link) -> None:
        if link.timer is None and link.queue:
            link.timer = self._loop.call_at(link.queue[0][0], self._depart, link)

    def _depart(self, link: _Link) -> None:
        link.timer = None
        if self._loop is None:
            return
        now = self._loop.time()
        queue = link.queue
        while queue and queue[0][0] <= now:
            _, data, half, hold = queue.popleft()
            self._queued -= 1
            if half.flow.closed:
                continue
            if hold:
                half.held.append(data)
                self._queued += 1
                if half.hold_timer is None:
                    hold_seconds = link.impairment.reorder_hold_ms / 1000
                    half.hold_timer = self._loop.call_at(now + hold_seconds, self._release, link, half, False)
                continue
            self._send(link, half, data)
            if half.held:
                self._release(link, half, True)
        self._arm(link)

    def _release(self, link: _Link, half: _FlowDirection, overtaken: bool) -> None:
        if half.hold_timer is not None:
            half.hold_timer.cancel()
            half.hold_timer = None
        held, half.held = half.held, []
        self._queued -= len(held)
        if half.flow.closed:
            return
        for data in held:
            if overtaken:
                link.stats.reordered += 1
            self._send(link, half, data)

    def _send(self, link: _Link, half: _FlowDirection, data: bytes) -> None:
        flow = half.flow
        try:
            if half.direction == UP:
                flow.sock.send(data)
            else:
                self._sock.sendto(data, flow.client)
        except (BlockingIOError, InterruptedError):
            link.stats.dropped_queue += 1
            return
        except OSError:  # ECONNREFUSED from an earlier datagram, unreachable client
            link.stats.dropped_queue += 1
            return
        link.stats.forwarded += 1
        link.stats.bytes_forwarded += len(data)


def large_socket_buffers(sock: socket.socket) -> None:
    # A burst at line rate must not be lost in the kernel before the relay
    # decides its fate: the loss the test sees is the loss it configured.
    # As root, past net.core.rmem_max too.
    for forced, option in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, forced, SOCKET_BUFFER_BYTES)
        except OSError:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)


class TcpDelayRelay:
    """TCP relay with a one-way delay, loss and an optional rate per
    direction, for RTMP between nodes. Each chunk read is written to the
    other side at its arrival time plus the delay (after its serialisation at
    `rate_kbps`); a direction stops reading while more than `max_queued_bytes`
    wait, so a fast sender is slowed, not buffered without end.

    TCP repairs loss, so what a lossy path does to a TCP stream is delay:
    a chunk that lost one of its segments (each MSS_BYTES of it is lost with
    probability `loss`, seeded as the UDP relay's decisions are) arrives one
    retransmission later, `retransmit_ms` (default: the larger of the path's
    round trip, the fast retransmit, and Linux's minimum RTO), and holds up
    everything behind it (head-of-line blocking). Duplication, reordering
    and jitter do not apply: the kernel below hides them."""

    def __init__(
        self,
        listen: tuple[str, int],
        target: tuple[str, int],
        *,
        up: Impairment | None = None,
        down: Impairment | None = None,
        max_queued_bytes: int = TCP_MAX_QUEUED_BYTES,
        seed: int | None = None,
        retransmit_ms: float | None = None,
    ) -> None:
        for imp in (up, down):
            if imp and (imp.reorder or imp.duplicate or imp.jitter_ms):
                raise ValueError("TCP relay: only delay_ms, loss and rate_kbps apply")
        if retransmit_ms is not None and retransmit_ms < 0:
            raise ValueError("retransmit_ms must not be negative")
        self.listen = listen
        self.target = target
        self.impairments = {UP: up or Impairment(), DOWN: down or Impairment()}
        self.max_queued_bytes = max_queued_bytes
        self.seed = seed
        round_trip_ms = self.impairments[UP].delay_ms + self.impairments[DOWN].delay_ms
        self.retransmit_ms = max(round_trip_ms, TCP_MIN_RTO_MS) if retransmit_ms is None else retransmit_ms
        self.connections = 0
        self.bytes_forwarded = {UP: 0, DOWN: 0}
        self.retransmits = {UP: 0, DOWN: 0}  # chunks held back a retransmission
        self.address: tuple[str, int] | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> TcpDelayRelay:
        self._server = await asyncio.start_server(self._accept, self.listen[0], self.listen[1])
        self.address = self._server.sockets[0].getsockname()[:2]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> TcpDelayRelay:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                writer.close()
                return
            self.connections += 1
            pumps = [
                asyncio.ensure_future(self._pump(reader, up_writer, UP)),
                asyncio.ensure_future(self._pump(up_reader, writer, DOWN)),
            ]
            try:
                # Both directions to their end (a half-close is relayed as one);
                # a reset on either side ends both.
                await asyncio.gather(*pumps)
            except OSError:
                pass
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
                for w in (writer, up_writer):
                    w.close()
        finally:
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str) -> None:
        loop = asyncio.get_running_loop()
        rng = random.Random(f"{self.seed}/{self.connections}/{direction}") if self.seed is not None else random.Random()
        queue: collections.deque[tuple[float, bytes]] = collections.deque()
        state = {"bytes": 0, "eof": False, "link_free_at": 0.0}
        wake_reader = asyncio.Event()
        wake_writer = asyncio.Event()

        async def read() -> None:
            while True:
                while state["bytes"] > self.max_queued_bytes:
                    wake_reader.clear()
                    await wake_reader.wait()
                data = await reader.read(TCP_READ_BYTES)
                now = loop.time()
                if not data:
                    state["eof"] = True
                    eof_at = now + self.impairments[direction].delay_ms / 1000
                    queue.append((max(eof_at, queue[-1][0] if queue else 0.0), b""))
                    wake_writer.set()
                    return
                imp = self.impairments[direction]
                on_link = now
                if imp.rate_kbps is not None:
                    state["link_free_at"] = max(now, state["link_free_at"]) + len(data) * 8 / (imp.rate_kbps * 1000)
                    on_link = state["link_free_at"]
                departure = on_link + imp.delay_ms / 1000
                segments = -(-len(data) // MSS_BYTES)  # rounded up
                if imp.loss and rng.random() >= (1 - imp.loss) ** segments:  # one of them lost
                    departure += self.retransmit_ms / 1000
                    self.retransmits[direction] += 1
                departure = max(departure, queue[-1][0] if queue else 0.0)
                queue.append((departure, data))
                state["bytes"] += len(data)
                wake_writer.set()

        async def write() -> None:
            while True:
                if not queue:
                    wake_writer.clear()
                    await wake_writer.wait()
                    continue
                departure, data = queue[0]
                if departure > loop.time():
                    due = loop.create_future()
                    handle = loop.call_at(departure, lambda f=due: f.done() or f.set_result(None))
                    try:
                        await due
                    finally:
                        handle.cancel()
                queue.popleft()
                if not data:
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
                state["bytes"] -= len(data)
                self.bytes_forwarded[direction] += len(data)
                wake_reader.set()

        reading = asyncio.ensure_future(read())
        try:
            await write()
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)


class ThreadedRelay:
    """A relay (`ImpairmentRelay` or `TcpDelayRelay`) on an event loop in a
    thread of its own, for synchronous tests. `netns`, when given, is the
    network namespace the thread enters first, so the relay's sockets live
    there (see tests/netns.py)."""

    def __init__(self, factory: Callable[[], ImpairmentRelay | TcpDelayRelay], netns: str | None = None) -> None:
        self._factory = factory
        self._netns = netns
        self.relay: ImpairmentRelay | TcpDelayRelay | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return self.relay.address

    def snapshot(self) -> dict:
        return self.call(self.relay.snapshot)

    def call(self, fn: Callable, *args):
        """Run `fn(*args)` on the relay's loop and return its result."""
        future: asyncio.Future = asyncio.run_coroutine_threadsafe(_call(fn, *args), self._loop)
        return future.result(10)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="impairment-relay", daemon=True)
        self._thread.start()
        self._started.wait(10)
        if self._error is not None:
            raise self._error
        if self.relay is None or self.relay.address is None:
            raise RuntimeError("impairment relay did not start within 10 s")

    def stop(self) -> None:
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        try:
            if self._netns is not None:
                from tests.netns import enter_netns

                enter_netns(self._netns)
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start() in the caller's thread
            self._error = exc
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        relay = self._factory()
        await relay.start()
        self.relay = relay
        self._started.set()
        try:
            await self._stopping.wait()
        finally:
            await relay.stop()


async def _call(fn: Callable, *args):
    return fn(*args)


def ThreadedImpairmentRelay(listen, target, *, netns: str | None = None, **kwargs) -> ThreadedRelay:  # noqa: N802
    """`ImpairmentRelay(listen, target, **kwargs)` in a thread (see ThreadedRelay)."""
    return ThreadedRelay(lambda: ImpairmentRelay(listen, target, **kwargs), netns=netns)


def ThreadedTcpDelayRelay(listen, target, *, netns: str | None = None, **kwargs) -> ThreadedRelay:  # noqa: N802
    """`TcpDelayRelay(listen, target, **kwargs)` in a thread (see ThreadedRelay)."""
    return ThreadedRelay(lambda: TcpDelayRelay(listen, target, **kwargs), netns=netns)


# -- command line

IMPAIRMENT_OPTIONS = {
    "loss": float,
    "delay-ms": float,
    "jitter-ms": float,
    "reorder": float,
    "duplicate": float,
    "rate-kbps": float,
    "queue-datagrams": int,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.netimpair",
        description="UDP (or TCP) impairment relay: loss, delay, jitter, reordering, duplication, rate.",
        epilog="--X sets both directions; --up-X (client to server) and --down-X (server to client) override it.",
    )
    parser.add_argument("--listen", required=True, type=parse_address, help="HOST:PORT the clients send to")
    parser.add_argument("--to", required=True, type=parse_address, help="HOST:PORT of the server")
    parser.add_argument("--tcp", action="store_true", help="relay TCP (delay, rate, and loss as retransmission delay)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random decisions (reproducible runs)")
    parser.add_argument("--max-queued", type=int, default=MAX_QUEUED_DATAGRAMS, help="datagrams held at most")
    parser.add_argument("--max-flows", type=int, default=MAX_FLOWS, help="client addresses relayed at most")
    parser.add_argument("--stats-interval", type=float, default=0, help="print counters every S seconds (stderr)")
    for option, kind in IMPAIRMENT_OPTIONS.items():
        parser.add_argument(f"--{option}", type=kind, default=None)
        parser.add_argument(f"--up-{option}", type=kind, default=None, help=argparse.SUPPRESS)
        parser.add_argument(f"--down-{option}", type=kind, default=None, help=argparse.SUPPRESS)
    return parser


def impairments_from_args(args: argparse.Namespace) -> dict[str, Impairment]:
    result = {}
    for direction in DIRECTIONS:
        fields = {}
        for option in IMPAIRMENT_OPTIONS:
            attr = option.replace("-", "_")
            value = getattr(args, f"{direction}_{attr}")
            if value is None:
                value = getattr(args, attr)
            if value is not None:
                fields[attr] = value
        result[direction] = Impairment(**fields)
    return result


async def _serve(args: argparse.Namespace) -> dict:
    impairments = impairments_from_args(args)
    if args.tcp:
        relay = TcpDelayRelay(args.listen, args.to, up=impairments[UP], down=impairments[DOWN], seed=args.seed)
    else:
        relay = ImpairmentRelay(
            args.listen,
            args.to,
            up=impairments[UP],
            down=impairments[DOWN],
            seed=args.seed,
            max_queued_datagrams=args.max_queued,
            max_flows=args.max_flows,
        )
    await relay.start()
    host, port = relay.address
    print(f"listening on {host}:{port}", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)

    def counters() -> dict:
        if args.tcp:
            return {"connections": relay.connections, "bytes_forwarded": relay.bytes_forwarded,
                    "retransmits": relay.retransmits}  # fmt: skip
        return relay.snapshot()

    try:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), args.stats_interval or None)
            if stopping.is_set():
                break
            print(json.dumps(counters()), file=sys.stderr, flush=True)
    finally:
        await relay.stop()
    return counters()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        impairments_from_args(args)
    except ValueError as exc:
        print(f"netimpair: {exc}", file=sys.stderr)
        return 2
    final = asyncio.run(_serve(args))
    print(json.dumps(final), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
