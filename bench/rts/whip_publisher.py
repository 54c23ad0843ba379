"""A WHIP (RFC 9725) publisher of pre-encoded H.264, with aiortc: the
latency calibrator's frames over WebRTC, for bench/rts's WHIP → WHEP
latency (bench/README.md, "bench/rts").

The video is encoded in a process of its own and reaches this one as
H.264 Annex B on a pipe; the publisher cuts it into access units and sends
them as they are, never decoding or encoding again: its video track's
`recv()` returns `av.Packet`s (pts in 1/90000), which aiortc's sender
packetises (RFC 6184) instead of encoding, as the node does for WHEP
(livecenter/media/rts/session.py).

Sources (`--source`):

- `calibrator` (the default): streams/calibrator.py's frames (the timecode
  band the web player reads, the moving bar) encoded by the same
  `open_output` and so the same libx264 settings as the RTMP calibrator
  (`--size`, `--fps`, `--bitrate`, 1 s keyframes, no B-frames), each frame
  captured when the wall clock reaches its due time and written at once,
  followed by an access unit delimiter: the AUD tells this side that the
  frame is whole without waiting for the next one.
- `testsrc`: the ffmpeg CLI (`-re`, lavfi testsrc2, libx264 ultrafast
  zerolatency, no B-frames, `-bsf:v h264_metadata=aud=insert -f h264 -`).
  Its AUD comes before each frame, so a frame is known whole only when the
  next one starts: one frame interval later than `calibrator`.

Audio (unless `--no-audio`) is a quiet 440 Hz tone that aiortc encodes to
Opus, paced by the clock, as the RTMP calibrator sends a tone.

No trickle ICE: aiortc gathers every candidate before the offer is made.
ICE host candidates are on 127.0.0.1 only unless `--ice-address` says
otherwise (loopback benches).

    .venv/bin/python bench/rts/whip_publisher.py URL [--seconds N] [--source calibrator|testsrc]
    .venv/bin/python bench/rts/whip_publisher.py --annexb-only --seconds 2 > out.h264   # the source alone

Importable: `WhipPublisher(url, source).start()` / `.stop()`, or `publish(url, seconds)`.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import logging
import math
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import av  # noqa: E402
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack  # noqa: E402

from livecenter.media.avc_flv import has_idr  # noqa: E402
from livecenter.media.codecs import ANNEXB_START_CODE, iter_annexb_nal_units  # noqa: E402
from livecenter.media.rts.aiortc_compat import use_ice_addresses  # noqa: E402
from livecenter.media.rts.h264 import NAL_AUD, NAL_IDR, NAL_PPS, NAL_SEI, NAL_SLICE, NAL_SPS  # noqa: E402

log = logging.getLogger("whip_publisher")

SDP_CONTENT_TYPE = "application/sdp"
VIDEO_CLOCK_HZ = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_HZ)
# An access unit that grows past this without a boundary is not H.264 we
# can send (a 720p keyframe at 2 Mbit/s is ~30 KiB; 4 MiB is 8K intra).
MAX_ACCESS_UNIT_BYTES = 4 * 1024 * 1024
# Bytes read from the source's pipe at a time.
PIPE_READ_BYTES = 256 * 1024
# Frames the video track holds for a sender that is not reading yet (ICE
# and DTLS under way) or falls behind; past it, the oldest go and the
# track waits for the next keyframe. 2 s at 30 fps.
TRACK_MAX_FRAMES = 60
# The WHIP POST and DELETE, and ICE + DTLS after the answer.
HTTP_TIMEOUT_SECONDS = 15.0
CONNECT_TIMEOUT_SECONDS = 15.0
# What the source process gets to stop after SIGTERM before it is killed.
SOURCE_STOP_SECONDS = 5.0
# H.264 7.4.1.2.3: these start an access unit when they follow a coded slice
# (SEI, SPS, PPS, AUD, and 14-18, reserved / prefix units).
_AU_STARTING_NAL_TYPES = frozenset({NAL_SEI, NAL_SPS, NAL_PPS, NAL_AUD, 14, 15, 16, 17, 18})
_VCL_NAL_TYPES = frozenset({NAL_SLICE, 2, 3, 4, NAL_IDR})
AUD_NAL = ANNEXB_START_CODE + bytes([NAL_AUD, 0xF0])  # primary_pic_type 7 (any), rbsp stop bit
TONE_HZ = 440
TONE_AMPLITUDE = 0.05
AUDIO_SAMPLE_RATE = 48_000
AUDIO_FRAME_SAMPLES = 960  # 20 ms, one Opus frame


class AnnexBError(ValueError):
    """The source's bytes are not H.264 Annex B we can cut into frames."""


