"""The engine's policy and event sink on top of the ORM (DESIGN.md).

The engine (livecenter/media) asks a Policy and tells an EventSink; these are
the database-backed ones. Both are async and run their queries through
`sync_to_async`, one thread for all of them, as Django's async ORM does.

Policy answers are cached for LIVECENTER_POLICY_CACHE_SECONDS (default 2 s)
so that a burst of viewers of one domain costs one query, not one per
connection; concurrent misses for the same name share that one query. A
forbid must not wait for the cache: `forget_stream` (called by
nodes.control on every kick) drops a stream's cached answer in every
policy of the process at once.

While the database is unreachable (livecenter/outage.py) the policy serves
its last good answer up to LIVECENTER_POLICY_STALE_SECONDS old and raises
PolicyUnavailable for anything it never knew; the sink keeps publish and
unpublish events in a bounded buffer and writes them, in order, once the
database answers again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from callbacks import services as callback_services
from domains.models import Domain, DomainCertificate
from livecenter import outage
from livecenter.media.access import AccessPolicy
from livecenter.media.policy import (
    EDGE_PUBLISH,
    DomainConfig,
    EventSink,
    PlaybackReported,
    PolicyUnavailable,
    PublishHook,
    PublishRefused,
    RenditionGroup,
    RenditionRequested,
    StreamKey,
    StreamPublished,
    StreamsSampled,
    StreamUnpublished,
    StreamUpdated,
    TlsCertificate,
)
from mediajobs import jobs as media_jobs
from mediajobs import services as media_services
from streams.models import PublishSession, StreamBlock

from .models import Node

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

ORPHANED_STOP_REASON = "node restarted"


async def _db(fn: Callable[..., V], *args) -> V:
    """Run ORM code off the event loop. A long-lived engine process sees no
    request boundaries, so drop a broken or expired connection first, as
    Django does at each request; never inside a transaction (a test's)."""

    def run() -> V:
        if not connection.in_atomic_block:
            close_old_connections()
        try:
            return fn(*args)
        except outage.UNREACHABLE:
            outage.drop_connection()
            raise

    return await sync_to_async(run, thread_sensitive=True)()


def _running_on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


async def _policy_db(fn: Callable[..., V], *args) -> V:
    """`_db` for the policy: an unreachable database (or one that failed a
    moment ago) is PolicyUnavailable, which the cache answers from stale entries."""
    if not outage.database.should_try():
        raise PolicyUnavailable("the database is unreachable")
    try:
        value = await _db(fn, *args)
    except outage.UNREACHABLE as exc:
        outage.database.failed(exc)
        raise PolicyUnavailable(str(exc)) from exc
    outage.database.succeeded()
    return value


class _CachedLookup(Generic[K, V]):
    """Answers of an async `load`, kept `ttl_seconds`, at most `max_entries`
    (the oldest go first). Concurrent misses for one key share one load.
    When a load raises PolicyUnavailable, an answer up to `stale_seconds`
    old is served instead.

    The cache belongs to the event loop that asks it (the node's). `forget`
    may be called from any thread (a forbid from a console view): called off
    that loop, it is handed to the loop (`call_soon_threadsafe`), ahead of
    the kick that nodes.control hands over after it. It bumps a generation
    so that a load already under way is not stored afterwards."""

    def __init__(
        self,
        load: Callable[[K], Awaitable[V]],
        ttl_seconds: float,
        max_entries: int,
        clock: Callable[[], float],
        stale_seconds: float = 0.0,
    ) -> None:
        self._load = load
        self._ttl = ttl_seconds
        self._stale = stale_seconds
        self._max_entries = max_entries
        self._clock = clock
        # key -> (when loaded, answer)
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._loading: dict[K, asyncio.Future[V]] = {}
        self._generation = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    async def get(self, key: K) -> V:
        self._loop = asyncio.get_running_loop()
        entry = self._entries.get(key)
        if entry is not None and entry[0] + self._ttl > self._clock():
            return entry[1]
        task = self._loading.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fill(key, self._generation))
            self._loading[key] = task
            task.add_done_callback(lambda done, key=key: self._loaded(key, done))
        try:
            # A caller that gives up (a viewer who hangs up) leaves the load to the others.
            return await asyncio.shield(task)
        except PolicyUnavailable:
            entry = self._entries.get(key)
            if entry is not None and entry[0] + self._stale > self._clock():
                return entry[1]
            raise

    async def _fill(self, key: K, generation: int) -> V:
        value = await self._load(key)
        if generation == self._generation and (self._ttl > 0 or self._stale > 0):
            self._entries[key] = (self._clock(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return value

    def _loaded(self, key: K, task: asyncio.Future) -> None:
        if self._loading.get(key) is task:
            del self._loading[key]
        if not task.cancelled():
            task.exception()  # retrieved here so that a failed load nobody awaited is not logged as lost

    def forget(self, key: K) -> None:
        loop = self._loop
        if loop is not None and not _running_on(loop):
            try:
                loop.call_soon_threadsafe(self._forget, key)
                return
            except RuntimeError:  # that loop is closed: nothing else uses the cache
                pass
        self._forget(key)

    def _forget(self, key: K) -> None:
        self._generation += 1
        self._entries.pop(key, None)
        self._loading.pop(key, None)  # later callers start a fresh load

    def __len__(self) -> int:
        return len(self._entries)


# Every DatabasePolicy of this process, so a forbid can reach their caches.
_policies: weakref.WeakSet[DatabasePolicy] = weakref.WeakSet()


def forget_stream(key: StreamKey) -> None:
    """Drop the cached forbidden-or-not answer for `key` in every policy of
    this process, so the next publish of it asks the database."""
    for policy in list(_policies):
        policy.forget_stream(key)


def forget_domain(host: str) -> None:
    """Drop the cached configuration and certificate of `host` in every
    policy of this process, so the next connection naming it (a TLS
    handshake: a replaced certificate) asks the database. Nodes in other
    processes see the change within their cache's lifetime."""
    for policy in list(_policies):
        policy.forget_domain(host)


def _domain_config(host: str) -> DomainConfig | None:
    domain = (
        Domain.objects.select_related("ingest_domain", "main_domain__ingest_domain").filter(domain_name=host).first()
    )
    if domain is None:
        return None
    ingest = None if domain.is_ingest else domain.effective_ingest_domain()
    return DomainConfig(
        name=domain.domain_name,
        kind=domain.domain_type,
        enabled=domain.enabled,
        signing_keys=tuple(domain.signing_keys()) if domain.auth_enabled else None,
        validity_seconds=domain.validity_seconds,
        ingest_domain=ingest.domain_name if ingest is not None else None,
        rts_enabled=domain.rts_enabled,
        html5_transcode=domain.html5_transcode,
        srt_latency_ms=domain.srt_latency_ms,
        srt_passphrase=domain.srt_passphrase or None,
        live_center=domain.live_center,
        https_enabled=domain.https_enabled,
        https_redirect=domain.https_redirect,
        hls_encryption=domain.hls_encryption,
        hls_key_rotation_segments=domain.hls_key_rotation_segments,
        hls_encryption_apps=tuple(domain.hls_encryption_app_list),
        access=AccessPolicy.build(
            domain.ip_acl_mode,
            domain.ip_acl_entries,
            domain.referer_acl_mode,
            domain.referer_acl_entries,
            domain.referer_acl_allow_empty,
        ),
    )


def _certificate(host: str) -> TlsCertificate | None:
    """The certificate a TLS client naming `host` is served: the domain's,
    while it is enabled with HTTPS on. The key is decrypted here, into the
    node's memory only."""
    cert = (
        DomainCertificate.objects.filter(domain__domain_name=host, domain__enabled=True, domain__https_enabled=True)
        .only("certificate_pem", "private_key", "fingerprint_sha256", "not_after")
        .first()
    )
    if cert is None:
        return None
    return TlsCertificate(
        domain=host,
        chain_pem=cert.certificate_pem,
        key_pem=cert.private_key,
        fingerprint_sha256=cert.fingerprint_sha256,
        not_after=cert.not_after.timestamp(),
    )


def _blocked_until(key: StreamKey) -> float | None:
    """When the block on `key` ends (Unix seconds), or None if it has none."""
    resume_at = (
        StreamBlock.objects.filter(domain__domain_name=key.domain, app=key.app, stream=key.stream)
        .values_list("resume_at", flat=True)
        .first()
    )
    return resume_at.timestamp() if resume_at is not None else None


def _rendition_group(domain: str, app: str, group_id: str) -> RenditionGroup | None:
    return media_services.rendition_group(domain, app, group_id)


class DatabasePolicy:
    """livecenter.media.policy.Policy over the console's database."""

    def __init__(
        self,
        *,
        ttl_seconds: float | None = None,
        max_entries: int | None = None,
        stale_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        ttl = settings.LIVECENTER_POLICY_CACHE_SECONDS if ttl_seconds is None else ttl_seconds
        size = settings.LIVECENTER_POLICY_CACHE_ENTRIES if max_entries is None else max_entries
        stale = settings.LIVECENTER_POLICY_STALE_SECONDS if stale_seconds is None else stale_seconds
        self._domains: _CachedLookup[str, DomainConfig | None] = _CachedLookup(
            lambda host: _policy_db(_domain_config, host), ttl, size, clock, stale
        )
        # The block's end is cached, not a yes or no, so a block that ends
        # while cached ends on time (`now` is the caller's).
        self._blocks: _CachedLookup[StreamKey, float | None] = _CachedLookup(
            lambda key: _policy_db(_blocked_until, key), ttl, size, clock, stale
        )
        self._groups: _CachedLookup[tuple[str, str, str], RenditionGroup | None] = _CachedLookup(
            lambda key: _policy_db(_rendition_group, *key), ttl, size, clock, stale
        )
        self._certificates: _CachedLookup[str, TlsCertificate | None] = _CachedLookup(
            lambda host: _policy_db(_certificate, host), ttl, size, clock, stale
        )
        self._hooks: _CachedLookup[str, PublishHook | None] = _CachedLookup(
            lambda host: _policy_db(callback_services.publish_hook, host), ttl, size, clock, stale
        )
        _policies.add(self)

    async def certificate(self, host: str) -> TlsCertificate | None:
        return await self._certificates.get(host)

    async def rendition_group(self, domain: str, app: str, group_id: str) -> RenditionGroup | None:
        return await self._groups.get((domain, app, group_id))

    async def domain_config(self, host: str) -> DomainConfig | None:
        return await self._domains.get(host)

    async def publish_hook(self, domain: str) -> PublishHook | None:
        return await self._hooks.get(domain)

    async def is_forbidden(self, key: StreamKey, now: float) -> bool:
        try:
            until = await self._blocks.get(key)
        except PolicyUnavailable:
            # A stream never looked up before the outage, on a domain the
            # cache still vouches for (its signature is checked): admitted,
            # as blocks are rare and refusing every new stream name of every
            # known domain would be the worse failure.
            log.info("no block known for %s while the database is unreachable; admitted", key)
            return False
        return until is not None and until > now

    def forget_stream(self, key: StreamKey) -> None:
        self._blocks.forget(key)

    def forget_domain(self, host: str) -> None:
        self._domains.forget(host)
        self._certificates.forget(host)
        self._hooks.forget(host)


# --- Events -------------------------------------------------------------------


def _aware(unix_seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(unix_seconds, dt.UTC)


def _record_published(event: StreamPublished, server_ip: str) -> None:
    """One row per publish, whichever node tells first. The node holding
    the publisher (an edge, or the center it pushed to) says who published
    what; a center that an edge relays the stream to says where it is at
    the center (`center_node_id`); the two events may come in either order
    (each node has its own queue), and repeating either changes nothing.
    A row the center made first has no protocol until the edge's event."""
    domain = Domain.objects.filter(domain_name=event.key.domain).first()
    stream = {"domain": domain, "domain_name": event.key.domain, "app": event.key.app, "stream": event.key.stream}
    if event.relayed_from:
        edge_host = Node.objects.filter(node_id=event.relayed_from).values_list("host", flat=True).first()
        _, created = PublishSession.objects.get_or_create(
            session_id=event.session_id,
            defaults={
                **stream,
                # Until the edge's own event says the rest (protocol, publish URL, start).
                "node_id": event.relayed_from,
                "publish_type": event.publish_type,
                "server_ip": edge_host or "",
                "protocol": "",
                "client_addr": event.client_addr,
                "started_at": _aware(event.started_at),
                "center_node_id": event.node_id,
            },
        )
        if not created:
            PublishSession.objects.filter(session_id=event.session_id).update(center_node_id=event.node_id)
        return
    facts = {
        **stream,
        "node_id": event.node_id,
        "publish_type": event.publish_type,
        "server_ip": server_ip,
        "protocol": event.protocol,
        "client_addr": event.client_addr,
        "publish_url": event.publish_url,
        "started_at": _aware(event.started_at),
    }
    if event.publish_type != EDGE_PUBLISH:
        facts["center_node_id"] = event.center or event.node_id
    elif event.center:  # an edge's relay's center is told by the center itself, as a rule
        facts["center_node_id"] = event.center
    _, created = PublishSession.objects.get_or_create(session_id=event.session_id, defaults=facts)
    if not created:
        facts.pop("center_node_id", None)
        PublishSession.objects.filter(session_id=event.session_id, protocol="").update(**facts)


def _record_updated(event: StreamUpdated) -> None:
    info = event.info
    PublishSession.objects.filter(session_id=event.session_id).update(
        video_codec=info.video_codec,
        audio_codec=info.audio_codec,
        width=max(0, info.width),
        height=max(0, info.height),
        frame_rate=max(0.0, info.frame_rate),
        video_bitrate=max(0, round(info.video_bitrate)),
        audio_bitrate=max(0, round(info.audio_bitrate)),
        video_profile=info.video_profile,
        audio_sample_rate=max(0, info.audio_sample_rate),
        audio_channels=max(0, info.audio_channels),
        has_bframes=info.has_bframes,
        updated_at=timezone.now(),
    )


def _record_updates(events: tuple[StreamUpdated, ...]) -> None:
    with transaction.atomic():
        for event in events:
            _record_updated(event)
    for event in events:
        if event.viewers > 0 and "_" in event.key.stream:
            media_jobs.stream_watched(event.key, event.viewers)


def _record_unpublished(event: StreamUnpublished) -> None:
    if event.relayed_from:
        # A relay left this center (the publisher left the edge, or the
        # relay moves to another center): the edge ends the session.
        PublishSession.objects.filter(session_id=event.session_id, center_node_id=event.node_id).update(
            center_node_id=""
        )
        return
    PublishSession.objects.filter(session_id=event.session_id, stopped_at__isnull=True).update(
        stopped_at=_aware(event.stopped_at), stop_reason=event.reason[:255], updated_at=timezone.now()
    )


def node_address(node_id: str) -> media_jobs.NodeAddress | None:
    """Where workers reach a registered node."""
    row = Node.objects.filter(node_id=node_id).values_list("host", "rtmp_port", "http_port").first()
    return media_jobs.NodeAddress(*row) if row is not None else None


# Sinks of other apps that hear every event (nodes/apps.py adds
# monitoring's), and those that hear publishes and unpublishes only once the
# database has them, in order, after an outage too (callbacks': a delivery is
# a row, and an unpublish's reads its session's).
_listeners: list[EventSink] = []
_written_listeners: list[EventSink] = []


def add_event_listener(sink: EventSink, *, once_written: bool = False) -> None:
    listeners = _written_listeners if once_written else _listeners
    if sink not in listeners:
        listeners.append(sink)


async def _tell_listeners(method: str, event, once_written: bool = False) -> None:
    for sink in list(_written_listeners if once_written else _listeners):
        handler = getattr(sink, method, None)
        if handler is None:  # an optional event (publish_refused) this listener does without
            continue
        try:
            await handler(event)
        except Exception:
            log.exception("event listener %s failed on %s", type(sink).__name__, type(event).__name__)


class DatabaseEventSink:
    """livecenter.media.policy.EventSink writing PublishSession rows,
    starting the media workers' jobs (mediajobs/jobs.py) once
    `node_address` says where workers reach this node, then telling the
    listeners (add_event_listener).

    While the database is unreachable, publishes and unpublishes wait in
    `pending` (bounded, LIVECENTER_OUTAGE_EVENTS_MAX) and are written in
    order at the next event once it answers; the listeners hear them at once,
    those added `once_written` when they are written."""

    def __init__(self) -> None:
        self.node_address = None  # a media_jobs.NodeAddress, set when the node listens
        self.pending: outage.OutageBuffer[StreamPublished | StreamUnpublished] = outage.OutageBuffer(
            "publish events", settings.LIVECENTER_OUTAGE_EVENTS_MAX
        )

    async def _write(self, event: StreamPublished | StreamUnpublished) -> None:
        if isinstance(event, StreamPublished):
            await _db(_record_published, event, self.node_address.host if self.node_address is not None else "")
            # The media jobs read the stream at its center: an edge leaves
            # them to the center its relay reaches.
            at_center = event.publish_type != EDGE_PUBLISH or event.relayed_from
            if at_center and self.node_address is not None and not self._ended_while_pending(event.session_id):
                await _db(media_jobs.stream_published, event.key, self.node_address)
            await _tell_listeners("published", event, once_written=True)
        else:
            await _db(_record_unpublished, event)
            await _tell_listeners("unpublished", event, once_written=True)

    def _ended_while_pending(self, session_id: str) -> bool:
        return any(isinstance(e, StreamUnpublished) and e.session_id == session_id for e in self.pending.items())

    async def replay(self) -> bool:
        """Write what waited for the database, oldest first; True when nothing is left."""
        while len(self.pending):
            if not outage.database.should_try():
                return False
            event = self.pending.peek()
            try:
                await self._write(event)
            except outage.UNREACHABLE as exc:
                outage.database.failed(exc)
                return False
            except Exception:  # not an outage: this event cannot be written; the others still can
                log.exception("could not replay %s of %s; dropped", type(event).__name__, event.key)
                self.pending.pop()
                continue
            outage.database.succeeded()
            self.pending.pop()
            if not len(self.pending):
                log.warning("replayed the publish events buffered while the database was unreachable")
        return True

    async def _record(self, event: StreamPublished | StreamUnpublished) -> None:
        if await self.replay() and outage.database.should_try():
            try:
                await self._write(event)
                outage.database.succeeded()
                return
            except outage.UNREACHABLE as exc:
                outage.database.failed(exc)
        log.info("database unreachable: %s of %s buffered", type(event).__name__, event.key)
        self.pending.add(event)

    async def published(self, event: StreamPublished) -> None:
        await self._record(event)
        await _tell_listeners("published", event)

    async def updated(self, event: StreamUpdated) -> None:
        if len(self.pending) or not outage.database.should_try():
            return  # the next update after the outage says the same, newer
        try:
            await _db(_record_updated, event)
            if event.viewers > 0 and "_" in event.key.stream:
                await _db(media_jobs.stream_watched, event.key, event.viewers)
        except outage.UNREACHABLE as exc:
            outage.database.failed(exc)

    async def updated_many(self, events: Sequence[StreamUpdated]) -> None:
        """A tick's updates of every live stream in one database round trip:
        under load each trip waits on the busy loop, and one per stream fell
        behind the tick (bench/soak)."""
        if len(self.pending) or not outage.database.should_try():
            return
        try:
            await _db(_record_updates, tuple(events))
        except outage.UNREACHABLE as exc:
            outage.database.failed(exc)

    async def rendition_requested(self, event: RenditionRequested) -> None:
        node = self.node_address
        if event.center and event.center != event.node_id:
            node = await _db(node_address, event.center)  # an edge's: the transcode reads at the center
        if node is not None:
            await _db(media_jobs.rendition_requested, event.source, event.template_id, node)

    async def unpublished(self, event: StreamUnpublished) -> None:
        await self._record(event)
        await _tell_listeners("unpublished", event)

    async def publish_refused(self, event: PublishRefused) -> None:
        await _tell_listeners("publish_refused", event)

    async def playback_reported(self, event: PlaybackReported) -> None:
        await _tell_listeners("playback_reported", event)

    async def sampled(self, event: StreamsSampled) -> None:
        if len(self.pending):
            await self.replay()  # samples come every second: the replay needs no timer of its own
        await _tell_listeners("sampled", event)


def close_orphaned_sessions(node_id: str, before: float | None = None) -> int:
    """Close the sessions `node_id` left open when it stopped without
    reporting them (a crash, a kill); a node calls this when it starts,
    before it accepts publishers. Returns how many were closed.

    Synchronous, unlike the sink: it runs once, before the node's loop
    serves anyone (from async code: `await sync_to_async(close_orphaned_sessions)(node_id)`)."""
    # The node died without saying when each stream stopped; the last time
    # it reported the session is the best bound we have.
    sessions = PublishSession.objects.filter(node_id=node_id, stopped_at__isnull=True)
    if before is not None:
        # Only its previous life's: this one may have published since (a
        # close retried after a database outage at start, medianode.py).
        sessions = sessions.filter(started_at__lt=_aware(before))
    closed = sessions.update(stopped_at=F("updated_at"), stop_reason=ORPHANED_STOP_REASON)
    if closed:
        log.info("closed %d publish sessions node %s left open", closed, node_id)
    return closed
