"""The troubleshooting tool (monitoring/troubleshoot.py): one test per step
that can fail, each naming its reason; then the page, the API and the
command around it."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command

from domains import services as domain_services
from domains.models import Domain
from livecenter.media.policy import EDGE_PUBLISH, StreamKey, StreamPublished
from livecenter.media.signing import sign
from monitoring.troubleshoot import check_url
from nodes import registry
from nodes.bridge import DatabaseEventSink
from streams import services as stream_services
from streams.models import PublishSession
from tests.apisupport import client_for
from tests.monitoringsupport import record_seconds
from tests.nodesupport import T0, a_beat, beat_now
from tests.streamsupport import add_pair, publish

pytestmark = pytest.mark.django_db


@pytest.fixture
def pair(owner):
    push, play = add_pair(owner)
    Domain.objects.update(cname_status="configured")
    push.refresh_from_db()
    play.refresh_from_db()
    return push, play


def urls(owner, stream="cam1"):
    return domain_services.generate_urls(owner, "push.example.com", "live", stream)


def steps(report) -> dict:
    return {s.name: s for s in report.steps}


def failed(report) -> dict:
    return {s.name: s.reason for s in report.steps if s.status == "fail"}


def go_live(session="s1", **fields):
    publish("push.example.com", "live", "cam1", session)
    record_seconds(10, session_id=session, **fields)


def test_it_passes_a_healthy_live_stream(owner, pair):
    go_live()
    for url in (urls(owner).ingest["rtmp"], urls(owner).playback["flv"], urls(owner).playback["m3u8"]):
        report = check_url(owner, url)
        assert report.ok, [(s.name, s.status, s.reason) for s in report.steps]
        assert [s.name for s in report.steps][:8] == [
            "url", "domain", "enabled", "cname", "association", "signature", "forbidden", "live",
        ]  # fmt: skip
        assert steps(report)["audio"].reason == "AAC, 44100 Hz, 2 ch"
    ingest = check_url(owner, urls(owner).ingest["rtmp"])
    assert ingest.kind == "ingest" and steps(ingest)["domain"].reason == "push.example.com is your ingest domain"
    assert check_url(owner, urls(owner).playback["flv"]).kind == "playback"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://push.example.com/live/cam1", "the scheme must be rtmp, rtmps, http, https, artc or srt, not 'ftp'"),
        ("rtmp://push.example.com/live", "the path must be /{app}/{stream}, not '/live'"),
        ("http://play.example.com/live/cam1.mp4", "an HTTP URL must end in .flv (HTTP-FLV), .m3u8 (HLS), .whep (RTS)"),
        ("rtmp://push.example.com/live/cam%201", "the stream name 'cam 1' must be 1-255 letters, digits"),
        ("", "the URL is empty"),
    ],
)
def test_it_fails_a_url_that_does_not_parse(owner, pair, url, reason):
    report = check_url(owner, url)
    assert report.steps[0].name == "url" and report.steps[0].status == "fail"
    assert report.steps[0].reason.startswith(reason)
    assert {s.status for s in report.steps[1:]} == {"skip"}


def test_it_fails_an_unknown_domain(owner, outsider, pair):
    report = check_url(outsider, urls(owner).ingest["rtmp"])
    assert failed(report) == {"domain": "push.example.com is not one of your domains"}
    assert steps(report)["signature"].status == "skip"


def test_it_fails_an_ip_address_without_the_domain_parameter(owner, pair):
    report = check_url(owner, "rtmp://127.0.0.1:1935/live/cam1?auth_key=x")
    assert failed(report) == {"domain": "127.0.0.1 names no domain"}
    assert "domain=" in steps(report)["domain"].advice
    # With the documented fallback, the domain is found.
    assert steps(check_url(owner, "rtmp://127.0.0.1/live/cam1?domain=push.example.com"))["domain"].status == "pass"


def test_it_fails_a_disabled_domain(owner, pair):
    Domain.objects.filter(domain_name="push.example.com").update(enabled=False)
    report = check_url(owner, urls(owner).ingest["rtmp"])
    assert failed(report)["enabled"] == "push.example.com is disabled: the node refuses its URLs"


def test_it_fails_a_domain_without_its_cname(owner, pair):
    Domain.objects.filter(domain_name="play.example.com").update(cname_status="pending")
    report = check_url(owner, urls(owner).playback["flv"])
    play = Domain.objects.get(domain_name="play.example.com")
    assert failed(report)["cname"] == f"no CNAME record of play.example.com pointing at {play.cname} was found yet"
    assert f"play.example.com CNAME {play.cname}" in steps(report)["cname"].advice


def test_it_fails_a_streaming_domain_without_an_ingest_domain(owner, pair):
    token = sign(
        "/live/cam1.flv", Domain.objects.get(domain_name="play.example.com").auth_primary_key, int(time.time())
    )
    domain_services.clear_mapping(Domain.objects.get(domain_name="play.example.com"))
    report = check_url(owner, f"http://play.example.com:8080/live/cam1.flv?auth_key={token}")
    assert failed(report) == {
        "association": "play.example.com is associated with no ingest domain, so it plays nothing"
    }
    assert steps(report)["live"].status == "skip"


def test_it_fails_playback_from_an_ingest_domain(owner, pair):
    report = check_url(owner, "http://push.example.com:8080/live/cam1.flv")
    assert failed(report)["association"].startswith("push.example.com is an ingest domain")
    assert "play.example.com" in steps(report)["association"].advice


@pytest.mark.parametrize(
    ("auth", "reason"),
    [
        (None, "no auth_key"),
        ("1-2-3", "invalid auth_key"),
        ("expired", "expired timestamp: it expired at "),
        ("badhash", "invalid md5hash: it matches neither key of push.example.com for the URI /live/cam1"),
    ],
)
def test_it_names_the_failing_part_of_the_signature(owner, pair, auth, reason):
    push = Domain.objects.get(domain_name="push.example.com")
    if auth == "expired":
        auth = sign("/live/cam1", push.auth_primary_key, int(time.time()) - push.validity_seconds - 60)
    elif auth == "badhash":
        auth = sign("/live/cam1", "someOtherKey1", int(time.time()))
    url = "rtmp://push.example.com:1935/live/cam1" + (f"?auth_key={auth}" if auth else "")
    report = check_url(owner, url)
    assert set(failed(report)) == {"signature", "live"}
    assert failed(report)["signature"].startswith(reason)
    assert steps(report)["signature"].advice


def test_it_checks_the_signature_of_the_path_with_its_suffix(owner, pair):
    flv = urls(owner).playback["flv"]
    assert steps(check_url(owner, flv))["signature"].status == "pass"
    # The FLV token does not sign the HLS path.
    report = check_url(owner, flv.replace(".flv", ".m3u8"))
    assert failed(report)["signature"].startswith("invalid md5hash")


def test_it_fails_a_forbidden_stream(owner, pair):
    stream_services.forbid_stream(owner, "push.example.com", "live", "cam1",
                                  resume_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))  # fmt: skip
    report = check_url(owner, urls(owner).ingest["rtmp"])
    assert failed(report)["forbidden"] == "push.example.com/live/cam1 is forbidden until 2030-01-01 00:00:00 UTC"


def test_it_fails_a_stream_that_is_not_live(owner, pair):
    report = check_url(owner, urls(owner).playback["flv"])
    assert failed(report) == {"live": "nobody is publishing push.example.com/live/cam1"}
    assert "OBS" in steps(report)["live"].advice
    assert {steps(report)[n].status for n in ("bframes", "keyframes", "audio")} == {"skip"}


def edge_publish(session: str = "s1") -> None:
    """What an edge that holds the publisher reports (nodes.bridge's sink)."""
    key = StreamKey("push.example.com", "live", "cam1")
    url = "rtmp://push.example.com/live/cam1"
    event = StreamPublished(key, session, "rtmp", "198.51.100.7:5000", url, time.time(), "edge-a", EDGE_PUBLISH)
    async_to_sync(DatabaseEventSink().published)(event)
    record_seconds(10, session_id=session)


def test_it_says_why_no_center_takes_a_stream_its_edge_holds(owner, pair, settings, registry_clock):
    settings.REDIS_URL = ""
    reason = "no center node of live center eu-central-1 is up"
    beat_now(registry.registry(), a_beat("edge-a", relay_errors={"push.example.com/live/cam1": reason}))
    registry_clock.now = T0 + 1
    edge_publish()
    report = check_url(owner, urls(owner).ingest["rtmp"])
    assert failed(report) == {
        "center": f"the edge edge-a holds the publisher, but no center takes the stream: {reason}"
    }
    assert "Start a center node of China (Shanghai)" in steps(report)["center"].advice  # add_pair's live center
    # Once a center takes it, the edge's beat says no more and the center is known.
    beat_now(registry.registry(), a_beat("edge-a"))
    PublishSession.objects.update(center_node_id="center-1")
    report = check_url(owner, urls(owner).ingest["rtmp"])
    assert steps(report)["center"].status == "pass", steps(report)["center"]
    assert steps(report)["center"].reason == "relayed by the edge edge-a to the center node center-1"
    registry_clock.now = T0 + 60  # the edge stopped beating
    assert steps(check_url(owner, urls(owner).ingest["rtmp"]))["center"].status == "warn"


def test_it_passes_a_stream_published_on_its_center(owner, pair):
    go_live()
    step = steps(check_url(owner, urls(owner).ingest["rtmp"]))["center"]
    assert (step.status, step.reason) == ("pass", "published on the center node node-1")


def test_it_fails_b_frames_for_rts_without_auto_transcoding(owner, pair):
    Domain.objects.filter(domain_name="play.example.com").update(rts_enabled=True, html5_transcode=False)
    go_live(bframes=True)
    report = check_url(owner, urls(owner).playback["flv"])
    assert failed(report)["bframes"].startswith("the stream has B-frames, which browsers' WebRTC cannot play")
    assert "Profile baseline" in steps(report)["bframes"].advice
    # With auto transcoding, B-frames are a note, not a failure.
    Domain.objects.filter(domain_name="play.example.com").update(html5_transcode=True)
    assert steps(check_url(owner, urls(owner).playback["flv"]))["bframes"].status == "warn"


def test_it_fails_a_keyframe_interval_above_three_seconds(owner, pair):
    go_live(keyframe_interval_ms=5000)
    report = check_url(owner, urls(owner).ingest["rtmp"])
    assert failed(report)["keyframes"].startswith("keyframes come every 5.0 s, more than 3 s")
    assert "Keyframe Interval 1" in steps(report)["keyframes"].advice


def test_it_fails_an_unstable_frame_rate(owner, pair):
    publish("push.example.com", "live", "cam1", "s1")
    now = dt.datetime.now(dt.UTC)
    for i, fps in enumerate([30, 30, 30, 12, 30, 30, 8, 30]):
        record_seconds(1, end=now - dt.timedelta(seconds=8 - i), video_frame_rate=float(fps))
    report = check_url(owner, urls(owner).ingest["rtmp"])
    assert failed(report)["frame_rate"].startswith("the frame rate went from 8.0 to 30.0 fps")


def test_it_fails_an_unstable_bitrate(owner, pair):
    publish("push.example.com", "live", "cam1", "s1")
    now = dt.datetime.now(dt.UTC)
    for i, bps in enumerate([2e6, 100e3, 4e6, 50e3, 3e6, 80e3, 2e6, 90e3]):
        record_seconds(1, end=now - dt.timedelta(seconds=8 - i), video_bitrate=bps, audio_bitrate=0.0)
    report = check_url(owner, urls(owner).ingest["rtmp"])
    assert failed(report)["bitrate"].startswith("the bitrate went from 50 to 4000 kbit/s")


def test_it_fails_timestamp_jumps(owner, pair):
    go_live(timestamp_jumps=1)
    report = check_url(owner, urls(owner).ingest["rtmp"])
    assert failed(report)["timestamps"] == "10 timestamp jumps in the last 10 s: players stall or skip there"


def test_it_fails_an_audio_codec_other_than_aac(owner, pair):
    go_live(audio_codec="MP3")
    report = check_url(owner, urls(owner).ingest["rtmp"])
    assert failed(report)["audio"] == "audio is MP3: HLS and browsers' players expect AAC"


def test_it_warns_of_aac_for_rts_without_auto_transcoding(owner, pair):
    Domain.objects.filter(domain_name="play.example.com").update(rts_enabled=True, html5_transcode=False)
    go_live()
    assert steps(check_url(owner, urls(owner).playback["flv"]))["audio"].status == "warn"


def test_it_runs_from_the_api(owner, outsider, pair):
    go_live()
    r = client_for(owner).post("/api/v1/monitoring/troubleshoot/", {"url": urls(owner).ingest["rtmp"]}, format="json")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["ok"] is True and body["kind"] == "ingest"
    assert body["steps"][0] == {"name": "url", "title": "The URL parses", "status": "pass",
                                "reason": "RTMP URL of live/cam1 on push.example.com", "advice": ""}  # fmt: skip
    other = client_for(outsider).post("/api/v1/monitoring/troubleshoot/", {"url": urls(owner).ingest["rtmp"]},
                                      format="json").json()  # fmt: skip
    assert other["ok"] is False and other["steps"][1]["reason"] == "push.example.com is not one of your domains"
    bad = client_for(owner).post("/api/v1/monitoring/troubleshoot/", {"uri": "x"}, format="json")
    assert bad.status_code == 400 and "url" in bad.json()


def test_it_shows_the_steps_on_the_page(owner, client, pair):
    client.force_login(owner)
    r = client.get("/monitoring/troubleshoot/", {"url": urls(owner).playback["flv"]})
    assert r.status_code == 200
    html = r.content.decode()
    assert 'data-step="live" data-status="fail"' in html
    assert "nobody is publishing push.example.com/live/cam1" in html
    assert client.get("/monitoring/troubleshoot/").status_code == 200


def test_it_runs_from_the_command_line(owner, pair, capsys):
    with pytest.raises(SystemExit) as exit_info:
        call_command("troubleshoot", urls(owner).ingest["rtmp"])
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "FAIL  The stream is live: nobody is publishing push.example.com/live/cam1" in out
    assert "PASS  The signature verifies" in out and out.rstrip().endswith("Problems found.")
    go_live()
    call_command("troubleshoot", urls(owner).ingest["rtmp"], "--operator", "owner")
    assert capsys.readouterr().out.rstrip().endswith("No problem found.")


def test_it_says_why_a_domains_certificate_is_not_served(owner, pair, certificate_factory):
    from domains.models import DomainCertificate

    play = Domain.objects.get(domain_name="play.example.com")
    https_url = urls(owner).playback["flv"].replace("http://", "https://")
    assert "certificate" not in steps(check_url(owner, urls(owner).playback["flv"]))
    assert failed(check_url(owner, https_url))["certificate"] == (
        "play.example.com has no certificate: the node refuses TLS clients naming it"
    )
    domain_services.upload_certificate(play, *certificate_factory(["play.example.com"]))
    https_url = urls(owner).playback["flv"]
    assert https_url.startswith("https://")
    step = steps(check_url(owner, https_url))["certificate"]
    assert (step.status, step.reason.split(" is served")[1]) == ("pass", " for play.example.com (89 days left)")
    domain_services.configure_https(Domain.objects.get(pk=play.pk), enabled=False)
    assert failed(check_url(owner, https_url))["certificate"] == (
        "HTTPS is off for play.example.com: the node refuses TLS clients naming it"
    )
    now = dt.datetime.now(dt.UTC)
    DomainCertificate.objects.update(not_after=now + dt.timedelta(days=10, hours=1))
    domain_services.configure_https(Domain.objects.get(pk=play.pk), enabled=True)
    step = steps(check_url(owner, https_url))["certificate"]
    assert (step.status, step.reason) == ("warn", "the certificate of play.example.com expires in 10 days")
    DomainCertificate.objects.update(not_after=now - dt.timedelta(days=1))
    assert "the node no longer serves it" in failed(check_url(owner, https_url))["certificate"]
