"""Helpers shared by the monitoring tests: samples made the way a node makes
them, through the real event sink (streams.bridge forwards to monitoring)."""

from __future__ import annotations

import datetime as dt

from asgiref.sync import async_to_sync

from livecenter.media.policy import StreamKey, StreamSample, StreamsSampled
from streams.bridge import DatabaseEventSink


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
