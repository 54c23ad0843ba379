"""nodes/router.py: the registry's answers to an edge's engine (edge.Router),
from the beats its heartbeat read, at the router's clock."""

from __future__ import annotations

import asyncio

import pytest
import redis

from livecenter.media.cluster import CENTER, NODE_DOWN_SECONDS
from livecenter.media.edge import Route
from livecenter.media.policy import DomainConfig, PolicyUnavailable, StreamKey
from nodes import registry
from nodes.router import CLAIM_PREFIX, CLAIM_TTL_SECONDS, RegistryRouter
from tests.nodesupport import T0, a_beat

KEY = StreamKey("push.example.com", "live", "cam1")
CENTERS = frozenset({CENTER})


def route(answer):
    """The router's awaited answer, outside a loop."""
    return asyncio.run(answer)


class Clock:
    now = T0


class FakePolicy:
    """The domains' live centers, as the node's policy answers them."""

    def __init__(self, **live_centers: str) -> None:
        self.live_centers = live_centers

    async def domain_config(self, host: str) -> DomainConfig | None:
        if host == "down.example.com":
            raise PolicyUnavailable("the database is unreachable")
        region = self.live_centers.get(host)
        return None if region is None else DomainConfig(host, "ingest", True, None, 1440 * 60, live_center=region)


@pytest.fixture
def router():
    router = RegistryRouter("edge-1", FakePolicy(**{"push.example.com": "eu-central-1"}), clock=lambda: Clock.now)
    Clock.now = T0
    router.refresh(
        {
            "c1": a_beat("c1", roles=CENTERS, load=0.5),
            "c2": a_beat("c2", roles=CENTERS, load=0.1),
            "c-sin": a_beat("c-sin", roles=CENTERS, region="ap-southeast-1"),
            "edge-1": a_beat("edge-1"),
        },
        live=[],
    )
    return router


def test_it_relays_to_the_least_loaded_center_of_the_domains_live_center(router):
    assert route(router.relay_route(KEY, ())) == Route("c2", "10.0.0.7", 1935, 1105)
    assert route(router.relay_route(KEY, {"c2"})) == Route("c1", "10.0.0.7", 1935, 1105)


def test_it_says_why_it_has_no_center(router):
    for domain in ("new.example.com", "down.example.com"):
        unknown = StreamKey(domain, "live", "cam1")
        reason = f"no live center is known for {domain} (its settings cannot be read)"
        assert route(router.relay_route(unknown, ())) == reason
    Clock.now = T0 + NODE_DOWN_SECONDS + 1  # no beat read since: the registry is gone for this node
    assert route(router.relay_route(KEY, ())).startswith("no center node of live center eu-central-1 is up")


def test_it_keeps_a_streams_center_while_it_is_live_here_and_forgets_it_after(router):
    assert route(router.relay_route(KEY, ())).node_id == "c2"
    beats = dict(router.beats, c2=a_beat("c2", roles=CENTERS, load=0.9))
    router.refresh(beats, live=[str(KEY)])
    assert route(router.relay_route(KEY, ())).node_id == "c2"  # sticky
    router.refresh(beats, live=[])
    assert router.assignments.centers == {}
    assert route(router.relay_route(KEY, ())).node_id == "c1"


def test_it_pulls_from_the_center_carrying_the_stream(router):
    assert route(router.pull_route(KEY)) is None
    router.refresh(dict(router.beats, c1=a_beat("c1", roles=CENTERS, streams=frozenset({str(KEY)}))), live=[])
    assert route(router.pull_route(KEY)) == Route("c1", "10.0.0.7", 1935, 1105)


def with_two_edges(redis_url: str, key: StreamKey, run):
    """`run(a, b)` with the routers of edge-a and edge-b on this machine's
    Redis; the claim of `key` removed after."""

    async def main():
        store = registry.RedisBeats(redis_url)
        a, b = RegistryRouter("edge-a", FakePolicy()), RegistryRouter("edge-b", FakePolicy())
        a.store = b.store = store
        try:
            return await run(a, b)
        finally:
            redis.Redis.from_url(redis_url).delete(CLAIM_PREFIX + str(key))
            await store.close()

    return asyncio.run(main())


@pytest.mark.django_db
def test_one_node_holds_a_streams_publisher_across_the_cluster(redis_url, redis_node_id):
    key = StreamKey("push.example.com", "live", f"claim-{redis_node_id}")
    client = redis.Redis.from_url(redis_url)

    async def claims(a, b):
        first = await a.claim(key, "edge-a")
        second = await b.claim(key, "edge-b")
        again = await a.claim(key, "edge-a")  # its publisher reconnects there
        ttl = client.ttl(CLAIM_PREFIX + str(key))
        client.delete(CLAIM_PREFIX + str(key))  # lapsed: edge-a's publisher left it
        after = await b.claim(key, "edge-b")
        return first, second, again, ttl, after

    first, second, again, ttl, after = with_two_edges(redis_url, key, claims)
    assert (first, second, again, after) == (None, "stream is already being published on edge-a", None, None)
    assert 0 < ttl <= CLAIM_TTL_SECONDS


@pytest.mark.django_db
def test_a_claim_is_released_when_its_publisher_leaves_and_only_by_its_holder(redis_url, redis_node_id):
    key = StreamKey("push.example.com", "live", f"release-{redis_node_id}")
    client = redis.Redis.from_url(redis_url)

    async def claims(a, b):
        await a.claim(key, "edge-a")
        await b.release(key, "edge-b")  # not edge-b's to release
        kept = await b.claim(key, "edge-b")
        await a.release(key, "edge-a")  # edge-a's publisher left
        taken = await b.claim(key, "edge-b")  # at once, not CLAIM_TTL_SECONDS later
        await a.release(key, "edge-a")  # a late release of edge-a's leaves edge-b's claim
        return kept, taken, client.get(CLAIM_PREFIX + str(key))

    kept, taken, holder = with_two_edges(redis_url, key, claims)
    assert (kept, taken, holder) == ("stream is already being published on edge-a", None, b"edge-b")


def test_without_redis_there_is_nothing_to_claim_against(router):
    router.store = registry.DatabaseBeats()
    assert asyncio.run(router.claim(KEY, "edge-1")) is None
    asyncio.run(router.release(KEY, "edge-1"))  # nothing to release either
