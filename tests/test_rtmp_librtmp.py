"""RtmpServerConnection against librtmp (through ctypes), the library OBS
Studio's RTMP output and rtmpdump are built on: it publishes as OBS does
(connect, releaseStream, FCPublish, createStream, publish; FLV tags
written after Publish.Start) and plays live."""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
import subprocess
import threading

import pytest

from livecenter.media.rtmp import (
    AudioReceived,
    ConnectRequested,
    DeleteStreamRequested,
    FCUnpublishRequested,
    HandshakeCompleted,
    MetadataReceived,
    PeerClosed,
    PlayRequested,
    PublishRequested,
    UnpublishRequested,
    VideoReceived,
)
from tests.test_rtmp_ffmpeg import FFMPEG_SECONDS, answer_all, serve_one

LIBRTMP = ctypes.util.find_library("rtmp")
pytestmark = pytest.mark.skipif(LIBRTMP is None, reason="librtmp (Debian's librtmp1, a dependency of curl) is absent")
READ_BYTES = 65536


def load_librtmp() -> ctypes.CDLL:
    lib = ctypes.CDLL(LIBRTMP)
    lib.RTMP_Alloc.restype = ctypes.c_void_p
    for name in ("RTMP_Init", "RTMP_EnableWrite", "RTMP_Close", "RTMP_Free"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    lib.RTMP_SetupURL.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.RTMP_Connect.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.RTMP_ConnectStream.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.RTMP_Write.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    lib.RTMP_Read.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    lib.RTMP_LogSetLevel.argtypes = [ctypes.c_int]
    lib.RTMP_LogSetLevel(0)  # critical only
    return lib


def with_librtmp(on_event, client) -> list:
    """Serve one librtmp client; `client(lib, handle, url)` drives it."""
    lib = load_librtmp()
    events: list = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(FFMPEG_SECONDS)
        url = f"rtmp://127.0.0.1:{listener.getsockname()[1]}/live/s?auth_key=z"
        errors: list[BaseException] = []

        def serve() -> None:
            try:
                serve_one(listener, on_event, [], events)
            except BaseException as exc:  # reported in the test's thread
                errors.append(exc)

        thread = threading.Thread(target=serve, name="rtmp-listener")
        thread.start()
        handle = lib.RTMP_Alloc()
        lib.RTMP_Init(handle)
        try:
            client(lib, handle, url)
        finally:
            lib.RTMP_Close(handle)
            lib.RTMP_Free(handle)
            thread.join(FFMPEG_SECONDS)
        if errors:
            raise errors[0]
    return events


@pytest.fixture(scope="module")
def flv(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("librtmp") / "source.flv"
    subprocess.run(
        [
            *("ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30"),
            *("-f", "lavfi", "-i", "sine", "-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-g", "30"),
            *("-c:a", "aac", "-f", "flv", str(path)),
        ],
        check=True,
        timeout=FFMPEG_SECONDS,
    )
    return path.read_bytes()


@pytest.fixture(scope="module")
def published(flv) -> list:
    def publish(lib, handle, url) -> None:
        keep = ctypes.create_string_buffer(url.encode())  # librtmp points into it
        assert lib.RTMP_SetupURL(handle, keep) == 1
        lib.RTMP_EnableWrite(handle)
        assert lib.RTMP_Connect(handle, None) == 1
        assert lib.RTMP_ConnectStream(handle, 0) == 1  # returns once Publish.Start arrived
        assert lib.RTMP_Write(handle, flv, len(flv)) == len(flv)

    return with_librtmp(answer_all, publish)


def test_it_takes_a_librtmp_publish(published):
    assert isinstance(published[0], HandshakeCompleted)
    assert published[1].app == "live"
    (publish,) = [e for e in published if isinstance(e, PublishRequested)]
    assert (publish.stream_name, publish.query) == ("s", {"auth_key": "z"})
    assert len([e for e in published if isinstance(e, MetadataReceived)]) == 1
    assert len([e for e in published if isinstance(e, VideoReceived) and e.payload[1] == 1]) == 60
    assert len([e for e in published if isinstance(e, AudioReceived)]) > 80
    assert published[-4:] == [
        UnpublishRequested(1),
        FCUnpublishRequested(6.0, "s?auth_key=z"),
        DeleteStreamRequested(1),
        PeerClosed(),
    ]


def test_it_plays_live_to_librtmp(published, tmp_path):
    media = [e for e in published if isinstance(e, VideoReceived | AudioReceived | MetadataReceived)]

    def on_event(conn, event) -> bool:
        if isinstance(event, ConnectRequested):
            conn.accept_connect(event)
        elif isinstance(event, PlayRequested):
            conn.accept_play(event.stream_id, event.name)
            for item in media:
                send = {VideoReceived: conn.send_video, AudioReceived: conn.send_audio}.get(
                    type(item), conn.send_metadata
                )
                send(event.stream_id, item.timestamp, item.payload)
            conn.send_unpublish_notify(event.stream_id)
            return True
        return False

    received = bytearray()

    def play(lib, handle, url) -> None:
        keep = ctypes.create_string_buffer(f"{url} live=1".encode())
        assert lib.RTMP_SetupURL(handle, keep) == 1
        assert lib.RTMP_Connect(handle, None) == 1
        assert lib.RTMP_ConnectStream(handle, 0) == 1
        buffer = ctypes.create_string_buffer(READ_BYTES)
        while (size := lib.RTMP_Read(handle, buffer, READ_BYTES)) > 0:
            received.extend(buffer.raw[:size])

    events = with_librtmp(on_event, play)
    (request,) = [e for e in events if isinstance(e, PlayRequested)]
    assert (request.stream_name, request.query) == ("s", {"auth_key": "z"})
    # librtmp hands back an FLV file; ffmpeg decodes every frame of it.
    path = tmp_path / "played.flv"
    path.write_bytes(received)
    result = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "framecrc", "-"],
        capture_output=True,
        text=True,
        timeout=FFMPEG_SECONDS,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len([line for line in lines if line.startswith("0,")]) == 60
    assert len([line for line in lines if line.startswith("1,")]) > 80