class AccessUnitSplitter:
    """Cuts an H.264 Annex B byte stream into access units (sans-IO: `feed`
    bytes, get the access units completed by them; `flush` at the end).

    H.264 7.4.1.2.3: an access unit starts at an AUD, an SEI, SPS or PPS,
    or a coded slice whose first_mb_in_slice is 0 (its ue(v) is then the
    single bit 1: the first payload byte's top bit), when the unit so far
    holds a coded slice. A unit is cut as soon as the NAL header of the next
    one's first NAL unit is in; AUDs are left out of what is returned (they
    mean nothing over RTP, and the node drops them too)."""

    def __init__(self, max_bytes: int = MAX_ACCESS_UNIT_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buffer = bytearray()
        self._scan = 0  # where to look for the next start code
        self._has_vcl = False

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        buffer, out = self._buffer, []
        while True:
            at = buffer.find(b"\x00\x00\x01", self._scan)
            if at < 0:
                # A start code may straddle this read and the next.
                self._scan = max(self._scan, len(buffer) - 2)
                break
            header = at + 3
            if header >= len(buffer):
                break  # the NAL header is not in yet
            nal_type = buffer[header] & 0x1F
            is_vcl = nal_type in _VCL_NAL_TYPES
            if is_vcl and header + 1 >= len(buffer):
                break  # first_mb_in_slice is not in yet
            starts_unit = nal_type in _AU_STARTING_NAL_TYPES or (is_vcl and buffer[header + 1] & 0x80)
            if starts_unit and self._has_vcl:
                # The zero byte of a 4-byte start code belongs to the next unit.
                cut = at - 1 if at > 0 and buffer[at - 1] == 0 else at
                out.append(_without_auds(buffer[:cut]))
                del buffer[:cut]
                header -= cut
                self._has_vcl = False
            self._has_vcl = self._has_vcl or is_vcl
            self._scan = header + 1
        if len(buffer) > self.max_bytes:
            raise AnnexBError(f"no access unit boundary in {len(buffer)} bytes (at most {self.max_bytes})")
        return [unit for unit in out if unit]

    def flush(self) -> list[bytes]:
        """The last access unit, when the stream has ended."""
        unit = _without_auds(self._buffer) if self._has_vcl else b""
        self._buffer.clear()
        self._scan, self._has_vcl = 0, False
        return [unit] if unit else []


def _without_auds(data: bytes | bytearray) -> bytes:
    parts = []
    for nal in iter_annexb_nal_units(data):
        if nal[0] & 0x1F != NAL_AUD:
            parts += (ANNEXB_START_CODE, nal)
    return b"".join(parts)


# --- the sources (processes writing Annex B to stdout) --------------------------------------


@dataclass(frozen=True)
class Source:
    """What encodes the video, as a command, and its frame rate (RTP time)."""

    kind: str = "calibrator"  # or "testsrc"
    size: str = "1280x720"
    fps: int = 30
    bitrate: str = "2M"
    gop_seconds: float = 1.0
    seconds: float | None = None  # None: until stopped

    def command(self) -> list[str]:
        if self.kind == "calibrator":
            cmd = [sys.executable, str(Path(__file__).resolve()), "--annexb-only", "--source", "calibrator",
                   "--size", self.size, "--fps", str(self.fps), "--bitrate", self.bitrate,
                   "--gop-seconds", str(self.gop_seconds)]  # fmt: skip
            return cmd + (["--seconds", str(self.seconds)] if self.seconds is not None else [])
        if self.kind == "testsrc":
            gop = str(max(1, round(self.gop_seconds * self.fps)))
            return [
                "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
                "-f", "lavfi", "-i", f"testsrc2=size={self.size}:rate={self.fps}",
                *(("-t", str(self.seconds)) if self.seconds is not None else ()),
                "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-bf", "0",
                "-g", gop, "-keyint_min", gop, "-sc_threshold", "0",
                "-b:v", self.bitrate, "-maxrate", self.bitrate, "-bufsize", self.bitrate, "-pix_fmt", "yuv420p",
                "-bsf:v", "h264_metadata=aud=insert", "-flush_packets", "1", "-f", "h264", "-",
            ]  # fmt: skip
        raise ValueError(f"source must be calibrator or testsrc, not {self.kind!r}")


def write_calibrator_annexb(source: Source, out, stop: threading.Event) -> int:
    """The calibrator's frames (streams/calibrator.py: its painter, its
    `open_output` and so its libx264 settings, no B-frames) as Annex B on
    `out`, each frame followed by an AUD and flushed, in real time: frame n
    is captured (its timecode read from the clock) when the clock reaches
    start + n / fps. Returns the frames written."""
    from streams.calibrator import CalibratorConfig, _Painter, open_output, parse_bit_rate, parse_size

    width, height = parse_size(source.size)
    config = CalibratorConfig(width=width, height=height, fps=source.fps, bit_rate=parse_bit_rate(source.bitrate),
                              gop_seconds=source.gop_seconds, bframes=0)  # fmt: skip
    # The null muxer: no file, and no global header, so x264 repeats the SPS
    # and PPS before each keyframe, in band, as WebRTC needs them. Nothing is
    # muxed; the stream is only the encoder open_output set up.
    container, video, _audio = open_output(os.devnull, config, "null")
    probe = av.VideoFrame(width, height, "yuv420p")
    painter = _Painter(config, probe.planes[0].line_size)
    chroma = [bytes([128]) * plane.buffer_size for plane in probe.planes[1:]]
    interval, frames, start = 1 / config.fps, 0, time.time()
    try:
        while not stop.is_set():
            due = start + frames * interval
            if source.seconds is not None and due - start >= source.seconds:
                break
            wait = due - time.time()
            if wait > 0 and stop.wait(wait):
                break
            frame = av.VideoFrame(width, height, "yuv420p")
            frame.planes[0].update(painter.luma(int(time.time() * 1000), frames))
            for plane, data in zip(frame.planes[1:], chroma, strict=True):
                plane.update(data)
            frame.pts, frame.time_base = frames, fractions.Fraction(1, config.fps)
            for packet in video.encode(frame):
                out.write(bytes(packet) + AUD_NAL)
            out.flush()
            frames += 1
    finally:
        container.close()
    return frames


# --- the tracks --------------------------------------------------------------------------


class AccessUnitTrack(MediaStreamTrack):
    """Pre-encoded H.264 access units for aiortc's sender: `recv()` returns
    an `av.Packet` (pts in 1/90000), which the sender's H264Encoder packs
    (its `pack`: RFC 6184 STAP-A / FU-A) without encoding. Bounded: frames
    start at a keyframe, and a sender that is more than TRACK_MAX_FRAMES
    behind loses its queue and starts again at the next keyframe."""

    kind = "video"

    def __init__(self, fps: int) -> None:
        super().__init__()
        self.ticks_per_frame = VIDEO_CLOCK_HZ // fps
        self.queue: deque[av.Packet] = deque()
        self.frames_in = self.frames_sent = self.dropped = 0
        self.need_keyframe = True
        self._waiter: asyncio.Future | None = None
        self._ended = False

    def put(self, unit: bytes) -> None:
        index = self.frames_in
        self.frames_in += 1
        keyframe = has_idr(unit)
        if len(self.queue) >= TRACK_MAX_FRAMES:
            self.dropped += len(self.queue)
            self.queue.clear()
            self.need_keyframe = True
        if self.need_keyframe and not keyframe:
            self.dropped += 1
            return
        self.need_keyframe = False
        packet = av.Packet(unit)
        packet.pts = packet.dts = index * self.ticks_per_frame
        packet.time_base = VIDEO_TIME_BASE
        self.queue.append(packet)
        self._wake()

    def end(self) -> None:
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def recv(self) -> av.Packet:
        while not self.queue:
            if self._ended or self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        self.frames_sent += 1
        return self.queue.popleft()


class ToneTrack(MediaStreamTrack):
    """A quiet 440 Hz tone, 20 ms frames at 48 kHz paced by the clock, for
    aiortc to encode to Opus."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        period = [TONE_AMPLITUDE * math.sin(2 * math.pi * TONE_HZ * n / AUDIO_SAMPLE_RATE)
                  for n in range(AUDIO_SAMPLE_RATE)]  # one second: a whole number of cycles  # fmt: skip
        self._period = struct.pack(f"<{len(period)}h", *(int(s * 32767) for s in period))
        self._samples = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            await asyncio.sleep(max(0.0, self._start + self._samples / AUDIO_SAMPLE_RATE - time.monotonic()))
        frame = av.AudioFrame(format="s16", layout="mono", samples=AUDIO_FRAME_SAMPLES)
        period, size = self._period, AUDIO_FRAME_SAMPLES * 2
        offset = self._samples * 2 % len(period)
        frame.planes[0].update(((period[offset:] + period) * 2)[:size])
        frame.pts, frame.sample_rate = self._samples, AUDIO_SAMPLE_RATE
        frame.time_base = fractions.Fraction(1, AUDIO_SAMPLE_RATE)
        self._samples += AUDIO_FRAME_SAMPLES
        return frame


# --- the publisher -----------------------------------------------------------------------


class WhipError(RuntimeError):
    """The WHIP server refused, or the connection did not come up."""


@dataclass
class WhipStats:
    post_ms: float | None = None  # POST sent to answer read
    connect_ms: float | None = None  # answer to ICE + DTLS connected
    frames_in: int = 0  # access units from the source
    frames_sent: int = 0  # access units the sender took
    dropped: int = 0
    source_exit: int | None = None
    errors: list[str] = field(default_factory=list)


def _http(method: str, url: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": SDP_CONTENT_TYPE} if body is not None else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class WhipPublisher:
    """One WHIP session publishing `source`'s video (and a tone) to `url`."""

    def __init__(self, url: str, source: Source | None = None, audio: bool = True,
                 ice_addresses: tuple[str, ...] | None = ("127.0.0.1",)) -> None:  # fmt: skip
        self.url = url
        self.source = source or Source()
        self.audio = audio
        self.ice_addresses = ice_addresses
        self.stats = WhipStats()
        self.video = AccessUnitTrack(self.source.fps)
        self.pc: RTCPeerConnection | None = None
        self.location: str | None = None
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task | None = None
        self._connected = asyncio.Event()
        self._failed = asyncio.Event()

    async def start(self) -> None:
        """Start the source, POST the offer, and wait for ICE and DTLS."""
        if self.ice_addresses is not None:
            use_ice_addresses(self.ice_addresses)
        # The source first: its first keyframe is ready by the time DTLS is.
        self.process = await asyncio.create_subprocess_exec(
            *self.source.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, cwd=ROOT
        )
        self._reader = asyncio.get_running_loop().create_task(self._read_source())
        pc = self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.on("connectionstatechange", self._state_changed)
        video = pc.addTransceiver(self.video, direction="sendonly")
        video.setCodecPreferences(
            [
                c
                for c in RTCRtpSender.getCapabilities("video").codecs
                if c.mimeType.lower() in ("video/h264", "video/rtx")
            ]
        )
        if self.audio:
            pc.addTransceiver(ToneTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())  # every candidate gathered: no trickle
        began = time.monotonic()
        status, headers, body = await asyncio.to_thread(_http, "POST", self.url, pc.localDescription.sdp.encode())
        self.stats.post_ms = (time.monotonic() - began) * 1000
        if status != 201:
            reason = body.decode("utf-8", "replace").strip()[:300]
            raise WhipError(f"WHIP POST answered {status}: {reason}")
        location = {k.lower(): v for k, v in headers.items()}.get("location")
        if not location:
            raise WhipError("WHIP POST answered 201 without a Location")
        self.location = urljoin(self.url, location)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body.decode(), type="answer"))
        began = time.monotonic()
        connected = asyncio.ensure_future(self._connected.wait())
        failed = asyncio.ensure_future(self._failed.wait())
        try:
            await asyncio.wait(
                (connected, failed), timeout=CONNECT_TIMEOUT_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            connected.cancel()
            failed.cancel()
        if not self._connected.is_set():
            raise WhipError(f"ICE/DTLS did not connect ({pc.connectionState}) in {CONNECT_TIMEOUT_SECONDS:.0f} s")
        self.stats.connect_ms = (time.monotonic() - began) * 1000

    def _state_changed(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self._connected.set()
        elif state in ("failed", "closed"):
            self._failed.set()

    async def _read_source(self) -> None:
        splitter = AccessUnitSplitter()
        stream = self.process.stdout
        try:
            while data := await stream.read(PIPE_READ_BYTES):
                for unit in splitter.feed(data):
                    self.video.put(unit)
            for unit in splitter.flush():
                self.video.put(unit)
        except AnnexBError as exc:
            self.stats.errors.append(str(exc))
        finally:
            self.video.end()

    async def wait(self, seconds: float | None) -> None:
        """Until the source ends, the connection fails, or `seconds` pass."""
        waits = [asyncio.ensure_future(self._failed.wait())]
        if self._reader is not None:
            waits.append(asyncio.ensure_future(asyncio.shield(self._reader)))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()

    async def stop(self) -> WhipStats:
        """DELETE the session, close the connection, stop the source."""
        if self.location is not None:
            try:
                status, _, body = await asyncio.to_thread(_http, "DELETE", self.location)
                if status >= 300:
                    self.stats.errors.append(f"DELETE answered {status}: {body.decode('utf-8', 'replace')[:200]}")
            except OSError as exc:
                self.stats.errors.append(f"DELETE failed: {exc}")
            self.location = None
        if self.pc is not None:
            await self.pc.close()
        if self.process is not None:
            if self.process.returncode is None:
                self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), SOURCE_STOP_SECONDS)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
            self.stats.source_exit = self.process.returncode
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        self.video.end()
        self.stats.frames_in, self.stats.frames_sent = self.video.frames_in, self.video.frames_sent
        self.stats.dropped = self.video.dropped
        return self.stats


