"""SRT in the console's monitoring (issue 13): the link figures of an SRT
publisher in the stored samples, on the stream's page and in the API, for
the owner only; refused SRT publishers kept for the troubleshooting tool,
which explains them and the link's latency and loss."""

from __future__ import annotations

import datetime as dt

import pytest
from asgiref.sync import async_to_sync

from domains import services as domain_services
from domains.models import Domain
from livecenter.media.policy import PublishRefused, SrtSessionStats, StreamKey, StreamPublished
from livecenter.media.signing import sign
from livecenter.media.srt.packets import SrtRejectReason
from livecenter.media.srt_server import REJECT_CONFLICT, REJECT_UNAUTHORIZED
from monitoring import services
from monitoring.models import PublishRefusal, StreamSample
from monitoring.troubleshoot import REFUSALS_WINDOW, check_url
from nodes.bridge import DatabaseEventSink
from streams.models import PublishSession
from tests.apisupport import client_for
from tests.monitoringsupport import record, record_seconds, stream_sample
from tests.streamsupport import add_pair, publish

pytestmark = pytest.mark.django_db

INGEST = "push.example.com"
STREAM_PAGE = "/monitoring/stream/"


def link(**fields) -> SrtSessionStats:
    values = {
        "socket_id": 11, "peer": "203.0.113.5:40000", "encrypted": True, "latency_ms": 400, "rtt_ms": 80.25,
        "rtt_var_ms": 6.5, "receive_buffer_packets": 120, "receive_buffer_ms": 390, "packets_received": 9000,
        "packets_lost": 12, "packets_retransmitted": 12, "packets_dropped": 0, "packets_received_per_second": 300.0,
        "packets_lost_per_second": 0.0, "packets_retransmitted_per_second": 0.0, "packets_dropped_per_second": 0.0,
    }  # fmt: skip
    return SrtSessionStats(**(values | fields))


def publish_srt(session_id: str = "s1", started_at: dt.datetime | None = None) -> PublishSession:
    started = started_at or dt.datetime.now(dt.UTC)
    event = StreamPublished(
        StreamKey(INGEST, "live", "cam1"), session_id, "srt", "203.0.113.5:40000",
        f"srt://{INGEST}?streamid=#!::h={INGEST},r=/live/cam1,m=publish", started.timestamp(), "node-1",
    )  # fmt: skip
    async_to_sync(DatabaseEventSink().published)(event)
    return PublishSession.objects.get(session_id=session_id)


def refuse(code: int, reason: str, at: dt.datetime | None = None, domain: str = INGEST) -> None:
    when = (at or dt.datetime.now(dt.UTC)).timestamp()
    event = PublishRefused(domain, "live", "cam1", "srt", "198.51.100.7:5000", reason, code, when, "node-1")
    async_to_sync(DatabaseEventSink().publish_refused)(event)


# --- storage, page, API --------------------------------------------------------------


def test_it_stores_the_srt_link_of_a_sample_and_none_for_rtmp(owner):
    add_pair(owner)
    record(stream_sample(srt=link()), stream_sample(stream="cam2", session_id="s2"))
    srt = StreamSample.objects.get(stream="cam1").srt
    assert srt["rtt_ms"] == 80.25 and srt["latency_ms"] == 400 and srt["encrypted"] is True
    assert srt["peer"] == "203.0.113.5:40000" and srt["packets_received_per_second"] == 300.0
    assert StreamSample.objects.get(stream="cam2").srt is None


def test_the_stream_page_shows_the_srt_panel_for_an_srt_stream(owner, client):
    add_pair(owner)
    publish_srt()
    record_seconds(3, srt=link())
    client.force_login(owner)
    r = client.get(STREAM_PAGE, {"domain": INGEST, "app": "live", "stream": "cam1"})
    html = r.content.decode()
    assert '<div class="card mb-3" id="srt-panel">' in html and '<div id="srt-charts">' in html
    assert 'id="srt-rtt-chart"' in html and 'id="srt-loss-chart"' in html
    assert r.context["history"][-1]["srt"]["rtt_ms"] == 80.25
    # Its troubleshooting link checks the SRT URL, SRT steps and all.
    srt = "srt%3A//push.example.com%3Fstreamid%3D%23%21%3A%3Ah%3Dpush.example.com%2Cr%3D/live/cam1%2Cm%3Dpublish"
    assert f"url={srt}" in html


