"""RTS fast sender microbenchmark (issue 18, step 1; bench/README.md,
"bench/rts fast sender (issue 18, step 1)").

CPU per RTP packet, in this process, of what sending one packet to one
WebRTC viewer costs:

1. `aiortc sender`: a real RTCRtpSender of a real RTCPeerConnection pair on
   loopback (DTLS done, SRTP profile as negotiated), its own `_run_rtp`
   loop fed pre-cut payloads by a track that never waits (RtpPacket,
   extensions, serialise, `RTCDtlsTransport._send_rtp` -> libsrtp -> aioice
   -> asyncio `sendto`), timed from its first frame to its last;
2. `aiortc _send_rtp`: that transport call alone, for serialised packets;
3. the fast path (livecenter/media/rts/fastpath.py, srtp.py): header write
   only; header + SRTP (libsrtp through pylibsrtp's `Session.protect` as
   aiortc calls it, libsrtp's `srtp_protect` called directly, and
   `cryptography`) for
   AEAD_AES_256_GCM (what aiortc and Chrome negotiate) and
   AES_CM_128_HMAC_SHA1_80; header + SRTP + `sendto` on a non-blocking UDP
   socket (and `send` on a connected one), and through the nominated ICE
   pair's asyncio transport (aiortc_compat.ice_datagram_path); and a
   fan-out of whole frames to 1,000 viewers, each with its own writer,
   libsrtp session and connected socket, from one loop per frame;
4. `FastTrackSender.send` (media.py), the node's own call per viewer per
   frame, on its two paths: Python (libsrtp through pylibsrtp, asyncio
   `sendto` a packet) and native (`make native`: _rtssend.c writes the
   headers, protects with the system libsrtp2 and sends the frame with one
   `sendmmsg`), for 1 and 1,000 viewers, each with an asyncio datagram
   transport on an unconnected socket, as an ICE pair's.

The receiving side never reads (its transport is paused; the fast path's
loopback receiver is never read): a send costs what the kernel does to
deliver or drop it, and the receiver's work is not counted.

From each, the viewers one core could carry at `--packets-per-second`
(~190 at 2 Mbit/s with ~1,200-byte payloads) if sending were all it did.
Each variant runs `--repeats` times `--packets` packets; the median is
printed. Bounded (a few seconds per variant) and stops by itself.

    flock /tmp/livecenter-bench.lock nice -n 0 .venv/bin/python bench/rts/sender_micro.py [--packets 20000]
        [--repeats 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from aiortc import RTCConfiguration, RTCPeerConnection  # noqa: E402
from aiortc.mediastreams import MediaStreamTrack  # noqa: E402
from aiortc.rtp import HeaderExtensionsMap, RtpPacket  # noqa: E402
from aiortc.sdp import SessionDescription  # noqa: E402

from livecenter.media.rts import aiortc_compat, srtp  # noqa: E402
from livecenter.media.rts.fastpath import (  # noqa: E402
    RtpPacketHistory,
    RtpStreamParameters,
    RtpWriter,
    abs_send_time_of,
    extension_ids,
)
from livecenter.media.rts.media import VIEWER_MAX_UNSENT_BYTES, FastTrackSender  # noqa: E402

PAYLOAD_BYTES = 1200
PACKETS_PER_FRAME = 6  # 2 Mbit/s at 30 fps: ~8.3 kB a frame
HISTORY_FRAMES = 300
PACKETS_PER_SECOND = 190  # 2 Mbit/s, ~1,200-byte payloads, and a little audio
CONNECT_TIMEOUT_SECONDS = 20
FAN_OUT_VIEWERS = 1000


def _payloads() -> list[bytes]:
    return [os.urandom(PAYLOAD_BYTES) for _ in range(PACKETS_PER_FRAME)]


class _Frame:
    """What the track hands the sender: not an av.Frame, so the sender packs it."""


class _Packer:
    """The sender's encoder (aiortc_compat.use_encoder): the frame's payloads, cut already."""

    def __init__(self) -> None:
        self.payloads = _payloads()
        self.timestamp = 0

    def pack(self, frame):
        self.timestamp += 3000
        return self.payloads, self.timestamp


class _CountingTrack(MediaStreamTrack):
    """Hands the sender `frames` frames without ever waiting, then blocks;
    notes the CPU time at the first and the last hand-out."""

    kind = "video"

    def __init__(self, frames: int) -> None:
        super().__init__()
        self.frames = frames
        self.handed = 0
        self.started = 0.0
        self.finished = 0.0
        self.done = asyncio.Event()

    async def recv(self):
        if self.handed == 0:
            self.started = time.process_time()
        if self.handed == self.frames:
            self.finished = time.process_time()
            self.done.set()
            await asyncio.Future()
        self.handed += 1
        return _Frame()


async def _pair(track=None):
    """A sending and a receiving RTCPeerConnection connected on loopback,
    the receiving side's ICE transport paused (it reads nothing)."""
    aiortc_compat.use_ice_addresses(("127.0.0.1",))
    sending = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiving = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = sending.addTransceiver(track or "video", direction="sendonly")
    if track is not None:
        aiortc_compat.use_encoder(transceiver.sender, _Packer())
    receiving.addTransceiver("video", direction="recvonly")
    connected = asyncio.Event()

    @sending.on("connectionstatechange")
    def changed():
        if sending.connectionState == "connected":
            connected.set()

    await sending.setLocalDescription(await sending.createOffer())
    await receiving.setRemoteDescription(sending.localDescription)
    await receiving.setLocalDescription(await receiving.createAnswer())
    await sending.setRemoteDescription(receiving.localDescription)
    async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
        await connected.wait()
    receiving_dtls = receiving.getTransceivers()[0].receiver.transport
    transport, _ = aiortc_compat.ice_datagram_path(receiving_dtls)
    transport.pause_reading()
    return sending, receiving, transceiver


