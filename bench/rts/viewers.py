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

Two clients (`--client`):

- `light` (the default): aiortc does each viewer's signalling, ICE and DTLS
  handshake in a short-lived child process (`--batch` viewers a child,
  at most `--rate` a second), which then hands each viewer's UDP sockets
  (its nominated pair's first, then its other host candidates'), its local
  ICE password and its video payload types to bench/rts/rtpcount.c over a
  Unix socket (SCM_RIGHTS) and exits without a DTLS close or an ICE
  teardown. All of them, not only the nominated one: a viewer gathers a
  host candidate per local address (another interface up, a test's
  network namespace bridge, makes two), aioice's aggressive nomination then
  nominates every pair that succeeds, each side keeps the last to complete,
  and the server may send on the other pair (which a browser would still
  receive on). That small C process (built here with
  `cc -O2`) then reads every socket with epoll and recvmmsg, counts RTP by
  its clear header as below, and answers the server's ICE consent checks,
  so the server sees a live viewer. This process stays only to pace the
  children, keep Janus sessions alive and time the window. The window's
  JSON adds the generator's own cost: `client_cpu` (the counter and this
  process, % of one core), the counter's socket drops (datagrams the
  kernel dropped because the counter read too late: its own limit), the
  sockets handed, and `off_nominated`: the viewers sent video on a socket
  other than their nominated pair's.
- `aiortc`: every viewer an aiortc RTCPeerConnection in this process for the
  whole run (the counting below patched into aioice); about 300-450
  viewers a core.

