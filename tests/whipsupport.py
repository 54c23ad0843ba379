"""A WHIP publisher for tests: aiortc sending H.264 and Opus made here, in
the test, so that what a viewer receives can be compared with what was
sent, byte for byte.

The media is encoded once with PyAV (libx264 Constrained Baseline, no
B-frames, a keyframe every `gop` frames; libopus 20 ms packets) and sent
pre-encoded in real time: aiortc's sender packetises an av.Packet as it
comes (its encoders' `pack`), so the publisher never re-encodes and every
access unit is known. A keyframe request from the node (PLI) is counted.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from livecenter.media.codecs import iter_annexb_nal_units
from livecenter.media.rts.aiortc_compat import on_keyframe_request
from livecenter.media.signing import sign
from tests.mediasupport import INGEST, INGEST_KEY
from tests.mediasupport import http_request as http

VIDEO_TIME_BASE = fractions.Fraction(1, 90_000)
AUDIO_TIME_BASE = fractions.Fraction(1, 48_000)
FPS = 30
OPUS_SAMPLES = 960  # 20 ms at 48 kHz


def whip_url(node, app="live", stream="cam1", key=INGEST_KEY, domain=INGEST, auth=True) -> str:
    token = sign(f"/{app}/{stream}", key, int(time.time()))
    query = f"auth_key={token}&domain={domain}" if auth else f"domain={domain}"
    return f"{node.http}/{app}/{stream}.whip?{query}"


def _picture(width: int, height: int, index: int) -> av.VideoFrame:
    """A grey picture with a white bar that moves a few pixels a frame."""
    frame = av.VideoFrame(width, height, "yuv420p")
    bar = (index * 4) % width
    row = bytes(255 if bar <= x < bar + 16 else 64 + (x * 128 // width) for x in range(width))
    y_plane = frame.planes[0]
    y_plane.update((row + bytes(y_plane.line_size - width)) * height)
    for plane in frame.planes[1:]:
        plane.update(bytes([128]) * plane.buffer_size)
    return frame


def encode_video(seconds: float, width: int = 320, height: int = 240, gop: int = FPS) -> list[bytes]:
    """H.264 access units (Annex B), FPS a second."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = fractions.Fraction(1, FPS)
    encoder.framerate = fractions.Fraction(FPS, 1)
    encoder.profile = "Constrained Baseline"
    encoder.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "bf": "0",
        "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:repeat-headers=1",
    }
    units = []
    for i in range(int(seconds * FPS)):
        picture = _picture(width, height, i)
        picture.pts = i
        units += [bytes(p) for p in encoder.encode(picture)]
    units += [bytes(p) for p in encoder.encode(None)]
    return units


def encode_vp8(seconds: float, width: int = 320, height: int = 240, gop: int = FPS) -> list[bytes]:
    """VP8 frames (libvpx, real-time), FPS a second."""
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = fractions.Fraction(1, FPS)
    encoder.framerate = fractions.Fraction(FPS, 1)
    encoder.bit_rate = 500_000
    encoder.gop_size = gop
    encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    frames = []
    for i in range(int(seconds * FPS)):
        picture = _picture(width, height, i)
        picture.pts = i
        frames += [bytes(p) for p in encoder.encode(picture)]
    frames += [bytes(p) for p in encoder.encode(None)]
    return frames


def encode_audio(seconds: float) -> list[bytes]:
    """Opus packets of a 440 Hz tone, 20 ms each."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48_000, "stereo", "s16"
    encoder.time_base = AUDIO_TIME_BASE
    encoder.bit_rate = 64_000
    packets = []
    for i in range(int(seconds * 50)):
        frame = av.AudioFrame(format="s16", layout="stereo", samples=OPUS_SAMPLES)
        frame.sample_rate = 48_000
        frame.pts = i * OPUS_SAMPLES
        samples = []
        for n in range(OPUS_SAMPLES):
            value = int(8000 * math.sin(2 * math.pi * 440 * (i * OPUS_SAMPLES + n) / 48_000))
            samples += [value, value]
        frame.planes[0].update(struct.pack(f"<{len(samples)}h", *samples))
        packets += [bytes(p) for p in encoder.encode(frame)]
    return packets


class EncodedTrack(MediaStreamTrack):
    """Pre-encoded packets, sent in real time (looped)."""

    def __init__(self, kind: str, packets: list[bytes], interval: float, ticks: int, time_base) -> None:
        super().__init__()
        self.kind = kind
        self.packets = packets
        self.interval = interval
        self.ticks = ticks
        self.time_base = time_base
        self.sent: list[bytes] = []
        self.keyframe_requests = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet:
        index = len(self.sent)
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + index * self.interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        data = self.packets[index % len(self.packets)]
        self.sent.append(data)
        packet = av.Packet(data)
        packet.pts = packet.dts = index * self.ticks
        packet.time_base = self.time_base
        return packet

    def keyframe_requested(self) -> None:
        self.keyframe_requests += 1


@dataclass
class WhipPublisher:
    """One aiortc WHIP session; `start()` on a running loop."""

    url: str
    seconds: float = 10.0
    audio: bool = True
    video_codec: str = "H264"
    # (url, method, body) -> (status, headers, text): plain HTTP by default.
    request: Callable = http
    pc: RTCPeerConnection = field(default_factory=lambda: RTCPeerConnection(RTCConfiguration(iceServers=[])))
    video: EncodedTrack | None = None
    sound: EncodedTrack | None = None
    status: int = 0
    headers: dict = field(default_factory=dict)
    body: str = ""

    async def start(self, offer_edit=None) -> int:
        encode = encode_vp8 if self.video_codec == "VP8" else encode_video
        units = await asyncio.to_thread(encode, self.seconds)
        self.video = EncodedTrack("video", units, 1 / FPS, 90_000 // FPS, VIDEO_TIME_BASE)
        transceiver = self.pc.addTransceiver(self.video, direction="sendonly")
        on_keyframe_request(transceiver.sender, self.video.keyframe_requested)
        if self.video_codec == "VP8":  # a browser without H.264 (Firefox without OpenH264, say)
            codecs = RTCRtpSender.getCapabilities("video").codecs
            transceiver.setCodecPreferences([c for c in codecs if c.mimeType.lower() in ("video/vp8", "video/rtx")])
        if self.audio:
            packets = await asyncio.to_thread(encode_audio, self.seconds)
            self.sound = EncodedTrack("audio", packets, OPUS_SAMPLES / 48_000, OPUS_SAMPLES, AUDIO_TIME_BASE)
            self.pc.addTransceiver(self.sound, direction="sendonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = self.pc.localDescription.sdp
        if offer_edit is not None:
            offer = offer_edit(offer)
        self.status, self.headers, self.body = await asyncio.to_thread(self.request, self.url, "POST", offer.encode())
        if self.status == 201:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=self.body, type="answer"))
        return self.status

    async def stop(self, delete: bool = True) -> int | None:
        status = None
        if delete and self.status == 201:
            location = self.url.split("/live/")[0] + self.headers["Location"]
            status = (await asyncio.to_thread(self.request, location, "DELETE"))[0]
        await self.pc.close()
        return status


def slices(access_unit: bytes) -> list[bytes]:
    """The coded slice NAL units of an Annex B access unit (what a re-encode would change)."""
    return [bytes(nal) for nal in iter_annexb_nal_units(access_unit) if nal[0] & 0x1F in (1, 5)]
