"""The caller side of SRT, sans-IO: our own call to a listener
(draft-sharabayko-srt 4.3.1.1-2, caller-listener, handshake v5), made as
libsrt's CUDT::startConnect and processConnectResponse make it.

    caller = SrtCaller(("203.0.113.5", 1105), now, stream_id="#!::…", latency_ms=1000)
    for data in caller.datagrams_to_send(): transport.sendto(data, caller.peer)
    caller.receive_datagram(data, now)    # what the listener sends back
    for event in caller.events():
        SrtCallAccepted -> caller.send(payload, now) from now on
        SrtCallRejected -> over: the listener's reason, or TIMEOUT
        SrtPacketsDropped, SrtConnectionClosed (and SrtDataReceived): the connection's
    timer = caller.next_timer()           # then caller.handle_timer(now)

The exchange: an INDUCTION, version 4 as every HSv5 caller sends it (a UDT
listener echoes the version it gets, so only a listener that answers 5
with SRT's magic speaks HSv5); the listener answers with its SYN cookie.
Then a CONCLUSION with that cookie, HSREQ (TSBPD both ways with our
latency, too-late drop, periodic NAK), the stream ID and, with a
passphrase, a KMREQ carrying a fresh key wrapped with it; the listener
answers with HSRSP (and KMRSP) or a rejection, whose Handshake Type is
1000 + the reason. Each request goes again every HANDSHAKE_RESEND_US until
it is answered, and the call gives up after the connect timeout. Then an
SrtConnection carries the stream. Its clock started with the call: the
listener set its time base from our CONCLUSION's timestamp (4.5), so our
data's timestamps must count from the same zero.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace

from .connection import SrtConnection
from .crypto import (
    KEY_SIZES_BYTES,
    MAX_PASSPHRASE_CHARS,
    MIN_PASSPHRASE_CHARS,
    SrtCryptoContext,
    SrtKmState,
    parse_km_state,
    wrap_key_material,
)
from .errors import SrtProtocolError, SrtUsageError
from .events import Address, SrtCallAccepted, SrtCallRejected, SrtEvent
from .listener import (
    DEFAULT_LATENCY_MS,
    FLOW_WINDOW_PACKETS,
    HSRSP_FLAGS,
    MAX_LATENCY_MS,
    MIN_PEER_SRT_VERSION,
    SRT_VERSION,
    peer_ip_of,
)
from .packets import (
    EXTENSION_FLAG_CONFIG,
    EXTENSION_FLAG_HSREQ,
    EXTENSION_FLAG_KMREQ,
    MAX_DATAGRAM_BYTES,
    MAX_STREAM_ID_BYTES,
    SRT_MAGIC_CODE,
    UDT_DGRAM,
    SrtFlag,
    SrtHandshake,
    SrtHandshakeExtensionType,
    SrtHandshakeType,
    SrtHsExtension,
    SrtRejectReason,
    SrtShutdown,
    parse_packet,
)
from .sequence import SEQ_MODULUS

# libsrt's caller sends its request again when 250 ms pass without an
# answer (startConnect: "at most 1 request per 250ms").
HANDSHAKE_RESEND_US = 250_000
# libsrt's SRTO_CONNTIMEO default: no answer within 3 s and the call fails.
CONNECT_TIMEOUT_US = 3_000_000
# What our HSREQ asks for, as libsrt's live mode does (fillSrtHandshake_HSREQ)
# and as our listener answers: TSBPD both ways with our latency, too-late
# drop, periodic NAK reports, the retransmission flag; message API.
HSREQ_FLAGS = HSRSP_FLAGS
# libsrt's SRTO_PBKEYLEN default for a caller when the listener advertises none.
DEFAULT_KEY_BYTES = 16

_INDUCTION, _CONCLUSION, _CONNECTED, _ENDED = "induction", "conclusion", "connected", "ended"


@dataclass(slots=True)
class SrtCallerStats:
    datagrams_received: int = 0
    datagrams_undecodable: int = 0
    datagrams_foreign: int = 0  # for another socket ID than ours
    handshakes_sent: int = 0  # requests, resends included
    answers_ignored: int = 0  # not what the call waits for (late, repeated, out of turn)


def _us(now: float) -> int:
    return round(now * 1_000_000)


class SrtCaller:
    """One call to an SRT listener at `peer`, and the connection it opens."""

    def __init__(
        self,
        peer: Address,
        now: float,
        *,
        stream_id: str | None = None,
        latency_ms: int = DEFAULT_LATENCY_MS,
        passphrase: str | None = None,
        key_bytes: int | None = None,
        connect_timeout_us: int = CONNECT_TIMEOUT_US,
        socket_id: int | None = None,
        initial_seq: int | None = None,
    ) -> None:
        """`latency_ms` is what we ask for both ways (libsrt's `latency`):
        the listener takes the larger of it and its own. `key_bytes` (16,
        24 or 32) is the key size with a passphrase; None takes the one
        the listener advertises, else 16 (libsrt's pbkeylen)."""
        if not 0 <= latency_ms <= MAX_LATENCY_MS:
            raise SrtUsageError(f"latency_ms {latency_ms} is outside 0-{MAX_LATENCY_MS}")
        if passphrase is not None and not MIN_PASSPHRASE_CHARS <= len(passphrase) <= MAX_PASSPHRASE_CHARS:
            raise SrtUsageError(f"a passphrase has {MIN_PASSPHRASE_CHARS} to {MAX_PASSPHRASE_CHARS} characters")
        if key_bytes is not None and key_bytes not in KEY_SIZES_BYTES:
            raise SrtUsageError(f"key_bytes {key_bytes} is not 16, 24 or 32")
        if stream_id is not None and len(stream_id.encode()) > MAX_STREAM_ID_BYTES:
            raise SrtUsageError(f"a stream ID has at most {MAX_STREAM_ID_BYTES} bytes")
        self.peer = peer
        self.stream_id = stream_id
        self.latency_ms = latency_ms
        self.passphrase = passphrase
        self.key_bytes = key_bytes
        self.connect_timeout_us = connect_timeout_us
        self.socket_id = socket_id if socket_id is not None else secrets.randbelow(0x7FFF_FFFF) + 1
        self.initial_seq = initial_seq if initial_seq is not None else secrets.randbelow(SEQ_MODULUS)
        self.stats = SrtCallerStats()
        self.connection: SrtConnection | None = None
        self._state = _INDUCTION
        self._start_us = _us(now)
        self._deadline_us = self._start_us + connect_timeout_us
        self._crypto: SrtCryptoContext | None = None
        self._events: list[SrtEvent] = []
        self._out: list[bytes] = []
        self._request = SrtHandshake(
            version=4,
            handshake_type=SrtHandshakeType.INDUCTION,
            socket_id=self.socket_id,
            extension_field=UDT_DGRAM,
            initial_seq=self.initial_seq,
            mtu_bytes=MAX_DATAGRAM_BYTES,
            flow_window_packets=FLOW_WINDOW_PACKETS,
            peer_ip=peer_ip_of(peer),
        )
        self._send_request(self._start_us)

    # -- the API -----------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._state == _CONNECTED and not self.connection.closed

    @property
    def ended(self) -> bool:
        """The call failed, or its connection closed."""
        return self._state == _ENDED or (self.connection is not None and self.connection.closed)

    def receive_datagram(self, data: bytes, now: float) -> None:
        """One datagram from the listener; nothing it sends raises."""
        self.stats.datagrams_received += 1
        try:
            packet = parse_packet(data)
        except SrtProtocolError:
            self.stats.datagrams_undecodable += 1
            return
        if packet.dest_socket_id != self.socket_id:
            self.stats.datagrams_foreign += 1
            return
        if self._state == _CONNECTED:
            if type(packet) is SrtHandshake:
                self.stats.answers_ignored += 1  # its answer again, to a CONCLUSION resent before it came
                return
            self.connection.receive_packet(packet, now)
            self._collect()
            return
        if self._state == _ENDED or type(packet) is not SrtHandshake:
            # Before its answer reaches us, an accepting listener may already
            # send keepalives or ACKs: the resent CONCLUSION gets the answer again.
            self.stats.answers_ignored += 1
            return
        reason = packet.rejection_reason
        if reason is not None:
            self._fail(reason, f"the listener rejected the call ({_reason_name(reason)})")
        elif self._state == _INDUCTION and packet.handshake_type == SrtHandshakeType.INDUCTION:
            self._on_induction(packet, _us(now))
        elif self._state == _CONCLUSION and packet.handshake_type == SrtHandshakeType.CONCLUSION:
            self._on_conclusion(packet, now)
        else:
            self.stats.answers_ignored += 1

    def events(self) -> list[SrtEvent]:
        events, self._events = self._events, []
        return events

    def datagrams_to_send(self) -> list[bytes]:
        """What to send to `peer`, in order."""
        out, self._out = self._out, []
        return out

    def next_timer(self) -> float | None:
        """When `handle_timer` has something to do, in the clock of `now`."""
        if self._state == _CONNECTED:
            return self.connection.next_timer()
        if self._state == _ENDED:
            return None
        return min(self._last_sent_us + HANDSHAKE_RESEND_US, self._deadline_us) / 1_000_000

    def handle_timer(self, now: float) -> None:
        if self._state == _CONNECTED:
            self.connection.handle_timer(now)
            self._collect()
            return
        if self._state == _ENDED:
            return
        now_us = _us(now)
        if now_us >= self._deadline_us:
            seconds = self.connect_timeout_us / 1_000_000
            self._fail(SrtRejectReason.TIMEOUT, f"no answer from the listener within {seconds:g} s")
        elif now_us >= self._last_sent_us + HANDSHAKE_RESEND_US:
            self._send_request(now_us)

    def send(self, payload: bytes, now: float) -> int:
        """Send one live-mode message (at most 1456 bytes: 7 TS packets) on
        the open connection; its sequence number. SrtUsageError before
        SrtCallAccepted or after the connection closed."""
        if self._state != _CONNECTED:
            raise SrtUsageError("send before the call was accepted, or after it failed")
        seq = self.connection.send(payload, now)
        self._collect()
        return seq

    def close(self, now: float) -> None:
        """Hang up: shut the connection down, or stop calling (no event follows)."""
        if self._state == _CONNECTED:
            self.connection.close(now)
            self._collect()
        else:
            self._state = _ENDED

    # -- the handshake -----------------------------------------------------

    def _send_request(self, now_us: int) -> None:
        # Every request says where our clock is: the listener's time base
        # for our packets comes from the CONCLUSION's (libsrt setPacketTS).
        self._out.append(bytes(replace(self._request, timestamp=now_us - self._start_us)))
        self._last_sent_us = now_us
        self.stats.handshakes_sent += 1

    def _on_induction(self, answer: SrtHandshake, now_us: int) -> None:
        """4.3.1.1: take the cookie and ask for the connection."""
        if answer.version < 5 or answer.extension_field != SRT_MAGIC_CODE:
            self._fail(SrtRejectReason.VERSION, f"the listener speaks handshake version {answer.version}, not SRT's 5")
            return
        km = None
        encryption_field = 0
        if self.passphrase is not None:
            # A listener with a passphrase may advertise its key size (2, 3, 4: 16, 24, 32 bytes).
            advertised = answer.encryption_field * 8 if answer.encryption_field * 8 in KEY_SIZES_BYTES else None
            key_bytes = self.key_bytes or advertised or DEFAULT_KEY_BYTES
            key = secrets.token_bytes(key_bytes)
            material = wrap_key_material(self.passphrase, even=key, odd=None)
            # HSv5: both directions use the caller's key.
            self._crypto = SrtCryptoContext(self.passphrase, even=(material.salt, key))
            km = bytes(material)
            encryption_field = key_bytes // 8
        extensions = EXTENSION_FLAG_HSREQ
        if km is not None:
            extensions |= EXTENSION_FLAG_KMREQ
        if self.stream_id is not None:
            extensions |= EXTENSION_FLAG_CONFIG
        self._request = replace(
            self._request,
            version=5,
            handshake_type=SrtHandshakeType.CONCLUSION,
            syn_cookie=answer.syn_cookie,
            encryption_field=encryption_field,
            extension_field=extensions,
            hs=SrtHsExtension(SRT_VERSION, HSREQ_FLAGS, self.latency_ms, self.latency_ms),
            hs_command=SrtHandshakeExtensionType.HSREQ,
            km=km,
            km_command=SrtHandshakeExtensionType.KMREQ,
            stream_id=self.stream_id,
        )
        self._state = _CONCLUSION
        self._send_request(now_us)  # at once, as libsrt does (REQ-TIME LOW)

    def _on_conclusion(self, answer: SrtHandshake, now: float) -> None:
        """4.3.1.2: the listener accepted; check what it agreed to."""
        if answer.initial_seq != self.initial_seq or answer.socket_id == 0:
            # Not an answer to our request (libsrt's security check on the ISN).
            self.stats.answers_ignored += 1
            return
        refusal = self._answer_refusal(answer)
        if refusal is not None:
            self._hang_up(answer, now, *refusal)
            return
        hs = answer.hs
        # The listener's HSRSP: its receive latency (how late our packets
        # may arrive) and its send latency (ours as a receiver).
        self.connection = SrtConnection(
            socket_id=self.socket_id,
            peer_socket_id=answer.socket_id,
            initial_seq=self.initial_seq,
            latency_ms=hs.sender_delay_ms,
            peer_start_timestamp=answer.timestamp,
            now=now,
            crypto=self._crypto,
            window_packets=min(answer.flow_window_packets, FLOW_WINDOW_PACKETS),
            send_latency_ms=hs.receiver_delay_ms,
            too_late_drop=bool(hs.flags & SrtFlag.TLPKTDROP),
            start=self._start_us / 1_000_000,
        )
        self._state = _CONNECTED
        self._events.append(
            SrtCallAccepted(
                socket_id=self.socket_id,
                peer_socket_id=answer.socket_id,
                send_latency_ms=hs.receiver_delay_ms,
                receive_latency_ms=hs.sender_delay_ms,
                encrypted=self._crypto is not None,
                peer_srt_version=hs.srt_version,
            )
        )

    def _answer_refusal(self, answer: SrtHandshake) -> tuple[int, str] | None:
        """What in the listener's CONCLUSION we cannot take, as (reason,
        detail). Key material as libsrt's callers with
        SRTO_ENFORCEDENCRYPTION (their default) judge it."""
        hs = answer.hs
        if answer.version != 5 or hs is None or answer.hs_command != SrtHandshakeExtensionType.HSRSP:
            return SrtRejectReason.ROGUE, "the listener's answer has no HSRSP"
        if hs.srt_version < MIN_PEER_SRT_VERSION:
            return SrtRejectReason.VERSION, f"the listener's SRT version {hs.srt_version:#08x} is older than 1.3"
        if self.passphrase is None:
            if answer.km is not None:
                return SrtRejectReason.UNSECURE, "the listener sent key material and we have no passphrase"
            return None
        if answer.km is None or answer.km_command != SrtHandshakeExtensionType.KMRSP:
            return SrtRejectReason.UNSECURE, "the listener has no passphrase"
        state = parse_km_state(answer.km)
        if state == SrtKmState.BADSECRET:
            return SrtRejectReason.BADSECRET, "the listener's passphrase differs"
        if state is not None:
            return SrtRejectReason.UNSECURE, f"the listener's key material state is {state.name}"
        return None

    def _hang_up(self, answer: SrtHandshake, now: float, reason: int, detail: str) -> None:
        """Refuse an answer after the listener accepted: it holds a
        connection for us, which a SHUTDOWN ends (libsrt does the same)."""
        timestamp = _us(now) - self._start_us
        self._out.append(bytes(SrtShutdown(timestamp=timestamp, dest_socket_id=answer.socket_id)))
        self._fail(reason, detail)

    def _fail(self, reason: int, detail: str) -> None:
        self._state = _ENDED
        self._events.append(SrtCallRejected(reason, detail))

    def _collect(self) -> None:
        self._out.extend(self.connection.datagrams_to_send())
        self._events.extend(self.connection.events())


def _reason_name(reason: int) -> str:
    try:
        return f"{reason}, {SrtRejectReason(reason).name}"
    except ValueError:
        return str(reason)
