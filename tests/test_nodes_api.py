"""GET /api/v1/nodes/: the media nodes, their health and load, read-only."""

from __future__ import annotations

import pytest
import redis

from livecenter.media.cluster import CENTER, NODE_DOWN_SECONDS
from nodes import registry
from nodes.models import Node
from tests.apisupport import client_for
from tests.nodesupport import T0, a_beat, beat_now
from tests.pagesupport import add_ingest

pytestmark = pytest.mark.django_db

NODES = "/api/v1/nodes/"
MINE, THEIRS = "push.example.com/live/cam1", "theirs.example.com/live/cam9"


@pytest.fixture
def cluster(settings, owner, outsider, registry_clock):
    """A center carrying a stream of the owner's and one of the outsider's,
    and an edge, beating into the database at T0."""
    settings.REDIS_URL = ""
    add_ingest(owner)
    add_ingest(outsider, "theirs.example.com")
    store = registry.registry()
    beat_now(store, a_beat("center-1", roles=frozenset({CENTER}), streams=frozenset({MINE, THEIRS}), viewers=7,
                           bitrate_in=4e6, bitrate_out=14e6, loop_lag_ms=2.5, load=0.3, https_port=443,
                           rtmps_port=1936, listen_host="0.0.0.0"))  # fmt: skip
    beat_now(store, a_beat("edge-1"))
    registry_clock.now = T0 + 1
    return registry_clock


def by_id(response) -> dict:
    assert response.status_code == 200, response.content
    return {row["node_id"]: row for row in response.json()["results"]}


def test_it_lists_the_nodes_with_their_health_and_load(owner, cluster):
    rows = by_id(client_for(owner).get(NODES))
    assert rows["center-1"] == {
        "node_id": "center-1",
        "role": "center",
        "region": "eu-central-1",
        "host": "10.0.0.7",
        "listen_host": "0.0.0.0",
        "rtmp_port": 1935,
        "http_port": 8080,
        "srt_port": 1105,
        "https_port": 443,
        "rtmps_port": 1936,
        "started_at": "2027-01-15T07:59:55Z",  # T0 - 5
        "health": "up",
        "last_beat_age": 1.0,
        "load": 0.3,
        "stream_count": 2,
        "viewers": 7,
        "bitrate_in": 4e6,
        "bitrate_out": 14e6,
        "loop_lag_ms": 2.5,
        "streams": [MINE],  # not the outsider's
        "relay_errors": {},
    }
    assert (rows["edge-1"]["role"], rows["edge-1"]["health"], rows["edge-1"]["streams"]) == ("edge", "up", [])
    assert (rows["edge-1"]["https_port"], rows["edge-1"]["rtmps_port"]) == (None, None)  # no TLS listeners


def test_it_shows_every_operator_the_nodes_but_only_their_own_streams(outsider, cluster, django_user_model):
    assert by_id(client_for(outsider).get(NODES))["center-1"]["streams"] == [THEIRS]
    staff = django_user_model.objects.create_user("staff", password="staff-pass-123", is_staff=True)
    assert by_id(client_for(staff).get(NODES))["center-1"]["streams"] == [MINE, THEIRS]


def test_it_shows_a_node_that_stopped_beating_down(owner, cluster):
    cluster.now = T0 + NODE_DOWN_SECONDS  # at the limit: up
    assert by_id(client_for(owner).get(NODES))["center-1"]["health"] == "up"
    cluster.now = T0 + NODE_DOWN_SECONDS + 2
    row = by_id(client_for(owner).get(NODES))["center-1"]
    assert (row["health"], row["last_beat_age"]) == ("down", NODE_DOWN_SECONDS + 2)
    # A down node's last figures are not shown as if they were current.
    assert (row["load"], row["stream_count"], row["viewers"], row["streams"]) == (None, None, None, [])


def test_it_forgets_a_node_down_for_longer_than_the_forget_time(owner, cluster, settings):
    settings.LIVECENTER_NODE_FORGET_SECONDS = 3600
    beat_now(registry.registry(), a_beat("edge-1", at=T0 + 3600))  # edge-1 beats on; center-1 went silent at T0
    cluster.now = T0 + 3600  # down for exactly the forget time: still listed, down
    assert by_id(client_for(owner).get(NODES))["center-1"]["health"] == "down"
    cluster.now = T0 + 3601
    assert set(by_id(client_for(owner).get(NODES))) == {"edge-1"}
    assert not Node.objects.filter(node_id="center-1").exists()
    # Should it come back, it registers again.
    beat_now(registry.registry(), a_beat("center-1", at=T0 + 3601, roles=frozenset({CENTER})))
    assert by_id(client_for(owner).get(NODES))["center-1"]["health"] == "up"


def test_it_forgets_no_node_while_the_beats_cannot_be_read(owner, cluster, settings):
    settings.LIVECENTER_NODE_FORGET_SECONDS = 60
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    cluster.now = T0 + 3600
    assert set(by_id(client_for(owner).get(NODES))) == {"center-1", "edge-1"}


def test_it_answers_only_the_signed_in(cluster):
    assert client_for().get(NODES).status_code == 401


def test_it_is_read_only(owner, cluster):
    assert client_for(owner).post(NODES, {}).status_code == 405


def test_it_reads_the_beats_from_redis(owner, redis_url, redis_node_id, registry_clock):
    beat_now(registry.registry(), a_beat(redis_node_id, streams=frozenset({MINE}), viewers=2))
    add_ingest(owner)
    registry_clock.now = T0 + 2
    row = by_id(client_for(owner).get(NODES))[redis_node_id]
    assert (row["health"], row["last_beat_age"], row["viewers"], row["streams"]) == ("up", 2.0, 2, [MINE])
    # The node is killed: its key expires (here at once) and the console
    # still knows when it last beat.
    redis.Redis.from_url(redis_url).delete(registry.REDIS_BEAT_PREFIX + redis_node_id)
    registry_clock.now = T0 + 9
    row = by_id(client_for(owner).get(NODES))[redis_node_id]
    assert (row["health"], row["last_beat_age"], row["viewers"]) == ("down", 9.0, None)


def test_it_shows_every_node_down_and_says_why_when_redis_is_unreachable(owner, cluster, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    response = client_for(owner).get(NODES)
    assert {row["health"] for row in by_id(response).values()} == {"down"}
