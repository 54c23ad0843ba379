"""WHIP in the console's monitoring (issue 17): the WebRTC link figures of a
WHIP publisher in the stored samples, over the live pages' channel layer,
on the stream's page and in the API, for the owner only; refused WHIP
publishers explained by the troubleshooting tool, with the link's
connection, round trip and loss."""

from __future__ import annotations

import asyncio
import datetime as dt
from urllib.parse import urlsplit

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from domains import services as domain_services
from domains.models import Domain
from livecenter.media.policy import PublishRefused, StreamKey, StreamPublished, WhipSessionStats
from monitoring import live
from monitoring.models import StreamSample
from monitoring.troubleshoot import WHIP_LOSS_WAIT_MS, check_url
from nodes.bridge import DatabaseEventSink
from streams.models import PublishSession
from tests.apisupport import client_for
from tests.monitoringsupport import record, record_seconds, stream_sample
from tests.streamsupport import add_pair, publish

pytestmark = pytest.mark.django_db

INGEST = "push.example.com"
KEY = StreamKey(INGEST, "live", "cam1")
STREAM_PAGE = "/monitoring/stream/"
API = "/api/v1/monitoring/stream-bitrate/"


def link(**fields) -> WhipSessionStats:
    values = {
        "session_id": "w1", "peer": "203.0.113.9:51000", "video_codec": "H264", "audio_codec": "opus",
        "connection_state": "connected", "rtt_ms": 42.5, "jitter_ms": 3.25, "packets_received": 12000,
        "packets_lost": 30, "nacks_sent": 25, "keyframe_requests": 4, "frames_lost": 0,
        "packets_received_per_second": 250.0, "packets_lost_per_second": 0.0, "nacks_sent_per_second": 0.0,
    }  # fmt: skip
    return WhipSessionStats(**(values | fields))


def publish_whip(session_id: str = "s1") -> PublishSession:
    started = dt.datetime.now(dt.UTC).timestamp()
    url = f"http://{INGEST}/live/cam1.whip"
    event = StreamPublished(KEY, session_id, "whip", "203.0.113.9:51000", url, started, "node-1")
    async_to_sync(DatabaseEventSink().published)(event)
    return PublishSession.objects.get(session_id=session_id)


def refuse(code: int, reason: str, at: dt.datetime | None = None) -> None:
    when = (at or dt.datetime.now(dt.UTC)).timestamp()
    event = PublishRefused(INGEST, "live", "cam1", "whip", "198.51.100.7:60000", reason, code, when, "node-1")
    async_to_sync(DatabaseEventSink().publish_refused)(event)


# --- storage, channel layer, page, API -----------------------------------------------


def test_it_stores_the_whip_link_of_a_sample_and_none_for_rtmp(owner):
    add_pair(owner)
    record(stream_sample(whip=link()), stream_sample(stream="cam2", session_id="s2"))
    whip = StreamSample.objects.get(stream="cam1").whip
    assert whip["rtt_ms"] == 42.5 and whip["connection_state"] == "connected" and whip["nacks_sent"] == 25
    assert (whip["video_codec"], whip["audio_codec"], whip["peer"]) == ("H264", "opus", "203.0.113.9:51000")
    assert StreamSample.objects.get(stream="cam2").whip is None
    assert StreamSample.objects.get(stream="cam1").srt is None


@pytest.mark.django_db(transaction=True)
def test_it_sends_the_whip_link_to_the_stream_page_over_the_channel_layer(owner):
    add_pair(owner)
    sample = stream_sample(whip=link(jitter_ms=3.14159))

    async def run():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(live.stream_group(KEY), channel)
        try:
            await asyncio.get_running_loop().run_in_executor(None, record, sample)
            return await asyncio.wait_for(layer.receive(channel), 10)
        finally:
            await layer.group_discard(live.stream_group(KEY), channel)

    message = asyncio.run(run())
    whip = message["sample"]["whip"]
    assert whip["jitter_ms"] == 3.14 and whip["connection_state"] == "connected"
    assert message["sample"]["srt"] is None
    # The page's opening history says the same as the live feed.
    assert live.row_sample_json(StreamSample.objects.get())["whip"] == whip


def test_the_stream_page_shows_the_whip_panel_for_a_whip_stream(owner, client):
    add_pair(owner)
    publish_whip()
    record_seconds(3, whip=link())
    client.force_login(owner)
    r = client.get(STREAM_PAGE, {"domain": INGEST, "app": "live", "stream": "cam1"})
    html = r.content.decode()
    assert '<div class="card mb-3" id="whip-panel">' in html and '<div id="whip-charts">' in html
    assert "WebRTC link (WHIP)" in html and 'id="whip-rtt-chart"' in html and 'id="whip-loss-chart"' in html
    assert '<div class="card mb-3" id="srt-panel" hidden>' in html
    assert r.context["history"][-1]["whip"]["rtt_ms"] == 42.5
    # Its troubleshooting link checks the WHIP URL, WHIP steps and all.
    assert "url=http%3A//push.example.com/live/cam1.whip" in html


