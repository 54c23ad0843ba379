"""The media node's beacon endpoint with real sockets (issue 19):
`POST /{app}/{stream}.beacon?auth_key=…` is taken with the auth_key of any
of the stream's playback URLs and refused with another domain's key,
another stream's, none; 413 past the size limit, 400 naming the field,
429 past a client's or a stream's rate; what is taken reaches the sink as
PlaybackReported rows with the viewer's region."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
from django.core.exceptions import ImproperlyConfigured

from livecenter.media.beacon import MAX_BEACON_BYTES, BeaconLimits, RegionTable
from livecenter.media.policy import DomainConfig, PlaybackReported
from livecenter.media.signing import sign
from nodes.medianode import node_config

from .mediasupport import INGEST, PLAY, PLAY_KEY, VALIDITY_SECONDS, NodeThread, default_policy, http_request

OTHER_PLAY = "other.test"
OTHER_KEY = "otherKey456"
BEACON = {
    "v": 1,
    "session": "abcdefgh12345678",
    "events": [
        {"type": "start", "protocol": "flv"},
        {"type": "first_frame", "protocol": "flv", "ttff_ms": 180},
        {"type": "watch", "protocol": "flv", "duration_ms": 10000},
        {"type": "stall", "protocol": "flv", "duration_ms": 400},
    ],
}


def two_domain_policy():
    """Two streaming domains of the same ingest domain, each its own key."""
    policy = default_policy()
    policy.domains[OTHER_PLAY] = DomainConfig(
        OTHER_PLAY, "streaming", True, (OTHER_KEY,), VALIDITY_SECONDS, ingest_domain=INGEST
    )
    return policy


def beacon_url(node: NodeThread, uri_suffix=".flv", stream="cam1", key=PLAY_KEY, domain=PLAY, signed_stream=None):
    token = sign(f"/live/{signed_stream or stream}{uri_suffix}", key, int(time.time()))
    return f"{node.http}/live/{stream}.beacon?auth_key={token}&domain={domain}"


def post(url: str, payload=BEACON, raw: bytes | None = None):
    data = raw if raw is not None else json.dumps(payload).encode()
    return http_request(url, body=data, content_type="text/plain")


@pytest.fixture
def node():
    node = NodeThread(
        two_domain_policy(),
        beacon_flush_seconds=3600,  # the tests flush themselves
        viewer_regions=RegionTable.parse("127.0.0.0/8,lab\n"),
    ).start()
    yield node
    node.stop()


def reports(node: NodeThread) -> list:
    node.run_sync(node.node.report_playback)
    node.wait_for(lambda: not node.node._events.qsize())
    return [e for e in node.sink.events if isinstance(e, PlaybackReported)]


@pytest.mark.parametrize("suffix", [".flv", ".m3u8", ""])
def test_it_takes_a_beacon_signed_like_any_playback_url(node, suffix):
    status, headers, _ = post(beacon_url(node, suffix))
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "*"
    [report] = reports(node)
    [row] = report.rows
    assert (row.key.domain, row.key.app, row.key.stream) == (INGEST, "live", "cam1")
    assert (row.streaming_domain, row.protocol, row.region) == (PLAY, "flv", "lab")
    assert (row.sessions, row.watch_ms, row.stalls, row.stall_ms, sum(row.ttff_counts)) == (1, 10000, 1, 400, 1)
    assert report.node_id == "test-node"


def test_it_answers_a_preflight(node):
    status, headers, _ = http_request(beacon_url(node), method="OPTIONS")
    assert status == 204
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in headers["Access-Control-Allow-Headers"]


@pytest.mark.parametrize(
    ("url_args", "reason"),
    [
        ({"key": OTHER_KEY}, "invalid md5hash"),  # another domain's key, sent to this one
        ({"domain": OTHER_PLAY}, "invalid md5hash"),  # this domain's key, sent to another
        ({"signed_stream": "cam2"}, "invalid md5hash"),  # another stream's URL
        ({"uri_suffix": ".whep"}, "invalid md5hash"),  # not a playback URI
        ({"domain": "nobody.test"}, "non-existent domain"),
        ({"domain": INGEST}, "not a streaming domain"),
    ],
)
def test_it_refuses_a_forged_beacon(node, url_args, reason):
    status, headers, _ = post(beacon_url(node, **url_args))
    assert (status, headers["X-LiveCenter-Error"]) == (403, reason)
    assert reports(node) == []


def test_it_refuses_a_beacon_without_auth_key(node):
    status, headers, _ = post(f"{node.http}/live/cam1.beacon?domain={PLAY}")
    assert (status, headers["X-LiveCenter-Error"]) == (403, "no auth_key")


def test_it_refuses_a_beacon_past_the_size_limit(node):
    data = json.dumps(BEACON).encode()
    at_limit = data[:-1] + b" " * (MAX_BEACON_BYTES - len(data)) + b"}"
    assert post(beacon_url(node), raw=at_limit)[0] == 204
    status, headers, _ = post(beacon_url(node), raw=at_limit[:-1] + b" }")
    assert status == 413
    assert headers["X-LiveCenter-Error"] == f"the body is longer than {MAX_BEACON_BYTES} bytes"
    [report] = reports(node)
    assert report.rows[0].watch_ms == 10000  # the one at the limit


def test_it_names_the_field_of_a_bad_beacon(node):
    bad = {**BEACON, "events": [{"type": "first_frame", "protocol": "flv", "ttff_ms": "fast"}]}
    status, headers, text = post(beacon_url(node), bad)
    assert status == 400
    assert headers["X-LiveCenter-Error"] == "events[0].ttff_ms: must be an integer from 0 to 600000"
    assert text.strip() == headers["X-LiveCenter-Error"]


def test_it_limits_a_clients_rate():
    node = NodeThread(default_policy(), beacon_flush_seconds=3600,
                      beacon_limits=BeaconLimits(client_per_second=0.001, client_burst=3)).start()  # fmt: skip
    try:
        assert [post(beacon_url(node))[0] for _ in range(3)] == [204, 204, 204]
        status, headers, _ = post(beacon_url(node))
        assert status == 429
        assert int(headers["Retry-After"]) > 0
        [row] = reports(node)[0].rows
        assert (row.sessions, row.watch_ms) == (1, 3 * 10000)  # one player session's three beacons
    finally:
        node.stop()


def test_it_limits_a_streams_rate_apart_from_other_streams():
    node = NodeThread(default_policy(), beacon_flush_seconds=3600,
                      beacon_limits=BeaconLimits(stream_per_second=0.001, stream_burst=2)).start()  # fmt: skip
    try:
        assert [post(beacon_url(node))[0] for _ in range(2)] == [204, 204]
        status, _, text = post(beacon_url(node))
        assert (status, text.strip()) == (429, "too many beacons for this stream")
        assert post(beacon_url(node, stream="cam2"))[0] == 204
    finally:
        node.stop()


def test_a_domain_without_signing_takes_beacons_as_it_plays_without():
    policy = default_policy()
    policy.domains[PLAY] = dataclasses.replace(policy.domains[PLAY], signing_keys=None)
    node = NodeThread(policy, beacon_flush_seconds=3600).start()
    try:
        assert post(f"{node.http}/live/cam1.beacon?domain={PLAY}")[0] == 204
        assert reports(node)[0].rows[0].region == "local"  # the built-in table
    finally:
        node.stop()


def test_the_node_reports_on_its_own_every_flush_interval():
    node = NodeThread(default_policy(), beacon_flush_seconds=0.2).start()
    try:
        assert post(beacon_url(node))[0] == 204
        assert node.wait_for(lambda: any(isinstance(e, PlaybackReported) for e in node.sink.events))
    finally:
        node.stop()


def test_the_region_table_and_flush_interval_come_from_the_settings(settings, tmp_path):
    table = tmp_path / "regions.csv"
    table.write_text("# CIDR,region\n198.51.100.0/24,eu-west\n198.51.100.0/28,eu-west-dub\n")
    settings.LIVECENTER_VIEWER_REGIONS = str(table)
    settings.LIVECENTER_BEACON_FLUSH_SECONDS = 2.5
    config = node_config()
    assert config.beacon_flush_seconds == 2.5
    assert config.viewer_regions.lookup("198.51.100.3") == "eu-west-dub"
    assert config.viewer_regions.lookup("198.51.100.99") == "eu-west"
    assert config.viewer_regions.lookup("127.0.0.1") == "unknown"
    settings.LIVECENTER_VIEWER_REGIONS = ""
    assert node_config().viewer_regions.lookup("127.0.0.1") == "local"


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "LIVECENTER_VIEWER_REGIONS: cannot read"), ("10.0.0.0/8,lan\n10.0.0/x,y\n", "line 2: '10.0.0/x'")],
)
def test_a_region_table_that_cannot_be_used_stops_the_node(settings, tmp_path, content, message):
    table = tmp_path / "regions.csv"
    if content is not None:
        table.write_text(content)
    settings.LIVECENTER_VIEWER_REGIONS = str(table)
    with pytest.raises(ImproperlyConfigured) as caught:
        node_config()
    assert message in str(caught.value)
