"""The node registry's answers to an edge's engine (livecenter/media/edge.py's
Router): which center a stream published here is relayed to, and which node a
stream a viewer here asks for is pulled from.

The engine awaits the answers on its event loop. The router answers from
what the node's heartbeat (medianode.keep_beating) read last, every node's
beat, refreshed each beat, and the domain's live center from the node's
policy (its cache, nodes/bridge.py): no query of its own per stream. The
decisions themselves are livecenter/media/cluster.py's, judged at the
router's clock, so a node whose beats stop (or a registry this node can no
longer read) is down here as on the console.

The one publisher of a stream across the cluster (`claim`) is a Redis key
set only if absent, naming the node that holds the publisher, an edge's or
a center's own (a relay from an edge claims nothing); that node's
heartbeat renews it while the stream is published there, and the engine
releases it when the publisher leaves (MediaNode.stream_ended), so it
lapses CLAIM_TTL_SECONDS after its node died at the latest. Without Redis
(one node) there is nothing to claim against.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping

from livecenter.media.cluster import CenterAssignments, ClusterView, NodeBeat, pull_source
from livecenter.media.edge import Route
from livecenter.media.policy import Policy, PolicyUnavailable, StreamKey

from . import registry

log = logging.getLogger(__name__)

CLAIM_PREFIX = "livecenter:publisher:"
# A stream's claim outlives its holder's last renewal (each beat) by this
# much: a publisher that moves to another edge is taken there this long
# after it left the first at the most.
CLAIM_TTL_SECONDS = registry.BEAT_TTL_SECONDS
# Deletes a claim only if it is still the releasing node's: a publisher
# that has come back on another node since keeps its claim there.
RELEASE_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class RegistryRouter:
    def __init__(self, node_id: str, policy: Policy, *, clock: Callable[[], float] = time.time) -> None:
        self.node_id = node_id
        self.policy = policy
        self._clock = clock
        # The heartbeat's store (medianode.running_media_node): claims are made in it when it is Redis.
        self.store = None
        self.beats: Mapping[str, NodeBeat] = {}
        self.assignments = CenterAssignments()

    def refresh(self, beats: Mapping[str, NodeBeat], live: Collection[str]) -> None:
        """What the heartbeat read; `live` is the streams live on this node
        now: the others' centers are forgotten, so the assignments stay
        as many as the node's streams."""
        self.beats = beats
        for key in [k for k in self.assignments.centers if k not in live]:
            self.assignments.release(key)

    def view(self) -> ClusterView:
        return ClusterView(self.beats, self._clock())

    async def _live_center(self, key: StreamKey) -> str | None:
        try:
            config = await self.policy.domain_config(key.domain)
        except PolicyUnavailable:
            return None
        return config.live_center if config is not None and config.live_center else None

    async def relay_route(self, key: StreamKey, avoid: Collection[str]) -> Route | str:
        region = await self._live_center(key)
        if region is None:
            return f"no live center is known for {key.domain} (its settings cannot be read)"
        route = self.assignments.route(self.view(), str(key), region, avoid)
        if route.node is None:
            return route.reason
        return Route(route.node.node_id, route.node.host, route.node.rtmp_port, route.node.srt_port)

    async def claim(self, key: StreamKey, node_id: str) -> str | None:
        """None when `node_id` may take the publisher of `key`; else who has it.
        Redis unreachable, it is admitted: refusing every publisher of the
        cluster for an outage would be the worse failure."""
        if not isinstance(self.store, registry.RedisBeats):
            return None
        client = self.store.async_client()
        name = CLAIM_PREFIX + str(key)
        try:
            if await client.set(name, node_id, nx=True, ex=CLAIM_TTL_SECONDS):
                return None
            holder = await client.get(name)
            if holder is None or holder.decode() == node_id:  # lapsed since, or ours (a reconnect here)
                await client.set(name, node_id, ex=CLAIM_TTL_SECONDS)
                return None
        except registry.STORE_UNREACHABLE as exc:
            log.warning("claim of %s not checked, the registry is unreachable (%s): admitted", key, exc)
            return None
        return f"stream is already being published on {holder.decode()}"

    async def release(self, key: StreamKey, node_id: str) -> None:
        """`node_id`'s publisher of `key` has left: the stream may be
        published elsewhere now. Redis unreachable, the claim lapses."""
        if not isinstance(self.store, registry.RedisBeats):
            return
        try:
            await self.store.async_client().eval(RELEASE_SCRIPT, 1, CLAIM_PREFIX + str(key), node_id)
        except registry.STORE_UNREACHABLE as exc:
            log.info("claim of %s not released, the registry is unreachable (%s): it lapses", key, exc)

    async def renew(self, keys: Collection[str], node_id: str) -> None:
        """Keep this node's claims on the streams published here."""
        if not keys or not isinstance(self.store, registry.RedisBeats):
            return
        async with self.store.async_client().pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(CLAIM_PREFIX + key, node_id, ex=CLAIM_TTL_SECONDS)
            await pipe.execute()

    async def pull_route(self, key: StreamKey) -> Route | None:
        route = pull_source(self.view(), str(key), await self._live_center(key), exclude=self.node_id)
        if route.node is None:
            return None
        return Route(route.node.node_id, route.node.host, route.node.rtmp_port, route.node.srt_port)


async def refresh_router(router: RegistryRouter, store, live: Collection[str], published: Collection[str]) -> None:
    """Read the cluster for `router` and renew the claims on the streams
    `published` here (from the heartbeat, after this node's own beat);
    raises what the store raises while it is unreachable."""
    await router.renew(published, router.node_id)
    router.refresh(await asyncio.wait_for(store.read(), registry.STORE_TIMEOUT_SECONDS), live)
