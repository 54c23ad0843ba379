"""Running a media node from Django: the engine with the database policy,
the event sink and the control listener (forbid kicks), in whatever event
loop the caller runs (the console's, or `manage.py medianode`'s)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time

from asgiref.sync import sync_to_async
from django.conf import settings

from livecenter import outage
from livecenter.media.node import MediaNode, NodeConfig
from mediajobs.jobs import NodeAddress, internal_host

from . import control
from .bridge import DatabaseEventSink, DatabasePolicy, close_orphaned_sessions

log = logging.getLogger(__name__)


def node_config() -> NodeConfig:
    return NodeConfig(
        host=settings.LIVECENTER_MEDIA_HOST,
        rtmp_port=settings.LIVECENTER_MEDIA_RTMP_PORT,
        http_port=settings.LIVECENTER_MEDIA_HTTP_PORT,
        srt_port=settings.LIVECENTER_MEDIA_SRT_PORT,
        # Stable across restarts, so a restarted node closes the sessions
        # its previous life left open.
        node_id=settings.LIVECENTER_NODE_ID or f"{socket.gethostname()}:{settings.LIVECENTER_MEDIA_RTMP_PORT}",
        play_wait_seconds=settings.LIVECENTER_PLAY_WAIT_SECONDS,
        rts_ice_addresses=settings.LIVECENTER_RTS_ICE_ADDRESSES,
        rts_lip_sync=settings.LIVECENTER_RTS_LIP_SYNC,
        handshake_timeout_seconds=settings.LIVECENTER_MEDIA_HANDSHAKE_SECONDS,
        session_start_timeout_seconds=settings.LIVECENTER_MEDIA_SESSION_START_SECONDS,
        rtmp_buffered_bytes_before_publish=settings.LIVECENTER_MEDIA_RTMP_BUFFER_BYTES_BEFORE_PUBLISH,
        rtmp_buffered_bytes=settings.LIVECENTER_MEDIA_RTMP_BUFFER_BYTES,
        rtmp_node_buffered_bytes=settings.LIVECENTER_MEDIA_RTMP_NODE_BUFFER_BYTES,
        max_connections=settings.LIVECENTER_MEDIA_MAX_CONNECTIONS,
        max_connections_per_address=settings.LIVECENTER_MEDIA_MAX_CONNECTIONS_PER_ADDRESS,
        reserve_descriptors=settings.LIVECENTER_MEDIA_RESERVE_DESCRIPTORS,
        http_idle_seconds=settings.LIVECENTER_MEDIA_HTTP_IDLE_SECONDS,
        http_max_requests=settings.LIVECENTER_MEDIA_HTTP_MAX_REQUESTS,
        max_egress_mbps=settings.LIVECENTER_MEDIA_MAX_EGRESS_MBPS,
        max_loop_lag_ms=settings.LIVECENTER_MEDIA_MAX_LOOP_LAG_MS,
        worker_key=settings.LIVECENTER_MEDIA_WORKER_KEY.encode(),
    )


def build_media_node(config: NodeConfig | None = None) -> MediaNode:
    return MediaNode(config or node_config(), DatabasePolicy(), DatabaseEventSink())


async def _close_orphaned_later(node_id: str, before: float) -> None:
    while True:
        await asyncio.sleep(settings.LIVECENTER_DB_RETRY_SECONDS)
        try:
            await sync_to_async(close_orphaned_sessions)(node_id, before)
            return
        except outage.UNREACHABLE:
            await sync_to_async(outage.drop_connection)()


@contextlib.asynccontextmanager
async def running_media_node(config: NodeConfig | None = None):
    """Start a node with its control listener; stop both on exit."""
    node = build_media_node(config)
    started = time.time()
    closing = None
    try:
        await sync_to_async(close_orphaned_sessions)(node.config.node_id, started)
    except outage.UNREACHABLE as exc:
        # The streams come first: start now, close the ghosts once the database answers.
        log.warning("database unreachable at start (%s); the sessions left open are closed later", exc)
        closing = asyncio.create_task(_close_orphaned_later(node.config.node_id, started), name="close-orphans")
    await node.start()
    node.sink.node_address = NodeAddress(internal_host(node.config.host), node.rtmp_port, node.http_port)
    control.register_engine(node)
    listener = asyncio.create_task(control.listen_for_control(node), name="media-control")
    try:
        yield node
    finally:
        listener.cancel()
        if closing is not None:
            closing.cancel()
        await asyncio.gather(listener, *([closing] if closing else []), return_exceptions=True)
        control.register_engine(None)
        await node.stop()
