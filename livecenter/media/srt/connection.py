"""One SRT connection in live mode, sans-IO: it receives (a caller
publishing to us) and sends (a caller playing from us) like libsrt's
sockets, both at once if the peer wants.

    conn.receive_datagram(data, now)      # or receive_packet(parsed, now)
    for event in conn.events(): ...       # SrtDataReceived at TSBPD time
    conn.send(payload, now)               # up to 1456 bytes: 7 TS packets
    for datagram in conn.datagrams_to_send(): transport.sendto(datagram, peer)
    timer = conn.next_timer()             # call handle_timer(now) then

`now` is a float in seconds from any monotonic clock (the event loop's);
the connection never reads one itself. What it does (draft-sharabayko-srt
section 4): it keeps received packets in a bounded window by sequence
number, reports a gap at once with a NAK (twice, a few milliseconds
apart, so that one lost NAK costs no round trip) and again as soon as
the sender will resend it (NAK_RESEND_MARGIN_US), while it lasts,
acknowledges every 10 ms (full ACK, answered by ACKACK, which
gives the RTT) and every 64 packets in between (light ACK), releases each
payload at its timestamp plus the time base plus the latency (TSBPD), and
gives up on missing packets once a later one is due (too-late drop, when
both sides agreed on it in the handshake; without it, it waits for the
retransmission up to MAX_GAP_WAIT_US past that time). Lost packets and
the slots a drop request forgets are kept as ranges (ranges.py), so a gap
of a whole window or a drop request over it costs what one packet does.
Sending, it keeps each packet until the peer acknowledges it, answers a
full ACK with ACKACK, retransmits what a NAK names, and gives up on (and
tells the peer with a drop request) packets too old to be played.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, replace

from .crypto import SrtCryptoContext, SrtKmState, km_state_word, parse_key_material
from .errors import SrtProtocolError, SrtUsageError
from .events import SrtConnectionClosed, SrtDataReceived, SrtEvent, SrtPacketsDropped
from .packets import (
    HEADER_BYTES,
    MAX_DATAGRAM_BYTES,
    SrtAck,
    SrtAckAck,
    SrtDataPacket,
    SrtDropRequest,
    SrtHandshakeExtensionType,
    SrtKeepalive,
    SrtKeyFlag,
    SrtNak,
    SrtPacket,
    SrtShutdown,
    SrtUserControl,
    parse_packet,
)
from .ranges import SrtSeqRanges
from .sequence import SEQ_MASK, seq_inc, seq_offset, timestamp_offset_us

# How many packets past the oldest undelivered one we hold. A peer's
# packets beyond it are dropped and counted. 8192 is libsrt's default
# receive buffer (SRTO_RCVBUF / 1456-byte payloads, about 12 MB): 5 s of a
# 20 Mbit/s stream.
MAX_REORDER_PACKETS = 8192
# 4.8.1: the full-ACK period (libsrt's COMM_SYN_INTERVAL_US).
ACK_INTERVAL_US = 10_000
# 4.8.1: a light ACK after this many packets between two full ACKs.
LIGHT_ACK_PACKETS = 64
# 4.8.2 periodic NAK: a packet still missing is asked for again as soon as
# the sender will resend it: libsrt 1.5's sender (SRTO_RETRANSMITALGO 1,
# its live default) ignores a NAK for a packet it resent less than
# SRTT - 4 RTTVar ago, so SRTT - 4 RTTVar plus this margin after the last
# request. Not waiting for the resend to be overdue (a round trip) is what
# lets a second resend arrive in time when the first is lost: at 400 ms
# of latency over a 200 ms round trip, the overdue one comes after the
# play time. Not more often than every half round trip (an older sender
# resends on every NAK: about one duplicate per loss, as with libsrt's
# own receiver's (RTT + 4 RTTVar) / 2), nor than every 20 ms.
NAK_RESEND_MARGIN_US = 10_000
MIN_NAK_INTERVAL_US = 20_000
# The first report of a new gap goes again this much later: a lost NAK then
# costs 10 ms rather than a round trip. A libsrt 1.5 sender that got the
# first one ignores the second (it retransmitted within the RTT).
NAK_REPEAT_US = 10_000
# Without too-late drop, how long past its play time the first packet
# after a gap waits for the gap to fill before the gap is given up.
# Retransmission rounds are a round trip each: 2 s is several at the RTTs
# SRT is used over, and it bounds what a sender that never retransmits
# holds back.
MAX_GAP_WAIT_US = 2_000_000
# Keepalive after 1 s without sending (libsrt COMM_KEEPALIVE_PERIOD_US).
KEEPALIVE_INTERVAL_US = 1_000_000
# libsrt's SRTO_PEERIDLETIMEO default: a peer silent this long is gone.
PEER_IDLE_TIMEOUT_US = 5_000_000
# 4.10: RTT and RTTVar before the first ACKACK.
INITIAL_RTT_US = 100_000
INITIAL_RTTVAR_US = 50_000
# Full ACKs awaiting their ACKACK: a peer that never answers costs no more.
MAX_PENDING_ACKS = 1024
# Receive rates for the ACK are measured over windows this long.
RATE_WINDOW_US = 1_000_000
# A NAK is one datagram: this many loss-list words fit in it.
MAX_NAK_WORDS = (MAX_DATAGRAM_BYTES - 28 - HEADER_BYTES) // 4
# The largest payload of a live-mode data packet (libsrt's
# SRT_LIVE_MAX_PLSIZE): 1500 - 28 (IP and UDP) - 16 (SRT header).
MAX_PAYLOAD_BYTES = 1456
# Packets sent and not yet acknowledged that we keep for retransmission;
# past this the oldest goes (libsrt's SRTO_SNDBUF default is 8192 packets).
MAX_SEND_BUFFER_PACKETS = 8192
# 4.6 on the sending side: a packet older than the peer's latency plus this
# will not be played any more; it is dropped and the peer told. libsrt's
# SRT_TLPKTDROP_MINTHRESHOLD_MS plus two ACK periods.
SEND_DROP_MARGIN_US = 1_000_000 + 2 * ACK_INTERVAL_US
# The sender's 32-bit timestamp wraps every 71 minutes.
_TIMESTAMP_MASK = 0xFFFF_FFFF


@dataclass(slots=True)
class SrtConnectionStats:
    """Counters since the connection started, and the current RTT."""

    packets_received: int = 0
    bytes_received: int = 0
    packets_lost: int = 0  # detected missing (a gap), retransmitted or not
    packets_retransmitted: int = 0  # arrived with the R flag
    packets_dropped: int = 0  # never delivered: too late, drop request, undecryptable
    packets_sender_dropped: int = 0  # of those, what the sender gave up (drop request)
    packets_belated: int = 0  # arrived after their slot was delivered or dropped
    packets_duplicate: int = 0
    packets_out_of_window: int = 0  # beyond MAX_REORDER_PACKETS
    gaps_given_up: int = 0  # without too-late drop: after MAX_GAP_WAIT_US, or with the window full
    packets_undecrypted: int = 0
    datagrams_undecodable: int = 0
    acks_sent: int = 0
    packets_sent: int = 0
    bytes_sent: int = 0
    packets_resent: int = 0  # retransmitted on the peer's NAK
    packets_send_dropped: int = 0  # too old to be played, or past the send buffer
    light_acks_sent: int = 0
    naks_sent: int = 0
    rtt_us: int = INITIAL_RTT_US
    rttvar_us: int = INITIAL_RTTVAR_US


def _us(now: float) -> int:
    return round(now * 1_000_000)


class SrtConnection:
    """The receiving side of an accepted SRT connection (a caller publishing
    to us). `SrtListener.accept` makes one; build one directly for tests or
    a caller role of our own."""

    def __init__(
        self,
        *,
        socket_id: int,
        peer_socket_id: int,
        initial_seq: int,
        latency_ms: int,
        peer_start_timestamp: int,
        now: float,
        crypto: SrtCryptoContext | None = None,
        window_packets: int = MAX_REORDER_PACKETS,
        peer_idle_timeout_us: int = PEER_IDLE_TIMEOUT_US,
        send_latency_ms: int = 0,
        too_late_drop: bool = True,
    ) -> None:
        """`peer_start_timestamp` is the Timestamp of the peer's handshake
        that arrived at `now`: it sets the TSBPD time base (4.5). Both
        directions start at `initial_seq` (HSv5). `send_latency_ms` is the
        peer's receive latency, for giving up on old packets.
        `too_late_drop` is the TLPKTDROP the handshake agreed on (4.6):
        without it the receiving side does not give up on a missing packet
        when a later one is due; it waits for it, at most MAX_GAP_WAIT_US
        longer. (Sending, we give up on packets too old to play either way.)"""
        now_us = _us(now)
        self.socket_id = socket_id
        self.peer_socket_id = peer_socket_id
        self.latency_us = latency_ms * 1000
        self.crypto = crypto
        self.window_packets = min(window_packets, MAX_REORDER_PACKETS)
        self.peer_idle_timeout_us = peer_idle_timeout_us
        self.too_late_drop = too_late_drop
        self.stats = SrtConnectionStats()
        self.closed = False
        self._start_us = now_us
        self._time_base_us = now_us - peer_start_timestamp
        self._last_timestamp = peer_start_timestamp  # extended past 32 bits
        self._deliver_seq = initial_seq  # the next one to release
        # _deliver_seq not wrapped ("unwrapped": counted on past 2**31), and
        # the sequence numbers the buffer holds as a heap of such numbers: the
        # oldest packet held is found without walking the window (stale ones,
        # below _deliver_unwrapped, go lazily).
        self._deliver_unwrapped = initial_seq
        self._held: list[int] = []
        self._next_seq = initial_seq  # one past the highest received
        self._buffer: dict[int, tuple[int, bytes | None]] = {}
        # Unwrapped, from _deliver_unwrapped on: what is missing (stamped with
        # when it is next to be asked for), and what a drop request forgot.
        self._lost = SrtSeqRanges()
        self._forgotten = SrtSeqRanges()
        # New gaps whose first report goes again NAK_REPEAT_US later, as
        # (when, start, end), oldest first: the gaps of the last 10 ms while
        # any is missing (forgotten when none is), and never more than a window.
        self._repeats: deque[tuple[int, int, int]] = deque(maxlen=MAX_REORDER_PACKETS)
        self._ack_number = 0
        self._pending_acks: dict[int, int] = {}  # ACK number -> sent at
        self._rtt_measured = False
        self._last_acked_seq = initial_seq  # nothing to acknowledge yet
        self._packets_since_ack = 0
        self._next_ack_us = now_us + ACK_INTERVAL_US
        self._next_nak_us = now_us  # while _lost holds any: no later than the first due
        self._last_sent_us = now_us
        self._last_received_us = now_us
        self._rate_window_start_us = now_us
        self._rate_packets = 0
        self._rate_bytes = 0
        self._packets_per_second = 0
        self._bytes_per_second = 0
        self.send_latency_us = send_latency_ms * 1000
        self._send_seq = initial_seq  # the next one to send
        self._send_base = initial_seq  # the oldest not acknowledged
        self._send_buffer: dict[int, tuple[int, SrtDataPacket]] = {}  # seq -> (sent at, packet)
        self._message_number = 1
        self._events: list[SrtEvent] = []
        self._out: list[bytes] = []
        self._control_handlers = {
            SrtAck: self._on_ack,
            SrtNak: self._on_nak,
            SrtKeepalive: self._on_keepalive,
            SrtShutdown: self._on_shutdown,
            SrtAckAck: self._on_ackack,
            SrtDropRequest: self._on_drop_request,
            SrtUserControl: self._on_user_control,
        }

    # -- the API -----------------------------------------------------------

    def receive_datagram(self, data: bytes, now: float) -> None:
        """One datagram from the peer; bad ones are counted and dropped."""
        try:
            packet = parse_packet(data)
        except SrtProtocolError:
            self.stats.datagrams_undecodable += 1
            return
        self.receive_packet(packet, now)

    def receive_packet(self, packet: SrtPacket, now: float) -> None:
        if self.closed:
            return
        now_us = _us(now)
        self._last_received_us = now_us
        if type(packet) is SrtDataPacket:
            self._on_data(packet, now_us)
        else:
            handler = self._control_handlers.get(type(packet))
            if handler is not None:
                handler(packet, now_us)
        if not self.closed:
            self._release(now_us)

    def events(self) -> list[SrtEvent]:
        events, self._events = self._events, []
        return events

    def datagrams_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def next_timer(self) -> float | None:
        """When `handle_timer` has something to do, in the clock of `now`."""
        if self.closed:
            return None
        deadlines = [
            self._last_received_us + self.peer_idle_timeout_us,
            self._last_sent_us + KEEPALIVE_INTERVAL_US,
        ]
        if self._ack_due_seq() is not None:
            deadlines.append(self._next_ack_us)
        if self._lost:
            deadlines.append(self._next_nak_us)
        release = self._next_release_us()
        if release is not None:
            deadlines.append(release)
        if self._send_buffer:
            oldest_sent_us = self._send_buffer[self._send_base][0]
            deadlines.append(oldest_sent_us + self.send_latency_us + SEND_DROP_MARGIN_US)
        return min(deadlines) / 1_000_000

    def handle_timer(self, now: float) -> None:
        if self.closed:
            return
        now_us = _us(now)
        if now_us - self._last_received_us >= self.peer_idle_timeout_us:
            self._close(now_us, "peer idle timeout")
            return
        self._release(now_us)
        if now_us >= self._next_ack_us:
            self._next_ack_us = now_us + ACK_INTERVAL_US
            if self._ack_due_seq() is not None:
                self._send_full_ack(now_us)
        if self._lost and now_us >= self._next_nak_us:
            self._send_loss_report(now_us)
        self._drop_old_sent(now_us)
        if now_us - self._last_sent_us >= KEEPALIVE_INTERVAL_US:
            self._send(SrtKeepalive(), now_us)

    def send(self, payload: bytes, now: float) -> int:
        """Send one message (a live-mode packet) now; its sequence number."""
        if self.closed:
            raise SrtUsageError("send on a closed connection")
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise SrtUsageError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        now_us = _us(now)
        seq = self._send_seq
        key = SrtKeyFlag.NONE
        if self.crypto is not None:
            key, payload = self.crypto.encrypt(seq, payload)
        packet = SrtDataPacket(
            seq=seq,
            payload=payload,
            timestamp=(now_us - self._start_us) & _TIMESTAMP_MASK,
            dest_socket_id=self.peer_socket_id,
            message_number=self._message_number,
            in_order=True,  # as libsrt sets it in live mode
            key=key,
        )
        self._send_seq = seq_inc(seq)
        self._message_number = self._message_number % 0x03FF_FFFF + 1
        self._send_buffer[seq] = (now_us, packet)
        if len(self._send_buffer) > MAX_SEND_BUFFER_PACKETS:
            self._forget_sent(1)
            self.stats.packets_send_dropped += 1
        self._out.append(bytes(packet))
        self._last_sent_us = now_us
        self.stats.packets_sent += 1
        self.stats.bytes_sent += len(payload)
        return seq

    def close(self, now: float) -> None:
        """Shut the connection down from our side (no event follows)."""
        if not self.closed:
            self._send(SrtShutdown(), _us(now))
            self.closed = True

    @property
    def buffered_packets(self) -> int:
        return len(self._buffer)

    @property
    def buffered_us(self) -> int:
        """The sender time the receive buffer spans, oldest packet held to
        newest received (libsrt's msRcvBuf); 0 when it holds none."""
        first = self._first_held()
        if first is None:
            return 0
        return max(0, self._last_timestamp - first[1])

    @property
    def lost_packets(self) -> int:
        """Packets missing now, to be asked for again."""
        return len(self._lost)

    # -- receiving ---------------------------------------------------------

    def _on_data(self, packet: SrtDataPacket, now_us: int) -> None:
        seq = packet.seq
        stats = self.stats
        offset = seq_offset(self._deliver_seq, seq)
        if offset < 0:
            stats.packets_belated += 1
            return
        if offset >= self.window_packets:
            stats.packets_out_of_window += 1
            return
        if seq in self._buffer:
            stats.packets_duplicate += 1
            return
        unwrapped = self._deliver_unwrapped + offset
        gap = seq_offset(self._next_seq, seq)
        if gap >= 0:
            if gap:
                # 4.8.2: report a new gap at once, and again shortly.
                repeat_us = now_us + NAK_REPEAT_US
                if self._lost:
                    self._next_nak_us = min(self._next_nak_us, repeat_us)
                else:
                    self._next_nak_us = repeat_us
                    self._repeats.clear()  # all filled or given up
                self._lost.add(unwrapped - gap, unwrapped, now_us + self._nak_again_us())
                self._repeats.append((repeat_us, unwrapped - gap, unwrapped))
                stats.packets_lost += gap
                self._send_nak(((self._next_seq, seq_inc(seq, -1)),), now_us)
            self._next_seq = seq_inc(seq)
        elif self._forgotten and unwrapped in self._forgotten:
            stats.packets_belated += 1  # the sender gave it up; so did we
            return
        else:
            self._lost.remove(unwrapped, unwrapped + 1)
        if packet.retransmitted:
            stats.packets_retransmitted += 1
        payload: bytes | None = packet.payload
        if packet.key != SrtKeyFlag.NONE:
            payload = self.crypto.decrypt(packet.key, seq, payload) if self.crypto else None
            if payload is None:
                stats.packets_undecrypted += 1
        stats.packets_received += 1
        stats.bytes_received += len(packet.payload)
        self._rate_packets += 1
        self._rate_bytes += len(packet.payload)
        self._buffer[seq] = (self._extend_timestamp(packet.timestamp), payload)
        heapq.heappush(self._held, self._deliver_unwrapped + offset)
        self._packets_since_ack += 1
        if self._packets_since_ack >= LIGHT_ACK_PACKETS:
            self._send_light_ack(now_us)

    def _extend_timestamp(self, timestamp: int) -> int:
        extended = self._last_timestamp + timestamp_offset_us(self._last_timestamp & _TIMESTAMP_MASK, timestamp)
        if extended > self._last_timestamp:
            self._last_timestamp = extended
        return extended

    def _on_ack(self, packet: SrtAck, now_us: int) -> None:
        """The peer has everything before `last_acked_seq` of what we sent."""
        if packet.ack_number:
            self._send(SrtAckAck(packet.ack_number), now_us)
            if packet.rtt_us and not self._rtt_measured:
                # Sending only, we have no ACKACK of our own: the peer's
                # estimate is the RTT (libsrt's sender takes it too).
                self.stats.rtt_us, self.stats.rttvar_us = packet.rtt_us, packet.rttvar_us or 0
        acked = seq_offset(self._send_base, packet.last_acked_seq)
        if 0 < acked <= seq_offset(self._send_base, self._send_seq):
            self._forget_sent(acked)

    def _on_nak(self, packet: SrtNak, now_us: int) -> None:
        """Send again what the peer misses and we still hold."""
        unacked = seq_offset(self._send_base, self._send_seq)
        for first, last in packet.losses:
            start = max(seq_offset(self._send_base, first), 0)
            end = min(seq_offset(self._send_base, last), unacked - 1)
            for offset in range(start, end + 1):
                entry = self._send_buffer.get(seq_inc(self._send_base, offset))
                if entry is not None:
                    self._out.append(bytes(replace(entry[1], retransmitted=True)))
                    self.stats.packets_resent += 1
                    self._last_sent_us = now_us

    def _forget_sent(self, count: int) -> None:
        """Stop holding the `count` oldest packets we sent."""
        for _ in range(count):
            self._send_buffer.pop(self._send_base, None)
            self._send_base = seq_inc(self._send_base)

    def _drop_old_sent(self, now_us: int) -> None:
        """4.6: give up on packets too old to be played; tell the peer.
        Whatever the handshake agreed: what a player that does not
        acknowledge costs stays bounded by time, not only by
        MAX_SEND_BUFFER_PACKETS (12 MB)."""
        first = self._send_base
        count = 0
        deadline_us = now_us - self.send_latency_us - SEND_DROP_MARGIN_US
        while self._send_buffer and self._send_buffer[self._send_base][0] <= deadline_us:
            message_number = self._send_buffer[self._send_base][1].message_number
            self._forget_sent(1)
            count += 1
        if count:
            self.stats.packets_send_dropped += count
            self._send(SrtDropRequest(message_number, first, seq_inc(first, count - 1)), now_us)

    def _on_keepalive(self, packet: SrtKeepalive, now_us: int) -> None:
        pass  # it kept the connection alive by arriving

    def _on_shutdown(self, packet: SrtShutdown, now_us: int) -> None:
        # The sender has sent its last packet: what we hold is the end of the
        # stream, delivered now rather than thrown away.
        self._release(now_us, flush=True)
        self.closed = True
        self._events.append(SrtConnectionClosed(self.socket_id, "peer shut down"))

    def _on_ackack(self, packet: SrtAckAck, now_us: int) -> None:
        sent_us = self._pending_acks.pop(packet.ack_number, None)
        if sent_us is None:
            return
        for number in [n for n in self._pending_acks if n < packet.ack_number]:
            del self._pending_acks[number]
        sample = now_us - sent_us
        stats = self.stats
        # 4.10: smoothed like TCP's; the first sample sets both.
        if not self._rtt_measured:
            self._rtt_measured = True
            stats.rtt_us, stats.rttvar_us = sample, sample // 2
        else:
            stats.rttvar_us = (3 * stats.rttvar_us + abs(stats.rtt_us - sample)) // 4
            stats.rtt_us = (7 * stats.rtt_us + sample) // 8

    def _on_drop_request(self, packet: SrtDropRequest, now_us: int) -> None:
        """4.6: the sender gave these packets up; stop asking for them. The
        packets of the range we hold are still delivered."""
        offset = max(seq_offset(self._deliver_seq, packet.first_seq), 0)
        end = min(seq_offset(self._deliver_seq, packet.last_seq) + 1, self.window_packets)
        if end <= offset:
            return
        deliver = self._deliver_unwrapped
        self._forgotten.add(deliver + offset, deliver + end)
        self._lost.remove(deliver + offset, deliver + end)
        received_to = seq_offset(self._deliver_seq, self._next_seq)
        if end > received_to:
            if offset > received_to:
                # Packets before the range never came either: a gap, asked for at the next timer.
                self._next_nak_us = now_us
                self._lost.add(deliver + received_to, deliver + offset, now_us)
                self.stats.packets_lost += offset - received_to
            self._next_seq = seq_inc(self._deliver_seq, end)

    def _on_user_control(self, packet: SrtUserControl, now_us: int) -> None:
        """Key refresh: a KMREQ after the handshake, answered by KMRSP."""
        if packet.subtype != SrtHandshakeExtensionType.KMREQ:
            return
        if self.crypto is None:
            answer = km_state_word(SrtKmState.NOSECRET)
        else:
            try:
                self.crypto.install(parse_key_material(packet.body))
                answer = packet.body
            except SrtProtocolError:
                answer = km_state_word(SrtKmState.BADSECRET)
        self._send(SrtUserControl(SrtHandshakeExtensionType.KMRSP, answer), now_us)

    # -- delivering --------------------------------------------------------

    def _first_held(self) -> tuple[int, int] | None:
        """(unwrapped seq, timestamp) of the oldest packet held, if any.
        Called for every datagram (next_timer, _release): O(log n), not a
        walk of the window, which made each datagram cost milliseconds
        behind a gap."""
        held = self._held
        while held:
            top = held[0]
            if top >= self._deliver_unwrapped:
                entry = self._buffer.get(top & SEQ_MASK)
                if entry is not None:
                    return top, entry[0]
            heapq.heappop(held)  # delivered or dropped since
        return None

    def _play_time_us(self, timestamp: int) -> int:
        return self._time_base_us + timestamp + self.latency_us

    def _forgotten_first(self, first: tuple[int, int] | None) -> bool:
        """Whether forgotten slots come before the oldest packet held."""
        forgotten = self._forgotten.first()
        return forgotten is not None and (first is None or forgotten < first[0])

    def _next_release_us(self) -> int | None:
        first = self._first_held()
        if self._forgotten_first(first):
            return self._start_us  # at once
        if first is None:
            return None
        release_us = self._play_time_us(first[1])
        if not self.too_late_drop and first[0] != self._deliver_unwrapped:
            release_us += MAX_GAP_WAIT_US
        return release_us

    def _release(self, now_us: int, flush: bool = False) -> None:
        """Deliver what is due (everything held if `flush`)."""
        if flush:
            now_us = max(self._play_time_us(self._last_timestamp), now_us)
        buffer = self._buffer
        while True:
            entry = buffer.get(self._deliver_seq)
            if entry is not None:
                timestamp, payload = entry
                if self._play_time_us(timestamp) > now_us:
                    return
                seq = self._deliver_seq
                del buffer[seq]
                self._advance(1)
                if payload is None:
                    self._drop(seq, 1)
                else:
                    self._events.append(SrtDataReceived(self.socket_id, seq, timestamp, payload))
                continue
            first = self._first_held()
            if self._forgotten_first(first):
                # 4.6: what the sender gave up goes at once, and a gap before
                # it too (a sender gives up its oldest packets first). A
                # packet held inside the range is still delivered.
                end = self._forgotten.range_at(self._forgotten.first())[1]
                if first is not None:
                    end = min(end, first[0])
                self.stats.packets_sender_dropped += end - self._deliver_unwrapped
                self._skip(end - self._deliver_unwrapped)
                continue
            if first is None:
                return
            play_us = self._play_time_us(first[1])
            if play_us > now_us:
                return
            if not (self.too_late_drop or flush):
                # No too-late drop: wait for the gap to fill, but not past
                # MAX_GAP_WAIT_US, nor with the window full (what comes next
                # would be refused).
                window_full = seq_offset(self._deliver_seq, self._next_seq) >= self.window_packets
                if play_us + MAX_GAP_WAIT_US > now_us and not window_full:
                    return
                self.stats.gaps_given_up += 1
            # 4.6: too-late drop. Once a later packet is due, the missing
            # ones before it would only hold the stream back.
            self._skip(first[0] - self._deliver_unwrapped)

    def _skip(self, count: int) -> None:
        """Give up the `count` slots from the next one to deliver."""
        self._drop(self._deliver_seq, count)
        self._advance(count)

    def _advance(self, count: int) -> None:
        self._deliver_seq = seq_inc(self._deliver_seq, count)
        deliver = self._deliver_unwrapped = self._deliver_unwrapped + count
        held = self._held
        while held and held[0] < deliver:
            heapq.heappop(held)
        if self._lost and self._lost.first() < deliver:
            self._lost.remove_below(deliver)
        if self._forgotten and self._forgotten.first() < deliver:
            self._forgotten.remove_below(deliver)

    def _drop(self, first_seq: int, count: int) -> None:
        self.stats.packets_dropped += count
        events = self._events
        last = events[-1] if events else None
        if type(last) is SrtPacketsDropped and seq_inc(last.first_seq, last.count) == first_seq:
            # One gap, one event: a drop request of a whole window released
            # slot by slot gave 8,192 events for one 28-byte datagram.
            events[-1] = SrtPacketsDropped(self.socket_id, last.first_seq, last.count + count)
        else:
            events.append(SrtPacketsDropped(self.socket_id, first_seq, count))

    # -- sending -----------------------------------------------------------

    def _send(self, packet: SrtPacket, now_us: int) -> None:
        timestamp = (now_us - self._start_us) & _TIMESTAMP_MASK
        self._out.append(bytes(replace(packet, timestamp=timestamp, dest_socket_id=self.peer_socket_id)))
        self._last_sent_us = now_us

    def _ack_seq(self) -> int:
        """The first sequence number we have not received (4.8.1)."""
        first = self._lost.first()
        if first is None:
            return self._next_seq
        return seq_inc(self._deliver_seq, first - self._deliver_unwrapped)

    def _ack_due_seq(self) -> int | None:
        seq = self._ack_seq()
        return None if seq == self._last_acked_seq else seq

    def _measure_rates(self, now_us: int) -> None:
        elapsed = now_us - self._rate_window_start_us
        if elapsed >= RATE_WINDOW_US:
            self._packets_per_second = self._rate_packets * 1_000_000 // elapsed
            self._bytes_per_second = self._rate_bytes * 1_000_000 // elapsed
            self._rate_window_start_us = now_us
            self._rate_packets = self._rate_bytes = 0

    def _send_full_ack(self, now_us: int) -> None:
        self._measure_rates(now_us)
        seq = self._ack_seq()
        self._ack_number = self._ack_number % 0x7FFF_FFFF + 1
        self._pending_acks[self._ack_number] = now_us
        if len(self._pending_acks) > MAX_PENDING_ACKS:
            del self._pending_acks[next(iter(self._pending_acks))]
        stats = self.stats
        self._send(
            SrtAck(
                last_acked_seq=seq,
                ack_number=self._ack_number,
                rtt_us=stats.rtt_us,
                rttvar_us=stats.rttvar_us,
                available_buffer_packets=max(self.window_packets - len(self._buffer), 2),
                packets_per_second=self._packets_per_second,
                # No packet-pair probing here: the receive rate stands in.
                link_capacity_packets_per_second=self._packets_per_second,
                receive_rate_bytes_per_second=self._bytes_per_second,
            ),
            now_us,
        )
        self._last_acked_seq = seq
        self._packets_since_ack = 0
        stats.acks_sent += 1

    def _send_light_ack(self, now_us: int) -> None:
        self._send(SrtAck(last_acked_seq=self._ack_seq()), now_us)
        self._packets_since_ack = 0
        self.stats.light_acks_sent += 1

    def _nak_again_us(self) -> int:
        """How long after a request the sender will resend on another."""
        rtt, rttvar = self.stats.rtt_us, self.stats.rttvar_us
        return max(rtt - 4 * rttvar + NAK_RESEND_MARGIN_US, rtt // 2, MIN_NAK_INTERVAL_US)

    def _send_loss_report(self, now_us: int) -> None:
        """4.8.2 periodic NAK: what is still missing of the new gaps whose
        report goes again, then the ranges still missing whose request is
        due, oldest first, as many as fit in one NAK; each is due again when
        the sender will resend again. The walk stops there too, so a peer
        that made thousands of gaps costs no more per NAK. (The repeat of a
        gap's first report leaves its schedule alone: the sender ignores
        the repeat when it got the first.)"""
        lost = self._lost
        deliver_seq, deliver = self._deliver_seq, self._deliver_unwrapped
        wanted: list[tuple[int, int]] = []
        repeats = self._repeats
        while repeats and repeats[0][0] <= now_us and len(wanted) <= MAX_NAK_WORDS:
            _, start, end = repeats.popleft()
            wanted += lost.within(start, end)
        again_us = now_us + self._nak_again_us()
        next_due_us = again_us
        for index, (start, end, due_us) in enumerate(lost):
            if due_us <= now_us:
                if wanted and start < wanted[-1][1]:
                    wanted.append((wanted[-1][1], end))  # already asked for in part: the rest
                else:
                    wanted.append((start, end))
                lost.restamp(index, again_us)
            elif due_us < next_due_us:
                next_due_us = due_us
            if index >= MAX_NAK_WORDS:
                break
        if repeats and repeats[0][0] < next_due_us:
            next_due_us = repeats[0][0]
        self._next_nak_us = next_due_us
        losses = []
        words = 0
        for start, end in wanted:
            if start >= end:
                continue
            words += 1 if end - start == 1 else 2
            if words > MAX_NAK_WORDS:
                break
            losses.append((seq_inc(deliver_seq, start - deliver), seq_inc(deliver_seq, end - 1 - deliver)))
        if losses:
            self._send_nak(tuple(losses), now_us)

    def _send_nak(self, losses: tuple[tuple[int, int], ...], now_us: int) -> None:
        self._send(SrtNak(losses), now_us)
        self.stats.naks_sent += 1

    def _close(self, now_us: int, reason: str) -> None:
        self._send(SrtShutdown(), now_us)
        self.closed = True
        self._events.append(SrtConnectionClosed(self.socket_id, reason))