def test_the_stream_page_hides_the_whip_panel_for_an_rtmp_stream(owner, client):
    add_pair(owner)
    publish(INGEST, "live", "cam1", "s1")
    record_seconds(3)
    client.force_login(owner)
    html = client.get(STREAM_PAGE, {"domain": INGEST, "app": "live", "stream": "cam1"}).content.decode()
    assert '<div class="card mb-3" id="whip-panel" hidden>' in html and '<div id="whip-charts" hidden>' in html


def test_another_operator_sees_no_whip_figures(owner, outsider, client):
    add_pair(owner)
    publish_whip()
    record_seconds(3, whip=link())
    client.force_login(outsider)
    html = client.get(STREAM_PAGE, {"domain": INGEST, "app": "live", "stream": "cam1"}).content.decode()
    assert "push.example.com is not one of your domains" in html and "whip-panel" not in html
    api = client_for(outsider).get(API, {"domain": INGEST, "app": "live", "stream": "cam1"})
    assert api.status_code == 400 and api.json()["domain"] == ["push.example.com is not one of your domains"]


def test_the_api_gives_the_whip_link_of_each_second(owner):
    add_pair(owner)
    record_seconds(2, whip=link(packets_lost_per_second=2.0, nacks_sent_per_second=1.5))
    record(stream_sample(stream="cam2", session_id="s2"))
    api = client_for(owner)
    rows = api.get(API, {"domain": INGEST, "app": "live", "stream": "cam1"}).json()
    assert rows["frame_rate_and_bit_rate_infos"][-1]["whip"] == {
        "session_id": "w1", "peer": "203.0.113.9:51000", "video_codec": "H264", "audio_codec": "opus",
        "connection_state": "connected", "rtt_ms": 42.5, "jitter_ms": 3.25, "packets_received_per_second": 250.0,
        "packets_lost_per_second": 2.0, "nacks_sent_per_second": 1.5, "packets_received": 12000, "packets_lost": 30,
        "nacks_sent": 25, "keyframe_requests": 4, "frames_lost": 0,
    }  # fmt: skip
    assert rows["frame_rate_and_bit_rate_infos"][-1]["srt"] is None
    rtmp = api.get(API, {"domain": INGEST, "app": "live", "stream": "cam2"}).json()
    assert rtmp["frame_rate_and_bit_rate_infos"][-1]["whip"] is None


def test_the_api_schema_documents_the_whip_link(owner):
    schema = client_for(owner).get("/api/v1/schema/", {"format": "json"}).json()
    fields = schema["components"]["schemas"]["WhipLink"]["properties"]
    assert fields["nacks_sent_per_second"]["description"] == "Packets the node asked for again (RTCP NACK)."
    assert "WHIP" in schema["components"]["schemas"]["StreamBitRateInfo"]["properties"]["whip"]["description"]


# --- the troubleshooting tool ---------------------------------------------------------


@pytest.fixture
def whip_url(owner):
    """The WHIP URL as the URL generator signs it: over /{app}/{stream}, the artc:// form's token."""
    add_pair(owner)
    Domain.objects.update(cname_status="configured")
    token = urlsplit(domain_services.generate_urls(owner, INGEST, "live", "cam1").ingest["rts"]).query
    return f"http://{INGEST}:8080/live/cam1.whip?{token}"


def steps(report) -> dict:
    return {s.name: s for s in report.steps}


def test_it_passes_a_healthy_whip_stream(owner, whip_url):
    publish_whip()
    record_seconds(10, whip=link())
    report = check_url(owner, whip_url)
    assert report.ok, [(s.name, s.status, s.reason) for s in report.steps]
    assert report.kind == "ingest" and steps(report)["url"].reason == "WHIP URL of live/cam1 on push.example.com"
    assert steps(report)["signature"].reason.startswith("signed for /live/cam1, valid until ")
    assert [s.name for s in report.steps][-4:] == ["refusals", "whip_connection", "whip_rtt", "whip_loss"]
    assert steps(report)["whip_connection"].reason == "connected from 203.0.113.9:51000, sending H264 and opus"
    assert steps(report)["whip_rtt"].reason == "round-trip time 42.5 ms (median of the last 10 s)"
    assert steps(report)["whip_loss"].reason == "0.0% of packets lost, 0 asked for again (NACK) in the last 10 s"


def test_an_artc_ingest_url_is_checked_as_whip(owner, whip_url):
    refuse(406, "the offer's audio has no Opus (the audio a WHIP publisher may send)")
    artc = domain_services.generate_urls(owner, INGEST, "live", "cam1").ingest["rts"]
    step = steps(check_url(owner, artc))["refusals"]
    assert step.status == "fail" and step.reason.startswith("1 WHIP refusal in the last 15 min")


def test_an_rtmp_url_has_no_whip_steps(owner, whip_url):
    refuse(406, "the offer's audio has no Opus (the audio a WHIP publisher may send)")
    report = check_url(owner, "rtmp://push.example.com/live/cam1")
    assert not any(s.name.startswith("whip_") for s in report.steps)
    assert steps(report)["refusals"].status == "pass"  # WHIP's refusals are the WHIP URL's


