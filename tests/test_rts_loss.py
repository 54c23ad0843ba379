"""RTS viewers on a lossy, distant network (issue 18): an aiortc WHEP viewer
reaches the node only through the UDP impairment relay (tests/netimpair.py;
this kernel has no netem): 80 ms each way, 3 % of the node's packets lost.
Once the join's GOP burst is past, every lost packet is asked for again
(NACK) and resent from the sender's history, so the viewer assembles every
frame, none given up on, and the node skips the viewer nothing.

The relay sits between the two ICE agents: the answer's candidate is
replaced by the relay's address, so the viewer's checks and RTCP go through
it, and the node learns the relay's flow as a peer-reflexive candidate; the
offer's candidate names a socket that never answers, so no direct path can
be nominated."""

from __future__ import annotations

import asyncio
import re
import socket
import time

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from livecenter.media.rts.aiortc_compat import tap_receiver
from tests.mediasupport import NodeThread, http_request, start_publisher
from tests.netimpair import DOWN, Impairment, ImpairmentRelay, large_socket_buffers
from tests.test_rts_whep import policy, whep_url
from tests.test_rts_whip import Recorder

pytestmark = pytest.mark.media

FRAMES = 150  # 5 s at 30 fps
WARMUP_FRAMES = 30
LOSS = 0.03
DELAY_MS = 80.0
# Long enough for a packet lost twice (its resend lost too) to be asked again.
VIEWER_LOSS_WAIT_MS = 2000.0
# A joiner gets the GOP at once (media.py): thousands of packets may follow a gap.
VIEWER_MAX_HELD_PACKETS = 16384
_CANDIDATE_RE = re.compile(r"(a=candidate:\S+ \d+ udp \d+ 127\.0\.0\.1 )(\d+)( typ host)")


def candidate_port(sdp: str) -> int:
    match = _CANDIDATE_RE.search(sdp)
    assert match, "the SDP has no 127.0.0.1 host candidate"
    return int(match[2])


def with_candidate_port(sdp: str, port: int) -> str:
    return _CANDIDATE_RE.sub(lambda m: f"{m[1]}{port}{m[3]}", sdp)


@pytest.fixture
def node():
    node = NodeThread(policy(), play_wait_seconds=3).start()
    yield node
    node.stop()


def test_a_viewer_behind_loss_and_delay_gets_every_frame_by_retransmission(node):
    publisher = start_publisher(node.publish_url(), seconds=60, size="320x240")
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never read: no answer, no ICMP
    dead.bind(("127.0.0.1", 0))
    try:
        assert node.wait_for(lambda: node.node.hub.live_keys())

        async def scenario():
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            transceiver = pc.addTransceiver("video", direction="recvonly")
            recorder = Recorder("video")
            recorder.assembler.loss_wait_ms = VIEWER_LOSS_WAIT_MS
            recorder.assembler.max_packets = VIEWER_MAX_HELD_PACKETS
            nacks = []
            tap_receiver(transceiver.receiver, recorder, lambda *report: None, nacks.append)
            await pc.setLocalDescription(await pc.createOffer())
            # The relay runs on this loop: once a loaded machine has starved
            # the test process for a second, it sends all it held at once,
            # and a socket of the kernel's default 208 KiB drops most of it,
            # one burst of a hundred packets, past what the node resends at
            # once (fastpath.ResendBudget). As the relay's own sockets: the
            # loss the viewer sees is the relay's.
            sockets = [
                p.transport.get_extra_info("socket")
                for p in transceiver.receiver.transport.transport._connection._protocols
            ]
            assert sockets, "aiortc's ICE sockets not found"
            for sock in sockets:
                large_socket_buffers(sock)
            offer = with_candidate_port(pc.localDescription.sdp, dead.getsockname()[1])
            status, _, answer = await asyncio.to_thread(http_request, whep_url(node), "POST", offer.encode())
            assert status == 201, answer
            relay = ImpairmentRelay(
                ("127.0.0.1", 0), ("127.0.0.1", candidate_port(answer)), seed=7,
                up=Impairment(delay_ms=DELAY_MS), down=Impairment(loss=LOSS, delay_ms=DELAY_MS),
            )  # fmt: skip
            await relay.start()
            try:
                answer = with_candidate_port(answer, relay.address[1])
                await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
                # The join: the GOP comes at once (media.py), and aiortc's
                # per-viewer history (RTP_HISTORY_SIZE, 128 packets) may no
                # longer hold what the burst lost by the time its NACK is in
                # (issue 18: the shared history answers those). Measured from
                # once the burst's gaps are settled on.
                deadline = time.monotonic() + 60
                while len(recorder.frames) < WARMUP_FRAMES or recorder.assembler.held_packets:
                    assert time.monotonic() < deadline, (len(recorder.frames), relay.snapshot())
                    await asyncio.sleep(0.1)
                await asyncio.sleep(VIEWER_LOSS_WAIT_MS / 1000)
                lost, frames, nacked, dropped = (recorder.assembler.frames_lost, len(recorder.frames), sum(nacks),
                                                 relay.stats[DOWN].dropped)  # fmt: skip
                while len(recorder.frames) < frames + FRAMES:
                    assert time.monotonic() < deadline, (len(recorder.frames), relay.snapshot())
                    await asyncio.sleep(0.1)
                await asyncio.sleep(VIEWER_LOSS_WAIT_MS / 1000)  # the last gaps settled on too
                window = (
                    recorder.assembler.frames_lost - lost,
                    sum(nacks) - nacked,
                    relay.stats[DOWN].dropped - dropped,
                )
                return window
            finally:
                await pc.close()
                await relay.stop()

        lost, nacked, dropped = asyncio.run(scenario())
        assert dropped > 0 and nacked >= dropped // 2, (dropped, nacked)
        assert lost == 0, f"{lost} frames given up on: every lost packet must be resent in time"
        sessions = node.run_sync(lambda: [s.viewer.skips for s in node.node.rts.sessions.values()])
        assert all(skips == 0 for skips in sessions)
    finally:
        dead.close()
        publisher.stop()
