"""nodes/registry.py: media nodes register themselves and beat, into the
database (embedded topology) or Redis (scaled); the console reads who is up.

The Redis tests use this machine's Redis (REDIS_URL, else 127.0.0.1:6379)
and skip when it does not answer."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import redis

from livecenter.media.cluster import ANY_REGION, CENTER, EDGE, NODE_DOWN_SECONDS, NodeBeat
from nodes import registry
from nodes.models import Node
from nodes.registry import BEAT_TTL_SECONDS
from tests.nodesupport import T0, TEST_BEAT_TTL_SECONDS, a_beat, beat_now
from tests.workersupport import MediaNodeThread, wait_until


@pytest.mark.django_db
def test_it_registers_a_node_from_its_beat_and_updates_it_when_it_comes_back_changed():
    node = registry.register_node(a_beat("e1"))
    assert (node.role, node.region, node.host, node.rtmp_port, node.http_port, node.srt_port) == (
        "edge", "eu-central-1", "10.0.0.7", 1935, 8080, 1105
    )  # fmt: skip
    assert node.started_at.timestamp() == T0 - 5
    moved = NodeBeat("e1", frozenset({CENTER, EDGE}), ANY_REGION, "10.0.0.8", 1936, 8081, None, T0 + 60, T0 + 59)
    registry.register_node(moved)
    node = Node.objects.get()
    assert (node.role, node.region, node.host, node.srt_port) == ("center,edge", "", "10.0.0.8", None)
    assert node.get_role_display() == "Center and edge"


@pytest.mark.django_db
def test_it_keeps_beats_in_the_database_without_redis(settings):
    settings.REDIS_URL = ""
    store = registry.registry()
    assert isinstance(store, registry.DatabaseBeats)
    registry.register_node(a_beat("e1"))
    registry.register_node(a_beat("e2"))
    assert store.beats() == {}
    beat = a_beat("e1", T0 + 1, streams=frozenset({"d/a/s"}), viewers=4)
    registry._write_beat(beat)
    assert store.beats() == {"e1": beat}
    assert store.last_beats(["e1", "e2"]) == {"e1": T0 + 1}
    registry._clear_beat("e1")  # a clean stop
    assert store.beats() == {} and store.last_beats(["e1"]) == {"e1": T0 + 1}


@pytest.mark.django_db
def test_it_ignores_a_malformed_beat_in_the_store(settings, caplog):
    settings.REDIS_URL = ""
    registry.register_node(a_beat("e1"))
    Node.objects.filter(node_id="e1").update(last_beat={**a_beat("e1").to_json(), "rtmp_port": "x"})
    assert registry.registry().beats() == {}
    assert "node e1: malformed heartbeat ignored (rtmp_port: must be a port number, 1 to 65535)" in caplog.text


@pytest.mark.django_db
def test_it_keeps_beats_in_redis_with_a_short_ttl(redis_url, redis_node_id):
    node_id = redis_node_id
    store = registry.registry()
    assert isinstance(store, registry.RedisBeats)
    beat = a_beat(node_id, streams=frozenset({"d/a/s"}), bitrate_in=2e6)
    beat_now(store, beat)
    assert store.beats() == {node_id: beat}
    assert store.beats([node_id, "not-registered"]) == {node_id: beat}
    client = redis.Redis.from_url(redis_url)
    assert 0 < client.ttl(registry.REDIS_BEAT_PREFIX + node_id) <= TEST_BEAT_TTL_SECONDS == registry.BEAT_TTL_SECONDS
    assert NODE_DOWN_SECONDS < BEAT_TTL_SECONDS <= 10  # read until it is down, then gone by itself
    # The key expires; the time of the last beat stays for the console.
    client.delete(registry.REDIS_BEAT_PREFIX + node_id)
    assert store.beats() == {}
    assert store.last_beats([node_id]) == {node_id: T0}


def _node_state(node_id: str):
    view = registry.cluster_view()
    return view.is_up(node_id), view.beats.get(node_id)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("store", ["database", "redis"])
def test_a_running_node_registers_beats_and_withdraws_when_it_stops(store, request, settings):
    if store == "redis":
        node_id = request.getfixturevalue("redis_node_id")
    else:
        settings.REDIS_URL = ""
        node_id = "beating"
    with MediaNodeThread(node_id=node_id, srt_port=0, https_port=0, rtmps_port=0) as media:
        up = wait_until(lambda: _node_state(node_id)[0], timeout=20)
        assert up, "the node never beat"
        first = _node_state(node_id)[1]
        assert wait_until(lambda: _node_state(node_id)[1].at > first.at, timeout=10), "it beat once only"
        row = Node.objects.get(node_id=node_id)
        assert (row.role, row.region, row.host) == ("center,edge", "", "127.0.0.1")
        assert (row.rtmp_port, row.http_port, row.srt_port) == (
            media.node.rtmp_port, media.node.http_port, media.node.srt_port
        )  # fmt: skip
        assert (row.https_port, row.rtmps_port) == (media.node.https_port, media.node.rtmps_port)
        assert first.https_port == media.node.https_port and first.https_port is not None
        assert first.streams == frozenset() and first.viewers == 0 and first.loop_lag_ms >= 0
        assert (first.listen_host, first.host) == (media.node.config.host, "127.0.0.1")
    # A clean stop takes the beat away at once: nothing is routed to it.
    assert _node_state(node_id) == (False, None)


@pytest.mark.django_db(transaction=True)
def test_a_node_beats_on_after_its_store_was_unreachable(monkeypatch, caplog):
    from nodes import medianode

    class FlakyStore:
        def __init__(self) -> None:
            self.failures, self.published = 2, []

        async def publish(self, beat):
            if self.failures:
                self.failures -= 1
                raise redis.ConnectionError("Connection refused")
            self.published.append(beat)

    store = FlakyStore()
    monkeypatch.setattr(medianode, "node_beat", lambda node, at, started_at: a_beat("flaky", at))

    async def beat_until_published():
        task = asyncio.create_task(medianode.keep_beating(SimpleNamespace(router=None), store, T0, interval=0.01))
        while len(store.published) < 2:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(asyncio.wait_for(beat_until_published(), 30))
    assert Node.objects.filter(node_id="flaky").exists()
    assert "node flaky cannot beat (Connection refused): shown down until it can" in caplog.text
    assert "node flaky beats again after" in caplog.text
    assert caplog.text.count("cannot beat") == 1  # once per outage, not once a beat
