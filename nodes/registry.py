"""The node registry on the cluster's shared state (issue 14): each media node
registers itself in the database (a `Node` row: who it is, where others
reach it) and beats every HEARTBEAT_SECONDS (livecenter/media/cluster.py's
NodeBeat: what it carries, its load).

The beats go where the topology keeps its shared state:

- scaled (REDIS_URL set): Redis, one key per node that expires
  BEAT_TTL_SECONDS after the last beat, and the time of each node's last
  beat in one hash, so that the console can say how long a dead node has
  been silent after its key is gone;
- embedded (`make run`, no Redis): the node's row (`Node.last_beat`, and
  its time in `last_beat_at`, which outlives it).

`registry()` answers `livecenter.media.cluster.NodeRegistry` from either;
`cluster_view()` reads it at `clock()`, which tests replace.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterable

import redis
from django.conf import settings

from livecenter import outage
from livecenter.media.cluster import NODE_DOWN_SECONDS, BadNodeBeat, ClusterView, NodeBeat
from livecenter.media.policy import PolicyUnavailable

from .bridge import _aware, _db, _policy_db
from .models import Node, role_value

log = logging.getLogger(__name__)

REDIS_BEAT_PREFIX = "livecenter:node:"
REDIS_LAST_BEATS = "livecenter:node-last-beat"
# A beat's key outlives the beat by this much: long enough that the console
# reads it until the node is down (cluster.NODE_DOWN_SECONDS), short enough
# that a dead node's key goes by itself.
BEAT_TTL_SECONDS = int(NODE_DOWN_SECONDS) + 1
# A beat (or a console's read) gives up after this long: the next one tries again.
STORE_TIMEOUT_SECONDS = 2.0
# What a store raises while it is unreachable (issue 11); PolicyUnavailable
# is the database known to be down (bridge._policy_db), not tried again
# before LIVECENTER_DB_RETRY_SECONDS so as not to hold up the event sink.
STORE_UNREACHABLE = (*outage.UNREACHABLE, PolicyUnavailable, redis.RedisError, OSError, TimeoutError)

clock = time.time  # Unix seconds; tests replace it


def register_node(beat: NodeBeat) -> Node:
    """Create or update the node's row from its first beat (a node that
    restarts with other ports or another role says so here)."""
    node, _ = Node.objects.update_or_create(
        node_id=beat.node_id,
        defaults={
            "role": role_value(beat.roles),
            "region": beat.region,
            "host": beat.host,
            "rtmp_port": beat.rtmp_port,
            "http_port": beat.http_port,
            "srt_port": beat.srt_port,
            "https_port": beat.https_port,
            "rtmps_port": beat.rtmps_port,
            "started_at": _aware(beat.started_at or beat.at),
            "last_beat": None,
        },
    )
    return node


def _parsed(node_id: str, raw) -> NodeBeat | None:
    try:
        beat = NodeBeat.from_json(json.loads(raw) if isinstance(raw, str | bytes) else raw)
    except (BadNodeBeat, ValueError) as exc:
        log.warning("node %s: malformed heartbeat ignored (%s)", node_id, exc)
        return None
    if beat.node_id != node_id:
        log.warning("node %s: heartbeat of %s under its name ignored", node_id, beat.node_id)
        return None
    return beat


def _write_beat(beat: NodeBeat) -> None:
    Node.objects.filter(node_id=beat.node_id).update(last_beat=beat.to_json(), last_beat_at=_aware(beat.at))


def _clear_beat(node_id: str) -> None:
    Node.objects.filter(node_id=node_id).update(last_beat=None)


def _beats_of(ids: list[str], raws: list) -> dict[str, NodeBeat]:
    """The beats read for `ids` (None where a node has none), malformed ones left out."""
    return {
        node_id: beat
        for node_id, raw in zip(ids, raws, strict=True)
        if raw is not None and (beat := _parsed(node_id, raw)) is not None
    }


class DatabaseBeats:
    """Beats in the nodes' rows (the embedded topology). `publish` and
    `withdraw` are the node's, on its event loop; `beats` and `last_beats`
    the console's."""

    def __init__(self) -> None:
        # The beat's write runs in a database thread that cancelling its
        # task does not stop: one still under way when the node stops must
        # not land after the withdrawal (and show a stopped node up).
        self._lock = threading.Lock()
        self._withdrawn: set[str] = set()

    async def publish(self, beat: NodeBeat) -> None:
        await _policy_db(self._write, beat)

    async def withdraw(self, node_id: str) -> None:
        await _db(self._clear, node_id)

    def _write(self, beat: NodeBeat) -> None:
        with self._lock:
            if beat.node_id not in self._withdrawn:
                _write_beat(beat)

    def _clear(self, node_id: str) -> None:
        with self._lock:
            self._withdrawn.add(node_id)
            _clear_beat(node_id)

    async def read(self) -> dict[str, NodeBeat]:
        """`beats()` from the node's event loop."""
        return await _policy_db(self.beats)

    async def close(self) -> None:
        pass

    def forget(self, node_ids: list[str]) -> None:
        """Nothing outlives the nodes' rows here."""

    def beats(self, node_ids: Iterable[str] | None = None) -> dict[str, NodeBeat]:
        rows = Node.objects.exclude(last_beat=None)
        if node_ids is not None:
            rows = rows.filter(node_id__in=list(node_ids))
        found = dict(rows.values_list("node_id", "last_beat"))
        return _beats_of(list(found), list(found.values()))

    def last_beats(self, node_ids: Iterable[str]) -> dict[str, float]:
        rows = Node.objects.filter(node_id__in=list(node_ids)).exclude(last_beat_at=None)
        return {node_id: at.timestamp() for node_id, at in rows.values_list("node_id", "last_beat_at")}


