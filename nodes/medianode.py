"""Running a media node from Django: the engine with the database policy,
the event sink, the control listener (forbid kicks) and its heartbeat in the
node registry (registry.py), in whatever event loop the caller runs (the
console's, or `manage.py medianode`'s)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError

from domains.lib import certificates
from domains.models import LiveCenter
from livecenter import outage
from livecenter.lib.api import command_error, invalid
from livecenter.media.beacon import RegionTable, RegionTableError
from livecenter.media.cluster import (
    ANY_REGION,
    HEARTBEAT_SECONDS,
    MAX_BEAT_STREAMS,
    MAX_REASON_CHARS,
    ROLES,
    NodeBeat,
)
from livecenter.media.node import MediaNode, NodeConfig
from livecenter.media.node_status import carriage
from livecenter.media.policy import TlsCertificate
from mediajobs.jobs import NodeAddress, internal_host

from . import control, registry
from .bridge import DatabaseEventSink, DatabasePolicy, _policy_db, close_orphaned_sessions
from .router import RegistryRouter, refresh_router

log = logging.getLogger(__name__)


SETTINGS_FOR_FIELD = {"role": "LIVECENTER_NODE_ROLE", "region": "LIVECENTER_NODE_REGION"}


def cluster_place(role: str, region: str) -> tuple[frozenset[str], str]:
    """The roles and region of a node started with `role` ("center", "edge",
    or "" for a node alone: both, of every region) and `region`; a
    ValidationError naming the field when they make no sense."""
    if not role:
        if region:
            raise invalid("role", "a node with a region must say its role: center or edge")
        return frozenset(ROLES), ANY_REGION
    if role not in ROLES:
        raise invalid("role", f"must be one of {', '.join(ROLES)}, not {role!r}")
    if region not in LiveCenter.values:
        raise invalid(
            "region",
            f"a node with the {role} role serves one live center region: one of {', '.join(LiveCenter.values)}",
        )
    return frozenset({role}), region


def default_certificate(cert_file: str, key_file: str) -> TlsCertificate | None:
    """The node's own certificate (LIVECENTER_MEDIA_TLS_CERT_FILE and
    _KEY_FILE), checked as an upload is; None when neither is set."""
    if not cert_file and not key_file:
        return None
    if not (cert_file and key_file):
        raise ImproperlyConfigured(
            "set both LIVECENTER_MEDIA_TLS_CERT_FILE and LIVECENTER_MEDIA_TLS_KEY_FILE, or neither"
        )
    settings_for = {"certificate": "LIVECENTER_MEDIA_TLS_CERT_FILE", "private_key": "LIVECENTER_MEDIA_TLS_KEY_FILE"}
    try:
        with open(cert_file) as chain, open(key_file) as key:
            info = certificates.check_pair(chain.read(), key.read())
    except OSError as exc:
        raise ImproperlyConfigured(f"the node's TLS certificate cannot be read: {exc}") from None
    except certificates.CertificateError as exc:
        raise ImproperlyConfigured(f"{settings_for[exc.field]}: {exc.message}") from None
    return TlsCertificate("", info.certificate_pem, info.private_key_pem, info.fingerprint_sha256,
                          info.not_after.timestamp())  # fmt: skip


def node_config() -> NodeConfig:
    try:
        roles, region = cluster_place(settings.LIVECENTER_NODE_ROLE, settings.LIVECENTER_NODE_REGION)
    except ValidationError as exc:
        raise ImproperlyConfigured(command_error(exc, SETTINGS_FOR_FIELD)) from None
    return NodeConfig(
        roles=roles,
        region=region,
        advertise_host=settings.LIVECENTER_MEDIA_INTERNAL_HOST,
        host=settings.LIVECENTER_MEDIA_HOST,
        rtmp_port=settings.LIVECENTER_MEDIA_RTMP_PORT,
        http_port=settings.LIVECENTER_MEDIA_HTTP_PORT,
        srt_port=settings.LIVECENTER_MEDIA_SRT_PORT,
        https_port=settings.LIVECENTER_MEDIA_HTTPS_PORT,
        rtmps_port=settings.LIVECENTER_MEDIA_RTMPS_PORT,
        tls_default_certificate=default_certificate(
            settings.LIVECENTER_MEDIA_TLS_CERT_FILE, settings.LIVECENTER_MEDIA_TLS_KEY_FILE
        ),
        tls_handshake_timeout_seconds=settings.LIVECENTER_MEDIA_TLS_HANDSHAKE_SECONDS,
        max_pending_tls_handshakes=settings.LIVECENTER_MEDIA_MAX_PENDING_TLS_HANDSHAKES,
        max_tls_handshakes_per_second=settings.LIVECENTER_MEDIA_MAX_TLS_HANDSHAKES_PER_SECOND,
        # Stable across restarts, so a restarted node closes the sessions
        # its previous life left open.
        node_id=settings.LIVECENTER_NODE_ID or f"{socket.gethostname()}:{settings.LIVECENTER_MEDIA_RTMP_PORT}",
        play_wait_seconds=settings.LIVECENTER_PLAY_WAIT_SECONDS,
        publish_hook_cache_seconds=settings.LIVECENTER_CALLBACKS_HOOK_CACHE_SECONDS,
        pull_idle_seconds=settings.LIVECENTER_EDGE_PULL_IDLE_SECONDS,
        rts_ice_addresses=settings.LIVECENTER_RTS_ICE_ADDRESSES,
        rts_lip_sync=settings.LIVECENTER_RTS_LIP_SYNC,
        rts_fast_path=settings.LIVECENTER_RTS_FAST_PATH,
        rts_opus_frame_ms=settings.LIVECENTER_RTS_OPUS_FRAME_MS,
        gc_full_seconds=settings.LIVECENTER_MEDIA_GC_FULL_SECONDS,
        whip_keyframe_interval_seconds=settings.LIVECENTER_WHIP_KEYFRAME_SECONDS,
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
        malloc_mmap_threshold_bytes=settings.LIVECENTER_MEDIA_MALLOC_MMAP_THRESHOLD_BYTES,
        malloc_trim_seconds=settings.LIVECENTER_MEDIA_MALLOC_TRIM_SECONDS,
        worker_key=settings.LIVECENTER_MEDIA_WORKER_KEY.encode(),
        cluster_key=settings.LIVECENTER_CLUSTER_KEY.encode(),
        # Derived, so the key itself never reaches the samples' readers.
        viewer_id_salt=hashlib.sha256(b"livecenter viewer ids\n" + settings.SECRET_KEY.encode()).digest(),
        relay_protocol=settings.LIVECENTER_RELAY_PROTOCOL,
        relay_srt_latency_ms=settings.LIVECENTER_RELAY_SRT_LATENCY_MS,
        viewer_regions=viewer_regions(settings.LIVECENTER_VIEWER_REGIONS),
        beacon_flush_seconds=settings.LIVECENTER_BEACON_FLUSH_SECONDS,
    )


def viewer_regions(path: str) -> RegionTable:
    """The viewer region table LIVECENTER_VIEWER_REGIONS names, else the built-in one."""
    if not path:
        return RegionTable()
    try:
        with open(path, encoding="utf-8") as table:
            return RegionTable.parse(table.read(), f"LIVECENTER_VIEWER_REGIONS ({path})")
    except OSError as exc:
        raise ImproperlyConfigured(f"LIVECENTER_VIEWER_REGIONS: cannot read {path}: {exc.strerror}") from None
    except RegionTableError as exc:
        raise ImproperlyConfigured(str(exc)) from None


def advertised_host(config: NodeConfig) -> str:
    """Where other nodes and media workers reach the node."""
    return config.advertise_host or internal_host(config.host)


def node_beat(node: MediaNode, at: float, started_at: float) -> NodeBeat:
    """What the node says of itself at `at` (Unix seconds); on its loop."""
    carried = carriage(node, time.monotonic())
    config = node.config
    return NodeBeat(
        node_id=config.node_id,
        roles=config.roles,
        region=config.region,
        host=advertised_host(config),
        listen_host=config.host,
        rtmp_port=node.rtmp_port,
        http_port=node.http_port,
        srt_port=node.srt_port,
        https_port=node.https_port,
        rtmps_port=node.rtmps_port,
        at=at,
        started_at=started_at,
        streams=frozenset(str(key) for key in carried.streams[:MAX_BEAT_STREAMS]),
        viewers=sum(carried.viewers.values()),
        bitrate_in=carried.bitrate_in,
        bitrate_out=carried.bitrate_out,
        loop_lag_ms=carried.loop_lag_ms,
        load=carried.load,
        relay_errors={
            str(key): state.error[:MAX_REASON_CHARS]
            for key, state in (node.relays.states.items() if node.relays is not None else ())
            if not state.center and state.error
        },
    )


async def keep_beating(node: MediaNode, store, started_at: float, *, interval: float = HEARTBEAT_SECONDS) -> None:
    """Register the node, then beat every `interval` until cancelled; a
    node's router (router.py) reads the others' beats after its own and
    renews the claims of the streams published on it. A store
    that is unreachable (Redis or the database gone, issue 11) is retried at
    the next beat; the streams never wait for it, and meanwhile the console
    shows the node down (and the router sees the others go down)."""
    registered = False
    down_since: float | None = None
    while True:
        beat = node_beat(node, time.time(), started_at)
        try:
            if not registered:
                await _policy_db(registry.register_node, beat)
                registered = True
            await asyncio.wait_for(store.publish(beat), registry.STORE_TIMEOUT_SECONDS)
            if isinstance(node.router, RegistryRouter):
                published = [str(key) for key in node.published_here()]
                await refresh_router(node.router, store, beat.streams, published)
            if down_since is not None:
                log.warning("node %s beats again after %.1f s", beat.node_id, time.monotonic() - down_since)
                down_since = None
        except asyncio.CancelledError:
            raise
        except registry.STORE_UNREACHABLE as exc:
            if down_since is None:
                down_since = time.monotonic()
                reason = str(exc) or type(exc).__name__
                log.warning("node %s cannot beat (%s): shown down until it can", beat.node_id, reason)
        await asyncio.sleep(interval)


def build_media_node(config: NodeConfig | None = None) -> MediaNode:
    config = config or node_config()
    policy = DatabasePolicy()
    # A node of a cluster claims the streams published on it; an edge also
    # asks where to relay and pull from (edge.is_edge_only). A node alone
    # (both roles) has nobody to ask.
    router = RegistryRouter(config.node_id, policy) if len(config.roles) == 1 else None
    return MediaNode(config, policy, DatabaseEventSink(), router=router)


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
    node.sink.node_address = NodeAddress(advertised_host(node.config), node.rtmp_port, node.http_port)
    control.register_engine(node)
    listener = asyncio.create_task(control.listen_for_control(node), name="media-control")
    store = registry.registry()
    if isinstance(node.router, RegistryRouter):
        node.router.store = store
    beating = asyncio.create_task(keep_beating(node, store, started), name="media-heartbeat")
    try:
        yield node
    finally:
        tasks = [listener, beating, *([closing] if closing else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Gone at once, not a few seconds later: nothing is routed to it.
        await registry.withdraw(store, node.config.node_id)
        control.register_engine(None)
        await node.stop()
