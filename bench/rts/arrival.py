"""Capture to arrival at a WHEP viewer, without a browser: an aiortc WHEP
viewer of a calibrator stream notes when the last RTP packet of each video
frame (the one with the marker bit) comes off its socket, decodes the frame
and reads its timecode (livecenter/media/timecode.py); the difference is
the time from capture to a viewer holding the whole frame: the encode, the
ingest, the node and the send, not the player's jitter buffer, decode or
render (which bench/rts's browser figures add, in steps of Chromium's frame
pacing). For bench/rts's `whip` part, which runs it beside the browser.

    .venv/bin/python bench/rts/arrival.py WHEP_URL [--seconds 10] [--warmup 2]

Prints one JSON line: samples, p50, p95 (ms), frames decoded without a
readable timecode. Loopback: ICE candidates on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urljoin

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402

from bench.latency.run import percentile  # noqa: E402
from livecenter.media.rts.aiortc_compat import use_ice_addresses  # noqa: E402
from livecenter.media.timecode import decode_luma  # noqa: E402

HTTP_TIMEOUT_SECONDS = 15
# The receiver's timestamp mapper (name-mangled): decoded frames carry RTP
# timestamps less the first one's, which is kept here.
RECEIVER_TIMESTAMP_MAPPER = "_RTCRtpReceiver__timestamp_mapper"
RTP_TIMESTAMP_MODULO = 1 << 32
# Arrival times kept for frames not decoded yet (a few seconds at 30 fps).
MAX_PENDING_FRAMES = 300


async def measure(url: str, seconds: float, warmup: float) -> dict:
    use_ice_addresses(["127.0.0.1"])
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    video = pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    arrivals: dict[int, float] = {}  # RTP timestamp -> wall clock (ms) of the frame's last packet
    receiver = video.receiver
    handle = receiver._handle_rtp_packet

    async def noting_arrival(packet, arrival_time_ms):
        if packet.marker:
            arrivals[packet.timestamp] = time.time() * 1000
            while len(arrivals) > MAX_PENDING_FRAMES:
                del arrivals[next(iter(arrivals))]
        await handle(packet, arrival_time_ms=arrival_time_ms)

    receiver._handle_rtp_packet = noting_arrival
    track_ready = asyncio.get_running_loop().create_future()
    pc.on("track", lambda track: track.kind == "video" and not track_ready.done() and track_ready.set_result(track))
    await pc.setLocalDescription(await pc.createOffer())
    request = urllib.request.Request(url, data=pc.localDescription.sdp.encode(), method="POST",
                                     headers={"Content-Type": "application/sdp"})  # fmt: skip
    response = await asyncio.to_thread(urllib.request.urlopen, request, timeout=HTTP_TIMEOUT_SECONDS)
    answer, location = response.read().decode(), response.headers.get("Location")
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    track = await asyncio.wait_for(track_ready, HTTP_TIMEOUT_SECONDS)
    latencies: list[float] = []
    unreadable = 0
    began = time.monotonic()
    try:
        while time.monotonic() - began < warmup + seconds:
            try:
                frame = await asyncio.wait_for(track.recv(), HTTP_TIMEOUT_SECONDS)
            except MediaStreamError:
                break
            if time.monotonic() - began < warmup:
                continue
            origin = getattr(receiver, RECEIVER_TIMESTAMP_MAPPER)._origin
            arrived = arrivals.pop((frame.pts + origin) % RTP_TIMESTAMP_MODULO, None)
            luma = frame.reformat(format="yuv420p").planes[0]
            captured = decode_luma(bytes(luma), frame.width, frame.height, luma.line_size)
            if captured is None or arrived is None:
                unreadable += 1
                continue
            latencies.append(arrived - captured)
    finally:
        if location:
            delete = urllib.request.Request(urljoin(url, location), method="DELETE")
            await asyncio.to_thread(urllib.request.urlopen, delete, timeout=HTTP_TIMEOUT_SECONDS)
        await pc.close()
    out = {"samples": len(latencies), "unreadable": unreadable}
    if latencies:
        out["p50"], out["p95"] = round(percentile(latencies, 50), 1), round(percentile(latencies, 95), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2, help="frames in the first seconds are not counted")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.url, args.seconds, args.warmup))), flush=True)


if __name__ == "__main__":
    main()