class RedisBeats:
    """Beats in Redis (the scaled topology). `publish` and `withdraw` are
    the node's, on its event loop (redis.asyncio); `beats` and `last_beats`
    the console's (redis-py)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._sync = None
        self._async = None

    def _client(self):
        if self._sync is None:
            self._sync = redis.Redis.from_url(
                self.url, socket_connect_timeout=STORE_TIMEOUT_SECONDS, socket_timeout=STORE_TIMEOUT_SECONDS
            )
        return self._sync

    def async_client(self):
        if self._async is None:
            import redis.asyncio

            self._async = redis.asyncio.Redis.from_url(
                self.url, socket_connect_timeout=STORE_TIMEOUT_SECONDS, socket_timeout=STORE_TIMEOUT_SECONDS
            )
        return self._async

    async def publish(self, beat: NodeBeat) -> None:
        async with self.async_client().pipeline(transaction=False) as pipe:
            pipe.set(REDIS_BEAT_PREFIX + beat.node_id, json.dumps(beat.to_json()), ex=BEAT_TTL_SECONDS)
            pipe.hset(REDIS_LAST_BEATS, beat.node_id, repr(beat.at))
            await pipe.execute()

    async def withdraw(self, node_id: str) -> None:
        await self.async_client().delete(REDIS_BEAT_PREFIX + node_id)

    async def read(self) -> dict[str, NodeBeat]:
        """`beats()` from the node's event loop: every node that has beaten
        (the ids in the last-beat hash), without the database."""
        client = self.async_client()
        ids = sorted(node_id.decode() for node_id in await client.hkeys(REDIS_LAST_BEATS))
        if not ids:
            return {}
        raws = await client.mget([REDIS_BEAT_PREFIX + node_id for node_id in ids])
        return _beats_of(ids, raws)

    async def close(self) -> None:
        if self._async is not None:
            await self._async.aclose()
            self._async = None

    def beats(self, node_ids: Iterable[str] | None = None) -> dict[str, NodeBeat]:
        ids = sorted(Node.objects.values_list("node_id", flat=True) if node_ids is None else node_ids)
        if not ids:
            return {}
        raws = self._client().mget([REDIS_BEAT_PREFIX + node_id for node_id in ids])
        return _beats_of(ids, raws)

    def forget(self, node_ids: list[str]) -> None:
        """Drop what Redis keeps of nodes gone for good (their beats have expired)."""
        if node_ids:
            self._client().hdel(REDIS_LAST_BEATS, *node_ids)

    def last_beats(self, node_ids: Iterable[str]) -> dict[str, float]:
        ids = list(node_ids)
        if not ids:
            return {}
        values = self._client().hmget(REDIS_LAST_BEATS, ids)
        return {node_id: float(value) for node_id, value in zip(ids, values, strict=True) if value is not None}


async def withdraw(store: DatabaseBeats | RedisBeats, node_id: str) -> None:
    """Take a stopping node's beat away, so that it is down at once; then
    close the store. A store that is unreachable lets the beat expire."""
    try:
        await asyncio.wait_for(store.withdraw(node_id), STORE_TIMEOUT_SECONDS)
    except STORE_UNREACHABLE as exc:
        log.info("node %s: beat not withdrawn (%s); it is down once it is %.0f s old", node_id, exc, NODE_DOWN_SECONDS)
    finally:
        await store.close()


def registry() -> DatabaseBeats | RedisBeats:
    """Where this topology keeps the beats (the module docstring)."""
    return RedisBeats(settings.REDIS_URL) if settings.REDIS_URL else DatabaseBeats()


def cluster_view() -> ClusterView:
    """The cluster now, as the console reads it."""
    return ClusterView(registry().beats(), clock())