def test_the_stream_page_hides_the_srt_panel_for_an_rtmp_stream(owner, client):
    add_pair(owner)
    publish(INGEST, "live", "cam1", "s1")
    record_seconds(3)
    client.force_login(owner)
    html = client.get(STREAM_PAGE, {"domain": INGEST, "app": "live", "stream": "cam1"}).content.decode()
    assert '<div class="card mb-3" id="srt-panel" hidden>' in html and '<div id="srt-charts" hidden>' in html
    assert "url=rtmp%3A//push.example.com/live/cam1" in html


def test_another_operator_sees_no_srt_figures(owner, outsider, client):
    add_pair(owner)
    publish_srt()
    record_seconds(3, srt=link())
    client.force_login(outsider)
    r = client.get(STREAM_PAGE, {"domain": INGEST, "app": "live", "stream": "cam1"})
    html = r.content.decode()
    assert "push.example.com is not one of your domains" in html and "srt-panel" not in html
    api = client_for(outsider).get("/api/v1/monitoring/stream-bitrate/", {"domain": INGEST, "app": "live",
                                                                         "stream": "cam1"})  # fmt: skip
    assert api.status_code == 400 and api.json()["domain"] == ["push.example.com is not one of your domains"]


def test_the_api_gives_the_srt_link_of_each_second(owner):
    add_pair(owner)
    record_seconds(2, srt=link(packets_lost_per_second=3.0))
    record(stream_sample(stream="cam2", session_id="s2"))
    api = client_for(owner)
    rows = api.get("/api/v1/monitoring/stream-bitrate/", {"domain": INGEST, "app": "live", "stream": "cam1"}).json()
    srt = rows["frame_rate_and_bit_rate_infos"][-1]["srt"]
    assert srt == {
        "peer": "203.0.113.5:40000", "encrypted": True, "latency_ms": 400, "rtt_ms": 80.25, "rtt_var_ms": 6.5,
        "receive_buffer_packets": 120, "receive_buffer_ms": 390, "packets_received_per_second": 300.0,
        "packets_lost_per_second": 3.0, "packets_retransmitted_per_second": 0.0, "packets_dropped_per_second": 0.0,
        "packets_received": 9000, "packets_lost": 12, "packets_retransmitted": 12, "packets_dropped": 0,
    }  # fmt: skip
    rtmp = api.get("/api/v1/monitoring/stream-bitrate/", {"domain": INGEST, "app": "live", "stream": "cam2"}).json()
    assert rtmp["frame_rate_and_bit_rate_infos"][-1]["srt"] is None


# --- refusals ------------------------------------------------------------------------


def test_it_keeps_refusals_of_known_domains_only_and_prunes_them(owner, settings):
    add_pair(owner)
    refuse(SrtRejectReason.BADSECRET, "wrong passphrase")
    refuse(REJECT_UNAUTHORIZED, "invalid md5hash", domain="nowhere.example.com")
    refuse(REJECT_UNAUTHORIZED, "no auth_key", domain="")
    assert list(PublishRefusal.objects.values_list("domain_name", "code", "reason")) == [
        (INGEST, SrtRejectReason.BADSECRET, "wrong passphrase")
    ]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=settings.LIVECENTER_MONITORING_RETENTION_HOURS, minutes=1)
    assert services.prune_refusals(later) == 1 and not PublishRefusal.objects.exists()


# --- the troubleshooting tool ---------------------------------------------------------


@pytest.fixture
def srt_url(owner):
    add_pair(owner)
    Domain.objects.update(cname_status="configured")
    return domain_services.generate_urls(owner, INGEST, "live", "cam1").ingest["srt"]


def steps(report) -> dict:
    return {s.name: s for s in report.steps}


def test_it_passes_a_healthy_srt_stream(owner, srt_url):
    publish_srt()
    record_seconds(10, srt=link())
    report = check_url(owner, srt_url)
    assert report.ok, [(s.name, s.status, s.reason) for s in report.steps]
    assert [s.name for s in report.steps][-3:] == ["refusals", "srt_latency", "srt_loss"]
    assert steps(report)["srt_latency"].reason == "latency 400 ms, round-trip time 80.2 ms (median of the last 10 s)"
    assert steps(report)["srt_loss"].status == "pass"


