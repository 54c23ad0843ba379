"""The SRT listener of one UDP port, sans-IO: handshakes and the demultiplexing
of datagrams to connections (draft-sharabayko-srt 4.3.1, caller-listener).

    listener = SrtListener(latency_ms=120)
    listener.receive_datagram(data, addr, now)
    for event in listener.events():
        SrtConnectionRequested -> listener.accept(event, now, passphrase=...)
                                  or listener.reject(event, reason, now)
        SrtDataReceived, SrtPacketsDropped, SrtConnectionClosed: per socket_id
    listener.send(socket_id, payload, now)  # to a caller playing from us
    for data, addr in listener.datagrams_to_send(): transport.sendto(data, addr)
    timer = listener.next_timer()  # then listener.handle_timer(now)

An asyncio adapter only feeds datagrams, the clock and timers in and sends
what comes out. The INDUCTION answer costs no state: its SYN cookie is a
keyed hash of the caller's address and port and of the minute, checked
when the CONCLUSION comes back. Only a CONCLUSION with a good cookie and
nothing the protocol refuses becomes a pending request for the caller to
decide on, and there are at most MAX_PENDING_HANDSHAKES of them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from .connection import MAX_REORDER_PACKETS, SrtConnection
from .crypto import SrtCryptoContext, SrtDecryptionFailed, SrtKeyMaterial, parse_key_material
from .errors import SrtProtocolError, SrtUsageError
from .events import Address, SrtConnectionRejected, SrtConnectionRequested, SrtEvent
from .packets import (
    EXTENSION_FLAG_HSREQ,
    EXTENSION_FLAG_KMREQ,
    MAX_DATAGRAM_BYTES,
    MAX_REJECT_REASON,
    REJECTION_BASE,
    SRT_MAGIC_CODE,
    SrtFlag,
    SrtHandshake,
    SrtHandshakeExtensionType,
    SrtHandshakeType,
    SrtHsExtension,
    SrtRejectReason,
    parse_packet,
    peer_ip_field,
)

# The SRT version we announce in HSRSP: the behaviour of libsrt 1.5.
SRT_VERSION = 0x010500
# libsrt refuses HSv5 peers older than 1.3 (the first with HSv5).
MIN_PEER_SRT_VERSION = 0x010300
DEFAULT_LATENCY_MS = 120
# HSREQ/HSRSP carry the delays in 16 bits of milliseconds.
MAX_LATENCY_MS = 0xFFFF
# Callers waiting for accept/reject. Each one is a held CONCLUSION; past
# this a new one is refused with BACKLOG (libsrt's listen backlog).
MAX_PENDING_HANDSHAKES = 64
# A pending request the caller did not answer is forgotten after this:
# libsrt's caller gives up connecting after 3 s (SRTO_CONNTIMEO).
PENDING_HANDSHAKE_TIMEOUT_US = 3_000_000
# Established connections on the port; past this a caller is refused with
# RESOURCE.
MAX_CONNECTIONS = 256
# Handshake packets from one IP address in one second. A libsrt caller
# sends an INDUCTION and a CONCLUSION, repeated every 250 ms while it waits:
# about 8 a second. More is a flood or a reconnect loop.
MAX_HANDSHAKES_PER_SOURCE_PER_SECOND = 20
# Addresses counted in one second; past this, handshakes from new ones wait
# for the next second, so the counting itself is bounded under a spoofed
# flood.
MAX_RATE_TRACKED_SOURCES = 4096
RATE_WINDOW_US = 1_000_000
# The cookie changes every minute; one from the minute before still passes.
COOKIE_PERIOD_US = 60_000_000
# Our flow window: the receive window of our connections.
FLOW_WINDOW_PACKETS = MAX_REORDER_PACKETS
# The flags of our HSRSP: TSBPD both ways, too-late drop, periodic NAK, and
# the two legacy flags every SRT peer sets (3.2.1.1.1). Too-late drop only
# if the caller's HSREQ has it too: `accept`.
HSRSP_FLAGS = (
    SrtFlag.TSBPDSND | SrtFlag.TSBPDRCV | SrtFlag.CRYPT | SrtFlag.TLPKTDROP | SrtFlag.PERIODICNAK | SrtFlag.REXMITFLG
)


@dataclass(slots=True)
class SrtListenerStats:
    """What the listener dropped or refused, since it started."""

    datagrams_received: int = 0
    datagrams_undecodable: int = 0
    datagrams_unknown_socket: int = 0  # no connection with that socket ID
    datagrams_wrong_peer: int = 0  # a connection's socket ID from another address
    datagrams_not_handshake: int = 0  # for socket 0 but not a handshake
    inductions_answered: int = 0
    handshakes_rate_limited: int = 0
    handshakes_bad_cookie: int = 0
    handshakes_unexpected: int = 0  # neither INDUCTION nor CONCLUSION
    handshakes_repeated: int = 0  # a CONCLUSION again, answered again
    handshakes_rejected: int = 0
    handshakes_expired: int = 0  # pending past PENDING_HANDSHAKE_TIMEOUT_US


@dataclass(slots=True)
class _Pending:
    request_id: int
    peer: Address
    handshake: SrtHandshake
    key_material: SrtKeyMaterial | None
    arrived_us: int


def _us(now: float) -> int:
    return round(now * 1_000_000)


class SrtListener:
    """Every SRT conversation on one UDP port."""

    def __init__(
        self,
        *,
        latency_ms: int = DEFAULT_LATENCY_MS,
        secret: bytes | None = None,
        max_connections: int = MAX_CONNECTIONS,
        max_pending_handshakes: int = MAX_PENDING_HANDSHAKES,
    ) -> None:
        self.latency_ms = latency_ms
        self.max_connections = max_connections
        self.max_pending_handshakes = max_pending_handshakes
        self.stats = SrtListenerStats()
        self.connections: dict[int, SrtConnection] = {}
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self._socket_id = self._new_socket_id()
        self._peers: dict[int, Address] = {}  # socket ID -> peer address
        self._answers: dict[tuple[Address, int], tuple[int, bytes]] = {}  # -> (socket ID, CONCLUSION answer)
        self._pending: dict[tuple[Address, int], _Pending] = {}
        self._pending_by_id: dict[int, tuple[Address, int]] = {}
        self._timers: dict[int, float | None] = {}  # socket ID -> its next_timer()
        # The earliest of _timers, unless _timers_dirty: next_timer() is asked
        # after every batch of datagrams, and a min() over every connection
        # each time would cost more than the rest of the batch.
        self._earliest_timer: float | None = None
        self._timers_dirty = False
        self._next_request_id = 1
        self._rate_window_us = 0
        self._rate_counts: dict[str, int] = {}
        self._events: list[SrtEvent] = []
        self._out: list[tuple[bytes, Address]] = []

    # -- the API -----------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        """One datagram from `addr`; nothing a peer sends raises."""
        self.stats.datagrams_received += 1
        try:
            packet = parse_packet(data)
        except SrtProtocolError:
            self.stats.datagrams_undecodable += 1
            return
        if packet.dest_socket_id == 0:
            if type(packet) is not SrtHandshake:
                self.stats.datagrams_not_handshake += 1
                return
            self._on_handshake(packet, addr, _us(now))
            return
        connection = self.connections.get(packet.dest_socket_id)
        if connection is None:
            self.stats.datagrams_unknown_socket += 1
            return
        if self._peers[connection.socket_id] != addr:
            self.stats.datagrams_wrong_peer += 1
            return
        connection.receive_packet(packet, now)
        self._collect(connection)

    def events(self) -> list[SrtEvent]:
        events, self._events = self._events, []
        return events

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        out, self._out = self._out, []
        return out

    def next_timer(self) -> float | None:
        """When `handle_timer` has something to do, in the clock of `now`."""
        if self._timers_dirty:
            self._earliest_timer = min((t for t in self._timers.values() if t is not None), default=None)
            self._timers_dirty = False
        earliest = self._earliest_timer
        if self._pending:
            oldest = next(iter(self._pending.values())).arrived_us  # they are kept in arrival order
            expiry = (oldest + PENDING_HANDSHAKE_TIMEOUT_US) / 1_000_000
            earliest = expiry if earliest is None else min(earliest, expiry)
        return earliest

    def handle_timer(self, now: float) -> None:
        now_us = _us(now)
        for key, pending in list(self._pending.items()):
            if now_us - pending.arrived_us < PENDING_HANDSHAKE_TIMEOUT_US:
                break
            self._forget_pending(key)
            self.stats.handshakes_expired += 1
        due = [socket_id for socket_id, timer in self._timers.items() if timer is not None and timer <= now]
        for socket_id in due:
            connection = self.connections[socket_id]
            connection.handle_timer(now)
            self._collect(connection)

    def accept(
        self,
        request: SrtConnectionRequested,
        now: float,
        *,
        passphrase: str | None = None,
        latency_ms: int | None = None,
    ) -> SrtConnection | None:
        """Let the caller in, with our receive latency `latency_ms` (the
        listener's default if None; the larger of ours and the caller's
        wins). With a passphrase the caller must have sent key material
        that it opens; without one it must have sent none. Otherwise the
        caller is refused (BADSECRET or UNSECURE, an SrtConnectionRejected
        event says so) and this returns None, as it does for a request that
        expired or was answered already."""
        key = self._pending_by_id.get(request.request_id)
        if key is None:
            return None
        pending = self._forget_pending(key)
        handshake = pending.handshake
        crypto = None
        if (passphrase is None) != (pending.key_material is None):
            detail = "caller sent no passphrase" if passphrase else "caller sent a passphrase we have none for"
            self._refuse(pending, SrtRejectReason.UNSECURE, detail)
            return None
        if passphrase is not None:
            crypto = SrtCryptoContext(passphrase)
            try:
                crypto.install(pending.key_material)
            except SrtDecryptionFailed:
                self._refuse(pending, SrtRejectReason.BADSECRET, "wrong passphrase")
                return None
        if len(self.connections) >= self.max_connections:
            self._refuse(pending, SrtRejectReason.RESOURCE, "too many connections")
            return None
        ours = self.latency_ms if latency_ms is None else latency_ms
        hs = handshake.hs
        receive_latency = min(max(ours, hs.sender_delay_ms), MAX_LATENCY_MS)
        send_latency = min(max(ours, hs.receiver_delay_ms), MAX_LATENCY_MS)
        # 4.6: too-late drop only if the caller wants it (ffmpeg's
        # tlpktdrop=0 says it does not). A libsrt sender drops only if our
        # HSRSP says we do; libsrt's own receiver would go by its
        # SRTO_TLPKTDROP alone, and we have no such setting: the caller's
        # choice is what our receiving side does. (Sending, we give up on
        # packets too old to play either way: SrtConnection._drop_old_sent.)
        too_late_drop = bool(hs.flags & SrtFlag.TLPKTDROP)
        flags = HSRSP_FLAGS if too_late_drop else HSRSP_FLAGS & ~SrtFlag.TLPKTDROP
        socket_id = self._new_socket_id()
        answer = bytes(
            SrtHandshake(
                version=5,
                handshake_type=SrtHandshakeType.CONCLUSION,
                socket_id=socket_id,
                syn_cookie=handshake.syn_cookie,
                encryption_field=pending.key_material.key_bytes // 8 if pending.key_material else 0,
                extension_field=EXTENSION_FLAG_HSREQ | (EXTENSION_FLAG_KMREQ if pending.key_material else 0),
                initial_seq=handshake.initial_seq,
                mtu_bytes=min(handshake.mtu_bytes, MAX_DATAGRAM_BYTES),
                flow_window_packets=min(handshake.flow_window_packets, FLOW_WINDOW_PACKETS),
                peer_ip=_peer_ip(pending.peer),
                hs=SrtHsExtension(SRT_VERSION, flags, receive_latency, send_latency),
                hs_command=SrtHandshakeExtensionType.HSRSP,
                # libsrt answers a KMREQ it could open with the same bytes.
                km=handshake.km if pending.key_material else None,
                km_command=SrtHandshakeExtensionType.KMRSP,
                # The caller sets its time base for our packets from this:
                # our clock started when its CONCLUSION arrived.
                timestamp=max(_us(now) - pending.arrived_us, 0),
                dest_socket_id=handshake.socket_id,
            )
        )
        connection = SrtConnection(
            socket_id=socket_id,
            peer_socket_id=handshake.socket_id,
            initial_seq=handshake.initial_seq,
            latency_ms=receive_latency,
            peer_start_timestamp=handshake.timestamp,
            now=pending.arrived_us / 1_000_000,
            crypto=crypto,
            window_packets=FLOW_WINDOW_PACKETS,
            send_latency_ms=send_latency,
            too_late_drop=too_late_drop,
        )
        self.connections[socket_id] = connection
        self._peers[socket_id] = pending.peer
        self._answers[(pending.peer, handshake.socket_id)] = (socket_id, answer)
        self._out.append((answer, pending.peer))
        self._collect(connection)
        return connection

    def reject(self, request: SrtConnectionRequested, reason: int, now: float) -> None:
        """Refuse the caller with `reason` (an SrtRejectReason, or a code of
        libsrt's access-control range such as 1403)."""
        if not 0 <= reason <= MAX_REJECT_REASON:
            raise SrtUsageError(f"reject reason {reason} is outside 0-{MAX_REJECT_REASON}")
        key = self._pending_by_id.get(request.request_id)
        if key is None:
            return
        pending = self._forget_pending(key)
        self._send_rejection(pending.handshake, pending.peer, reason)

    def send(self, socket_id: int, payload: bytes, now: float) -> int:
        """Send one live-mode message (at most 1456 bytes: 7 TS packets) to
        the caller on `socket_id` (one playing from us); its sequence number.
        Its datagram, and any retransmission, come out of
        `datagrams_to_send`. Raises SrtUsageError for a connection that is
        not open (it closed: its SrtConnectionClosed says so) or a payload
        too large."""
        connection = self.connections.get(socket_id)
        if connection is None:
            raise SrtUsageError(f"send on socket {socket_id}, which is not an open connection")
        seq = connection.send(payload, now)
        self._collect(connection)
        return seq

    def close(self, socket_id: int, now: float) -> None:
        """Shut a connection down from our side and forget it."""
        connection = self.connections.get(socket_id)
        if connection is not None:
            connection.close(now)
            self._collect(connection)

    # -- handshakes --------------------------------------------------------

    def _on_handshake(self, handshake: SrtHandshake, addr: Address, now_us: int) -> None:
        if not self._within_rate(addr, now_us):
            self.stats.handshakes_rate_limited += 1
            return
        if handshake.handshake_type == SrtHandshakeType.INDUCTION:
            self._answer_induction(handshake, addr, now_us)
        elif handshake.handshake_type == SrtHandshakeType.CONCLUSION:
            self._on_conclusion(handshake, addr, now_us)
        else:
            self.stats.handshakes_unexpected += 1

    def _answer_induction(self, handshake: SrtHandshake, addr: Address, now_us: int) -> None:
        """4.3.1.1: the same answer to every caller, SRT or UDT, plus a cookie."""
        answer = SrtHandshake(
            version=5,
            handshake_type=SrtHandshakeType.INDUCTION,
            socket_id=self._socket_id,
            syn_cookie=self._cookie(addr, now_us // COOKIE_PERIOD_US),
            extension_field=SRT_MAGIC_CODE,
            initial_seq=handshake.initial_seq,
            mtu_bytes=handshake.mtu_bytes,
            flow_window_packets=handshake.flow_window_packets,
            peer_ip=_peer_ip(addr),
            dest_socket_id=handshake.socket_id,
        )
        self._out.append((bytes(answer), addr))
        self.stats.inductions_answered += 1

    def _on_conclusion(self, handshake: SrtHandshake, addr: Address, now_us: int) -> None:
        key = (addr, handshake.socket_id)
        answered = self._answers.get(key)
        if answered is not None:
            # Our answer was lost; the caller repeats its CONCLUSION.
            self.stats.handshakes_repeated += 1
            self._out.append((answered[1], addr))
            return
        if key in self._pending:
            self.stats.handshakes_repeated += 1
            return
        period = now_us // COOKIE_PERIOD_US
        if handshake.syn_cookie not in (self._cookie(addr, period), self._cookie(addr, period - 1)):
            # No answer: a forged source must not make us send anything.
            self.stats.handshakes_bad_cookie += 1
            return
        refusal = self._protocol_refusal(handshake)
        if refusal is not None:
            self._refuse_handshake(handshake, addr, *refusal)
            return
        key_material = None
        if handshake.km is not None:
            try:
                key_material = parse_key_material(handshake.km)
            except SrtProtocolError as error:
                self._refuse_handshake(handshake, addr, SrtRejectReason.ROGUE, error.reason)
                return
        if len(self._pending) >= self.max_pending_handshakes:
            self._refuse_handshake(handshake, addr, SrtRejectReason.BACKLOG, "too many pending handshakes")
            return
        if len(self.connections) >= self.max_connections:
            self._refuse_handshake(handshake, addr, SrtRejectReason.RESOURCE, "too many connections")
            return
        request_id = self._next_request_id
        self._next_request_id += 1
        self._pending[key] = _Pending(request_id, addr, handshake, key_material, now_us)
        self._pending_by_id[request_id] = key
        self._events.append(
            SrtConnectionRequested(
                request_id=request_id,
                peer=addr,
                peer_socket_id=handshake.socket_id,
                stream_id=handshake.stream_id,
                encrypted=key_material is not None,
                key_bytes=key_material.key_bytes if key_material else 0,
                peer_latency_ms=handshake.hs.sender_delay_ms,
                peer_srt_version=handshake.hs.srt_version,
            )
        )

    def _protocol_refusal(self, handshake: SrtHandshake) -> tuple[int, str] | None:
        """What in a CONCLUSION we cannot serve, as (reason, detail)."""
        if handshake.version != 5:
            return SrtRejectReason.VERSION, f"handshake version {handshake.version}, not 5"
        hs = handshake.hs
        if hs is None or handshake.hs_command != SrtHandshakeExtensionType.HSREQ:
            return SrtRejectReason.ROGUE, "no HSREQ extension"
        if hs.srt_version < MIN_PEER_SRT_VERSION:
            return SrtRejectReason.VERSION, f"SRT version {hs.srt_version:#08x} is older than 1.3.0"
        if hs.flags & SrtFlag.STREAM:
            return SrtRejectReason.MESSAGEAPI, "buffer (stream) mode; only live message mode is served"
        if handshake.congestion not in (None, "live"):
            return SrtRejectReason.CONGESTION, f"congestion control {handshake.congestion!r}, not live"
        if handshake.km is not None and handshake.km_command != SrtHandshakeExtensionType.KMREQ:
            return SrtRejectReason.ROGUE, "KMRSP in a request"
        for extension_type, _ in handshake.other_extensions:
            if extension_type == SrtHandshakeExtensionType.FILTER:
                return SrtRejectReason.FILTER, "packet filter (FEC) is not supported"
            if extension_type == SrtHandshakeExtensionType.GROUP:
                return SrtRejectReason.GROUP, "socket groups are not supported"
        return None

    def _refuse_handshake(self, handshake: SrtHandshake, addr: Address, reason: int, detail: str) -> None:
        self._send_rejection(handshake, addr, reason)
        self._events.append(SrtConnectionRejected(0, addr, handshake.stream_id, reason, detail))

    def _refuse(self, pending: _Pending, reason: int, detail: str) -> None:
        self._send_rejection(pending.handshake, pending.peer, reason)
        self._events.append(
            SrtConnectionRejected(pending.request_id, pending.peer, pending.handshake.stream_id, reason, detail)
        )

    def _send_rejection(self, handshake: SrtHandshake, addr: Address, reason: int) -> None:
        answer = SrtHandshake(
            version=5,
            handshake_type=REJECTION_BASE + reason,
            socket_id=self._socket_id,
            syn_cookie=handshake.syn_cookie,
            initial_seq=handshake.initial_seq,
            mtu_bytes=handshake.mtu_bytes,
            flow_window_packets=handshake.flow_window_packets,
            peer_ip=_peer_ip(addr),
            dest_socket_id=handshake.socket_id,
        )
        self._out.append((bytes(answer), addr))
        self.stats.handshakes_rejected += 1

    def _forget_pending(self, key: tuple[Address, int]) -> _Pending:
        pending = self._pending.pop(key)
        del self._pending_by_id[pending.request_id]
        return pending

    def _cookie(self, addr: Address, period: int) -> int:
        message = f"{addr[0]}|{addr[1]}|{period}".encode()
        return int.from_bytes(hmac.digest(self._secret, message, hashlib.sha256)[:4], "big")

    def _within_rate(self, addr: Address, now_us: int) -> bool:
        window = now_us // RATE_WINDOW_US
        if window != self._rate_window_us:
            self._rate_window_us = window
            self._rate_counts.clear()
        host = addr[0]
        count = self._rate_counts.get(host)
        if count is None:
            if len(self._rate_counts) >= MAX_RATE_TRACKED_SOURCES:
                return False
            count = 0
        if count >= MAX_HANDSHAKES_PER_SOURCE_PER_SECOND:
            return False
        self._rate_counts[host] = count + 1
        return True

    # -- connections -------------------------------------------------------

    def _collect(self, connection: SrtConnection) -> None:
        """Move a connection's output to ours; forget it once it is closed."""
        peer = self._peers[connection.socket_id]
        self._out.extend((data, peer) for data in connection.datagrams_to_send())
        self._events.extend(connection.events())
        socket_id = connection.socket_id
        old = self._timers.get(socket_id)
        if connection.closed:
            del self.connections[socket_id]
            del self._peers[socket_id]
            del self._timers[socket_id]
            self._answers.pop((peer, connection.peer_socket_id), None)
            new = None
        else:
            # Kept per connection so that a datagram costs one connection's
            # timer, not all of them.
            new = self._timers[socket_id] = connection.next_timer()
        if new != old and not self._timers_dirty:
            if new is not None and (self._earliest_timer is None or new < self._earliest_timer):
                self._earliest_timer = new
            elif old is not None and old == self._earliest_timer:
                self._timers_dirty = True  # the earliest moved later or went: found again when asked

    def _new_socket_id(self) -> int:
        while True:
            socket_id = secrets.randbelow(0x7FFF_FFFF) + 1
            if socket_id not in self.connections:
                return socket_id


def _peer_ip(addr: Address) -> bytes:
    try:
        return peer_ip_field(addr[0])
    except ValueError:
        return b"\x00" * 16
