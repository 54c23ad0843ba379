"""One native call per frame for all of a track's steady viewers (issue 18, step 5).

media.FastTrackSender sends a frame to one viewer in one native call
(`srtp.native.send_frame`); with a thousand viewers that is still a
thousand Python calls a frame, each with its checks and bookkeeping, and
as many again for every Opus packet. A `FanoutGroup` (one per source and
track: the source's video, its audio) holds, in the native sender's
`Group`, what writing a viewer's packets needs (its SRTP session, a
duplicate of its ICE socket's fd, the peer's address, its header template,
payload type, next sequence number and timestamp offset) and sends each
frame to all of them in one call. The writers' bookkeeping (sequence
numbers, the runs NACKs are answered from, sender-report counts) is
brought up to date from the group's counts when it is read (`sync`: a NACK,
a sender report, leaving), not per frame.

Only a steady viewer is a member: its track on the native path (a native
SRTP session, an fd), nothing in asyncio's buffer for its socket, and its
last frame sent from this group's history right before it joined
(media.RtsViewer joins it after a frame sent on its own). Anything else is
the per-viewer path's, exactly as before: a joiner's GOP burst, a viewer
waiting for a keyframe (skipped, or asked for one), one switching
rendition (it leaves the old rendition's group and joins the new one's
after the keyframe), the Python fallback (no native sender, or AES-CM).
A member leaves when the kernel would not take its packets (the rest go to
asyncio's buffer, and the per-viewer path's unsent-bytes check takes over),
when its send fails, and, checked every SWEEP_FRAMES frames, when ICE
nominated another pair or its transport is closing; leaving during a send,
it stays a member (out of the native group) until the next send, so that
the caller's per-viewer loop does not send it that frame a second time.
"""

from __future__ import annotations

import logging

from . import srtp
from .aiortc_compat import ice_nominated_pair
from .fastpath import RtpPacketHistory

log = logging.getLogger(__name__)

# Every this many sends (frames, or a loop turn's Opus packets) each
# member's ICE pair is checked: about every half-second for video, where
# the per-viewer path checks every frame. Until then a member whose pair
# changed is sent on the old pair's socket, which the group's duplicate of
# its fd keeps open.
SWEEP_FRAMES = 16


class _Member:
    __slots__ = ("slot", "viewer", "packets", "octets", "frames")

    def __init__(self, slot: int, viewer, group: FanoutGroup) -> None:
        self.slot = slot
        self.viewer = viewer  # media.RtsViewer, whose video_frames count (None: audio)
        self.packets = group.packets  # the group's counts when last synced
        self.octets = group.octets
        self.frames = group.frames


