"""The monitoring API (/api/v1/monitoring/): DescribeLiveDomainFrameRateAndBitRateData,
DescribeLiveStreamBitRateData, DescribeLiveDomainOnlineUserNum, and the
Prometheus text endpoint, each for the owner only."""

from __future__ import annotations

import datetime as dt

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitoring import services
from tests.apisupport import client_for
from tests.monitoringsupport import record, record_seconds, stream_sample
from tests.streamsupport import add_pair

pytestmark = pytest.mark.django_db

BASE = "/api/v1/monitoring/"
T0 = dt.datetime(2026, 5, 1, 10, 0, 0, tzinfo=dt.UTC)


def iso(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_it_gives_every_stream_of_a_domain_at_a_query_time(owner):
    add_pair(owner)
    record(stream_sample(at=T0, video_frame_rate=29.5), stream_sample(stream="cam2", session_id="s2", at=T0))
    record(stream_sample(at=T0 + dt.timedelta(seconds=1), video_frame_rate=30.0))
    r = client_for(owner).get(BASE + "frame-rate-and-bitrate/", {"domain": "play.example.com", "query_time": iso(T0)})
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["domain_name"] == "push.example.com" and body["query_time"] == "2026-05-01T10:00:00Z"
    assert body["frame_rate_and_bit_rate_infos"][0] == {
        "stream_url": "rtmp://push.example.com/live/cam1",
        "time": "2026-05-01T10:00:00Z",
        "video_frame_rate": 29.5,
        "audio_frame_rate": 43.07,
        "bit_rate": 266_000.0,  # bytes per second, as the reference has it
    }
    assert [i["stream_url"] for i in body["frame_rate_and_bit_rate_infos"]] == [
        "rtmp://push.example.com/live/cam1",
        "rtmp://push.example.com/live/cam2",
    ]
    later = client_for(owner).get(
        BASE + "frame-rate-and-bitrate/",
        {"domain": "push.example.com", "query_time": iso(T0 + dt.timedelta(seconds=1))},
    )
    cam1 = [i for i in later.json()["frame_rate_and_bit_rate_infos"] if i["stream_url"].endswith("cam1")]
    assert cam1[0]["video_frame_rate"] == 30.0


def test_it_leaves_out_streams_with_no_recent_sample(owner):
    add_pair(owner)
    record(stream_sample(at=T0))
    r = client_for(owner).get(
        BASE + "frame-rate-and-bitrate/",
        {"domain": "push.example.com", "query_time": iso(T0 + dt.timedelta(minutes=1))},
    )
    assert r.json()["frame_rate_and_bit_rate_infos"] == []


def test_it_gives_one_streams_series_over_a_range(owner):
    add_pair(owner)
    record_seconds(10, end=T0 + dt.timedelta(seconds=9), bframes=True)
    r = client_for(owner).get(
        BASE + "stream-bitrate/",
        {
            "domain": "push.example.com",
            "app": "live",
            "stream": "cam1",
            "start_time": iso(T0 + dt.timedelta(seconds=2)),
            "end_time": iso(T0 + dt.timedelta(seconds=6)),
        },
    )
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["stream_url"] == "rtmp://push.example.com/live/cam1"
    rows = body["frame_rate_and_bit_rate_infos"]
    assert [row["time"] for row in rows] == [iso(T0 + dt.timedelta(seconds=s)) for s in (2, 3, 4, 5)]
    assert rows[0]["video_bit_rate"] == 2_000_000 and rows[0]["audio_bit_rate"] == 128_000
    assert rows[0]["bframes"] is True and rows[0]["viewers"] == {"flv": 2, "rtmp": 1}
    assert rows[0]["bit_rate_out"] == {"flv": 4_256_000, "rtmp": 2_128_000}


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ({"start_time": "2026-05-01T11:00:00Z", "end_time": "2026-05-01T10:00:00Z"}, "end_time", "after the start"),
        ({"start_time": "2026-05-01T08:00:00Z", "end_time": "2026-05-01T10:00:00Z"}, "end_time", "60 minutes"),
        ({"stream": "bad name"}, "stream", "letters, digits"),
        ({"start_time": "yesterday"}, "start_time", "Datetime"),
    ],
)
def test_it_names_the_field_of_a_bad_range(owner, query, field, message):
    add_pair(owner)
    params = {"domain": "push.example.com", "app": "live", "stream": "cam1", **query}
    r = client_for(owner).get(BASE + "stream-bitrate/", params)
    assert r.status_code == 400
    assert message in " ".join(r.json()[field])


def test_it_counts_online_users_per_stream_on_the_streaming_domain(owner):
    add_pair(owner)
    record(
        stream_sample(at=T0, viewers={"flv": 3, "hls": 2}),
        stream_sample(stream="cam2", session_id="s2", at=T0, viewers={}),
    )
    r = client_for(owner).get(BASE + "online-users/", {"domain": "push.example.com", "query_time": iso(T0)})
    assert r.status_code == 200, r.content
    body = r.json()
    assert (body["domain_name"], body["stream_count"], body["user_count"]) == ("play.example.com", 2, 5)
    assert body["online_user_info"][0] == {
        "app_name": "live",
        "stream_name": "cam1",
        "infos": [{"transcode_template": "", "user_number": 5}],
        "protocols": {"flv": 3, "hls": 2},
    }


