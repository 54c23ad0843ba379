"""N WebRTC viewers of one WHEP URL in one process, for bench/rts/run.py.

Each viewer is an aiortc RTCPeerConnection that does ICE and DTLS like a
browser and then only counts: RTP packets are counted by their clear header
as they come off the socket (video frames are packets with the marker bit on
a video payload type), never decrypted or decoded, so one process can hold
many viewers and the server is what is measured. ICE keeps running
(aioice answers consent checks), so the sessions stay up.

With --janus, the viewers watch a Janus streaming mountpoint instead
(issue 18's C reference, bench/rts/janus_server.py), speaking Janus's HTTP
JSON API: create a session, attach janus.plugin.streaming, ask to `watch`
the mountpoint, take Janus's JSEP offer from the session's long poll, answer
it with `start`, and then keep the session alive; the RTP is counted the
same way.

Prints one JSON line: per viewer, the video frames and audio packets that
arrived in the measuring window.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import sys
import time
import urllib.request
from urllib.parse import urlsplit

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
    VIDEO_TYPES[id(ice_connection(pc))] = h264_types(answer)
    return pc


def h264_types(sdp: str) -> set[int]:
    """The H.264 payload types of the SDP's video section(s), whatever the
    order of its m-lines (Janus puts them in its mountpoint's order)."""
    types: set[int] = set()
    for section in sdp.split("\nm=")[1:]:
        if section.startswith("video"):
            types |= {int(pt) for pt in re.findall(r"a=rtpmap:(\d+) H264/90000", section)}
    return types


# --- Janus (issue 18's reference) ------------------------------------------------------

# How long one long poll waits for an event (Janus answers an empty poll
# after 30 s by itself), and how often a session is kept alive: well within
# Janus's session timeout (60 s by default, bench/rts/janus_server.py's too).
JANUS_POLL_SECONDS = 35
JANUS_KEEPALIVE_SECONDS = 20
JANUS_OFFER_SECONDS = 60
_transactions = itertools.count()


async def janus_http(url: str, body: dict | None = None, timeout: float = 30) -> dict | list:
    """One Janus HTTP API call (a POST of `body`, or a GET when None) on a
    connection of its own, read to its close. A few lines of asyncio
    instead of a thread per call: the viewers share one core, and
    urllib in threads is what would cost most there."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port), timeout)
    try:
        if body is None:
            request = f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode()
        else:
            payload = json.dumps({**body, "transaction": str(next(_transactions))}).encode()
            request_head = (f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n"
                            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")  # fmt: skip
            request = request_head.encode() + payload
        writer.write(request)
        response = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, content = response.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1] if head.count(b" ") >= 1 else b"?"
    if status != b"200":
        raise RuntimeError(f"Janus answered HTTP {status.decode(errors='replace')} to {path}")
    if b"chunked" in head.lower():
        content = dechunk(content)
    reply = json.loads(content)
    if isinstance(reply, dict) and reply.get("janus") == "error":
        raise RuntimeError(f"Janus refused {body and body.get('janus')}: {reply.get('error')}")
    return reply


def dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, body = out + body[:size], body[size + 2 :]
    return out


JANUS_SESSIONS: list[str] = []  # session URLs, kept alive by keep_janus_alive


async def open_janus_viewer(url: str, mountpoint: int = 1) -> RTCPeerConnection:
    """One viewer of a Janus streaming mountpoint: `url` is Janus's API
    root (http://127.0.0.1:8088/janus). Janus offers, the viewer answers."""
    session = (await janus_http(url, {"janus": "create"}))["data"]["id"]
    session_url = f"{url}/{session}"
    handle = (await janus_http(session_url, {"janus": "attach", "plugin": "janus.plugin.streaming"}))["data"]["id"]
    handle_url = f"{session_url}/{handle}"
    reply = await janus_http(handle_url, {"janus": "message", "body": {"request": "watch", "id": mountpoint}})
    offer = reply.get("jsep")
    deadline = time.monotonic() + JANUS_OFFER_SECONDS
    while offer is None:  # an "ack" first; the offer comes as an event on the session
        if time.monotonic() > deadline:
            raise RuntimeError(f"no offer from Janus for mountpoint {mountpoint}")
        events = await janus_http(f"{session_url}?maxev=5", timeout=JANUS_POLL_SECONDS)
        for event in events if isinstance(events, list) else [events]:
            error = event.get("plugindata", {}).get("data", {}).get("error")
            if error:
                raise RuntimeError(f"Janus refused to watch mountpoint {mountpoint}: {error}")
            if event.get("sender") == handle and event.get("jsep"):
                offer = event["jsep"]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        # Half-trickle: aiortc's answer carries all its candidates.
        answer = {"type": "answer", "sdp": pc.localDescription.sdp, "trickle": False}
        await janus_http(handle_url, {"janus": "message", "body": {"request": "start"}, "jsep": answer})
    except BaseException:
        await pc.close()
        raise
    VIDEO_TYPES[id(ice_connection(pc))] = h264_types(offer["sdp"])
    JANUS_SESSIONS.append(session_url)
    return pc


async def keep_janus_alive() -> None:
    """A keepalive per session every JANUS_KEEPALIVE_SECONDS, spread over
    the period. Janus's events (webrtcup, media) are left in its queue:
    nothing here needs them."""
    while True:
        sessions = list(JANUS_SESSIONS)
        gap = JANUS_KEEPALIVE_SECONDS / max(1, len(sessions))
        for session_url in sessions:
            try:
                await janus_http(session_url, {"janus": "keepalive"})
            except (TimeoutError, OSError, RuntimeError, ValueError) as exc:
                print(f"keepalive {session_url}: {exc}", file=sys.stderr)
            await asyncio.sleep(gap)
        if not sessions:
            await asyncio.sleep(1)


def ice_connection(pc: RTCPeerConnection):
    return pc.getTransceivers()[0].receiver.transport.transport._connection


async def main(url: str, count: int, rate: float, warmup: float, window: float, janus: bool = False) -> None:
    viewers = []
    opener = open_janus_viewer if janus else open_viewer
    keepalive = asyncio.create_task(keep_janus_alive()) if janus else None
    began = time.monotonic()
    # In batches, a batch a second at most `rate` viewers: opening one waits
    # for the node's answer, which should not serialise them all.
    batch = max(1, int(rate))
    while len(viewers) < count:
        opened = time.monotonic()
        viewers += await asyncio.gather(*(opener(url) for _ in range(min(batch, count - len(viewers)))))
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
    if keepalive is not None:
        keepalive.cancel()
    await asyncio.gather(*(pc.close() for pc in viewers), return_exceptions=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="the WHEP URL, or with --janus Janus's API root")
    parser.add_argument("--janus", action="store_true", help="watch Janus's streaming mountpoint 1 instead")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, default=20, help="viewers opened per second")
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--window", type=float, default=10)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (a lighter loop: more viewers a core)")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    asyncio.run(main(args.url, args.count, args.rate, args.warmup, args.window, args.janus))
    sys.exit(0)
