"""The monitoring side of the engine's events (nodes.bridge forwards them
here): samples become StreamSample rows and, like starts and stops, messages
to the live pages' channel-layer groups (live.py). It runs wherever the
media node runs: in the console's process, or in `manage.py medianode`,
whose messages reach the console through Redis.

While the database is unreachable (livecenter/outage.py) samples wait in a
buffer of at most LIVECENTER_MONITORING_BUFFER_SAMPLES (the oldest go first)
and are written with the first tick after it answers again."""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import close_old_connections, connection

from domains.models import Domain
from livecenter import outage
from livecenter.media.policy import (
    PlaybackReported,
    PublishRefused,
    StreamKey,
    StreamPublished,
    StreamsSampled,
    StreamUnpublished,
)
from livecenter.media.stats import MAX_VIEWER_IDS_PER_SAMPLE, VIEWER_ID_BYTES

from . import live, playback
from .models import PublishRefusal, StreamSample

log = logging.getLogger(__name__)
VIEWER_ID_CHARS = 2 * VIEWER_ID_BYTES  # hex


def _aware(unix_seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(unix_seconds, dt.UTC)


def _store(samples: list[tuple[str, object]]) -> None:
    """Write (node id, sample) pairs in one query."""
    if not connection.in_atomic_block:
        close_old_connections()
    try:
        _create(samples)
    except outage.UNREACHABLE:
        outage.drop_connection()
        raise


def _create(samples) -> None:
    StreamSample.objects.bulk_create(
        [
            StreamSample(
                at=_aware(s.at),
                domain_name=s.key.domain,
                app=s.key.app,
                stream=s.key.stream,
                session_id=s.session_id,
                node_id=node_id,
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
                srt=s.srt.as_dict() if s.srt is not None else None,
                whip=s.whip.as_dict() if s.whip is not None else None,
                upstream_node=s.upstream_node[:128],
                relay_bitrate_out=max(0.0, s.relay_bitrate_out),
                interval_seconds=max(0.0, s.interval_seconds),
                viewer_ids=[v[:VIEWER_ID_CHARS] for v in s.viewer_ids[:MAX_VIEWER_IDS_PER_SAMPLE]],
            )
            for node_id, s in samples
        ],
        batch_size=500,
    )


def _store_refusal(event: PublishRefused) -> None:
    """Keep a refusal that names one of the operators' domains (anyone on
    the internet can be refused; only those are anybody's to troubleshoot)."""
    if not connection.in_atomic_block:
        close_old_connections()
    try:
        if not Domain.objects.filter(domain_name=event.domain).exists():
            return
        PublishRefusal.objects.create(
            at=_aware(event.at),
            domain_name=event.domain,
            app=event.app[:255],
            stream=event.stream[:255],
            protocol=event.protocol[:16],
            client_addr=event.client_addr[:64],
            reason=event.reason[:255],
            code=event.code,
            node_id=event.node_id[:128],
        )
    except outage.UNREACHABLE:
        outage.drop_connection()
        raise


class MonitoringSink:
    """The listener nodes.bridge.DatabaseEventSink tells (nodes/apps.py adds it)."""

    def __init__(self) -> None:
        self.pending: outage.OutageBuffer[tuple[str, object]] = outage.OutageBuffer(
            "monitoring samples", settings.LIVECENTER_MONITORING_BUFFER_SAMPLES
        )
        self._push_failing = False

    # A center's relay from an edge is not a start or a stop of the stream:
    # the edge that holds the publisher tells those.
    async def published(self, event: StreamPublished) -> None:
        if not event.relayed_from:
            await self._state(event.key, True, event.session_id, event.started_at, "")

    async def unpublished(self, event: StreamUnpublished) -> None:
        if not event.relayed_from:
            await self._state(event.key, False, event.session_id, event.stopped_at, event.reason)

    async def publish_refused(self, event: PublishRefused) -> None:
        if not event.domain or not outage.database.should_try():
            return  # a refusal is a hint for the troubleshooting tool, not worth buffering
        try:
            await sync_to_async(_store_refusal, thread_sensitive=True)(event)
        except outage.UNREACHABLE as exc:
            outage.database.failed(exc)
            return
        outage.database.succeeded()

    async def playback_reported(self, event: PlaybackReported) -> None:
        # Telemetry comes every few seconds and says little alone: while the
        # database is out it is dropped, not buffered in front of samples.
        if not outage.database.should_try():
            return
        try:
            await sync_to_async(playback.store, thread_sensitive=True)(event)
        except outage.UNREACHABLE as exc:
            outage.database.failed(exc)
            return
        outage.database.succeeded()

    async def sampled(self, event: StreamsSampled) -> None:
        # The pages first: a slow database must not hold the charts back.
        try:
            await self._push(event)
            if self._push_failing:
                self._push_failing = False
                log.warning("the live pages get samples again")
        except Exception as exc:  # the channel layer's Redis is unreachable: the rows still get written
            # One line per outage, not one a second.
            if not self._push_failing:
                self._push_failing = True
                log.warning("could not send samples to the live pages (%s); retrying every tick", exc)
        for sample in event.samples:
            self.pending.add((event.node_id, sample))
        if not outage.database.should_try():
            return
        batch = self.pending.items()
        try:
            await sync_to_async(_store, thread_sensitive=True)(batch)
        except outage.UNREACHABLE as exc:
            outage.database.failed(exc)
            return
        except Exception:
            self._drop(len(batch))  # not an outage: a batch that cannot be written is not retried forever
            raise
        outage.database.succeeded()
        if len(batch) > len(event.samples):
            log.warning("wrote %d monitoring samples buffered while the database was unreachable", len(batch))
        self._drop(len(batch))

    def _drop(self, count: int) -> None:
        for _ in range(min(count, len(self.pending))):
            self.pending.pop()

    async def _push(self, event: StreamsSampled) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        by_domain: dict[str, list[dict]] = defaultdict(list)
        for sample in event.samples:
            data = live.event_sample_json(sample, event.node_id)
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