async def publish(url: str, seconds: float | None, source: Source | None = None, audio: bool = True,
                  ice_addresses: tuple[str, ...] | None = ("127.0.0.1",), started=None) -> WhipStats:  # fmt: skip
    """Publish for `seconds` (None: until the source ends or the connection
    fails), then stop. `started()` is called once connected."""
    publisher = WhipPublisher(url, source, audio, ice_addresses)
    try:
        await publisher.start()
        if started is not None:
            started()
        await publisher.wait(seconds)
    finally:
        await publisher.stop()
    return publisher.stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", nargs="?", help="the WHIP endpoint, with ?auth_key=… (and &domain=…)")
    parser.add_argument("--seconds", type=float, help="publish this long (default: until Ctrl-C or SIGTERM)")
    parser.add_argument("--source", choices=("calibrator", "testsrc"), default="calibrator")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--bitrate", default="2M")
    parser.add_argument("--gop-seconds", type=float, default=1.0)
    parser.add_argument("--no-audio", action="store_true", help="video only")
    parser.add_argument("--ice-address", action="append", help="ICE host candidate address (default 127.0.0.1)")
    parser.add_argument("--annexb-only", action="store_true", help="write the source's Annex B to stdout instead")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if args.annexb_only:
        source = Source(args.source, args.size, args.fps, args.bitrate, args.gop_seconds, args.seconds)
        if source.kind != "calibrator":
            sys.exit("--annexb-only: run the testsrc command yourself (Source.command())")
        try:
            write_calibrator_annexb(source, sys.stdout.buffer, stop)
        except BrokenPipeError:
            pass
        return
    if not args.url:
        parser.error("the WHIP URL is required")
    source = Source(args.source, args.size, args.fps, args.bitrate, args.gop_seconds)

    async def run() -> WhipStats:
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopped.set)
        publisher = WhipPublisher(args.url, source, not args.no_audio, tuple(args.ice_address or ("127.0.0.1",)))
        try:
            await publisher.start()
            print(f"publishing: POST {publisher.stats.post_ms:.0f} ms, connected {publisher.stats.connect_ms:.0f} ms"
                  f" later, session {publisher.location}", flush=True)  # fmt: skip
            until_stopped = asyncio.ensure_future(stopped.wait())
            try:
                await asyncio.wait([until_stopped, asyncio.ensure_future(publisher.wait(args.seconds))],
                                   return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            finally:
                until_stopped.cancel()
        finally:
            await publisher.stop()
        return publisher.stats

    try:
        stats = asyncio.run(run())
    except WhipError as exc:
        sys.exit(f"whip_publisher: {exc}")
    print(json.dumps(stats.__dict__), flush=True)


if __name__ == "__main__":
    main()