def test_an_rtmp_url_has_no_srt_steps(owner, srt_url):
    report = check_url(owner, "rtmp://push.example.com/live/cam1")
    assert not any(s.name.startswith("srt_") for s in report.steps)


@pytest.mark.parametrize(
    ("code", "reason", "says", "advice"),
    [
        (SrtRejectReason.BADSECRET, "wrong passphrase", "the publisher's passphrase is not push.example.com's",
         "Set passphrase="),
        (SrtRejectReason.UNSECURE, "caller sent no passphrase", "takes encrypted SRT only and the publisher sent no",
         "Add passphrase="),
        (SrtRejectReason.UNSECURE, "caller sent a passphrase we have none for",
         "the publisher encrypts, but push.example.com has no SRT passphrase", "Remove passphrase="),
        (REJECT_UNAUTHORIZED, "invalid md5hash", "the stream ID's signature failed: invalid md5hash",
         "md5hash is md5("),
        (1403, "stream is forbidden", "refused: stream is forbidden", "Forbidden streams"),
        (REJECT_CONFLICT, "stream is already being published", "another publisher was already publishing",
         "Stop the other encoder"),
    ],
    ids=["wrong passphrase", "no passphrase", "unwanted passphrase", "bad signature", "forbidden", "already live"],
)  # fmt: skip
def test_it_explains_the_last_srt_refusal(owner, srt_url, code, reason, says, advice):
    refuse(SrtRejectReason.BADSECRET, "wrong passphrase", at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2))
    refuse(code, reason)
    step = steps(check_url(owner, srt_url))["refusals"]
    assert step.status == "fail"
    assert (
        step.reason.startswith("2 SRT refusals in the last 15 min; the last at ")
        and "from 198.51.100.7:5000" in step.reason
    )
    assert says in step.reason and advice in step.advice


def test_old_refusals_and_those_before_going_live_do_not_fail(owner, srt_url):
    refuse(SrtRejectReason.BADSECRET, "wrong passphrase", at=dt.datetime.now(dt.UTC) - REFUSALS_WINDOW * 2)
    assert steps(check_url(owner, srt_url))["refusals"].status == "pass"
    refuse(SrtRejectReason.BADSECRET, "wrong passphrase", at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30))
    publish_srt()
    step = steps(check_url(owner, srt_url))["refusals"]
    assert step.status == "pass" and "before the stream went live" in step.reason
    # A second publisher refused while the stream is live is worth a warning.
    refuse(REJECT_CONFLICT, "stream is already being published")
    step = steps(check_url(owner, srt_url))["refusals"]
    assert step.status == "warn" and "another publisher was already publishing" in step.reason


@pytest.mark.parametrize(
    ("latency_ms", "rtt_ms", "status", "says"),
    [
        (120, 80.0, "fail", "the latency is only 1.5× the RTT"),
        (250, 80.0, "warn", "3.1× the RTT leaves room for about one retransmission"),
        (320, 80.0, "pass", "latency 320 ms, round-trip time 80.0 ms"),
    ],
)
def test_it_explains_a_latency_too_low_for_the_rtt(owner, srt_url, latency_ms, rtt_ms, status, says):
    publish_srt()
    record_seconds(10, srt=link(latency_ms=latency_ms, rtt_ms=rtt_ms))
    step = steps(check_url(owner, srt_url))["srt_latency"]
    assert step.status == status and says in step.reason
    if status != "pass":
        assert "at least 4× the RTT (here 320 ms or more)" in step.advice


@pytest.mark.parametrize(
    ("fields", "status", "says"),
    [
        ({"packets_dropped_per_second": 6.0, "packets_lost_per_second": 30.0}, "fail", "viewers see the gaps"),
        ({"packets_lost_per_second": 30.0, "packets_retransmitted_per_second": 30.0}, "warn", "the link is lossy"),
        ({"packets_lost_per_second": 1.0, "packets_retransmitted_per_second": 1.0}, "pass", "0.3% of packets lost"),
    ],
    ids=["dropping", "lossy", "fine"],
)
def test_it_explains_loss_and_drops(owner, srt_url, fields, status, says):
    publish_srt()
    record_seconds(10, srt=link(**fields))
    step = steps(check_url(owner, srt_url))["srt_loss"]
    assert step.status == status and says in step.reason


