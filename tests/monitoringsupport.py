"""Helpers shared by the monitoring tests: samples made the way a node makes
them, through the real event sink (nodes.bridge forwards to monitoring)."""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import urlsplit

from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator

from livecenter.media.policy import StreamKey, StreamSample, StreamsSampled
from nodes.bridge import DatabaseEventSink


def stream_sample(
    domain: str = "push.example.com",
    app: str = "live",
    stream: str = "cam1",
    session_id: str = "s1",
    at: dt.datetime | float | None = None,
    **fields,
) -> StreamSample:
    when = at if isinstance(at, float) else (at or dt.datetime.now(dt.UTC)).timestamp()
    values = {
        "interval_seconds": 1.0,
        "video_frame_rate": 30.0,
        "audio_frame_rate": 43.07,
        "video_bitrate": 2_000_000.0,
        "audio_bitrate": 128_000.0,
        "keyframe_interval_ms": 1000,
        "bframes": False,
        "timestamp_jumps": 0,
        "video_codec": "H264",
        "video_profile": "High",
        "width": 1280,
        "height": 720,
        "audio_codec": "AAC",
        "audio_sample_rate": 44100,
        "audio_channels": 2,
        "viewers": {"flv": 2, "rtmp": 1},
        "bitrate_out": {"flv": 4_256_000.0, "rtmp": 2_128_000.0},
        **fields,
    }
    return StreamSample(key=StreamKey(domain, app, stream), session_id=session_id, at=when, **values)


def record(*samples: StreamSample, node_id: str = "node-1") -> None:
    """Send samples as one tick of a node, through the sink the node uses."""
    event = StreamsSampled(node_id, max(s.at for s in samples), tuple(samples))
    async_to_sync(DatabaseEventSink().sampled)(event)


def record_seconds(count: int, end: dt.datetime | None = None, **fields) -> None:
    """`count` one-second samples of a stream, the last at `end` (default now)."""
    end = end or dt.datetime.now(dt.UTC)
    for i in range(count):
        record(stream_sample(at=end - dt.timedelta(seconds=count - 1 - i), **fields))


class WebsocketClient(ApplicationCommunicator):
    """An ASGI WebSocket client for consumer tests (channels.testing's needs
    daphne, which the project does not install)."""

    def __init__(self, application, path: str, user) -> None:
        target = urlsplit(path)
        scope = {
            "type": "websocket",
            "path": target.path,
            "query_string": target.query.encode(),
            "headers": [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")],
            "subprotocols": [],
            "user": user,
        }
        super().__init__(application, scope)

    async def connect(self, timeout: float = 10) -> tuple[bool, int | None]:
        await self.send_input({"type": "websocket.connect"})
        response = await self.receive_output(timeout)
        if response["type"] == "websocket.close":
            return False, response.get("code", 1000)
        return True, None

    async def receive_json(self, timeout: float = 10) -> dict:
        response = await self.receive_output(timeout)
        assert response["type"] == "websocket.send", response
        return json.loads(response["text"])

    async def disconnect(self, timeout: float = 5) -> None:
        await self.send_input({"type": "websocket.disconnect", "code": 1000})
        await self.wait(timeout)
