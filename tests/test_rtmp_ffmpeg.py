"""RtmpServerConnection against the real FFmpeg CLI.

FFmpeg publishes a generated stream to a throwaway listener that drives our
connection; the client's bytes are recorded and replayed whole, byte by
byte, cut at random points and with trailing data, and must give the same
events. Then FFmpeg plays what was published back from our connection and
decodes every frame. Both again with timestamps past 0xFFFFFF ms, so every
chunk carries an extended timestamp.
"""

from __future__ import annotations

import functools
import random
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from livecenter.media import amf0
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
    RtmpServerConnection,
    UnpublishRequested,
    VideoReceived,
    encode_media_message,
)

FFMPEG_SECONDS = 30
# ffmpeg's -output_ts_offset: 16780 s is past 0xFFFFFF ms (4.66 hours).
EXTENDED_OFFSET_SECONDS = 16780


@dataclass
class Capture:
    client_bytes: bytes
    events: list


def answer_all(conn: RtmpServerConnection, event) -> None:
    if isinstance(event, ConnectRequested):
        conn.accept_connect(event)
    elif isinstance(event, PublishRequested):
        conn.accept_publish(event.stream_id, event.name)


def serve_one(listener: socket.socket, on_event: Callable, record: list[bytes], events: list) -> None:
    """Accept one client and run it through an RtmpServerConnection."""
    sock, _ = listener.accept()
    sock.settimeout(FFMPEG_SECONDS)
    conn = RtmpServerConnection()
    leaving = False
    try:
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            record.append(data)
            done = False
            for event in conn.receive_data(data):
                events.append(event)
                done |= bool(on_event(conn, event))
                leaving |= isinstance(event, FCUnpublishRequested | UnpublishRequested | DeleteStreamRequested)
            out = conn.data_to_send()
            # Once a publisher is leaving it reads nothing more, and a socket
            # closed with unread data resets the connection, losing what the
            # publisher had not sent yet: answer no more then.
            if out and not leaving:
                sock.sendall(out)
            if not data:
                return
            if done:
                # Let the client read everything, then wait for it to leave.
                sock.shutdown(socket.SHUT_WR)
                try:
                    while sock.recv(65536):
                        pass
                except ConnectionResetError:
                    pass
                return
    finally:
        sock.close()


