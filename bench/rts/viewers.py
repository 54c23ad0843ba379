"""N WebRTC viewers of one WHEP URL in one process, for bench/rts/run.py.

Each viewer is an aiortc RTCPeerConnection that does ICE and DTLS like a
browser and then only counts: RTP packets are counted by their clear header
as they come off the socket (video frames are packets with the marker bit on
a video payload type), never decrypted or decoded, so one process can hold
many viewers and the server is what is measured. ICE keeps running
(aioice answers consent checks), so the sessions stay up.

Prints one JSON line: per viewer, the video frames and audio packets that
arrived in the measuring window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
import urllib.request

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

COUNTERS: dict[int, list[int]] = {}  # id(ICE connection) -> [video frames, audio packets]
VIDEO_TYPES: dict[int, set[int]] = {}
_original_datagram_received = aioice.ice.StunProtocol.datagram_received


def _counting_datagram_received(self, data, addr) -> None:
    # RTP (RFC 7983: first byte 128-191; RTCP's second byte is 192-223) is
    # counted and dropped where it arrives, before the ICE, DTLS and SRTP
    # layers: STUN and DTLS (the handshake) go on as usual.
    if len(data) >= 12 and 127 < data[0] < 192:
        if not 192 <= data[1] <= 223:
            key = id(self.receiver)
            counters = COUNTERS.setdefault(key, [0, 0])
            if (data[1] & 0x7F) in VIDEO_TYPES.get(key, ()):
                counters[0] += data[1] >> 7  # the marker bit ends a frame
            else:
                counters[1] += 1
        return
    _original_datagram_received(self, data, addr)


aioice.ice.StunProtocol.datagram_received = _counting_datagram_received


def post(url: str, offer: str) -> str:
    request = urllib.request.Request(url, data=offer.encode(), method="POST",
                                     headers={"Content-Type": "application/sdp"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read().decode()


async def open_viewer(url: str) -> RTCPeerConnection:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    try:
        await pc.setLocalDescription(await pc.createOffer())
        answer = await asyncio.to_thread(post, url, pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    except BaseException:
        await pc.close()  # a refused viewer (HTTP 503) must not leave its peer connection behind
        raise
    video_section = answer.split("m=video", 1)[1].split("m=audio", 1)[0]
    types = {int(pt) for pt in re.findall(r"a=rtpmap:(\d+) H264/90000", video_section)}
    VIDEO_TYPES[id(ice_connection(pc))] = types
    return pc


def ice_connection(pc: RTCPeerConnection):
    return pc.getTransceivers()[0].receiver.transport.transport._connection


async def main(url: str, count: int, rate: float, warmup: float, window: float) -> None:
    viewers = []
    began = time.monotonic()
    # In batches, a batch a second at most `rate` viewers: opening one waits
    # for the node's answer, which should not serialise them all.
    batch = max(1, int(rate))
    while len(viewers) < count:
        opened = time.monotonic()
        viewers += await asyncio.gather(*(open_viewer(url) for _ in range(min(batch, count - len(viewers)))))
        await asyncio.sleep(max(0.0, 1 - (time.monotonic() - opened)))
    deadline = time.monotonic() + 60
    while any(pc.connectionState != "connected" for pc in viewers) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    connected = sum(pc.connectionState == "connected" for pc in viewers)
    opened = time.monotonic() - began
    await asyncio.sleep(warmup)
    transports = [ice_connection(pc) for pc in viewers]
    before = [list(COUNTERS.get(id(t), [0, 0])) for t in transports]
    window_start = time.time()
    await asyncio.sleep(window)
    after = [list(COUNTERS.get(id(t), [0, 0])) for t in transports]
    window_end = time.time()
    result = {
        "connected": connected,
        "open_seconds": round(opened, 1),
        "window": [window_start, window_end],
        "video_frames": [a[0] - b[0] for a, b in zip(after, before, strict=True)],
        "audio_packets": [a[1] - b[1] for a, b in zip(after, before, strict=True)],
    }
    print(json.dumps(result), flush=True)
    await asyncio.gather(*(pc.close() for pc in viewers), return_exceptions=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, default=20, help="viewers opened per second")
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--window", type=float, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.count, args.rate, args.warmup, args.window))
    sys.exit(0)