async def aiortc_sender(packets: int) -> float:
    """CPU µs per packet of a real RTCRtpSender's loop."""
    frames = packets // PACKETS_PER_FRAME
    track = _CountingTrack(frames)
    sending, receiving, _ = await _pair(track)
    try:
        async with asyncio.timeout(120):
            await track.done.wait()
        return (track.finished - track.started) * 1e6 / (frames * PACKETS_PER_FRAME)
    finally:
        await sending.close()
        await receiving.close()


async def aiortc_send_rtp(packets: int) -> tuple[float, str]:
    """CPU µs per packet of `RTCDtlsTransport._send_rtp` (SRTP and the ICE send) alone."""
    sending, receiving, transceiver = await _pair()
    try:
        dtls = transceiver.sender.transport
        profile, _ = aiortc_compat.srtp_tx_keys(dtls)
        packet = RtpPacket(payload_type=102, sequence_number=0, timestamp=0, ssrc=transceiver.sender._ssrc)
        packet.payload = os.urandom(PAYLOAD_BYTES)
        data = [None] * packets
        for i in range(packets):
            packet.sequence_number = i % 65536
            data[i] = packet.serialize(HeaderExtensionsMap())
        send = dtls._send_rtp
        started = time.process_time()
        for item in data:
            await send(item)
        return (time.process_time() - started) * 1e6 / packets, profile
    finally:
        await sending.close()
        await receiving.close()


def _history() -> RtpPacketHistory:
    history = RtpPacketHistory()
    payloads = _payloads()
    for frame in range(HISTORY_FRAMES):
        history.add_frame(payloads, frame * 3000, keyframe=frame % 30 == 0)
    return history


def _writer() -> RtpWriter:
    """A viewer's writer, with an SSRC of its own: libsrtp would refuse a
    second run's sequence numbers on the same SSRC as replays."""
    parameters = RtpStreamParameters(ssrc=random.getrandbits(32), payload_type=102, mid="0", mid_id=1,
                                     abs_send_time_id=3, rtx_ssrc=0x5678, rtx_payload_type=103)  # fmt: skip
    return RtpWriter(parameters, sequence_number=1000, timestamp_origin=12345)


