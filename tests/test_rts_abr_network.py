"""Adaptive bitrate for RTS on a network (issue 18): an aiortc WHEP viewer of
a template group (`/live/cam1_abr.whep`: the stream cam1 at 640x360 and its
rendition cam1_low at 320x180, two ffmpeg publishers registered as a group
in the policy) reaches the node only through the UDP impairment relay
(tests/netimpair.py). Throttled below the top rendition's bitrate (the
relay's rate limit, a short queue with tail drop) until the node switches
it, its decoded pictures go down to 320x180; the limit lifted, they come
back to 640x360. One
connection throughout, and the node counts the switches.

The relay sits between the ICE agents as in tests/test_rts_loss.py.

And the group URL over HTTP: signed over its own path, answered with the
stream and its ladder, its renditions asked for, its session DELETEd at
the Location it was given."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.jitterbuffer import JitterBuffer

from livecenter.media.policy import PolicyUnavailable, RenditionGroup, RenditionRequested, StreamKey
from livecenter.media.renditions import RenditionSpec
from livecenter.media.rts.aiortc_compat import RECEIVER_JITTER_BUFFER
from livecenter.media.rts.fastpath import URI_ABS_SEND_TIME
from livecenter.media.signing import sign
from tests.mediasupport import INGEST, PLAY, PLAY_KEY, NodeThread, http_request, start_publisher
from tests.netimpair import Impairment, ImpairmentRelay
from tests.test_rts_loss import candidate_port, with_candidate_port
from tests.test_rts_whep import browser_like_offer, policy, whep_url

pytestmark = pytest.mark.media
log = logging.getLogger(__name__)

TOP_SIZE, LOW_SIZE = (640, 360), (320, 180)
TOP_KBPS, LOW_KBPS = 1500, 200
# The throttled link's queue: about half a second of the limited rate, so
# an over-full path loses packets (a router's tail drop) as well as delaying them.
QUEUE_DATAGRAMS = 40
# The viewer's jitter buffer (aiortc's is 512 packets). aiortc NACKs a
# missing packet only while new gaps appear, and the throttled queue drops
# retransmissions too, so after the limit is lifted a packet never repaired
# holds every later frame until the buffer overflows (and a PLI brings a
# keyframe): 512 packets are some 15 s of the low rendition, 128 about 4 s,
# nearer a browser, which gives up on a packet and asks for a keyframe
# within a second or two.
JITTER_BUFFER_PACKETS = 128
# Generous: a loaded machine decodes and sends late, the controller holds
# before it acts (bitrate.py), and a probe up waits PROBE_HOLD_SECONDS.
SWITCH_WAIT_SECONDS = 90


@pytest.fixture
def node():
    group_policy = policy()
    group_policy.groups[(INGEST, "live", "abr")] = RenditionGroup(
        "abr", (RenditionSpec("low", LOW_KBPS, width=LOW_SIZE[0], height=LOW_SIZE[1]),)
    )
    node = NodeThread(group_policy, play_wait_seconds=5).start()
    yield node
    node.stop()


def publish(node, stream: str, size: tuple[int, int], kbps: int):
    rate = f"{kbps}k"
    return start_publisher(
        node.publish_url(stream=stream), seconds=300, size=f"{size[0]}x{size[1]}",
        extra=("-b:v", rate, "-maxrate", rate, "-bufsize", f"{kbps // 2}k"),
    )  # fmt: skip


def without_remb(sdp: str) -> str:
    """The offer without abs-send-time (the node then sends none, and aiortc's
    receiver makes no REMB estimate): the node decides on the loss its
    receiver reports show. aiortc's delay-based estimator runs in this
    process, beside the relay and the node; on a loaded machine its packets'
    arrival times jitter by hundreds of milliseconds, it reads over-use where
    the path has room, and its falling estimate keeps the viewer from ever
    being healthy long enough to probe up (bitrate.py). The controller's
    answers to REMB are tested in tests/test_rts_bitrate.py."""
    return "".join(line for line in sdp.splitlines(keepends=True) if URI_ABS_SEND_TIME not in line)


def test_a_viewer_throttled_below_the_top_rendition_goes_down_and_back_up(node):
    publishers = [publish(node, "cam1", TOP_SIZE, TOP_KBPS), publish(node, "cam1_low", LOW_SIZE, LOW_KBPS)]
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never read: no direct path
    dead.bind(("127.0.0.1", 0))
    try:
        log.info("abr test: publishers started")
        assert node.wait_for(lambda: len(node.node.hub.live_keys()) == 2, timeout=30)
        log.info("abr test: both live")

        def bitrates():
            hub = node.node.hub
            return [round(hub.stream(key).video_bitrate) for key in sorted(hub.live_keys(), key=lambda k: k.stream)]

        # Both measured (the hub's window), so the limit can sit between them.
        assert node.wait_for(lambda: all(bitrates()), timeout=30)
        log.info("abr test: both measured")

        async def scenario():
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            transceiver = pc.addTransceiver("video", direction="recvonly")
            setattr(transceiver.receiver, RECEIVER_JITTER_BUFFER, JitterBuffer(JITTER_BUFFER_PACKETS, is_video=True))
            sizes: list[tuple[int, int]] = []
            tracks = []
            pc.on("track", tracks.append)
            await pc.setLocalDescription(await pc.createOffer())
            offer = without_remb(with_candidate_port(pc.localDescription.sdp, dead.getsockname()[1]))
            url = whep_url(node, stream="cam1_abr")
            status, _, answer = await asyncio.to_thread(http_request, url, "POST", offer.encode())
            assert status == 201, answer
            relay = ImpairmentRelay(("127.0.0.1", 0), ("127.0.0.1", candidate_port(answer)))
            await relay.start()
            reader = None
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=with_candidate_port(answer, relay.address[1]),
                                                                    type="answer"))  # fmt: skip

                async def read(track) -> None:
                    while True:
                        frame = await track.recv()
                        sizes.append((frame.width, frame.height))

                assert tracks, "the answer has the video track"
                reader = asyncio.ensure_future(read(tracks[0]))

                async def until(size, what, start=None):
                    deadline = time.monotonic() + SWITCH_WAIT_SECONDS
                    start = len(sizes) if start is None else start
                    while size not in sizes[start:]:
                        assert time.monotonic() < deadline, (what, sizes[-5:], relay.snapshot())
                        assert not reader.done(), reader
                        await asyncio.sleep(0.2)

                def rendition() -> str:
                    sessions = list(node.node.rts.sessions.values())
                    return sessions[0].viewer.video_source.key.stream if len(sessions) == 1 else ""

                await until(TOP_SIZE, "it starts on the top rendition")
                log.info("abr test: on the top")
                top_bps, low_bps = await asyncio.to_thread(bitrates)  # cam1, cam1_low
                assert top_bps > low_bps * 2, (top_bps, low_bps)
                limit_kbps = max(0.6 * top_bps, 3 * low_bps) / 1000  # well under the top, room for the low
                assert limit_kbps < 0.8 * top_bps / 1000, (top_bps, low_bps)
                relay.set_impairment(down=Impairment(rate_kbps=limit_kbps, queue_datagrams=QUEUE_DATAGRAMS))
                log.info("abr test: throttled to %.0f kbit/s (top %d, low %d bit/s)", limit_kbps, top_bps, low_bps)
                # Throttled only until the node has switched it (its sending the
                # rendition's keyframe): the ICE consent checks' answers (RFC 7675,
                # 30 s) cross the same full queue.
                mark = len(sizes)
                deadline = time.monotonic() + SWITCH_WAIT_SECONDS
                while await asyncio.to_thread(node.run_sync, rendition) != "cam1_low":
                    assert time.monotonic() < deadline, (f"throttled to {limit_kbps:.0f} kbit/s", relay.snapshot())
                    await asyncio.sleep(0.2)
                relay.set_impairment(down=Impairment())
                log.info("abr test: switched down, limit lifted")
                await until(LOW_SIZE, "its pictures go down", start=mark)
                log.info("abr test: 320x180 decoded")
                await until(TOP_SIZE, "the limit lifted, it comes back up")
                log.info("abr test: 640x360 again")
                assert pc.connectionState == "connected"
                # One session all along, switched down and up by the node.
                switches = await asyncio.to_thread(
                    node.run_sync, lambda: [s.viewer.rendition_switches for s in node.node.rts.sessions.values()]
                )
                assert len(switches) == 1 and switches[0] >= 2, switches
            finally:
                if reader is not None:
                    reader.cancel()
                await pc.close()
                await relay.stop()

        asyncio.run(scenario())
    finally:
        dead.close()
        for publisher in publishers:
            publisher.stop()


def test_a_group_url_is_signed_over_its_own_path_plays_the_stream_and_asks_for_its_renditions(node):
    publisher = publish(node, "cam1", TOP_SIZE, TOP_KBPS)  # cam1_low is not live
    try:
        assert node.wait_for(lambda: node.node.hub.live_keys(), timeout=30)
        offer = browser_like_offer().encode()
        # Signed over the stream's path, not the group's: refused.
        token = sign("/live/cam1", PLAY_KEY, int(time.time()))
        status, headers, _ = http_request(f"{node.http}/live/cam1_abr.whep?auth_key={token}&domain={PLAY}", "POST",
                                          offer)  # fmt: skip
        assert (status, headers.get("X-LiveCenter-Error")) == (403, "invalid md5hash")
        # A group no policy knows is a stream name like any other: not live.
        assert http_request(whep_url(node, stream="cam1_nogroup"), "POST", offer)[0] == 404
        status, headers, answer = http_request(whep_url(node, stream="cam1_abr"), "POST", offer)
        assert status == 201, answer
        location = headers["Location"]
        assert location.startswith("/live/cam1_abr.whep/")
        sessions = node.run_sync(
            lambda: [(s.key.stream, s.viewer.abr is not None) for s in node.node.rts.sessions.values()]
        )
        assert sessions == [("cam1", True)], "the group's stream, with its ladder"
        source = StreamKey(INGEST, "live", "cam1")
        assert node.wait_for(lambda: RenditionRequested(source, "low", "test-node", "") in node.sink.events)
        assert http_request(f"{node.http}/live/cam1.whep/{location.rpartition('/')[2]}", "DELETE")[0] == 404
        assert http_request(node.http + location, "DELETE")[0] == 200
        assert node.wait_for(lambda: not node.node.rts.sessions)

        # The policy cannot say what the group is: try again later, not "not live".
        async def unavailable(domain, app, group_id):
            raise PolicyUnavailable("database down")

        node.policy.rendition_group = unavailable
        status, headers, _ = http_request(whep_url(node, stream="cam1_abr"), "POST", offer)
        assert (status, headers.get("X-LiveCenter-Error")) == (503, "policy unavailable")
    finally:
        publisher.stop()
