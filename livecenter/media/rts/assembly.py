"""A WHIP publisher's RTP, made into frames on one timeline: which packets
form a frame, when a lost one is given up on, and what time each frame is.

aiortc's receiver does the transport: SRTP, RTX unwrapping, NACKs for the
gaps it sees (video), receiver reports. Its jitter buffer, though, hands a
frame out only when the first packet of the *next* frame arrives (a frame
interval late, 33 ms at 30 fps) and holds audio back four packets (80 ms);
a server that forwards frames has no decoder to feed early and can do
better. `FrameAssembler` releases a frame as soon as it is whole:

- video: the packets from a frame's first to the one with the RTP marker
  bit (RFC 6184 5.1, RFC 7741 4.1: the last packet of an access unit or
  picture), all present;
- audio (Opus, RFC 7587): every packet is a frame.

A gap is waited for (NACK and retransmission take a round trip) until
packets past it have waited `loss_wait_ms` or more than `max_packets` are
held; then the frames it broke are dropped and video waits for a keyframe,
asking the publisher for one (`need_keyframe`). Packets behind the point
already handed out are late duplicates and are ignored.

`TrackClock` turns a track's RTP timestamps into the stream's milliseconds.
Until the publisher's first RTCP sender reports, each track starts at the
time its first packet arrived; once every track has one, the tracks are
placed against one another by the reports' NTP times (RFC 3550 6.4.1: the
NTP and RTP timestamps of one instant), which is what keeps audio and
video in sync however the network delayed their first packets. The video
track is the reference and does not move; the others move once.

Pure: no I/O; the clock is passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

SEQUENCE_MODULO = 1 << 16
RTP_TIMESTAMP_MODULO = 1 << 32
# A packet this far from the next expected sequence number, either way, is
# not a reordering but a new run (a publisher that restarted its sequence):
# the assembler starts again from it.
MAX_SEQUENCE_JUMP = 3000


@dataclass(frozen=True, slots=True)
class AssembledFrame:
    data: bytes  # the depayloaded frame: an Annex B access unit, a VP8 frame, an Opus packet
    rtp_timestamp: int
    keyframe: bool


def _ahead(seq: int, of: int) -> int:
    """How far `seq` is past `of` in 16-bit sequence space, -32768..32767."""
    return (seq - of + SEQUENCE_MODULO // 2) % SEQUENCE_MODULO - SEQUENCE_MODULO // 2


class FrameAssembler:
    """One SSRC's depayloaded packets to whole frames (module docstring).

    `is_keyframe(data)` says whether a frame is one (video); None for a track
    whose every frame stands alone (audio)."""

    def __init__(
        self,
        *,
        packet_is_frame: bool,
        max_packets: int,
        loss_wait_ms: float,
        is_keyframe: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.packet_is_frame = packet_is_frame
        self.max_packets = max_packets
        self.loss_wait_ms = loss_wait_ms
        self.is_keyframe = is_keyframe
        self._next: int | None = None  # the sequence number the next frame starts at
        # seq -> (rtp timestamp, marker, starts a frame, data, arrival ms)
        self._held: dict[int, tuple[int, bool, bool, bytes, float]] = {}
        self.need_keyframe = is_keyframe is not None  # a decoder must start at one
        self.frames = 0
        self.frames_lost = 0  # frames given up on (a gap not repaired in time)
        self.frames_skipped = 0  # whole frames dropped while waiting for a keyframe
        self.packets_late = 0  # behind what was handed out: duplicates, or too late

    def add(self, seq: int, timestamp: int, marker: bool, starts_frame: bool, data: bytes, now_ms: float) -> list:
        """One packet in; out the frames it completes (AssembledFrame), in order."""
        if self._next is None:
            if not (starts_frame or self.packet_is_frame):
                return []  # joined in the middle of a frame: wait for the next one
            self._next = seq
        ahead = _ahead(seq, self._next)
        if abs(ahead) > MAX_SEQUENCE_JUMP:
            self._restart(seq)
        elif ahead < 0:
            self.packets_late += 1
            return []
        self._held[seq] = (timestamp, marker, starts_frame, data, now_ms)
        out = self._release()
        if self._held and self._stuck(now_ms):
            self._give_up_gap()
            out += self._release()
        return out

    def _restart(self, seq: int) -> None:
        self.frames_lost += 1 if self._held else 0
        self._held.clear()
        self._next = seq
        if self.is_keyframe is not None:
            self.need_keyframe = True

    def _release(self) -> list[AssembledFrame]:
        """The whole frames from `_next` on."""
        out: list[AssembledFrame] = []
        held = self._held
        while True:
            start = self._next
            first = held.get(start)
            if first is None:
                return out
            if self.packet_is_frame:
                del held[start]
                self._next = (start + 1) % SEQUENCE_MODULO
                self._emit(first[3], first[0], out)
                continue
            timestamp = first[0]
            seq, parts = start, []
            while True:
                packet = held.get(seq)
                if packet is None:
                    return out  # a gap inside the frame: wait for it
                if packet[0] != timestamp:
                    break  # the next frame began without a marker on this one: it ended before
                parts.append(packet[3])
                seq = (seq + 1) % SEQUENCE_MODULO
                if packet[1]:  # the marker: the frame's last packet
                    break
            for n in range(len(parts)):
                del held[(start + n) % SEQUENCE_MODULO]
            self._next = seq
            self._emit(b"".join(parts), timestamp, out)

    def _emit(self, data: bytes, timestamp: int, out: list[AssembledFrame]) -> None:
        is_keyframe = self.is_keyframe
        keyframe = is_keyframe(data) if is_keyframe is not None else True
        if self.need_keyframe:
            if not keyframe:
                self.frames_skipped += 1
                return
            self.need_keyframe = False
        self.frames += 1
        out.append(AssembledFrame(data, timestamp, keyframe))

    def _stuck(self, now_ms: float) -> bool:
        if len(self._held) > self.max_packets:
            return True
        oldest = min(packet[4] for packet in self._held.values())
        return now_ms - oldest >= self.loss_wait_ms

    def _give_up_gap(self) -> None:
        """Drop what the gap at `_next` broke: resume at the first held packet
        after it that starts a frame (video then needs a keyframe)."""
        order = sorted(self._held, key=lambda s: _ahead(s, self._next))
        resume = None
        for seq in order:
            packet = self._held[seq]
            if self.packet_is_frame or (packet[2] and seq != self._next):
                resume = seq
                break
        self.frames_lost += 1
        if resume is None:
            self._held.clear()
            self._next = None
        else:
            for seq in order:
                if seq == resume:
                    break
                del self._held[seq]
            self._next = resume
        if self.is_keyframe is not None:
            self.need_keyframe = True

    @property
    def held_packets(self) -> int:
        return len(self._held)


def _timestamp_step(timestamp: int, last: int) -> int:
    """`timestamp` - `last` as a signed 32-bit difference: across a wrap, a small step."""
    return (timestamp - last + RTP_TIMESTAMP_MODULO // 2) % RTP_TIMESTAMP_MODULO - RTP_TIMESTAMP_MODULO // 2


class TrackClock:
    """One track's RTP timestamps in the stream's ms (module docstring)."""

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self._last: int | None = None  # the last raw timestamp
        self._extended = 0  # the last one, unwrapped (the first is 0)
        self.base_ms: float | None = None  # the stream time of the first timestamp
        self.first_ntp: float | None = None  # the NTP time (s) of the first timestamp, from a sender report

    def extend(self, timestamp: int) -> int:
        """The timestamp unwrapped across 32-bit wraps (and steps back)."""
        if self._last is None:
            self._last, self._extended = timestamp, 0
            return 0
        step = _timestamp_step(timestamp, self._last)
        self._last = timestamp
        self._extended += step
        return self._extended

    def started(self) -> bool:
        return self._last is not None

    def ms(self, timestamp: int, arrival_ms: float) -> float:
        """The stream time of a frame's RTP timestamp; the first frame of the
        track places it at its arrival."""
        extended = self.extend(timestamp)
        if self.base_ms is None:
            self.base_ms = arrival_ms - extended * 1000 / self.clock_rate
        return self.base_ms + extended * 1000 / self.clock_rate

    def sender_report(self, ntp_seconds: float, rtp_timestamp: int) -> None:
        """A sender report of this track's source: when its first timestamp was, in NTP."""
        if self._last is None or self.first_ntp is not None:
            return
        extended = self._extended + _timestamp_step(rtp_timestamp, self._last)
        self.first_ntp = ntp_seconds - extended / self.clock_rate


def align_tracks(reference: TrackClock, others: list[TrackClock]) -> bool:
    """Place the other tracks against the reference by their NTP times, once
    every started track has a sender report. True when it did."""
    tracks = [t for t in [reference, *others] if t.started()]
    if len(tracks) < 2 or any(t.first_ntp is None or t.base_ms is None for t in tracks):
        return False
    for track in others:
        if track.started():
            track.base_ms = reference.base_ms + (track.first_ntp - reference.first_ntp) * 1000
    return True