def fast_path(packets: int, protect=None, send=None) -> float:
    """CPU µs per packet of the fast path: write, and protect and send if given."""
    history, writer = _history(), _writer()
    size = history.next_index
    write = writer.write
    abs_send_time = abs_send_time_of(int(time.time() * (1 << 32)))
    started = time.process_time()
    if protect is None:
        for i in range(packets):
            write(history, i % size, abs_send_time)
    elif send is None:
        for i in range(packets):
            protect(write(history, i % size, abs_send_time))
    else:
        for i in range(packets):
            send(protect(write(history, i % size, abs_send_time)))
    return (time.process_time() - started) * 1e6 / packets


class _Dtls:
    """What aiortc_compat.ice_nominated_pair reads of a DTLS transport
    (transport._connection._nominated[1]), for FastTrackSender outside a
    peer connection."""

    def __init__(self, transport, remote) -> None:
        pair = type("Pair", (), {"protocol": type("Protocol", (), {"transport": transport})(), "remote_addr": remote})
        connection = type("Connection", (), {"_nominated": {1: pair()}})()
        self.transport = type("IceTransport", (), {"_connection": connection})()


async def fan_out_senders(viewers: int, frames: int, implementation: str, profile: str) -> float:
    """CPU µs per packet of media.FastTrackSender.send, the node's own call,
    for one stream's frames to `viewers` viewers, one loop per frame over
    all of them: each its own writer, protector (`native`: the native
    sender's libsrtp2 session, so a frame is one send_frame call and one
    sendmmsg; `libsrtp`: the Python path, a sendto per packet) and asyncio
    datagram transport on an unconnected socket (as an ICE pair's), to a
    loopback socket nobody reads."""
    loop = asyncio.get_running_loop()
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    remote = receiver.getsockname()
    history = _history()
    key_bytes, salt_bytes = srtp.KEY_SALT_BYTES[profile]
    senders, transports = [], []
    try:
        for _ in range(viewers):
            transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
            transports.append(transport)
            protector = srtp.protector(profile, os.urandom(key_bytes + salt_bytes), implementation)
            senders.append(FastTrackSender(_writer(), protector.protect, _Dtls(transport, remote), (transport, remote)))
        if implementation == "native" and not all(sender.fd >= 0 for sender in senders):
            raise RuntimeError("the native sender did not get the sockets' fds")
        abs_send_time = abs_send_time_of(int(time.time() * (1 << 32)))
        size = history.next_index
        for sender in senders:  # libsrtp makes each SSRC's stream on its first packet: not counted
            sender.send(history, range(size - PACKETS_PER_FRAME, size), abs_send_time, 0, 0)
        await asyncio.sleep(0)
        started = time.process_time()
        for frame in range(frames):
            first = frame * PACKETS_PER_FRAME % size
            indexes = range(first, first + PACKETS_PER_FRAME)
            for sender in senders:
                if sender.ready() and sender.transport.get_write_buffer_size() <= VIEWER_MAX_UNSENT_BYTES:
                    sender.send(history, indexes, abs_send_time, 0, PAYLOAD_BYTES * PACKETS_PER_FRAME)
        elapsed = time.process_time() - started
        return elapsed * 1e6 / (frames * viewers * PACKETS_PER_FRAME)
    finally:
        for transport in transports:
            transport.close()
        await asyncio.sleep(0)
        receiver.close()


