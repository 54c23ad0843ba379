"""SRT packets as small frozen dataclasses: `parse_packet(data)` and
`bytes(packet)` (draft-sharabayko-srt section 3).

All header and control fields are big-endian 32-bit words. libsrt builds a
control packet's body as host-order words and swaps every word when it
sends, so two things come out "word-reversed" on the wire: the handshake's
Peer IP Address and the strings (Stream ID, congestion type), whose bytes
are stored in memory order and so travel with each 4-byte group reversed.
We do the same, so that libsrt peers read what we mean.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar

from .errors import SrtProtocolError
from .sequence import SEQ_MASK

HEADER_BYTES = 16
# The largest datagram we read. libsrt's largest MSS (SRTO_MSS) is 1500
# bytes, UDP and IP headers included; nothing a peer may send is larger.
MAX_DATAGRAM_BYTES = 1500
# libsrt's MAX_SID_LENGTH: the Stream ID extension carries at most 512 bytes.
MAX_STREAM_ID_BYTES = 512
HANDSHAKE_CIF_BYTES = 48

_HEADER = struct.Struct(">IIII")
_CONTROL_BIT = 0x8000_0000


class SrtControlType(IntEnum):
    HANDSHAKE = 0x0000
    KEEPALIVE = 0x0001
    ACK = 0x0002
    NAK = 0x0003
    CONGESTION_WARNING = 0x0004
    SHUTDOWN = 0x0005
    ACKACK = 0x0006
    DROP_REQUEST = 0x0007
    PEER_ERROR = 0x0008
    USER_DEFINED = 0x7FFF


class SrtHandshakeType(IntEnum):
    """Handshake Type (3.2.1 Table 4). Values from 1000 up are rejections."""

    DONE = 0xFFFF_FFFD
    AGREEMENT = 0xFFFF_FFFE
    CONCLUSION = 0xFFFF_FFFF
    WAVEAHAND = 0x0000_0000
    INDUCTION = 0x0000_0001


# libsrt's URQ_FAILURE_TYPES: a rejection is Handshake Type 1000 + reason.
REJECTION_BASE = 1000


class SrtRejectReason(IntEnum):
    """Why a handshake was refused (libsrt's SRT_REJECT_REASON, draft 3.2.1.1.2,
    and the access-control codes of libsrt's access_control.h, 1000 up).

    On the wire the Handshake Type is 1000 + the reason: 1403 goes as 2403."""

    UNKNOWN = 0
    SYSTEM = 1
    PEER = 2
    RESOURCE = 3
    ROGUE = 4
    BACKLOG = 5
    IPE = 6
    CLOSE = 7
    VERSION = 8
    RDVCOOKIE = 9
    BADSECRET = 10
    UNSECURE = 11
    MESSAGEAPI = 12
    CONGESTION = 13
    FILTER = 14
    GROUP = 15
    TIMEOUT = 16
    CRYPTO = 17
    # Access control (SRT_REJX_*): the server's verdict on the Stream ID.
    FALLBACK = 1000
    KEY_NOTSUP = 1001
    HOSTNOTFOUND = 1003
    BAD_REQUEST = 1400
    UNAUTHORIZED = 1401
    OVERLOAD = 1402
    FORBIDDEN = 1403
    NOTFOUND = 1404
    BAD_MODE = 1405
    UNACCEPTABLE = 1406
    CONFLICT = 1409
    ISE = 1500
    UNIMPLEMENTED = 1501


# The highest reason we send or accept: libsrt's user range is 2000-2999.
MAX_REJECT_REASON = 2999


class SrtHandshakeExtensionType(IntEnum):
    """Extension Type of a handshake extension block (3.2.1, libsrt SRT_CMD_*)."""

    HSREQ = 1
    HSRSP = 2
    KMREQ = 3
    KMRSP = 4
    SID = 5
    CONGESTION = 6
    FILTER = 7
    GROUP = 8


# The Extension Field of a CONCLUSION (3.2.1 Table 5) says which blocks follow.
EXTENSION_FLAG_HSREQ = 0x1
EXTENSION_FLAG_KMREQ = 0x2
EXTENSION_FLAG_CONFIG = 0x4
# The Extension Field of the listener's INDUCTION answer: "I speak HSv5".
SRT_MAGIC_CODE = 0x4A17
# A UDT4-style INDUCTION request carries the socket type there (2, DGRAM).
UDT_DGRAM = 2


class SrtFlag:
    """SRT Flags of the HSREQ/HSRSP extension (3.2.1.1.1)."""

    TSBPDSND = 1 << 0
    TSBPDRCV = 1 << 1
    CRYPT = 1 << 2
    TLPKTDROP = 1 << 3
    PERIODICNAK = 1 << 4
    REXMITFLG = 1 << 5
    STREAM = 1 << 6
    PACKET_FILTER = 1 << 7


class SrtPacketPosition(IntEnum):
    """PP field of a data packet: where it sits in its message (3.1)."""

    MIDDLE = 0b00
    LAST = 0b01
    FIRST = 0b10
    SINGLE = 0b11


class SrtKeyFlag(IntEnum):
    """KK field of a data packet, KK of a key material message (3.1, 3.2.2)."""

    NONE = 0b00
    EVEN = 0b01
    ODD = 0b10
    BOTH = 0b11  # key material only: both keys follow


def swap_words(data: bytes) -> bytes:
    """Reverse the bytes of every 4-byte group, padding the last one with NULs."""
    if len(data) % 4:
        data = bytes(data) + b"\x00" * (4 - len(data) % 4)
    n = len(data) // 4
    return struct.pack(f">{n}I", *struct.unpack(f"<{n}I", data))


def peer_ip_field(host: str) -> bytes:
    """The 16-byte Peer IP Address of a handshake, in memory order (IPv4 in the
    first four bytes). `bytes(SrtHandshake)` swaps it as libsrt does."""
    packed = ipaddress.ip_address(host).packed
    return packed + b"\x00" * (16 - len(packed))


@dataclass(frozen=True, slots=True)
class SrtDataPacket:
    """A data packet (3.1). `key` says which key encrypted the payload."""

    seq: int
    payload: bytes
    timestamp: int = 0  # microseconds since the sender's start, 32-bit
    dest_socket_id: int = 0
    message_number: int = 1  # 26 bits
    position: SrtPacketPosition = SrtPacketPosition.SINGLE
    in_order: bool = False
    key: SrtKeyFlag = SrtKeyFlag.NONE
    retransmitted: bool = False

    def __bytes__(self) -> bytes:
        word = (
            self.position << 30
            | self.in_order << 29
            | self.key << 27
            | self.retransmitted << 26
            | (self.message_number & 0x03FF_FFFF)
        )
        return _HEADER.pack(self.seq & SEQ_MASK, word, self.timestamp, self.dest_socket_id) + self.payload


def _control_header(control_type: int, subtype: int, type_specific: int, timestamp: int, dest: int) -> bytes:
    return _HEADER.pack(_CONTROL_BIT | control_type << 16 | subtype, type_specific, timestamp, dest)


# libsrt pads the empty body of KEEPALIVE, SHUTDOWN and ACKACK to one word.
_PADDING = b"\x00\x00\x00\x00"


@dataclass(frozen=True, slots=True)
class SrtKeepalive:
    CONTROL_TYPE: ClassVar[int] = SrtControlType.KEEPALIVE
    timestamp: int = 0
    dest_socket_id: int = 0

    def __bytes__(self) -> bytes:
        return _control_header(self.CONTROL_TYPE, 0, 0, self.timestamp, self.dest_socket_id) + _PADDING


@dataclass(frozen=True, slots=True)
class SrtShutdown:
    CONTROL_TYPE: ClassVar[int] = SrtControlType.SHUTDOWN
    timestamp: int = 0
    dest_socket_id: int = 0

    def __bytes__(self) -> bytes:
        return _control_header(self.CONTROL_TYPE, 0, 0, self.timestamp, self.dest_socket_id) + _PADDING


@dataclass(frozen=True, slots=True)
class SrtAck:
    """ACK (3.2.4): the receiver has everything before `last_acked_seq`.

    A light ACK carries the sequence number alone (`rtt_us` is None), a small
    ACK adds RTT, RTT variance and free buffer, a full ACK the rates too.
    Light ACKs have Acknowledgement Number 0; full ones count up and are
    answered by ACKACK."""

    CONTROL_TYPE: ClassVar[int] = SrtControlType.ACK
    last_acked_seq: int
    ack_number: int = 0
    rtt_us: int | None = None
    rttvar_us: int | None = None
    available_buffer_packets: int | None = None
    packets_per_second: int | None = None
    link_capacity_packets_per_second: int | None = None
    receive_rate_bytes_per_second: int | None = None
    timestamp: int = 0
    dest_socket_id: int = 0

    @property
    def is_light(self) -> bool:
        return self.rtt_us is None

    def __bytes__(self) -> bytes:
        words = [self.last_acked_seq & SEQ_MASK]
        if self.rtt_us is not None:
            words += [self.rtt_us, self.rttvar_us or 0, self.available_buffer_packets or 0]
            if self.packets_per_second is not None:
                words += [self.packets_per_second, self.link_capacity_packets_per_second or 0]
                # An ACK of SRT before 1.2 has no receive rate (parse_packet
                # gives None): written back, it stays 24 bytes.
                if self.receive_rate_bytes_per_second is not None:
                    words.append(self.receive_rate_bytes_per_second)
        header = _control_header(self.CONTROL_TYPE, 0, self.ack_number, self.timestamp, self.dest_socket_id)
        return header + struct.pack(f">{len(words)}I", *words)


@dataclass(frozen=True, slots=True)
class SrtNak:
    """NAK (3.2.5): the receiver misses these packets. `losses` holds
    inclusive (first, last) ranges; a single packet is (seq, seq)."""

    CONTROL_TYPE: ClassVar[int] = SrtControlType.NAK
    losses: tuple[tuple[int, int], ...]
    timestamp: int = 0
    dest_socket_id: int = 0

    def __bytes__(self) -> bytes:
        words: list[int] = []
        for first, last in self.losses:
            if first == last:
                words.append(first & SEQ_MASK)
            else:
                words += [_CONTROL_BIT | (first & SEQ_MASK), last & SEQ_MASK]
        header = _control_header(self.CONTROL_TYPE, 0, 0, self.timestamp, self.dest_socket_id)
        return header + struct.pack(f">{len(words)}I", *words)


@dataclass(frozen=True, slots=True)
class SrtAckAck:
    """ACKACK (3.2.8): the sender got the full ACK numbered `ack_number`."""

    CONTROL_TYPE: ClassVar[int] = SrtControlType.ACKACK
    ack_number: int
    timestamp: int = 0
    dest_socket_id: int = 0

    def __bytes__(self) -> bytes:
        return _control_header(self.CONTROL_TYPE, 0, self.ack_number, self.timestamp, self.dest_socket_id) + _PADDING


@dataclass(frozen=True, slots=True)
class SrtDropRequest:
    """Message Drop Request (3.2.9): the sender will not retransmit these."""

    CONTROL_TYPE: ClassVar[int] = SrtControlType.DROP_REQUEST
    message_number: int
    first_seq: int
    last_seq: int
    timestamp: int = 0
    dest_socket_id: int = 0

    def __bytes__(self) -> bytes:
        header = _control_header(self.CONTROL_TYPE, 0, self.message_number, self.timestamp, self.dest_socket_id)
        return header + struct.pack(">II", self.first_seq & SEQ_MASK, self.last_seq & SEQ_MASK)


@dataclass(frozen=True, slots=True)
class SrtPeerError:
    """Peer Error (3.2.10): the peer had a (file-mode) error, code in the
    Type-specific field."""

    CONTROL_TYPE: ClassVar[int] = SrtControlType.PEER_ERROR
    error_code: int
    timestamp: int = 0
    dest_socket_id: int = 0

    def __bytes__(self) -> bytes:
        return _control_header(self.CONTROL_TYPE, 0, self.error_code, self.timestamp, self.dest_socket_id) + _PADDING


@dataclass(frozen=True, slots=True)
class SrtCongestionWarning:
    """Congestion Warning (3.2.6), UDT's; SRT peers do not act on it."""

    CONTROL_TYPE: ClassVar[int] = SrtControlType.CONGESTION_WARNING
    timestamp: int = 0
    dest_socket_id: int = 0

    def __bytes__(self) -> bytes:
        return _control_header(self.CONTROL_TYPE, 0, 0, self.timestamp, self.dest_socket_id) + _PADDING


@dataclass(frozen=True, slots=True)
class SrtUserControl:
    """User-defined control packet (Control Type 0x7FFF). SRT uses it after
    the handshake for key refresh: subtype KMREQ (3) and KMRSP (4) with a
    key material message in its natural byte order (3.2.2)."""

    CONTROL_TYPE: ClassVar[int] = SrtControlType.USER_DEFINED
    subtype: int
    body: bytes
    timestamp: int = 0
    dest_socket_id: int = 0

    def __bytes__(self) -> bytes:
        return _control_header(self.CONTROL_TYPE, self.subtype, 0, self.timestamp, self.dest_socket_id) + self.body


@dataclass(frozen=True, slots=True)
class SrtHsExtension:
    """The HSREQ/HSRSP extension (3.2.1.1): SRT version, flags and the two
    TSBPD delays in milliseconds."""

    srt_version: int
    flags: int
    receiver_delay_ms: int
    sender_delay_ms: int

    def to_bytes(self) -> bytes:
        return struct.pack(">IIHH", self.srt_version, self.flags, self.receiver_delay_ms, self.sender_delay_ms)


@dataclass(frozen=True, slots=True)
class SrtHandshake:
    """Handshake (3.2.1), with the HSv5 extension blocks it carries.

    `hs_command` and `km_command` say whether `hs` and `km` are requests
    (HSREQ, KMREQ) or responses. `km` is the raw key material block (a
    response may be a single error word); `crypto.parse_key_material` reads
    it. `other_extensions` keeps any other block (packet filter, group) as
    (type, body) so the listener can refuse what it does not support."""

    CONTROL_TYPE: ClassVar[int] = SrtControlType.HANDSHAKE
    version: int
    handshake_type: int
    socket_id: int
    syn_cookie: int = 0
    encryption_field: int = 0
    extension_field: int = 0
    initial_seq: int = 0
    mtu_bytes: int = 1500
    flow_window_packets: int = 8192
    peer_ip: bytes = b"\x00" * 16
    hs: SrtHsExtension | None = None
    hs_command: int = SrtHandshakeExtensionType.HSREQ
    km: bytes | None = None
    km_command: int = SrtHandshakeExtensionType.KMREQ
    stream_id: str | None = None
    congestion: str | None = None
    other_extensions: tuple[tuple[int, bytes], ...] = field(default=())
    timestamp: int = 0
    dest_socket_id: int = 0

    @property
    def rejection_reason(self) -> int | None:
        """The reason if this handshake is a rejection, else None."""
        if REJECTION_BASE <= self.handshake_type < SrtHandshakeType.DONE:
            return self.handshake_type - REJECTION_BASE
        return None

    def __bytes__(self) -> bytes:
        parts = [
            _control_header(self.CONTROL_TYPE, 0, 0, self.timestamp, self.dest_socket_id),
            struct.pack(
                ">IHHIIIIII",
                self.version,
                self.encryption_field,
                self.extension_field,
                self.initial_seq & SEQ_MASK,
                self.mtu_bytes,
                self.flow_window_packets,
                self.handshake_type,
                self.socket_id,
                self.syn_cookie,
            ),
            swap_words(self.peer_ip),
        ]
        if self.hs is not None:
            parts.append(_extension_block(self.hs_command, self.hs.to_bytes()))
        # In libsrt's order: key material last.
        if self.stream_id is not None:
            parts.append(_extension_block(SrtHandshakeExtensionType.SID, swap_words(self.stream_id.encode())))
        if self.congestion is not None:
            parts.append(_extension_block(SrtHandshakeExtensionType.CONGESTION, swap_words(self.congestion.encode())))
        for extension_type, body in self.other_extensions:
            parts.append(_extension_block(extension_type, body))
        if self.km is not None:
            parts.append(_extension_block(self.km_command, self.km))
        return b"".join(parts)


def _extension_block(extension_type: int, body: bytes) -> bytes:
    if len(body) % 4:
        body = body + b"\x00" * (4 - len(body) % 4)
    return struct.pack(">HH", extension_type, len(body) // 4) + body


SrtControlPacket = (
    SrtHandshake
    | SrtKeepalive
    | SrtAck
    | SrtNak
    | SrtCongestionWarning
    | SrtShutdown
    | SrtAckAck
    | SrtDropRequest
    | SrtPeerError
    | SrtUserControl
)
SrtPacket = SrtDataPacket | SrtControlPacket


def parse_packet(data: bytes) -> SrtPacket:
    """One datagram into a packet; `SrtProtocolError` saying why not."""
    if len(data) < HEADER_BYTES:
        raise SrtProtocolError(f"datagram of {len(data)} bytes is shorter than the 16-byte header")
    if len(data) > MAX_DATAGRAM_BYTES:
        raise SrtProtocolError(f"datagram of {len(data)} bytes exceeds {MAX_DATAGRAM_BYTES}")
    word0, word1, timestamp, dest = _HEADER.unpack_from(data)
    if not word0 & _CONTROL_BIT:
        return SrtDataPacket(
            seq=word0,
            payload=bytes(data[HEADER_BYTES:]),
            timestamp=timestamp,
            dest_socket_id=dest,
            message_number=word1 & 0x03FF_FFFF,
            position=SrtPacketPosition(word1 >> 30),
            in_order=bool(word1 >> 29 & 1),
            key=SrtKeyFlag(word1 >> 27 & 0b11),
            retransmitted=bool(word1 >> 26 & 1),
        )
    control_type = word0 >> 16 & 0x7FFF
    parser = _CONTROL_PARSERS.get(control_type)
    if parser is None:
        raise SrtProtocolError(f"unknown control type {control_type:#06x}")
    return parser(word0 & 0xFFFF, word1, timestamp, dest, memoryview(data)[HEADER_BYTES:])


def _parse_keepalive(subtype, type_specific, timestamp, dest, cif) -> SrtKeepalive:
    return SrtKeepalive(timestamp, dest)


def _parse_shutdown(subtype, type_specific, timestamp, dest, cif) -> SrtShutdown:
    return SrtShutdown(timestamp, dest)


def _parse_congestion_warning(subtype, type_specific, timestamp, dest, cif) -> SrtCongestionWarning:
    return SrtCongestionWarning(timestamp, dest)


def _parse_ackack(subtype, type_specific, timestamp, dest, cif) -> SrtAckAck:
    return SrtAckAck(type_specific, timestamp, dest)


def _parse_peer_error(subtype, type_specific, timestamp, dest, cif) -> SrtPeerError:
    return SrtPeerError(type_specific, timestamp, dest)


def _parse_user_control(subtype, type_specific, timestamp, dest, cif) -> SrtUserControl:
    return SrtUserControl(subtype, bytes(cif), timestamp, dest)


def _parse_ack(subtype, type_specific, timestamp, dest, cif) -> SrtAck:
    n = len(cif)
    if n < 4:
        raise SrtProtocolError(f"ACK body of {n} bytes is shorter than 4")
    if n < 16:  # light ACK
        return SrtAck(
            struct.unpack_from(">I", cif)[0] & SEQ_MASK, type_specific, timestamp=timestamp, dest_socket_id=dest
        )
    seq, rtt, rttvar, buffer = struct.unpack_from(">IIII", cif)
    if n < 24:  # small ACK
        return SrtAck(seq & SEQ_MASK, type_specific, rtt, rttvar, buffer, timestamp=timestamp, dest_socket_id=dest)
    rate, capacity = struct.unpack_from(">II", cif, 16)
    # Before SRT 1.2 a full ACK stopped at the link capacity.
    byte_rate = struct.unpack_from(">I", cif, 24)[0] if n >= 28 else None
    return SrtAck(seq & SEQ_MASK, type_specific, rtt, rttvar, buffer, rate, capacity, byte_rate, timestamp, dest)


def _parse_nak(subtype, type_specific, timestamp, dest, cif) -> SrtNak:
    n = len(cif)
    if n < 4 or n % 4:
        raise SrtProtocolError(f"NAK body of {n} bytes is not a whole number of words, at least one")
    words = struct.unpack_from(f">{n // 4}I", cif)
    losses = []
    i = 0
    while i < len(words):
        word = words[i]
        if word & _CONTROL_BIT:
            if i + 1 >= len(words):
                raise SrtProtocolError("NAK loss range has no end")
            losses.append((word & SEQ_MASK, words[i + 1] & SEQ_MASK))
            i += 2
        else:
            losses.append((word, word))
            i += 1
    return SrtNak(tuple(losses), timestamp, dest)


def _parse_drop_request(subtype, type_specific, timestamp, dest, cif) -> SrtDropRequest:
    if len(cif) < 8:
        raise SrtProtocolError(f"drop request body of {len(cif)} bytes is shorter than 8")
    first, last = struct.unpack_from(">II", cif)
    return SrtDropRequest(type_specific, first & SEQ_MASK, last & SEQ_MASK, timestamp, dest)


def _reversed_string(body: memoryview, what: str) -> str:
    try:
        return swap_words(bytes(body)).rstrip(b"\x00").decode()
    except UnicodeDecodeError:
        raise SrtProtocolError(f"{what} is not UTF-8") from None


def _parse_handshake(subtype, type_specific, timestamp, dest, cif) -> SrtHandshake:
    if len(cif) < HANDSHAKE_CIF_BYTES:
        raise SrtProtocolError(f"handshake body of {len(cif)} bytes is shorter than {HANDSHAKE_CIF_BYTES}")
    (version, encryption, extension, isn, mtu, window, hs_type, socket_id, cookie) = struct.unpack_from(
        ">IHHIIIIII", cif
    )
    fields = {}
    others = []
    offset = HANDSHAKE_CIF_BYTES
    while offset < len(cif):
        if len(cif) - offset < 4:
            raise SrtProtocolError(f"handshake has {len(cif) - offset} bytes after its last extension")
        ext_type, words = struct.unpack_from(">HH", cif, offset)
        offset += 4
        body = cif[offset : offset + 4 * words]
        if len(body) < 4 * words:
            raise SrtProtocolError(f"handshake extension {ext_type} of {4 * words} bytes overruns the packet")
        offset += 4 * words
        if ext_type in (SrtHandshakeExtensionType.HSREQ, SrtHandshakeExtensionType.HSRSP):
            if len(body) < 12:
                raise SrtProtocolError(f"handshake extension {ext_type} of {len(body)} bytes is shorter than 12")
            key = "hs"
            value = SrtHsExtension(*struct.unpack_from(">IIHH", body))
            fields["hs_command"] = ext_type
        elif ext_type in (SrtHandshakeExtensionType.KMREQ, SrtHandshakeExtensionType.KMRSP):
            key = "km"
            value = bytes(body)
            fields["km_command"] = ext_type
        elif ext_type == SrtHandshakeExtensionType.SID:
            if len(body) > MAX_STREAM_ID_BYTES:
                raise SrtProtocolError(f"stream ID of {len(body)} bytes exceeds {MAX_STREAM_ID_BYTES}")
            key = "stream_id"
            value = _reversed_string(body, "stream ID")
        elif ext_type == SrtHandshakeExtensionType.CONGESTION:
            key = "congestion"
            value = _reversed_string(body, "congestion type")
        else:
            others.append((ext_type, bytes(body)))
            continue
        if key in fields:
            raise SrtProtocolError(f"handshake extension {ext_type} appears twice")
        fields[key] = value
    return SrtHandshake(
        version=version,
        handshake_type=hs_type,
        socket_id=socket_id,
        syn_cookie=cookie,
        encryption_field=encryption,
        extension_field=extension,
        initial_seq=isn & SEQ_MASK,
        mtu_bytes=mtu,
        flow_window_packets=window,
        peer_ip=swap_words(bytes(cif[32:48])),
        other_extensions=tuple(others),
        timestamp=timestamp,
        dest_socket_id=dest,
        **fields,
    )


# Control type -> parser of (subtype, type-specific, timestamp, dest, body).
_CONTROL_PARSERS = {
    SrtControlType.HANDSHAKE: _parse_handshake,
    SrtControlType.KEEPALIVE: _parse_keepalive,
    SrtControlType.ACK: _parse_ack,
    SrtControlType.NAK: _parse_nak,
    SrtControlType.CONGESTION_WARNING: _parse_congestion_warning,
    SrtControlType.SHUTDOWN: _parse_shutdown,
    SrtControlType.ACKACK: _parse_ackack,
    SrtControlType.DROP_REQUEST: _parse_drop_request,
    SrtControlType.PEER_ERROR: _parse_peer_error,
    SrtControlType.USER_DEFINED: _parse_user_control,
}
