"""The fast fan-out path for RTS viewers (issue 18, step 1), sans-IO.

aiortc sends each viewer's media through an RTCRtpSender: a coroutine per
viewer, an RtpPacket object and several awaits per packet, about 0.8 % of a
core per viewer of a 720p30 2 Mbit/s stream. Here the work is split the way
SRS and LiveKit split it:

- `RtpPacketHistory`, one per stream (per rendition): each frame's RTP
  payloads, cut once (session.SharedH264Packetizer), with their 90 kHz
  timestamp and marker bit, kept in a ring bounded in packets and bytes.
  Every viewer writes from it, and NACKs are answered from it.
- `RtpWriter`, one per viewer and track: the viewer's SSRC, payload type,
  sequence numbers and timestamp offset, and the header extensions its
  answer negotiated (`sdes:mid`, `abs-send-time`), written into one
  preallocated buffer per writer with a single `struct.pack_into` per
  packet. `switch_source` keeps the viewer's sequence and timestamp
  continuous across a change of history (a rendition switch); `resend`
  answers a NACK from the history, as RTX (RFC 4588) where negotiated.

What protects and sends the packets is not here: srtp.py protects them
with the keys of the viewer's DTLS handshake; the caller sends them on the
viewer's nominated ICE pair (aiortc_compat.ice_datagram_path). Nothing here
reads a clock: abs-send-time is handed in (`abs_send_time_of`).

media.py (RtsSource, RtsViewer) and session.py (WhepSession) use it when
the node's `rts_fast_path` is on.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# A payload bigger than this is refused. pylibsrtp's session buffer is 1,500
# bytes of which it keeps 144 for the SRTP trailer (SRTP_MAX_TRAILER_LEN), so
# it protects packets of at most 1,356 bytes: this, our largest header
# (MAX_HEADER_BYTES) and the RTX OSN (2) stay under that. aiortc's H.264
# packetiser cuts at the same 1,300 (codecs.h264.PACKET_MAX).
MAX_PAYLOAD_BYTES = 1300
# RFC 8843 sets no length for a mid; browsers and aiortc use "0", "1" ...
# 16 keeps the one-byte extension form (RFC 8285 4.2) and the header short.
MAX_MID_BYTES = 16
MAX_HEADER_BYTES = 40  # 12 fixed, 4 extension header, mid and abs-send-time in the two-byte form, padded
# The shared history per stream: 2,048 packets are 10 s of a 2 Mbit/s
# stream at ~190 packets/s, far more than a NACK round trip (a NACK is
# answered only while the packet could still be played), and 4 MiB bound
# it when packets are large or the bitrate is high.
MAX_HISTORY_PACKETS = 2048
MAX_HISTORY_BYTES = 4 * 1024 * 1024
# At most this many packets are resent for one NACK (a NACK may name up to
# 17 packets per FCI entry and any number of entries): a receiver that lost
# more is better served by a keyframe (it sends a PLI).
MAX_RESENDS_PER_NACK = 32
# aiortc calls the retransmit hook once per NACKed sequence number, so
# MAX_RESENDS_PER_NACK alone bounds nothing there: a viewer's track resends
# at most MAX_RESENDS_PER_SECOND packets a second on average and
# MAX_RESENDS_BURST at once (ResendBudget). 100 a second is half the packets
# of a 2 Mbit/s stream: 30 % loss repaired, and a peer that NACKs everything
# costs at most half a viewer's sending again. A sequence number resent
# less than RESEND_MIN_INTERVAL_SECONDS ago is not resent (nor charged):
# one NACK naming a packet twice, or NACKs back to back (aiortc's receiver
# sends its whole missing set with every new loss). Only that: a receiver
# whose resend was lost asks again within a round trip or so, and 100 ms
# there starved tests/test_rts_loss.py (80 ms each way) of answers in 3 of
# ~19 runs. The last MAX_RESENDS_REMEMBERED resends are remembered.
MAX_RESENDS_PER_SECOND = 100
MAX_RESENDS_BURST = 64
RESEND_MIN_INTERVAL_SECONDS = 0.01
MAX_RESENDS_REMEMBERED = 512
# The sequence-number ranges (runs of consecutive packets of one history,
# stamped with one timestamp offset) a writer remembers to map a NACKed
# sequence number back to the history: a new run starts at each skip to a
# keyframe or switch of source, and at each frame of a joiner's GOP burst
# (stamped one tick apart, media.py): 128 covers a 2 s GOP at 60 fps.
MAX_WRITER_RUNS = 128

# RFC 3550 5.1 fixed header; RFC 8285 4.2 one-byte and 4.3 two-byte extension headers.
RTP_HEADER_BYTES = 12
RTP_VERSION_BITS = 0x80
EXTENSION_BIT = 0x10
MARKER_BIT = 0x80
ONE_BYTE_PROFILE = 0xBEDE
TWO_BYTE_PROFILE = 0x1000
ONE_BYTE_MAX_ID = 14
ONE_BYTE_MAX_LENGTH = 16
ABS_SEND_TIME_BYTES = 3
RTX_OSN_BYTES = 2  # RFC 4588 4: the original sequence number leads the RTX payload
SEQ_MODULO = 1 << 16
TIMESTAMP_MODULO = 1 << 32
HALF_SEQ = 1 << 15

URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"

_MARKER_SEQ_TIMESTAMP = struct.Struct("!BHL")  # bytes 1..7 of the header
_FIXED_HEADER = struct.Struct("!BBHLL")
_OSN = struct.Struct("!H")
_ABS_SEND_TIME = struct.Struct("!L")  # the extension's one-byte id/length and its 3 bytes


class FastPathError(ValueError):
    """The caller handed the fast path something it cannot send (a bug of the caller)."""


def abs_send_time_of(ntp_time: int) -> int:
    """The 24-bit abs-send-time (6.18 fixed-point seconds) of a 64-bit NTP
    time, as aiortc's sender writes it."""
    return (ntp_time >> 14) & 0xFFFFFF