def test_it_skips_the_link_steps_of_a_stream_not_live_over_srt(owner, srt_url):
    assert steps(check_url(owner, srt_url))["srt_latency"].reason == "not checked: the stream is not live"
    publish(INGEST, "live", "cam1", "s1")
    record_seconds(5)
    assert steps(check_url(owner, srt_url))["srt_loss"].reason == "not checked: the stream is not live over SRT"


def test_it_runs_the_srt_steps_from_the_api(owner, srt_url):
    refuse(SrtRejectReason.BADSECRET, "wrong passphrase")
    body = client_for(owner).post("/api/v1/monitoring/troubleshoot/", {"url": srt_url}, format="json").json()
    step = next(s for s in body["steps"] if s["name"] == "refusals")
    assert step["status"] == "fail" and "passphrase" in step["reason"]


# --- SRT playback URLs (m=request) ----------------------------------------------------


@pytest.fixture
def srt_play_url(owner, srt_url):
    return domain_services.generate_urls(owner, INGEST, "live", "cam1").playback["srt"]


def test_it_checks_an_srt_playback_url_like_the_other_playback_urls(owner, srt_play_url):
    publish_srt()
    record_seconds(10, srt=link())
    report = check_url(owner, srt_play_url)
    assert report.ok and report.kind == "playback", [(s.name, s.status, s.reason) for s in report.steps]
    assert steps(report)["url"].reason == "SRT URL (m=request) of live/cam1 on play.example.com"
    assert steps(report)["association"].reason == (
        "playback URL; play.example.com plays streams pushed to push.example.com"
    )
    assert steps(report)["signature"].reason.startswith("signed for /live/cam1, valid until ")
    assert steps(report)["live"].status == "pass" and steps(report)["keyframes"].status == "pass"
    # The publisher's SRT link and refusals are the ingest URL's business.
    assert not {"refusals", "srt_latency", "srt_loss"} & set(steps(report))


def test_it_fails_an_srt_playback_url_signed_with_the_ingest_key(owner, srt_play_url):
    ingest_key = Domain.objects.get(domain_name=INGEST).auth_primary_key
    token = sign("/live/cam1", ingest_key, int(dt.datetime.now(dt.UTC).timestamp()))
    url = f"srt://play.example.com:1105?streamid=#!::h=play.example.com,r=/live/cam1?auth_key={token},m=request"
    report = check_url(owner, url)
    assert steps(report)["signature"].status == "fail"
    assert steps(report)["signature"].reason.startswith(
        "invalid md5hash: it matches neither key of play.example.com for the URI /live/cam1"
    )


def test_it_fails_an_srt_playback_url_of_a_stream_not_live(owner, srt_play_url):
    report = check_url(owner, srt_play_url)
    assert {s.name: s.reason for s in report.steps if s.status == "fail"} == {
        "live": "nobody is publishing push.example.com/live/cam1"
    }


def test_it_fails_an_srt_publish_to_the_streaming_domain(owner, srt_play_url):
    report = check_url(owner, srt_play_url.replace(",m=request", ",m=publish"))
    step = steps(report)["association"]
    assert step.status == "fail" and report.kind == "playback"
    assert step.reason == (
        "play.example.com is a streaming domain: it plays streams (SRT m=request), it does not take them"
    )
    assert step.advice.startswith("Push to push.example.com with its SRT URL")


@pytest.mark.parametrize("mode", [",m=request", ""], ids=["m=request", "no m="])
def test_it_fails_an_srt_request_to_play_from_the_ingest_domain(owner, srt_url, mode):
    report = check_url(owner, srt_url.replace(",m=publish", mode))
    step = steps(report)["association"]
    assert step.status == "fail" and report.kind == "playback"
    assert step.reason == "push.example.com is an ingest domain: it takes streams, it does not play them"
    assert step.advice.startswith("To publish, end the stream ID with m=publish.") and "play.example.com" in step.advice
    assert not {"refusals", "srt_latency", "srt_loss"} & set(steps(report))