@pytest.mark.parametrize(
    ("code", "reason", "says", "advice"),
    [
        (403, "invalid md5hash", "the URL's signature failed: invalid md5hash", "md5hash is md5("),
        (403, "stream is forbidden", "refused: stream is forbidden", "Forbidden streams"),
        (409, "stream is already being published", "another publisher was already publishing",
         "silent for 10 s"),
        (406, "the offer's video has neither H.264 nor VP8 (the codecs a WHIP publisher may send)",
         "the publisher's offer has no codec the node takes: the offer's video has neither", "Send H.264"),
        (415, "the offer must be application/sdp", "the publisher's SDP offer was refused: the offer must be"
         " application/sdp (HTTP 415)", "POSTs its SDP offer as application/sdp"),
        (404, "not an ingest domain", "the URL names no ingest domain of yours", "Copy the WHIP URL"),
    ],
    ids=["bad signature", "forbidden", "already live", "no codec", "not sdp", "not ingest"],
)  # fmt: skip
def test_it_explains_the_last_whip_refusal(owner, whip_url, code, reason, says, advice):
    refuse(403, "invalid md5hash", at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2))
    refuse(code, reason)
    step = steps(check_url(owner, whip_url))["refusals"]
    assert step.status == "fail"
    assert step.reason.startswith("2 WHIP refusals in the last 15 min; the last at ")
    assert "from 198.51.100.7:60000" in step.reason
    assert says in step.reason and advice in step.advice


def test_a_whip_refusal_while_live_is_a_warning(owner, whip_url):
    publish_whip()
    refuse(409, "stream is already being published")
    step = steps(check_url(owner, whip_url))["refusals"]
    assert step.status == "warn" and "the stream is live, but a WHIP publisher was refused" in step.reason


def test_it_fails_a_whip_publish_to_the_streaming_domain(owner, whip_url):
    report = check_url(owner, whip_url.replace(INGEST, "play.example.com"))
    step = steps(report)["association"]
    assert step.status == "fail" and report.kind == "playback"
    assert step.reason == "play.example.com is a streaming domain: it plays streams (WHEP), it does not take them"
    assert step.advice.startswith("Push to push.example.com with its WHIP URL")


def test_it_fails_a_publisher_that_never_connected(owner, whip_url):
    publish_whip()
    record_seconds(5, whip=link(connection_state="connecting", rtt_ms=0.0, packets_received=0))
    report = check_url(owner, whip_url)
    step = steps(report)["whip_connection"]
    assert step.status == "fail" and "the WebRTC connection is connecting" in step.reason
    assert "allow UDP" in step.advice
    assert steps(report)["whip_rtt"].reason == "not measured yet in the last 5 s"


@pytest.mark.parametrize(
    ("rtt_ms", "status", "says"),
    [
        (600.0, "fail", "less than one round trip"),
        (300.0, "warn", "room for one request at most"),
        (120.0, "pass", "round-trip time 120.0 ms"),
    ],
)
def test_it_explains_a_long_round_trip(owner, whip_url, rtt_ms, status, says):
    publish_whip()
    record_seconds(10, whip=link(rtt_ms=rtt_ms))
    step = steps(check_url(owner, whip_url))["whip_rtt"]
    assert step.status == status and says in step.reason


def test_it_fails_frames_lost_and_warns_of_repaired_loss(owner, whip_url):
    publish_whip()
    end = dt.datetime.now(dt.UTC)
    for i in range(10):  # 20 % of packets lost, each NACKed; two frames given up on
        fields = {"packets_lost_per_second": 50.0, "nacks_sent_per_second": 50.0, "packets_received_per_second": 200.0}
        whip = link(frames_lost=2 if i >= 5 else 0, keyframe_requests=4 + (i >= 5), **fields)
        record(stream_sample(at=end - dt.timedelta(seconds=9 - i), whip=whip))
    step = steps(check_url(owner, whip_url))["whip_loss"]
    assert step.status == "fail"
    assert step.reason == (
        "20.0% of packets lost, 500 asked for again (NACK) in the last 10 s; 2 frames were not repaired in time"
        " (1 keyframe request): viewers see the picture break until the next keyframe"
    )
    StreamSample.objects.all().delete()
    record_seconds(10, whip=link(packets_lost_per_second=50.0, nacks_sent_per_second=50.0,
                                 packets_received_per_second=200.0))  # fmt: skip
    step = steps(check_url(owner, whip_url))["whip_loss"]
    assert step.status == "warn" and "the link is lossy; retransmissions repaired it" in step.reason


def test_it_skips_the_link_steps_of_a_stream_not_live_over_whip(owner, whip_url):
    assert steps(check_url(owner, whip_url))["whip_rtt"].reason == "not checked: the stream is not live"
    publish(INGEST, "live", "cam1", "s1")
    record_seconds(5)
    assert steps(check_url(owner, whip_url))["whip_loss"].reason == "not checked: the stream is not live over WHIP"


def test_the_loss_wait_is_the_nodes():
    from livecenter.media.rts.ingest import VIDEO_LOSS_WAIT_MS

    assert WHIP_LOSS_WAIT_MS == VIDEO_LOSS_WAIT_MS