def record_relayed_stream() -> None:
    """cam1 published on edge-a (2.128 Mbit/s in), relayed to the center,
    pulled by edge-b; each node samples it with its own viewers."""
    record(stream_sample(at=T0, viewers={"flv": 3}, bitrate_out={"flv": 6e6}, relay_bitrate_out=2e6), node_id="edge-a")
    record(stream_sample(at=T0, viewers={"rts": 1}, bitrate_out={"rts": 2e6}, upstream_node="edge-a",
                         relay_bitrate_out=2e6, video_bitrate=1_990_000.0), node_id="center")  # fmt: skip
    record(stream_sample(at=T0, viewers={"flv": 4}, bitrate_out={"flv": 8e6}, upstream_node="center"), node_id="edge-b")


def test_it_adds_up_a_relayed_streams_viewers_on_every_node_and_counts_it_once(owner):
    add_pair(owner)
    record_relayed_stream()
    query = {"domain": "push.example.com", "query_time": iso(T0)}
    users = client_for(owner).get(BASE + "online-users/", query).json()
    assert (users["stream_count"], users["user_count"]) == (1, 8)
    assert users["online_user_info"][0]["protocols"] == {"flv": 7, "rts": 1}
    [rates] = client_for(owner).get(BASE + "frame-rate-and-bitrate/", query).json()["frame_rate_and_bit_rate_infos"]
    assert rates["bit_rate"] == 266_000.0  # the publisher's node's measure (bytes/s), not the center's
    view = services.domain_view(owner, "push.example.com", now=T0)
    assert (view.bitrate_in, view.bitrate_out, view.users) == (2_128_000, 16e6, 8)


@pytest.mark.parametrize("path", ["frame-rate-and-bitrate/", "online-users/", "stream-bitrate/"])
def test_it_hides_another_operators_domain(owner, outsider, path):
    add_pair(owner)
    record(stream_sample())
    query = {"domain": "push.example.com"}
    if path == "stream-bitrate/":
        query |= {"app": "live", "stream": "cam1"}
    r = client_for(outsider).get(BASE + path, query)
    assert r.status_code == 400
    assert r.json()["domain"] == ["push.example.com is not one of your domains"]


@pytest.mark.parametrize("path", ["frame-rate-and-bitrate/", "online-users/", "stream-bitrate/", "metrics/"])
def test_it_asks_for_authentication(path):
    assert client_for().get(BASE + path).status_code == 401


def test_it_exposes_live_streams_to_prometheus(owner, outsider):
    add_pair(owner)
    add_pair(outsider, "push.other.com", "play.other.com")
    record(stream_sample(bframes=True, keyframe_interval_ms=2000))
    record(stream_sample(domain="push.other.com"))
    r = client_for(owner).get(BASE + "metrics/")
    assert r.status_code == 200
    assert r["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(r.content.decode())}
    labels = {"domain": "push.example.com", "app": "live", "stream": "cam1", "node": "node-1"}

    def value(name, **extra):
        [sample] = [s for s in families[name].samples if s.labels == {**labels, **extra}]
        return sample.value

    assert families["livecenter_stream_video_frame_rate"].type == "gauge"
    assert value("livecenter_stream_video_frame_rate") == 30
    assert value("livecenter_stream_in_bits_per_second", track="video") == 2_000_000
    assert value("livecenter_stream_keyframe_interval_seconds") == 2
    assert value("livecenter_stream_bframes") == 1
    assert value("livecenter_stream_viewers", protocol="flv") == 2
    assert value("livecenter_stream_out_bits_per_second", protocol="rtmp") == 2_128_000
    # Only the operator's own streams.
    assert all(s.labels["domain"] == "push.example.com" for f in families.values() for s in f.samples)


def test_it_exposes_a_relayed_stream_once_and_each_nodes_viewers(owner):
    # A stream published on an edge, relayed to a center, pulled by a second
    # edge: each node samples it, and only the edge's ingest is the stream's.
    add_pair(owner)
    record(stream_sample(viewers={"flv": 2}, bitrate_out={"flv": 4e6}, relay_bitrate_out=2e6), node_id="edge-a")
    record(stream_sample(viewers={"rts": 1}, bitrate_out={"rts": 2e6}, upstream_node="edge-a",
                         relay_bitrate_out=2e6), node_id="center")  # fmt: skip
    record(stream_sample(viewers={"flv": 5}, bitrate_out={"flv": 1e7}, upstream_node="center"), node_id="edge-b")
    families = {f.name: f for f in text_string_to_metric_families(metrics(owner))}

    def series(name):
        return {(s.labels["node"], s.labels.get("protocol") or s.labels.get("track")): s.value
                for s in families[name].samples}  # fmt: skip

    assert series("livecenter_stream_in_bits_per_second") == {("edge-a", "video"): 2e6, ("edge-a", "audio"): 128e3}
    assert series("livecenter_stream_viewers") == {("edge-a", "flv"): 2, ("center", "rts"): 1, ("edge-b", "flv"): 5}
    assert sum(series("livecenter_stream_out_bits_per_second").values()) == 16e6  # the relays are nobody's viewers


def metrics(owner) -> str:
    return client_for(owner).get(BASE + "metrics/").content.decode()


def test_it_exposes_an_empty_but_valid_text_with_nothing_live(owner):
    r = client_for(owner).get(BASE + "metrics/")
    families = list(text_string_to_metric_families(r.content.decode()))
    assert families and not any(f.samples for f in families)


def test_it_describes_the_operations_in_the_schema(owner):
    schema = client_for(owner).get("/api/v1/schema/", {"format": "json"}).json()
    for path in ("frame-rate-and-bitrate/", "stream-bitrate/", "online-users/", "metrics/", "troubleshoot/"):
        assert f"/api/v1/monitoring/{path}" in schema["paths"]
