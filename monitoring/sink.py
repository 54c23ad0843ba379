"""The monitoring side of the engine's events (nodes.bridge forwards them
here): samples become StreamSample rows and, like starts and stops, messages
to the live pages' channel-layer groups (live.py). It runs wherever the
media node runs: in the console's process, or in `manage.py medianode`,
whose messages reach the console through Redis."""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import close_old_connections, connection

from livecenter.media.policy import StreamKey, StreamPublished, StreamsSampled, StreamUnpublished

from . import live
from .models import StreamSample

log = logging.getLogger(__name__)


def _aware(unix_seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(unix_seconds, dt.UTC)


def _store(event: StreamsSampled) -> None:
    if not connection.in_atomic_block:
        close_old_connections()
    StreamSample.objects.bulk_create(
        [
            StreamSample(
                at=_aware(s.at),
                domain_name=s.key.domain,
                app=s.key.app,
                stream=s.key.stream,
                session_id=s.session_id,
                node_id=event.node_id,
                video_frame_rate=max(0.0, s.video_frame_rate),
                audio_frame_rate=max(0.0, s.audio_frame_rate),
                video_bitrate=max(0.0, s.video_bitrate),
                audio_bitrate=max(0.0, s.audio_bitrate),
                keyframe_interval_ms=max(0, s.keyframe_interval_ms),
                bframes=s.bframes,
                timestamp_jumps=max(0, s.timestamp_jumps),
                video_codec=s.video_codec[:16],
                video_profile=s.video_profile[:32],
                width=max(0, s.width),
                height=max(0, s.height),
                audio_codec=s.audio_codec[:16],
                audio_sample_rate=max(0, s.audio_sample_rate),
                audio_channels=max(0, s.audio_channels),
                viewers=dict(s.viewers),
                bitrate_out={k: round(v) for k, v in s.bitrate_out.items()},
            )
            for s in event.samples
        ]
    )


class MonitoringSink:
    """The listener nodes.bridge.DatabaseEventSink tells (nodes/apps.py adds it)."""

    async def published(self, event: StreamPublished) -> None:
        await self._state(event.key, True, event.session_id, event.started_at, "")

    async def unpublished(self, event: StreamUnpublished) -> None:
        await self._state(event.key, False, event.session_id, event.stopped_at, event.reason)

    async def sampled(self, event: StreamsSampled) -> None:
        # The pages first: a slow database must not hold the charts back.
        try:
            await self._push(event)
        except Exception:
            log.exception("could not send %d samples to the live pages", len(event.samples))
        await sync_to_async(_store, thread_sensitive=True)(event)

    async def _push(self, event: StreamsSampled) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        by_domain: dict[str, list[dict]] = defaultdict(list)
        for sample in event.samples:
            data = live.event_sample_json(sample)
            by_domain[sample.key.domain].append(data)
            await layer.group_send(live.stream_group(sample.key), {"type": live.SAMPLE, "sample": data})
        for domain, samples in by_domain.items():
            await layer.group_send(live.domain_group(domain), {"type": live.SAMPLES, "samples": samples})

    async def _state(self, key: StreamKey, is_live: bool, session_id: str, at: float, reason: str) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        message = {
            "type": live.STATE,
            "stream_url": str(key),
            "live": is_live,
            "session_id": session_id,
            "at": at,
            "reason": reason,
        }
        await layer.group_send(live.stream_group(key), message)
        await layer.group_send(live.domain_group(key.domain), message)
