"""Viewers' playback quality in monitoring (issue 19): a node's
PlaybackReported reaches rows through the bridge, later reports of the
same minute add up, stall_ratio and the summary give exact figures, the
API and the pages show them to the owner only, and pruning keeps the
samples' retention."""

from __future__ import annotations

import datetime as dt

import pytest
from asgiref.sync import async_to_sync
from django.test import override_settings

from livecenter.media.beacon import LATENCY_BUCKETS_MS, TTFF_BUCKETS_MS
from livecenter.media.policy import PlaybackReported, PlaybackRow, StreamKey
from monitoring import playback
from monitoring.models import PlaybackReport
from nodes.bridge import DatabaseEventSink
from tests.apisupport import client_for
from tests.streamsupport import add_pair

pytestmark = pytest.mark.django_db

KEY = StreamKey("push.example.com", "live", "cam1")
T0 = dt.datetime(2026, 5, 1, 10, 0, tzinfo=dt.UTC)
API = "/api/v1/monitoring/playback-quality/"


def ttff(*values_ms: int) -> tuple[int, ...]:
    counts = [0] * (len(TTFF_BUCKETS_MS) + 1)
    for value in values_ms:
        counts[next((i for i, b in enumerate(TTFF_BUCKETS_MS) if value <= b), len(TTFF_BUCKETS_MS))] += 1
    return tuple(counts)


def row(minute=T0, key=KEY, protocol="flv", region="local", **fields) -> PlaybackRow:
    values = {
        "sessions": 1, "ttff_counts": ttff(), "stalls": 0, "stall_ms": 0, "watch_ms": 0, "bitrate_switches": 0,
        "fallbacks": {}, "errors": {}, "latency_counts": (0,) * (len(LATENCY_BUCKETS_MS) + 1),
    }  # fmt: skip
    values.update(fields)
    return PlaybackRow(int(minute.timestamp()), key, "play.example.com", protocol, region, **values)


def report(*rows: PlaybackRow, node_id="node-1") -> None:
    async_to_sync(DatabaseEventSink().playback_reported)(PlaybackReported(node_id, T0.timestamp(), rows))


def test_a_nodes_reports_of_one_minute_add_up():
    report(row(stalls=1, stall_ms=500, watch_ms=10_000, ttff_counts=ttff(250), fallbacks={"rts>flv": 1}))
    report(row(stalls=2, stall_ms=1500, watch_ms=10_000, ttff_counts=ttff(900), fallbacks={"rts>flv": 1},
               errors={"network": 1}))  # fmt: skip
    report(row(stalls=1, stall_ms=100, watch_ms=1000), node_id="node-2")  # its own row
    [mine, other] = PlaybackReport.objects.order_by("node_id")
    assert (mine.node_id, mine.sessions, mine.stalls, mine.stall_ms, mine.watch_ms) == ("node-1", 2, 3, 2000, 20_000)
    assert mine.fallbacks == {"rts>flv": 2} and mine.errors == {"network": 1}
    assert list(mine.ttff_counts) == list(ttff(250, 900))
    assert (mine.minute, mine.streaming_domain, mine.protocol, mine.region) == (T0, "play.example.com", "flv", "local")
    assert other.node_id == "node-2"


def test_stall_ratio_is_stall_time_over_watch_time():
    report(
        row(stall_ms=1000, watch_ms=10_000),
        row(minute=T0 + dt.timedelta(minutes=1), stall_ms=3000, watch_ms=10_000, protocol="hls"),
        row(key=StreamKey("push.example.com", "live", "cam2"), stall_ms=0, watch_ms=20_000),
        row(key=StreamKey("push.example.com", "other", "cam1"), stall_ms=9000, watch_ms=10_000),
    )
    end = T0 + dt.timedelta(minutes=5)
    assert playback.stall_ratio("push.example.com", "live", "cam1", T0, end) == pytest.approx(0.2)
    assert playback.stall_ratio("push.example.com", "live", None, T0, end) == pytest.approx(4000 / 40_000)
    assert playback.stall_ratio("push.example.com", None, None, T0, end) == pytest.approx(13_000 / 50_000)
    # by the streaming domain that played it, too
    assert playback.stall_ratio("play.example.com", "live", "cam1", T0, end) == pytest.approx(0.2)
    # [since, until): the second minute alone
    assert playback.stall_ratio("push.example.com", "live", "cam1", T0 + dt.timedelta(minutes=1), end) == 0.3
    assert playback.stall_ratio("push.example.com", "live", "cam9", T0, end) is None
    assert playback.stall_ratio("push.example.com", "live", "cam1", T0 - dt.timedelta(hours=1), T0) is None