def fan_out(viewers: int, frames: int) -> float:
    """CPU µs per packet of one stream's frames sent to `viewers` viewers the
    way the integration would: one loop per frame over every viewer, each
    with its own writer, libsrtp protector and connected UDP socket (so the
    caches see 1,000 viewers' state, not one), to a loopback socket nobody
    reads."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    history = _history()
    gcm = srtp.AEAD_AES_256_GCM
    key_bytes, salt_bytes = srtp.KEY_SALT_BYTES[gcm]
    sockets, senders = [], []
    try:
        for _ in range(viewers):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect(receiver.getsockname())
            sockets.append(sock)
            protector = srtp.protector(gcm, os.urandom(key_bytes + salt_bytes), "libsrtp")
            senders.append((_writer().write, protector.protect, sock.send))
        abs_send_time = abs_send_time_of(int(time.time() * (1 << 32)))
        size = history.next_index
        started = time.process_time()
        for frame in range(frames):
            first = frame * PACKETS_PER_FRAME % size
            indexes = range(first, first + PACKETS_PER_FRAME)
            for write, protect, send in senders:
                for index in indexes:
                    send(protect(write(history, index, abs_send_time)))
        return (time.process_time() - started) * 1e6 / (frames * viewers * PACKETS_PER_FRAME)
    finally:
        for sock in sockets:
            sock.close()
        receiver.close()


def _loopback_pair():
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setblocking(False)
    return sender, receiver


async def fast_path_ice(packets: int, implementation: str) -> tuple[float, str]:
    """The fast path sending through the nominated ICE pair's asyncio
    transport, with the keys the pair's DTLS handshake exported."""
    sending, receiving, transceiver = await _pair()
    try:
        dtls = transceiver.sender.transport
        profile, key_and_salt = aiortc_compat.srtp_tx_keys(dtls)
        transport, remote = aiortc_compat.ice_datagram_path(dtls)
        media = SessionDescription.parse(sending.remoteDescription.sdp).media[0]
        mid_id, abs_id = extension_ids(media.rtp.headerExtensions)
        protector = srtp.protector(profile, key_and_salt, implementation)
        sendto = transport.sendto

        def send(data):
            sendto(data, remote)

        return fast_path(packets, protector.protect, send), profile
    finally:
        await sending.close()
        await receiving.close()


