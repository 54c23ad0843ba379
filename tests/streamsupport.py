"""Helpers shared by the stream tests (tests/test_streams_*.py).

Sessions are made the way the engine makes them: events into the real
DatabaseEventSink."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading

from asgiref.sync import async_to_sync

from domains import services as domain_services
from livecenter.media.policy import StreamInfo, StreamKey, StreamPublished, StreamUnpublished, StreamUpdated
from nodes.bridge import DatabaseEventSink
from streams.models import PublishSession
from tests.pagesupport import add_ingest, add_streaming

HD_INFO = StreamInfo(
    video_codec="H264",
    audio_codec="AAC",
    width=1280,
    height=720,
    frame_rate=29.97,
    video_bitrate=2_012_345.6,
    audio_bitrate=128_400.0,
    video_profile="High",
    audio_sample_rate=44100,
    audio_channels=2,
)


def add_pair(owner, ingest: str = "push.example.com", streaming: str = "play.example.com"):
    """An ingest domain and the streaming domain associated with it."""
    push = add_ingest(owner, ingest)
    play = add_streaming(owner, streaming)
    domain_services.associate_ingest(play, push.domain_name)
    play.refresh_from_db()
    return push, play


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def publish(
    domain: str,
    app: str,
    stream: str,
    session_id: str,
    *,
    started_at: dt.datetime | None = None,
    node_id: str = "node-1",
    client_addr: str = "203.0.113.5:50000",
    info: StreamInfo | None = None,
    protocol: str = "rtmp",
) -> PublishSession:
    sink = DatabaseEventSink()
    key = StreamKey(domain, app, stream)
    started = started_at or dt.datetime.now(dt.UTC)
    # The publish URL as each server records it (rtmp_server.py, srt_server.py).
    publish_url = {
        "rtmp": f"rtmp://{domain}/{app}/{stream}",
        "srt": f"srt://{domain}?streamid=#!::h={domain},r=/{app}/{stream},m=publish",
    }[protocol]
    event = StreamPublished(
        key=key,
        session_id=session_id,
        protocol=protocol,
        client_addr=client_addr,
        publish_url=publish_url,
        started_at=started.timestamp(),
        node_id=node_id,
    )
    async_to_sync(sink.published)(event)
    if info is not None:
        async_to_sync(sink.updated)(StreamUpdated(key, session_id, info))
    return PublishSession.objects.get(session_id=session_id)


def unpublish(session: PublishSession, stopped_at: dt.datetime, reason: str = "") -> PublishSession:
    key = StreamKey(session.domain_name, session.app, session.stream)
    async_to_sync(DatabaseEventSink().unpublished)(
        StreamUnpublished(key, session.session_id, stopped_at.timestamp(), reason)
    )
    session.refresh_from_db()
    return session


class FakeEngine:
    """What nodes.control needs of the engine: `kick`. Records the keys,
    and the thread each kick ran in."""

    def __init__(self, live: set[StreamKey] | None = None) -> None:
        self.live = set(live or ())
        self.kicked: list[StreamKey] = []
        self.threads: list[int] = []
        self._kicks = asyncio.Queue()

    def kick(self, key: StreamKey) -> bool:
        self.kicked.append(key)
        self.threads.append(threading.get_ident())
        self._kicks.put_nowait(key)
        return key in self.live

    async def next_kick(self, timeout: float = 5) -> StreamKey:
        return await asyncio.wait_for(self._kicks.get(), timeout)