class HistoryPacket:
    """One RTP payload of the stream: `index` counts the stream's packets
    from 0 (never wraps), `timestamp` is the source's 90 kHz (or 48 kHz)
    clock, `marker` is set on a frame's last packet, `keyframe` on every
    packet of a keyframe."""

    __slots__ = ("index", "payload", "timestamp", "marker", "keyframe")

    def __init__(self, index: int, payload: bytes, timestamp: int, marker: bool, keyframe: bool) -> None:
        self.index = index
        self.payload = payload
        self.timestamp = timestamp
        self.marker = marker
        self.keyframe = keyframe


class RtpPacketHistory:
    """A stream's (a rendition's) RTP payloads, cut once for all viewers,
    in a ring bounded by `max_packets` and `max_bytes`: the oldest go first."""

    def __init__(self, max_packets: int = MAX_HISTORY_PACKETS, max_bytes: int = MAX_HISTORY_BYTES) -> None:
        if max_packets < 1 or max_bytes < MAX_PAYLOAD_BYTES:
            raise ValueError("history must hold at least one packet of MAX_PAYLOAD_BYTES")
        self.max_packets = max_packets
        self.max_bytes = max_bytes
        self._ring: list[HistoryPacket | None] = [None] * max_packets
        self.first_index = 0  # the oldest packet still held
        self.next_index = 0  # the index the next packet gets
        self.bytes = 0
        # The last `packets` answer: every viewer asks for the same frame.
        self._slice: tuple[int, int, list[HistoryPacket]] | None = None

    def __len__(self) -> int:
        return self.next_index - self.first_index

    def add_frame(self, payloads: Sequence[bytes], timestamp: int, keyframe: bool = False) -> range:
        """Keep one frame's payloads (marker on the last, as aiortc's sender
        sets it) and return their indexes."""
        first = self.next_index
        last = len(payloads) - 1
        for i, payload in enumerate(payloads):
            if len(payload) > MAX_PAYLOAD_BYTES:
                raise FastPathError(f"RTP payload of {len(payload)} bytes is over MAX_PAYLOAD_BYTES")
            self._append(HistoryPacket(self.next_index, payload, timestamp % TIMESTAMP_MODULO, i == last, keyframe))
        return range(first, self.next_index)

    def _append(self, packet: HistoryPacket) -> None:
        ring, size = self._ring, self.max_packets
        if self.next_index - self.first_index == size:
            self._drop_oldest()
        self.bytes += len(packet.payload)
        while self.bytes > self.max_bytes:
            self._drop_oldest()
        ring[packet.index % size] = packet
        self.next_index = packet.index + 1
        self._slice = None

    def _drop_oldest(self) -> None:
        slot = self.first_index % self.max_packets
        oldest = self._ring[slot]
        if oldest is not None:
            self.bytes -= len(oldest.payload)
            self._ring[slot] = None
        self.first_index += 1

    def get(self, index: int) -> HistoryPacket | None:
        """The packet of that index, or None when it has left the ring (or is not yet there)."""
        if index < self.first_index or index >= self.next_index:
            return None
        return self._ring[index % self.max_packets]

    def packets(self, indexes: range) -> list[HistoryPacket]:
        """The packets of consecutive `indexes`, all held (RtpWriter.claim
        checks): one list, kept until the next packet is added, for the
        native sender's one call per viewer per frame."""
        cached = self._slice
        if cached is not None and cached[0] == indexes.start and cached[1] == indexes.stop:
            return cached[2]
        size = self.max_packets
        start, stop = indexes.start % size, indexes.stop % size
        if len(indexes) == 0:
            packets = []
        elif start < stop:
            packets = self._ring[start:stop]
        else:
            packets = self._ring[start:] + self._ring[:stop]
        self._slice = (indexes.start, indexes.stop, packets)
        return packets

    def keyframe_start(self, after: int) -> int | None:
        """The index of the first packet of the first whole keyframe held at
        or after `after` (where a viewer that fell behind resumes), or None.
        A frame starts after a packet with the marker bit (or at index 0)."""
        for index in range(max(after, self.first_index), self.next_index):
            if self._ring[index % self.max_packets].keyframe:
                previous = self.get(index - 1)
                if index == 0 or (previous is not None and previous.marker):
                    return index
        return None


