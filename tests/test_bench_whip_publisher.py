"""bench/rts/whip_publisher.py: its Annex B splitter (pure), and a whole
WHIP exchange against a stand-in endpoint made here (an aiortc receiver
behind a minimal HTTP server), so the publisher is known to work apart from
the node: the calibrator's frames arrive, decodable, with the timecodes
they were captured with, and the session is DELETEd at the end."""

from __future__ import annotations

import asyncio
import contextlib
import re

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from bench.rts.whip_publisher import (
    AUD_NAL,
    AccessUnitSplitter,
    AnnexBError,
    Source,
    WhipError,
    publish,
)
from livecenter.media.avc_flv import has_idr
from livecenter.media.timecode import decode_luma

SPS = b"\x00\x00\x00\x01\x67\x42\xc0\x1f\x8c\x8d"
PPS = b"\x00\x00\x00\x01\x68\xce\x3c\x80"
IDR_FIRST = b"\x00\x00\x00\x01\x65\x88\x84\x00\x33"  # first_mb_in_slice 0 (top bit set)
IDR_NEXT = b"\x00\x00\x01\x65\x40\x22\x11"  # first_mb_in_slice > 0: the same picture's second slice
P_FIRST = b"\x00\x00\x00\x01\x41\x9a\x02\x03"
P_NEXT = b"\x00\x00\x01\x41\x40\x10\x20"


def split(data: bytes, step: int) -> tuple[list[bytes], list[bytes]]:
    splitter = AccessUnitSplitter()
    units = []
    for at in range(0, len(data), step):
        units += splitter.feed(data[at : at + step])
    return units, splitter.flush()


@pytest.mark.parametrize("step", [1, 2, 5, 1000])
def test_it_cuts_access_units_at_their_first_slice_or_parameter_set(step):
    stream = SPS + PPS + IDR_FIRST + IDR_NEXT + P_FIRST + P_NEXT + P_FIRST + P_NEXT
    units, last = split(stream, step)
    assert units == [SPS + PPS + IDR_FIRST + b"\x00" + IDR_NEXT, P_FIRST + b"\x00" + P_NEXT]
    assert last == [P_FIRST + b"\x00" + P_NEXT]
    assert has_idr(units[0]) and not has_idr(units[1])


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_an_aud_after_a_frame_hands_it_over_at_once_and_auds_are_left_out(step):
    stream = SPS + PPS + IDR_FIRST + AUD_NAL + P_FIRST + P_NEXT + AUD_NAL
    units, last = split(stream, step)
    assert units == [SPS + PPS + IDR_FIRST, P_FIRST + b"\x00" + P_NEXT]
    assert last == []


def test_an_aud_before_each_frame_as_ffmpeg_inserts_it():
    units, last = split(AUD_NAL + SPS + PPS + IDR_FIRST + AUD_NAL + P_FIRST, 4)
    assert units == [SPS + PPS + IDR_FIRST] and last == [P_FIRST]


def test_it_refuses_more_than_its_limit_without_a_boundary():
    splitter = AccessUnitSplitter(max_bytes=100)
    splitter.feed(IDR_FIRST + bytes(range(1, 91)))  # 99 bytes: at the limit
    with pytest.raises(AnnexBError, match="no access unit boundary in 101 bytes"):
        splitter.feed(b"\x01\x02")


# --- a whole exchange ----------------------------------------------------------------------