def test_the_summary_gives_percentiles_fallbacks_and_breakdowns():
    latency = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    latency[LATENCY_BUCKETS_MS.index(500)] = 3
    report(
        row(protocol="rts", sessions=4, ttff_counts=ttff(90, 150, 280, 280), fallbacks={"rts>flv": 1},
            errors={"timeout": 1}, watch_ms=30_000, latency_counts=tuple(latency)),
        row(protocol="flv", region="apac", sessions=1, ttff_counts=ttff(2500), stall_ms=2000, stalls=1,
            watch_ms=10_000),
    )  # fmt: skip
    summary = playback.summary(playback.rows("push.example.com", "live", "cam1", T0, T0 + dt.timedelta(minutes=1)))
    total = summary["total"]
    assert (total["sessions"], total["watch_seconds"], total["stall_seconds"], total["stall_ratio"]) == (5, 40, 2, 0.05)
    assert (total["ttff_ms"]["count"], total["ttff_ms"]["p50"], total["ttff_ms"]["p90"]) == (5, 300, 3000)
    assert total["ttff_ms"]["buckets"][0] == {"le": 100, "count": 1}
    assert total["ttff_ms"]["buckets"][-1] == {"le": None, "count": 0}
    assert total["latency_p50_ms"] == 500
    assert total["fallbacks"] == {"rts>flv": 1} and total["errors"] == {"timeout": 1}
    assert sorted(summary["by_protocol"]) == ["flv", "rts"]
    assert summary["by_protocol"]["flv"]["stall_ratio"] == 0.2
    assert summary["by_protocol"]["rts"]["stall_ratio"] == 0
    assert sorted(summary["by_region"]) == ["apac", "local"]
    assert summary["by_region"]["apac"]["ttff_ms"]["p50"] == 3000


def test_the_api_gives_the_owner_a_streams_playback_quality(owner, outsider):
    add_pair(owner)
    report(row(minute=T0, stall_ms=500, watch_ms=10_000, ttff_counts=ttff(250)))
    query = {"domain": "play.example.com", "app": "live", "stream": "cam1",
             "start_time": "2026-05-01T10:00:30Z", "end_time": "2026-05-01T10:30:00Z"}  # fmt: skip
    r = client_for(owner).get(API, query)
    assert r.status_code == 200, r.content
    body = r.json()
    assert (body["domain"], body["app"], body["stream"]) == ("push.example.com", "live", "cam1")
    assert body["total"]["stall_ratio"] == 0.05
    assert body["total"]["ttff_ms"]["p50"] == 300
    assert body["by_protocol"]["flv"]["sessions"] == 1
    # the whole domain
    assert client_for(owner).get(API, {"domain": "push.example.com", **{k: query[k] for k in ("start_time",
                                 "end_time")}}).json()["total"]["sessions"] == 1  # fmt: skip
    r = client_for(outsider).get(API, query)
    assert r.status_code == 400 and "domain" in r.json()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"stream": "cam1"}, "app"),
        ({"start_time": "2026-05-01T10:00:00Z", "end_time": "2026-05-03T10:00:00Z"}, "end_time"),
        ({"start_time": "2026-05-01T10:00:00Z", "end_time": "2026-05-01T09:00:00Z"}, "end_time"),
        ({"app": "bad name!"}, "app"),
    ],
)
def test_the_api_names_the_field_of_a_bad_query(owner, query, field):
    add_pair(owner)
    r = client_for(owner).get(API, {"domain": "push.example.com", **query})
    assert r.status_code == 400
    assert field in r.json(), r.json()


def test_the_pages_carry_the_playback_panel(owner):
    add_pair(owner)
    client = client_for(owner)
    client.force_login(owner)
    stream_page = client.get("/monitoring/stream/", {"domain": "push.example.com", "app": "live", "stream": "cam1"})
    domain_page = client.get("/monitoring/", {"domain": "push.example.com"})
    for page in (stream_page, domain_page):
        assert page.status_code == 200
        assert b'id="playback-panel"' in page.content
        assert b"js/playback.js" in page.content
    assert b"app=live&amp;stream=cam1" in stream_page.content


@override_settings(LIVECENTER_MONITORING_RETENTION_HOURS=24)
def test_rows_go_with_the_samples_retention():
    report(row(minute=T0 - dt.timedelta(hours=25)), row(minute=T0 - dt.timedelta(hours=23)))
    assert playback.prune(now=T0) == 1
    assert PlaybackReport.objects.count() == 1