@dataclass(frozen=True, slots=True)
class RtpStreamParameters:
    """What a viewer's answer negotiated for one track: its SSRC and payload
    type, RTX's (RFC 4588) if any, and the header-extension ids (0: not
    negotiated) of `sdes:mid` (BUNDLE demux, RFC 8843 15.2) and of
    abs-send-time (the receiver's REMB bandwidth estimate)."""

    ssrc: int
    payload_type: int
    mid: str = ""
    mid_id: int = 0
    abs_send_time_id: int = 0
    rtx_ssrc: int = 0
    rtx_payload_type: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.ssrc < TIMESTAMP_MODULO or not 0 <= self.rtx_ssrc < TIMESTAMP_MODULO:
            raise FastPathError("ssrc must be a 32-bit unsigned integer")
        for name in ("payload_type", "rtx_payload_type"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < 128:
                raise FastPathError(f"{name} must be 0..127")
        for name in ("mid_id", "abs_send_time_id"):
            if not 0 <= getattr(self, name) < 256:
                raise FastPathError(f"{name} must be 0..255")
        if self.mid_id and not 0 < len(self.mid.encode()) <= MAX_MID_BYTES:
            raise FastPathError(f"mid must be 1..{MAX_MID_BYTES} bytes when mid_id is set")


def _extension_block(parameters: RtpStreamParameters) -> tuple[bytes, int]:
    """The header-extension block (RFC 8285) aiortc's sender writes for these
    parameters (rtp.pack_header_extensions: mid then abs-send-time, one-byte
    form unless an id or a length does not fit), with a zero abs-send-time,
    and the offset in the block of abs-send-time's id byte (-1: none)."""
    elements: list[tuple[int, bytes]] = []
    if parameters.mid_id:
        elements.append((parameters.mid_id, parameters.mid.encode()))
    if parameters.abs_send_time_id:
        elements.append((parameters.abs_send_time_id, bytes(ABS_SEND_TIME_BYTES)))
    if not elements:
        return b"", -1
    one_byte = all(x_id <= ONE_BYTE_MAX_ID and 0 < len(value) <= ONE_BYTE_MAX_LENGTH for x_id, value in elements)
    body = bytearray()
    abs_offset = -1
    for x_id, value in elements:
        if x_id == parameters.abs_send_time_id and len(value) == ABS_SEND_TIME_BYTES and abs_offset < 0:
            abs_offset = 4 + len(body) + (0 if one_byte else 1)
        body += bytes([(x_id << 4) | (len(value) - 1)]) if one_byte else bytes([x_id, len(value)])
        body += value
    body += bytes(-len(body) % 4)
    profile = ONE_BYTE_PROFILE if one_byte else TWO_BYTE_PROFILE
    return struct.pack("!HH", profile, len(body) // 4) + bytes(body), abs_offset


class _HeaderTemplate:
    """A preallocated packet buffer whose constant header bytes (version,
    extension bit, SSRC, the extension block) are written once."""

    __slots__ = ("buffer", "view", "header_bytes", "abs_offset", "payload_type")

    def __init__(self, ssrc: int, payload_type: int, extensions: bytes, abs_offset: int, extra_bytes: int) -> None:
        self.header_bytes = RTP_HEADER_BYTES + len(extensions)
        if self.header_bytes > MAX_HEADER_BYTES:
            raise FastPathError(f"RTP header of {self.header_bytes} bytes is over MAX_HEADER_BYTES")
        self.buffer = bytearray(self.header_bytes + extra_bytes + MAX_PAYLOAD_BYTES)
        self.view = memoryview(self.buffer)
        first = RTP_VERSION_BITS | (EXTENSION_BIT if extensions else 0)
        _FIXED_HEADER.pack_into(self.buffer, 0, first, payload_type, 0, 0, ssrc)
        self.buffer[RTP_HEADER_BYTES : self.header_bytes] = extensions
        # abs-send-time is written with the byte before it (one-byte form: its
        # id and length; two-byte form: its length), 4 bytes in one pack_into.
        self.abs_offset = RTP_HEADER_BYTES + abs_offset if abs_offset >= 0 else -1
        self.payload_type = payload_type


class _Run:
    """Consecutive packets of one history sent with consecutive sequence
    numbers: `first_count` is the writer's packet count of its first."""

    __slots__ = ("first_count", "history", "first_index", "offset", "count")

    def __init__(self, first_count: int, history: RtpPacketHistory, first_index: int, offset: int) -> None:
        self.first_count = first_count
        self.history = history
        self.first_index = first_index
        self.offset = offset  # the timestamp offset the run was sent with
        self.count = 0


class RtpWriter:
    """One viewer's RTP for one track. `write` returns the packet in the
    writer's own buffer (a memoryview, valid until the next `write`): the
    caller protects it (which copies) before writing the next."""

    def __init__(
        self,
        parameters: RtpStreamParameters,
        sequence_number: int,
        timestamp_origin: int,
        rtx_sequence_number: int = 0,
    ) -> None:
        self.parameters = parameters
        extensions, abs_offset = _extension_block(parameters)
        self._media = _HeaderTemplate(parameters.ssrc, parameters.payload_type, extensions, abs_offset, 0)
        self._rtx = None
        if parameters.rtx_payload_type is not None:
            self._rtx = _HeaderTemplate(
                parameters.rtx_ssrc, parameters.rtx_payload_type, extensions, abs_offset, RTX_OSN_BYTES
            )
        self.sequence_number = sequence_number % SEQ_MODULO  # the next packet's
        self.rtx_sequence_number = rtx_sequence_number % SEQ_MODULO
        self.packets = 0  # written, not counting resends
        self.resends = 0
        self.last_timestamp: int | None = None  # the viewer's, of the last packet written
        self._offset = timestamp_origin % TIMESTAMP_MODULO  # viewer timestamp - source timestamp
        self._history: RtpPacketHistory | None = None
        self._switch_ticks: int | None = None
        self._runs: deque[_Run] = deque(maxlen=MAX_WRITER_RUNS)
        self._run: _Run | None = None
        self._run_next_index = -1

    def switch_source(self, frame_interval_ticks: int) -> None:
        """The next packet written may come from another history (another
        rendition): its frame is stamped one frame interval after the last
        frame sent, and its sequence number follows the last one's. It takes
        effect at the first packet written from a history other than the
        current one (the caller switches at that rendition's keyframe)."""
        if frame_interval_ticks <= 0:
            raise FastPathError("frame_interval_ticks must be positive")
        self._switch_ticks = frame_interval_ticks

    def write(
        self, history: RtpPacketHistory, index: int, abs_send_time: int = 0, timestamp: int | None = None
    ) -> memoryview:
        """The viewer's RTP packet for the history's packet `index`;
        `timestamp`, in the source's clock, stamps it instead of the
        packet's own (a joiner's GOP burst, one tick apart: media.py), and
        a resend of it (a run of its own) carries the same."""
        packet = history.get(index)
        if packet is None:
            raise FastPathError(f"packet {index} is not in the history")
        offset = self._enter(history, index, packet, timestamp, 1)
        timestamp = (packet.timestamp + offset) % TIMESTAMP_MODULO
        media = self._media
        buffer = media.buffer
        _MARKER_SEQ_TIMESTAMP.pack_into(
            buffer, 1, media.payload_type | (MARKER_BIT if packet.marker else 0), self.sequence_number, timestamp
        )
        if media.abs_offset >= 0:
            _ABS_SEND_TIME.pack_into(buffer, media.abs_offset, buffer[media.abs_offset] << 24 | abs_send_time)
        start = media.header_bytes
        end = start + len(packet.payload)
        buffer[start:end] = packet.payload
        self.sequence_number = (self.sequence_number + 1) % SEQ_MODULO
        self.packets += 1
        self.last_timestamp = timestamp
        return media.view[:end]

    def _enter(self, history: RtpPacketHistory, index: int, packet: HistoryPacket, timestamp, count: int) -> int:
        """The bookkeeping of writing `count` consecutive packets from
        `index` (`packet` the first): a switch of history, the run they
        belong to. Returns their timestamp offset."""
        if history is not self._history:
            if self._history is not None:
                if self._switch_ticks is None:
                    raise FastPathError("a new history needs switch_source first")
                self._offset = (self.last_timestamp + self._switch_ticks - packet.timestamp) % TIMESTAMP_MODULO
            self._switch_ticks = None
            self._history = history
        offset = self._offset
        if timestamp is not None:
            offset = (offset + timestamp - packet.timestamp) % TIMESTAMP_MODULO
        run = self._run
        if index != self._run_next_index or run is None or run.history is not history or run.offset != offset:
            run = self._run = _Run(self.packets, history, index, offset)
            self._runs.append(run)
        run.count += count
        self._run_next_index = index + count
        return offset

    @property
    def template(self) -> _HeaderTemplate:
        """The media packets' header template (what the native sender copies)."""
        return self._media

    def claim(self, history: RtpPacketHistory, indexes: range) -> tuple[int, int]:
        """What `write` does for each of the consecutive `indexes` but the
        writing itself (the native sender, srtp.native, writes the headers: media.FastTrackSender):
        returns the first packet's sequence number and the timestamp offset
        (viewer timestamp - source timestamp) for all of them. The packets'
        own timestamps are used (no joiner's stamp)."""
        if indexes.step != 1:
            raise FastPathError("claim takes consecutive indexes")
        count = len(indexes)
        if count == 0:
            return self.sequence_number, self._offset
        first, last = history.get(indexes.start), history.get(indexes.stop - 1)
        if first is None or last is None:
            raise FastPathError(f"packets {indexes.start}..{indexes.stop - 1} are not all in the history")
        offset = self._enter(history, indexes.start, first, None, count)
        sequence_number = self.sequence_number
        self.sequence_number = (sequence_number + count) % SEQ_MODULO
        self.packets += count
        self.last_timestamp = (last.timestamp + offset) % TIMESTAMP_MODULO
        return sequence_number, offset

    def advance(self, history: RtpPacketHistory, count: int, last_source_timestamp: int) -> None:
        """`count` more packets of `history`, following on from the last one
        written or claimed, with the same timestamp offset, were written
        elsewhere (the native fan-out group, fanout.py, writes them for all
        its viewers in one call): their bookkeeping, as `claim` keeps it.
        `last_source_timestamp` is the last one's own timestamp."""
        if count <= 0:
            return
        if history is not self._history:
            raise FastPathError("advance follows on from the history last written")
        run = self._run
        offset = self._offset
        if run is None or run.history is not history or run.offset != offset:
            run = self._run = _Run(self.packets, history, self._run_next_index, offset)
            self._runs.append(run)
        run.count += count
        self._run_next_index += count
        self.sequence_number = (self.sequence_number + count) % SEQ_MODULO
        self.packets += count
        self.last_timestamp = (last_source_timestamp + offset) % TIMESTAMP_MODULO

    @property
    def next_index(self) -> int:
        """The history index that follows the last packet written or claimed."""
        return self._run_next_index

    @property
    def history(self) -> RtpPacketHistory | None:
        """The history last written from."""
        return self._history

    @property
    def timestamp_offset(self) -> int:
        """Viewer timestamp - source timestamp, for the next packet of the current history."""
        return self._offset

    def _find(self, sequence_number: int) -> tuple[_Run, int] | None:
        """The run and history index of a sequence number this writer sent."""
        back = (self.sequence_number - 1 - sequence_number) % SEQ_MODULO
        if back >= HALF_SEQ or back >= self.packets:
            return None  # ahead of what was sent, or older than the first packet
        count = self.packets - 1 - back
        for run in reversed(self._runs):
            if run.first_count <= count:
                if count - run.first_count < run.count:
                    return run, run.first_index + count - run.first_count
                return None
        return None

    def resend(self, lost: Iterable[int], abs_send_time: int = 0) -> list[bytes]:
        """The packets answering a NACK (RFC 4585 6.2.1) for `lost` sequence
        numbers: each still in its history, at most MAX_RESENDS_PER_NACK, in
        the order asked, each once; RTX (RFC 4588 4: the original sequence
        number before the payload, the RTX SSRC and sequence) when negotiated,
        else the original packet again."""
        answers: list[bytes] = []
        seen: set[int] = set()
        for sequence_number in lost:
            if len(answers) >= MAX_RESENDS_PER_NACK:
                break
            sequence_number %= SEQ_MODULO
            if sequence_number in seen:
                continue
            seen.add(sequence_number)
            found = self._find(sequence_number)
            if found is None:
                continue
            run, index = found
            packet = run.history.get(index)
            if packet is None:
                continue  # left the history
            answers.append(self._resend_one(packet, sequence_number, run.offset, abs_send_time))
        return answers

    def _resend_one(self, packet: HistoryPacket, sequence_number: int, offset: int, abs_send_time: int) -> bytes:
        timestamp = (packet.timestamp + offset) % TIMESTAMP_MODULO
        marker = MARKER_BIT if packet.marker else 0
        rtx = self._rtx
        template = rtx if rtx is not None else self._media
        buffer = template.buffer
        if rtx is not None:
            seq = self.rtx_sequence_number
            self.rtx_sequence_number = (seq + 1) % SEQ_MODULO
        else:
            seq = sequence_number
        _MARKER_SEQ_TIMESTAMP.pack_into(buffer, 1, template.payload_type | marker, seq, timestamp)
        if template.abs_offset >= 0:
            _ABS_SEND_TIME.pack_into(buffer, template.abs_offset, buffer[template.abs_offset] << 24 | abs_send_time)
        start = template.header_bytes
        if rtx is not None:
            _OSN.pack_into(buffer, start, sequence_number)
            start += RTX_OSN_BYTES
        end = start + len(packet.payload)
        buffer[start:end] = packet.payload
        self.resends += 1
        return bytes(buffer[:end])


class ResendBudget:
    """A token bucket for NACK answers: `allow(now, sequence_number)` says
    whether to resend that packet: not when it was resent less than
    `min_interval` seconds ago, else when a token is left of `burst`,
    refilled at `rate` a second. `now`: any monotonic clock in seconds,
    handed in."""

    __slots__ = ("rate", "burst", "min_interval", "refused", "repeated", "_tokens", "_at", "_resent")

    def __init__(
        self,
        rate: float = MAX_RESENDS_PER_SECOND,
        burst: int = MAX_RESENDS_BURST,
        min_interval: float = RESEND_MIN_INTERVAL_SECONDS,
    ) -> None:
        if rate < 0 or burst < 1 or min_interval < 0:
            raise ValueError("a resend budget needs rate >= 0, burst >= 1 and min_interval >= 0")
        self.rate = rate
        self.burst = burst
        self.min_interval = min_interval
        self.refused = 0  # NACKed packets not resent for want of tokens
        self.repeated = 0  # NACKed again within min_interval of their resend
        self._tokens = float(burst)
        self._at: float | None = None
        self._resent: dict[int, float] = {}  # sequence number -> when, oldest first

    def allow(self, now: float, sequence_number: int) -> bool:
        resent = self._resent
        last = resent.get(sequence_number)
        if last is not None and 0 <= now - last < self.min_interval:
            self.repeated += 1
            return False
        tokens = self._tokens
        if self._at is not None and now > self._at:
            tokens = min(float(self.burst), tokens + (now - self._at) * self.rate)
        if self._at is None or now > self._at:
            self._at = now
        if tokens < 1:
            self._tokens = tokens
            self.refused += 1
            return False
        self._tokens = tokens - 1
        resent.pop(sequence_number, None)
        resent[sequence_number] = now
        if len(resent) > MAX_RESENDS_REMEMBERED:
            del resent[next(iter(resent))]
        return True


def extension_ids(header_extensions: Iterable) -> tuple[int, int]:
    """The ids of `sdes:mid` and abs-send-time (0 when absent) among an
    answer's negotiated header extensions (aiortc's
    RTCRtpHeaderExtensionParameters: `id`, `uri`)."""
    mid_id = abs_id = 0
    for extension in header_extensions:
        if extension.uri == URI_MID:
            mid_id = extension.id
        elif extension.uri == URI_ABS_SEND_TIME:
            abs_id = extension.id
    return mid_id, abs_id