class StandInWhipEndpoint:
    """POST /live/cam1.whip answers an offer with an aiortc receiver (201,
    Location); DELETE on the Location is recorded. One session."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.tracks: dict[str, object] = {}
        self.requests: list[str] = []
        self.offer = ""
        self.server: asyncio.Server | None = None
        self.pc.on("track", lambda track: self.tracks.__setitem__(track.kind, track))

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/live/cam1.whip?auth_key=0-0-0-x&domain=push.test"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line = head.split("\r\n")[0]
        self.requests.append(request_line)
        length = int(re.search(r"(?im)^content-length:\s*(\d+)", head)[1]) if "ength:" in head else 0
        body = await reader.readexactly(length)
        if request_line.startswith("POST /live/cam1.whip?"):
            self.offer = body.decode()
            await self.pc.setRemoteDescription(RTCSessionDescription(self.offer, "offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            answer = self.pc.localDescription.sdp.encode()
            writer.write(b"HTTP/1.1 201 Created\r\nContent-Type: application/sdp\r\nLocation: /live/cam1.whip/s1\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(answer), answer))  # fmt: skip
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def stop(self) -> None:
        self.server.close()
        await self.pc.close()


def test_it_publishes_the_calibrators_frames_over_whip_and_deletes_the_session():
    async def run():
        endpoint = StandInWhipEndpoint()
        url = await endpoint.start()
        timecodes, sizes, audio_frames = [], set(), 0
        connected = asyncio.Event()

        async def read_video():
            await connected.wait()
            with contextlib.suppress(MediaStreamError):
                while True:
                    frame = await endpoint.tracks["video"].recv()
                    sizes.add((frame.width, frame.height))
                    luma = frame.reformat(format="yuv420p").planes[0]
                    timecodes.append(decode_luma(bytes(luma), frame.width, frame.height, luma.line_size))

        async def read_audio():
            nonlocal audio_frames
            await connected.wait()
            with contextlib.suppress(MediaStreamError):
                while True:
                    await endpoint.tracks["audio"].recv()
                    audio_frames += 1

        readers = [asyncio.ensure_future(read_video()), asyncio.ensure_future(read_audio())]
        source = Source("calibrator", size="640x360", fps=30, bitrate="800k", gop_seconds=1.0)
        try:
            stats = await asyncio.wait_for(publish(url, 3, source, started=connected.set), 120)
        finally:
            await endpoint.stop()
            await asyncio.gather(*readers, return_exceptions=True)
        return endpoint, stats, timecodes, sizes, audio_frames

    endpoint, stats, timecodes, sizes, audio_frames = asyncio.run(run())
    # The offer: sendonly H.264 video (no other video codec) and audio, every candidate on loopback.
    video = endpoint.offer[endpoint.offer.index("m=video") : endpoint.offer.index("m=audio")]
    assert "a=sendonly" in video and "H264/90000" in video and "VP8" not in video
    assert "a=candidate:" in endpoint.offer and "127.0.0.1" in endpoint.offer
    assert endpoint.requests[-1] == "DELETE /live/cam1.whip/s1 HTTP/1.1"
    assert not stats.errors, stats.errors
    assert stats.frames_sent >= 30, stats
    assert sizes == {(640, 360)}
    read = [t for t in timecodes if t is not None]
    assert len(read) >= 30 and read == sorted(read), timecodes
    assert audio_frames > 0


def test_it_publishes_ffmpegs_annex_b_as_it_comes():
    """The testsrc source: the ffmpeg CLI's `-f h264 -` with an AUD before each frame."""

    async def run():
        endpoint = StandInWhipEndpoint()
        url = await endpoint.start()
        sizes = []
        connected = asyncio.Event()

        async def read_video():
            await connected.wait()
            with contextlib.suppress(MediaStreamError):
                while True:
                    frame = await endpoint.tracks["video"].recv()
                    sizes.append((frame.width, frame.height))

        reader = asyncio.ensure_future(read_video())
        source = Source("testsrc", size="320x240", fps=25, bitrate="300k")
        try:
            stats = await asyncio.wait_for(publish(url, 2, source, audio=False, started=connected.set), 120)
        finally:
            await endpoint.stop()
            await asyncio.gather(reader, return_exceptions=True)
        return endpoint, stats, sizes

    endpoint, stats, sizes = asyncio.run(run())
    assert "m=audio" not in endpoint.offer
    assert not stats.errors and stats.frames_sent >= 20, stats
    assert len(sizes) >= 20 and set(sizes) == {(320, 240)}


def test_a_refusal_is_reported_with_the_servers_reason():
    async def run():
        async def refuse(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            reason = b"invalid md5hash\n"
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                         % (len(reason), reason))  # fmt: skip
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(refuse, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await publish(f"http://127.0.0.1:{port}/live/cam1.whip", 1, Source("calibrator", size="640x360"))
        finally:
            server.close()

    with pytest.raises(WhipError, match="WHIP POST answered 403: invalid md5hash"):
        asyncio.run(run())
