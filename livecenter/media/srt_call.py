"""An SRT call on the event loop: asyncio around the sans-IO caller
(srt/caller.py), on a UDP socket of its own connected to the listener.

    call = SrtCall("center.example", 1105, stream_id="#!::…", latency_ms=1000)
    accepted = await call.connect()       # SrtCallFailed(reason, detail) if not
    call.send(payload); call.flush()      # payloads of up to 1456 bytes
    reason = await call.closed            # the connection ended: why
    call.close()

Like the node's SRT port (srt_server.UdpEndpoint, which it reads with) it
only feeds datagrams and the clock in, sends what comes out and runs the
core's timers when they are due. Its socket is connected, so the kernel
passes it the listener's datagrams only, and reports a listener that is
gone (ICMP port unreachable) as a refused connection: the call, or the
connection, ends then rather than at a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from .srt.caller import CONNECT_TIMEOUT_US, SrtCaller
from .srt.events import SrtCallAccepted, SrtCallRejected, SrtConnectionClosed
from .srt.listener import DEFAULT_LATENCY_MS
from .srt.packets import SrtRejectReason
from .srt_server import SrtTimer, UdpEndpoint

log = logging.getLogger(__name__)


class SrtCallFailed(Exception):
    """The call did not connect: `reason` is SRT's code (SrtRejectReason, or
    the listener's access-control code such as 1403), `detail` in words."""

    def __init__(self, reason: int, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class SrtCall:
    """One SRT call from this node to a listener, and its connection."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        stream_id: str | None = None,
        latency_ms: int = DEFAULT_LATENCY_MS,
        passphrase: str | None = None,
        connect_timeout_seconds: float = CONNECT_TIMEOUT_US / 1_000_000,
        local_address: tuple[str, int] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        # The address to call from (a test choosing its source address, as
        # srt-live-transmit's `adapter=`); None: the kernel's choice.
        self.local_address = local_address
        self.stream_id = stream_id
        self.latency_ms = latency_ms
        self.passphrase = passphrase
        self.connect_timeout_seconds = connect_timeout_seconds
        self.caller: SrtCaller | None = None
        self.transport: UdpEndpoint | None = None
        self._accepted: asyncio.Future | None = None
        self.closed: asyncio.Future | None = None  # the reason the connection ended, once it has
        self._timer = SrtTimer(self._on_tick)

    async def connect(self) -> SrtCallAccepted:
        loop = asyncio.get_running_loop()
        self._accepted = loop.create_future()
        self.closed = loop.create_future()
        infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if self.local_address is not None:
                sock.bind(self.local_address)
            sock.connect(address)
        except OSError:
            sock.close()
            raise
        self.caller = SrtCaller(
            address,
            time.monotonic(),
            stream_id=self.stream_id,
            latency_ms=self.latency_ms,
            passphrase=self.passphrase,
            connect_timeout_us=round(self.connect_timeout_seconds * 1_000_000),
        )
        UdpEndpoint(loop, sock, self).start()
        self._process()
        try:
            return await self._accepted
        except BaseException:
            self.close()
            raise

    @property
    def packets_send_dropped(self) -> int:
        """Packets the connection gave up on (not acknowledged in time)."""
        connection = self.caller.connection if self.caller is not None else None
        return connection.stats.packets_send_dropped if connection is not None else 0

    def send(self, payload: bytes) -> None:
        """Queue one payload on the open connection; `flush` sends it."""
        self.caller.send(payload, time.monotonic())

    def flush(self) -> None:
        self._process()

    def close(self) -> None:
        """Hang up (a SHUTDOWN to the listener) and close the socket."""
        if self.caller is not None and not self.caller.ended:
            self.caller.close(time.monotonic())
            self._send_datagrams()
        self._timer.cancel()
        if self.transport is not None:
            self.transport.close()
        self._end(SrtRejectReason.CLOSE, "closed by us")

    # --- the UdpEndpoint's protocol --------------------------------------------

    def connection_made(self, transport: UdpEndpoint) -> None:
        self.transport = transport

    def datagrams_received(self, datagrams: list[tuple[bytes, object]]) -> None:
        now = time.monotonic()
        receive = self.caller.receive_datagram
        for data, _ in datagrams:
            receive(data, now)
        self._process()

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError):
            # ICMP port unreachable: nothing listens there (any more).
            self._end(SrtRejectReason.PEER, f"srt://{self.host}:{self.port} refused: nothing listens there")
        else:
            log.debug("srt call to %s:%s: %s", self.host, self.port, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()

    # --- the core's output -----------------------------------------------------

    def _process(self) -> None:
        for event in self.caller.events():
            if type(event) is SrtCallAccepted:
                if not self._accepted.done():
                    self._accepted.set_result(event)
            elif type(event) is SrtCallRejected:
                self._end(event.reason, event.detail)
            elif type(event) is SrtConnectionClosed:
                self._end(SrtRejectReason.CLOSE, event.reason)
        self._send_datagrams()
        self._schedule()

    def _end(self, reason: int, detail: str) -> None:
        if self._accepted is None:
            return  # never called
        if not self._accepted.done():
            self._accepted.set_exception(SrtCallFailed(reason, detail))
        if not self.closed.done():
            self.closed.set_result(detail)

    def _send_datagrams(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            peer = self.caller.peer
            for data in self.caller.datagrams_to_send():
                self.transport.sendto(data, peer)

    def _schedule(self) -> None:
        if self.transport is None or self.transport.is_closing():
            self._timer.cancel()
        else:
            self._timer.set(self.caller.next_timer())

    def _on_tick(self) -> None:
        self.caller.handle_timer(time.monotonic())
        self._process()