class FanoutGroup:
    """A track's fast viewers sent each frame in one native call."""

    def __init__(self) -> None:
        self.native = srtp.native.Group() if srtp.native is not None else None
        self.members: dict = {}  # media.FastTrackSender -> _Member
        self._by_slot: dict[int, object] = {}
        # What every member was sent since it joined: the group's running
        # counts, and the last packet's source timestamp and NTP time.
        self.packets = 0
        self.octets = 0
        self.frames = 0
        self.last_timestamp = 0
        self.ntp = 0
        self.history: RtpPacketHistory | None = None
        self.next_index = -1  # the history index the next send must start at
        self._until_sweep = SWEEP_FRAMES
        # Members that leave during a send (refused, swept): out of the
        # native group at once, but still members (skipped by the caller's
        # per-viewer loop, which must not send them that frame again) until
        # the next send.
        self._leaving: list = []

    def __len__(self) -> int:
        return len(self.members)

    def can_join(self, fast, history: RtpPacketHistory) -> bool:
        """Whether `fast` (a media.FastTrackSender that has just sent a
        frame of `history` on its own) may join: on the native path, with
        nothing in asyncio's buffer, and its next packet the one the
        group sends next."""
        writer = fast.writer
        return (
            self.native is not None
            and fast.srtp is not None
            and fast.fd >= 0
            and fast.group is None
            and writer.history is history
            and (not self.members or (self.history is history and writer.next_index == self.next_index))
            and not fast.transport.get_write_buffer_size()
        )

    def join(self, fast, history: RtpPacketHistory, viewer=None) -> bool:
        """Add `fast` (can_join): the group sends it the packets that follow
        the last one it sent of `history`."""
        if not self.can_join(fast, history):
            return False
        if not self.members:
            self.history, self.next_index = history, fast.writer.next_index
        writer, template = fast.writer, fast.writer.template
        try:
            slot = self.native.add(
                fast.srtp, fast.fd, fast.sockaddr, template.buffer, template.header_bytes, template.abs_offset,
                template.payload_type, writer.sequence_number, writer.timestamp_offset,
            )  # fmt: skip
        except OSError:
            return False  # the fd closed under it: the per-viewer path finds out
        self.members[fast] = _Member(slot, viewer, self)
        self._by_slot[slot] = fast
        fast.group = self
        return True

    def sync(self, fast) -> None:
        """Bring `fast`'s writer and report counts up to what the group sent it."""
        member = self.members.get(fast)
        if member is None:
            return
        count = self.packets - member.packets
        if count:
            fast.writer.advance(self.history, count, self.last_timestamp)
            fast.octets += self.octets - member.octets
            fast.ntp = self.ntp
            member.packets, member.octets = self.packets, self.octets
        if member.viewer is not None and self.frames != member.frames:
            member.viewer.video_frames += self.frames - member.frames
            member.frames = self.frames

    def leave(self, fast) -> None:
        """`fast` goes back to the per-viewer path, its writer up to date."""
        member = self.members.get(fast)
        if member is None:
            return
        self._detach(fast, member)
        del self.members[fast]
        fast.group = None

    def _detach(self, fast, member: _Member) -> None:
        """Out of the native group, its books up to date; still a member."""
        if member.slot < 0:
            return
        self.sync(fast)
        del self._by_slot[member.slot]
        self.native.remove(member.slot)
        member.slot = -1

    def clear(self) -> None:
        for fast in list(self.members):
            self.leave(fast)

    def send(self, history: RtpPacketHistory, indexes: range, abs_send_time: int, ntp: int, payload_bytes: int) -> int:
        """Send the packets of `indexes` (the history's newest) to every
        member; returns how many members there were."""
        for fast in self._leaving:
            self.leave(fast)
        self._leaving.clear()
        if not self.members:
            return 0
        if history is not self.history or indexes.start != self.next_index:
            # Not the packets that follow on (a source restarting its
            # history): everyone back to the per-viewer path, which knows.
            self.clear()
            return 0
        packets = history.packets(indexes)
        report = self.native.send(packets, abs_send_time)
        count = len(packets)
        self.packets += count
        self.octets += payload_bytes
        self.frames += 1
        if count:
            self.last_timestamp = packets[-1].timestamp
        self.ntp = ntp
        self.next_index = indexes.stop
        members = len(self.members)
        if report:
            self._refused(report)
        self._until_sweep -= 1
        if self._until_sweep <= 0:
            self._until_sweep = SWEEP_FRAMES
            self._sweep()
        return members

    def _refused(self, report: list) -> None:
        for slot, unsent, error in report:
            fast = self._by_slot.get(slot)
            if fast is None:
                continue
            self._detach(fast, self.members[fast])
            self._leaving.append(fast)
            if unsent:
                # The kernel's buffer is full: asyncio buffers the rest, and
                # the per-viewer path's unsent-bytes check sees it.
                for data in unsent:
                    fast.transport.sendto(data, fast.address)
            elif error is not None:
                log.info("rts fan-out: a viewer's send failed, back to its own path: %s", error)

    def _sweep(self) -> None:
        for fast, member in self.members.items():
            if member.slot >= 0 and (fast.pair is not ice_nominated_pair(fast.dtls) or fast.transport.is_closing()):
                self._detach(fast, member)
                self._leaving.append(fast)