Prints one JSON line: per viewer, the video frames and audio packets that
arrived in the measuring window. With the light client, SIGTERM ends the
window early (the line is still printed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
from bench.common import build_c  # noqa: E402

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
SESSION_OF: dict[int, str] = {}  # id(peer connection) -> its Janus session URL


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
    SESSION_OF[id(pc)] = session_url
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
    """The aiortc client: every viewer a peer connection here, to the end."""
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


# --- the light client: aiortc for the handshake, bench/rts/rtpcount.c for the rest -----

# A child's wait for its viewers' ICE and DTLS, and for its own end.
HANDSHAKE_SECONDS = 60
COUNTER_SECONDS = 30  # the counter's JSON line after the window's end


async def handshake(url: str, count: int, janus: bool, control_fd: int) -> None:
    """A child of the light client: open `count` viewers with aiortc, hand
    each connected one's nominated socket to the counter, print what was
    handed (and the Janus sessions to keep alive), and leave at once: no
    DTLS close_notify, no ICE teardown, nothing the server would see."""
    opener = open_janus_viewer if janus else open_viewer
    opened = await asyncio.gather(*(opener(url) for _ in range(count)), return_exceptions=True)
    pcs = [pc for pc in opened if isinstance(pc, RTCPeerConnection)]
    errors = [f"{type(e).__name__}: {e}" for e in opened if not isinstance(e, RTCPeerConnection)]
    deadline = time.monotonic() + HANDSHAKE_SECONDS
    while any(pc.connectionState not in ("connected", "failed", "closed") for pc in pcs):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    control = socket.socket(fileno=control_fd)
    handed, sessions = 0, []
    for pc in pcs:
        connection = ice_connection(pc)
        pair = connection._nominated.get(1)
        if pc.connectionState != "connected" or pair is None:
            continue
        types = ",".join(str(pt) for pt in sorted(VIDEO_TYPES.get(id(connection), ()))) or "none"
        socket.send_fds(control, [f"P {connection.local_password} {types}".encode()], viewer_fds(connection, pair))
        handed += 1
        if id(pc) in SESSION_OF:
            sessions.append(SESSION_OF[id(pc)])
    print(json.dumps({"handed": handed, "failed": count - handed, "errors": errors[:3], "sessions": sessions}))
    sys.stdout.flush()
    os._exit(0)


RTPCOUNT_MAX_SOCKETS = 8  # rtpcount.c's MAX_SOCKETS


def viewer_fds(connection, pair) -> list[int]:
    """The fds of a viewer's ICE sockets: the nominated pair's first, then
    every other host candidate's."""
    nominated = pair.protocol.transport.get_extra_info("socket").fileno()
    others = [p.transport.get_extra_info("socket") for p in connection._protocols if p is not pair.protocol]
    return [nominated, *(sock.fileno() for sock in others if sock is not None)][:RTPCOUNT_MAX_SOCKETS]


async def main_light(url: str, count: int, rate: float, warmup: float, window: float, janus: bool,
                     batch: int, poll_ms: int) -> None:  # fmt: skip
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    workdir = Path(tempfile.mkdtemp(prefix="rtpcount-"))
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        binary = build_c(HERE / "rtpcount.c", workdir / "rtpcount", "-lcrypto")
        counter = subprocess.Popen(
            [str(binary), "--control-fd", str(theirs.fileno()), "--poll-ms", str(poll_ms)],
            pass_fds=(theirs.fileno(),), stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
    finally:
        theirs.close()
        shutil.rmtree(workdir, ignore_errors=True)
    keepalive = asyncio.create_task(keep_janus_alive()) if janus else None
    began = time.monotonic()
    handed = tried = 0
    try:
        while tried < count and not stop.is_set():
            n = min(batch, count - tried)
            started = time.monotonic()
            child = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--handshake", "--url", url, "--count", str(n),
                "--control-fd", str(ours.fileno()), *(["--janus"] if janus else []),
                pass_fds=(ours.fileno(),), stdout=subprocess.PIPE,
            )  # fmt: skip
            try:
                out, _ = await asyncio.wait_for(child.communicate(), HANDSHAKE_SECONDS + n + 60)
            except TimeoutError:
                child.kill()
                out = b""
            tried += n
            lines = out.decode().strip().splitlines()
            report = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {"handed": 0, "errors": []}
            handed += report["handed"]
            JANUS_SESSIONS.extend(report.get("sessions", []))
            if report["handed"] < n:
                print(f"handshake: {n - report['handed']} of {n} not connected {report.get('errors')}", file=sys.stderr)
            if report["handed"] < n / 2:
                # The server refuses or cannot keep up with its handshakes
                # (Janus past its core): the step has failed; measure those
                # that did connect instead of waiting out every batch.
                print(f"handshake: stopped opening after {tried} of {count}", file=sys.stderr)
                break
            await asyncio.sleep(max(0.0, n / rate - (time.monotonic() - started)))
        opened = time.monotonic() - began
        print(f"opened {handed} of {count} in {opened:.1f} s", file=sys.stderr, flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), warmup)
        ours.send(b"B")
        cpu_before, wall_before = time.process_time(), time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), window)
        ours.send(b"E")
        own_cpu = 100 * (time.process_time() - cpu_before) / max(1e-3, time.monotonic() - wall_before)
        line = await asyncio.wait_for(asyncio.to_thread(counter.stdout.readline), COUNTER_SECONDS)
        counted = json.loads(line)
        result = {
            "client": "light",
            "connected": counted["peers"],
            "open_seconds": round(opened, 1),
            "window": counted["window"],
            "video_frames": counted["video_frames"],
            "audio_packets": counted["audio_packets"],
            "client_cpu": round(counted["counter_cpu"] + own_cpu, 1),
            "counter_cpu": counted["counter_cpu"],
            "signalling_cpu": round(own_cpu, 1),
            "socket_drops": counted["socket_drops"],
            "stun_answers": counted["stun_answers"],
            "sockets": counted["sockets"],
            "off_nominated": counted["off_nominated"],
        }
        zero = [i for i, frames in enumerate(counted["video_frames"]) if frames == 0]
        print(f"counter: {counted['sockets']} sockets for {counted['peers']} viewers; "
              f"{counted['off_nominated']} sent video on another than their nominated pair's; "
              f"{len(zero)} no video frame {zero[:20]}", file=sys.stderr, flush=True)  # fmt: skip
        print(json.dumps(result), flush=True)
    finally:
        if keepalive is not None:
            keepalive.cancel()
        ours.close()
        if counter.poll() is None:
            counter.terminate()
        counter.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the WHEP URL, or with --janus Janus's API root")
    parser.add_argument("--janus", action="store_true", help="watch Janus's streaming mountpoint 1 instead")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--client", choices=("light", "aiortc"), default="light")
    parser.add_argument("--rate", type=float, help="viewers opened per second (default: 50 light, 20 aiortc)")
    parser.add_argument("--batch", type=int, default=50, help="light: viewers a handshake child opens at once")
    parser.add_argument("--poll-ms", type=int, default=5, help="light: the counter's turn, at most one per this")
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--window", type=float, default=10)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (a lighter loop: more viewers a core)")
    parser.add_argument("--handshake", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--control-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    rate = args.rate or (50 if args.client == "light" else 20)
    if args.handshake:
        asyncio.run(handshake(args.url, args.count, args.janus, args.control_fd))
    elif args.client == "light":
        asyncio.run(main_light(args.url, args.count, rate, args.warmup, args.window, args.janus,
                               args.batch, args.poll_ms))  # fmt: skip
    else:
        asyncio.run(main(args.url, args.count, rate, args.warmup, args.window, args.janus))
    sys.exit(0)