def _median(runs) -> float:
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--packets-per-second", type=int, default=PACKETS_PER_SECOND)
    parser.add_argument("--json")
    parser.add_argument("--senders-only", action="store_true", help="only the FastTrackSender.send rows")
    args = parser.parse_args()
    packets = max(PACKETS_PER_FRAME, min(args.packets, 200_000))
    repeats = max(1, min(args.repeats, 20))
    keys = {profile: os.urandom(sum(lengths)) for profile, lengths in srtp.KEY_SALT_BYTES.items()}
    rows: list[tuple[str, float]] = []

    def row(name: str, runs: list[float]) -> None:
        value = _median(runs)
        rows.append((name, value))
        print(f"{name:<88} {value:6.2f} µs  {1e6 / value:10.0f} pkt/s  "
              f"{1e6 / value / args.packets_per_second:8.0f} viewers/core", flush=True)  # fmt: skip

    def sender_rows() -> None:
        if srtp.native is None:
            print("(the native sender is not built, `make native`: its rows are left out)")
        fan_frames = max(1, packets // (FAN_OUT_VIEWERS * PACKETS_PER_FRAME)) * 2
        for profile in (srtp.AEAD_AES_256_GCM, srtp.AES_CM_128_HMAC_SHA1_80):
            for implementation in ("libsrtp", "native") if srtp.native is not None else ("libsrtp",):
                path = "native: one sendmmsg a frame" if implementation == "native" else "Python: sendto a packet"
                counts = [(1, packets // PACKETS_PER_FRAME)]
                if profile == srtp.AEAD_AES_256_GCM:
                    counts.append((FAN_OUT_VIEWERS, fan_frames))
                for viewers, frames in counts:
                    row(f"FastTrackSender.send {profile[5:]}, {viewers} viewer(s) x {frames} frames ({path})",
                        [asyncio.run(fan_out_senders(viewers, frames, implementation, profile))
                         for _ in range(repeats)])  # fmt: skip

    print(f"{platform.node()} {platform.processor() or platform.machine()} python {platform.python_version()} "
          f"load {os.getloadavg()[0]:.2f}; {packets} packets x {repeats}, payload {PAYLOAD_BYTES} B, "
          f"{args.packets_per_second} packets/s per viewer")  # fmt: skip
    print(f"{'variant':<88} {'CPU/packet':>9}  {'per core':>14}  {'implied':>14}")
    if args.senders_only:
        sender_rows()
        if args.json:
            Path(args.json).write_text(json.dumps({"packets": packets, "repeats": repeats, "rows": rows}, indent=1))
        return
    negotiated = asyncio.run(aiortc_send_rtp(PACKETS_PER_FRAME))[1]
    row(f"aiortc RTCRtpSender loop ({negotiated})", [asyncio.run(aiortc_sender(packets)) for _ in range(repeats)])
    row(f"aiortc RTCDtlsTransport._send_rtp alone ({negotiated})",
        [asyncio.run(aiortc_send_rtp(packets))[0] for _ in range(repeats)])  # fmt: skip
    row("fast: header write only", [fast_path(packets) for _ in range(repeats)])
    for profile in (srtp.AEAD_AES_256_GCM, srtp.AES_CM_128_HMAC_SHA1_80):
        for implementation in ("Session.protect", "libsrtp", "cryptography", "native"):
            if implementation == "native" and srtp.native is None:
                continue
            protect = _protect(profile, keys[profile], implementation)
            row(f"fast: header + SRTP {profile[5:]} ({implementation})",
                [fast_path(packets, protect) for _ in range(repeats)])  # fmt: skip
    sender, receiver = _loopback_pair()
    address = receiver.getsockname()
    connected = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    connected.setblocking(False)
    connected.connect(address)
    gcm = srtp.AEAD_AES_256_GCM
    try:
        row("sendto alone (1,236 B, non-blocking UDP, loopback)",
            [_send_only(lambda data: sender.sendto(data, address), packets) for _ in range(repeats)])  # fmt: skip
        row(
            "send alone (the same, on a connected socket)",
            [_send_only(connected.send, packets) for _ in range(repeats)],
        )
        for implementation in ("libsrtp", "cryptography"):
            protect = _protect(gcm, keys[gcm], implementation)

            def send(data, sendto=sender.sendto):
                sendto(data, address)

            row(f"fast: header + SRTP AES_256_GCM ({implementation}) + sendto",
                [fast_path(packets, protect, send) for _ in range(repeats)])  # fmt: skip
        protect = _protect(gcm, keys[gcm], "libsrtp")
        row("fast: header + SRTP AES_256_GCM (libsrtp) + send (connected)",
            [fast_path(packets, protect, connected.send) for _ in range(repeats)])  # fmt: skip
    finally:
        sender.close()
        receiver.close()
        connected.close()
    frames = max(1, packets // (FAN_OUT_VIEWERS * PACKETS_PER_FRAME))
    row(f"fast: fan-out, {FAN_OUT_VIEWERS} viewers x {frames} frames (libsrtp GCM + send, connected)",
        [fan_out(FAN_OUT_VIEWERS, frames) for _ in range(repeats)])  # fmt: skip
    sender_rows()
    for implementation in ("libsrtp", "cryptography", "native"):
        if implementation == "native" and srtp.native is None:
            continue
        runs = [asyncio.run(fast_path_ice(packets, implementation)) for _ in range(repeats)]
        row(f"fast: header + SRTP {runs[0][1][5:]} ({implementation}) + ICE transport.sendto",
            [r[0] for r in runs])  # fmt: skip
    aiortc_compat.use_ice_addresses(())
    if args.json:
        Path(args.json).write_text(json.dumps({"packets": packets, "repeats": repeats, "rows": rows}, indent=1))


def _send_only(send, packets: int) -> float:
    data = os.urandom(PAYLOAD_BYTES + 36)
    started = time.process_time()
    for _ in range(packets):
        send(data)
    return (time.process_time() - started) * 1e6 / packets


def _protect(profile: str, key_and_salt: bytes, implementation: str):
    """`Session.protect`: pylibsrtp's public call, as aiortc's `_send_rtp`
    makes it; `libsrtp`: LibsrtpProtector's direct call; `cryptography`."""
    if implementation == "Session.protect":
        protector = srtp.LibsrtpProtector(profile, key_and_salt)
        protector._direct = False
        return protector.protect
    return srtp.protector(profile, key_and_salt, implementation).protect


if __name__ == "__main__":
    main()
