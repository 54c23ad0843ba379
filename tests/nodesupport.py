"""Helpers shared by the node registry tests (tests/test_nodes_*.py); the
fixtures are registered in conftest.py."""

from __future__ import annotations

import os
import uuid

import pytest
import redis
from asgiref.sync import async_to_sync

from livecenter.media.cluster import EDGE, NodeBeat
from nodes import registry
from tests.xdist_redis import worker_redis_url

T0 = 1_800_000_000.0


def a_beat(node_id: str, at: float = T0, roles=frozenset({EDGE}), region: str = "eu-central-1", **figures) -> NodeBeat:
    return NodeBeat(node_id, roles, region, "10.0.0.7", 1935, 8080, 1105, at, T0 - 5, **figures)


def beat_now(store, beat: NodeBeat) -> None:
    """Register the beat's node and publish the beat, as the node does (the
    database store's query runs in this thread, in the test's transaction)."""
    registry.register_node(beat)

    async def publish():
        await store.publish(beat)
        await store.close()

    async_to_sync(publish)()


# The beats' TTL while a test reads back what it wrote: the real one (6 s)
# is shorter than a stall of a loaded machine may be.
TEST_BEAT_TTL_SECONDS = 60


@pytest.fixture
def redis_url(settings, monkeypatch):
    """This machine's Redis (REDIS_URL, else 127.0.0.1:6379) as the beat
    store, or a skip when it does not answer."""
    monkeypatch.setattr(registry, "BEAT_TTL_SECONDS", TEST_BEAT_TTL_SECONDS)
    url = os.environ.get("REDIS_URL") or worker_redis_url("redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except (redis.RedisError, OSError) as exc:
        pytest.skip(f"no Redis at {url}: {exc}")
    settings.REDIS_URL = url
    return url


@pytest.fixture
def redis_node_id(redis_url):
    """A node id of this test's own (Redis is shared), its keys removed after."""
    node_id = f"test-{uuid.uuid4().hex[:8]}"
    yield node_id
    client = redis.Redis.from_url(redis_url)
    client.delete(registry.REDIS_BEAT_PREFIX + node_id)
    client.hdel(registry.REDIS_LAST_BEATS, node_id)


@pytest.fixture
def registry_clock(monkeypatch):
    """The registry's clock, set by the test: `clock.now = ...`."""

    class Clock:
        now = T0

    monkeypatch.setattr(registry, "clock", lambda: Clock.now)
    return Clock