def run_ffmpeg(args: list[str], on_event: Callable) -> tuple[subprocess.CompletedProcess, bytes, list]:
    """Run ffmpeg against a listener on a free port; `{url}` in `args` is
    replaced by the listener's RTMP URL."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(FFMPEG_SECONDS)
        url = f"rtmp://127.0.0.1:{listener.getsockname()[1]}"
        record: list[bytes] = []
        events: list = []
        errors: list[BaseException] = []

        def serve() -> None:
            try:
                serve_one(listener, on_event, record, events)
            except BaseException as exc:  # reported in the test's thread
                errors.append(exc)

        thread = threading.Thread(target=serve, name="rtmp-listener")
        thread.start()
        try:
            result = subprocess.run(
                ["ffmpeg", "-nostdin", "-v", "error", *(a.replace("{url}", url) for a in args)],
                capture_output=True,
                text=True,
                timeout=FFMPEG_SECONDS,
            )
        finally:
            thread.join(FFMPEG_SECONDS)
        if errors:
            raise errors[0]
    return result, b"".join(record), events


@functools.cache
def captured_publish(offset_seconds: int = 0) -> Capture:
    """Two seconds of 320x240 H.264 at 30 fps (keyframe every second) and
    AAC, published by ffmpeg, as the bytes it sent and the events they gave."""
    result, client_bytes, events = run_ffmpeg(
        [
            *("-f", "lavfi", "-i", "testsrc=size=320x240:rate=30"),
            *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"),
            *("-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-c:a", "aac"),
            *("-output_ts_offset", str(offset_seconds), "-f", "flv", "{url}/live/s?auth_key=x"),
        ],
        answer_all,
    )
    assert result.returncode == 0, result.stderr
    return Capture(client_bytes, events)


def replay(pieces: list[bytes]) -> list:
    conn = RtmpServerConnection()
    events = []
    for piece in pieces:
        for event in conn.receive_data(piece):
            events.append(event)
            answer_all(conn, event)
    return events


def cut(data: bytes, pieces: int, seed: int) -> list[bytes]:
    cuts = sorted({0, len(data), *random.Random(seed).sample(range(1, len(data)), pieces)})
    return [data[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]


@pytest.fixture(scope="module", params=[0, EXTENDED_OFFSET_SECONDS], ids=["plain", "extended-timestamps"])
def capture(request) -> Capture:
    return captured_publish(request.param)


def test_it_takes_a_real_ffmpeg_publish_from_handshake_to_delete_stream(capture):
    # FFmpeg's C1 carries a version (9.0.124.2), asking for the digest
    # handshake; our S1's zero version keeps it on the simple one.
    assert capture.client_bytes[5:9] == bytes((9, 0, 124, 2))
    events = capture.events
    assert isinstance(events[0], HandshakeCompleted)
    connect = events[1]
    assert isinstance(connect, ConnectRequested)
    assert connect.app == "live"
    assert connect.tc_url.startswith("rtmp://127.0.0.1:") and connect.tc_url.endswith("/live")
    (publish,) = [e for e in events if isinstance(e, PublishRequested)]
    assert (publish.stream_id, publish.name, publish.stream_name, publish.query, publish.publish_type) == (
        1,
        "s?auth_key=x",
        "s",
        {"auth_key": "x"},
        "live",
    )
    (metadata,) = [e for e in events if isinstance(e, MetadataReceived)]
    assert (metadata.data["width"], metadata.data["height"], metadata.data["framerate"]) == (320.0, 240.0, 30.0)
    assert amf0.decode_all(metadata.payload) == ["onMetaData", metadata.data]
    assert events[-4:] == [
        UnpublishRequested(1),
        FCUnpublishRequested(6.0, "s?auth_key=x"),
        DeleteStreamRequested(1),
        PeerClosed(),
    ]


def test_it_reads_every_frame_with_its_timestamp(capture):
    video = [e for e in capture.events if isinstance(e, VideoReceived)]
    audio = [e for e in capture.events if isinstance(e, AudioReceived)]
    assert video[0].payload[:2] == b"\x17\x00"  # AVC sequence header
    assert audio[0].payload[:2] == b"\xaf\x00"  # AAC sequence header
    frames = [e for e in video if e.payload[1] == 1]
    assert len(frames) == 60
    assert sum(1 for e in frames if e.payload[0] >> 4 == 1) == 2  # a keyframe each second
    assert max(len(e.payload) for e in frames) > 4096  # keyframes span several chunks
    base = EXTENDED_OFFSET_SECONDS * 1000 if frames[0].timestamp > 0xFFFFFF else 0
    times = [e.timestamp - base for e in frames]
    assert {b - a for a, b in zip(times, times[1:], strict=False)} <= {33, 34}  # 30 fps, nothing lost
    assert len(audio) > 80


def test_it_gives_the_same_events_however_the_bytes_are_cut(capture):
    data = capture.client_bytes
    expected = capture.events[:-1]  # all but PeerClosed
    assert replay([data]) == expected
    for seed in range(3):
        assert replay(cut(data, 300, seed)) == expected
    assert replay([data[i : i + 1] for i in range(len(data))]) == expected


def test_it_holds_trailing_data_without_events_or_errors(capture):
    data = capture.client_bytes + encode_media_message(6, 9, 1, 0, bytes(9000), 4096)[:5000]
    conn = RtmpServerConnection()
    events = []
    for event in conn.receive_data(data):
        events.append(event)
        answer_all(conn, event)
    assert events == capture.events[:-1]
    assert conn.buffered_bytes == 5000 - 12 - 1  # the payload of a chunk and a half, no headers


def play_to_ffmpeg(capture: Capture, shared: bool) -> list[str]:
    """Serve the captured media to `ffmpeg -i rtmp://...`; return the
    framecrc lines of what it decoded."""
    media = [e for e in capture.events if isinstance(e, VideoReceived | AudioReceived | MetadataReceived)]

    def on_event(conn: RtmpServerConnection, event) -> bool:
        if isinstance(event, ConnectRequested):
            conn.accept_connect(event)
        elif isinstance(event, PlayRequested):
            assert (event.stream_name, event.query) == ("s", {"auth_key": "y"})
            conn.accept_play(event.stream_id, event.name)
            for item in media:
                if isinstance(item, VideoReceived):
                    if shared:  # the fan-out path: bytes encoded once for every viewer
                        conn.send_raw(
                            encode_media_message(
                                6, 9, event.stream_id, item.timestamp, item.payload, conn.out_chunk_size
                            )
                        )
                    else:
                        conn.send_video(event.stream_id, item.timestamp, item.payload)
                elif isinstance(item, AudioReceived):
                    conn.send_audio(event.stream_id, item.timestamp, item.payload)
                else:
                    conn.send_metadata(event.stream_id, item.timestamp, item.payload)
            conn.send_unpublish_notify(event.stream_id)
            return True
        return False

    result, _, events = run_ffmpeg(["-i", "{url}/live/s?auth_key=y", "-f", "framecrc", "-"], on_event)
    assert result.returncode == 0, result.stderr
    assert any(isinstance(e, PlayRequested) for e in events)
    return [line for line in result.stdout.splitlines() if not line.startswith("#")]


@pytest.mark.parametrize("shared", [False, True], ids=["send_video", "send_raw"])
def test_it_plays_to_ffmpeg_which_decodes_every_frame(capture, shared):
    lines = play_to_ffmpeg(capture, shared)
    video = [line.split(",") for line in lines if line.startswith("0,")]
    audio = [line for line in lines if line.startswith("1,")]
    assert len(video) == 60
    pts = [int(fields[2]) for fields in video]
    assert pts == list(range(pts[0], pts[0] + 60))  # continuous, one per frame
    assert len(audio) > 80
