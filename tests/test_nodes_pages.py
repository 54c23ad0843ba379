"""The console's Nodes page (/nodes/)."""

from __future__ import annotations

import re

import pytest

from livecenter.media.cluster import ANY_REGION, CENTER, EDGE, NODE_DOWN_SECONDS
from nodes import registry
from tests.nodesupport import T0, a_beat, beat_now
from tests.pagesupport import add_ingest, assert_login_redirect, page

pytestmark = pytest.mark.django_db

NODES = "/nodes/"


def row_of(html: str, node_id: str) -> str:
    match = re.search(rf'<tr data-node="{re.escape(node_id)}".*?</tr>', html, re.S)
    assert match, f"no row for {node_id}"
    return match.group(0)


@pytest.fixture
def cluster(settings, owner, outsider, registry_clock):
    settings.REDIS_URL = ""
    add_ingest(owner)
    add_ingest(outsider, "theirs.example.com")
    store = registry.registry()
    streams = frozenset({"push.example.com/live/cam1", "theirs.example.com/live/x"})
    beat_now(store, a_beat("center-1", roles=frozenset({CENTER}), viewers=7, bitrate_in=4e6, bitrate_out=14.5e6,
                           load=0.3, streams=streams, https_port=443, rtmps_port=1936,
                           listen_host="0.0.0.0"))  # fmt: skip
    beat_now(store, a_beat("alone", roles=frozenset({CENTER, EDGE}), region=ANY_REGION))
    registry_clock.now = T0 + 1
    return registry_clock


def test_it_lists_the_nodes_with_health_load_and_what_they_carry(client, owner, cluster):
    client.force_login(owner)
    html = page(client.get(NODES))
    center = row_of(html, "center-1")
    assert 'data-health="up"' in center
    ports = "serves on 0.0.0.0, reached at 10.0.0.7: RTMP 1935, HTTP 8080, SRT 1105, HTTPS 443, RTMPS 1936"
    for words in ("Center", "Germany (Frankfurt)", "1 s ago", "30 %", "4.0 / 14.5", ">7<",
                  "push.example.com/live/cam1", ports):  # fmt: skip
        assert words in center, words
    assert "theirs.example.com" not in center  # another operator's stream
    assert re.search(r'class="text-end streams">2<', center)
    alone = row_of(html, "alone")
    assert "Center and edge" in alone and "every region" in alone and "HTTPS" not in alone
    # It is in the nav, and the page reloads itself to show changes.
    assert re.search(r'class="nav-link active" href="/nodes/">Nodes<', html)
    assert "location.reload()" in html


def test_it_shows_a_node_down_within_a_few_seconds_of_its_last_beat(client, owner, cluster):
    client.force_login(owner)
    cluster.now = T0 + NODE_DOWN_SECONDS + 1
    beat_now(registry.registry(), a_beat("alone", at=cluster.now, roles=frozenset({CENTER, EDGE}), region=ANY_REGION))
    html = page(client.get(NODES))
    center = row_of(html, "center-1")
    assert 'data-health="down"' in center and "6 s ago" in center
    assert "push.example.com/live/cam1" not in center and "30 %" not in center
    assert 'data-health="up"' in row_of(html, "alone")


def test_it_says_so_when_no_node_has_registered(client, owner, settings):
    settings.REDIS_URL = ""
    client.force_login(owner)
    assert 'id="no-nodes"' in page(client.get(NODES))


def test_it_warns_when_the_heartbeats_cannot_be_read(client, owner, cluster, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    client.force_login(owner)
    html = page(client.get(NODES))
    assert 'id="nodes-problem"' in html and "every node is shown down" in html
    assert 'data-health="up"' not in html


def test_it_sends_the_signed_out_to_the_login_page(client):
    assert_login_redirect(client.get(NODES), NODES)
