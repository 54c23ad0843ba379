"""Refused RTMP publishers in the troubleshooting tool: the node reports each
refusal (rtmp_server.py, as srt_server.py does for SRT), the console keeps it
as a PublishRefusal row, and the tool explains the last one in RTMP's terms.
SRT's own explanations are in test_monitoring_srt.py."""

from __future__ import annotations

import datetime as dt

import pytest
from asgiref.sync import async_to_sync

from domains import services as domain_services
from domains.models import Domain
from livecenter.media.node import NodeConfig
from livecenter.media.policy import PublishRefused
from livecenter.media.srt.packets import SrtRejectReason
from monitoring.models import PublishRefusal
from monitoring.troubleshoot import check_url
from nodes.bridge import DatabaseEventSink
from tests.mediasupport import start_publisher
from tests.streamsupport import add_pair, publish
from tests.workersupport import MediaNodeThread, wait_until

INGEST = "push.example.com"


def refuse(reason: str, protocol: str = "rtmp", code: int = 0, at: dt.datetime | None = None) -> None:
    when = (at or dt.datetime.now(dt.UTC)).timestamp()
    event = PublishRefused(INGEST, "live", "cam1", protocol, "198.51.100.7:5000", reason, code, when, "node-1")
    async_to_sync(DatabaseEventSink().publish_refused)(event)


def steps(report) -> dict:
    return {s.name: s for s in report.steps}


@pytest.fixture
def rtmp_url(owner):
    add_pair(owner)
    Domain.objects.update(cname_status="configured")
    return domain_services.generate_urls(owner, INGEST, "live", "cam1").ingest["rtmp"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("reason", "says", "advice"),
    [
        ("invalid md5hash", "the URL's signature failed: invalid md5hash", "md5hash is md5("),
        ("no auth_key", "the URL's signature failed: no auth_key", "Sign the URL"),
        ("expired timestamp", "the URL's signature failed: expired timestamp", "Generate a fresh URL"),
        ("stream is forbidden", "refused: stream is forbidden", "Resume the stream under Streams → Forbidden streams"),
        ("domain is disabled", "refused: domain is disabled", "Enable push.example.com on its page"),
        ("stream is already being published", "another publisher was already publishing the stream",
         f"silent for {NodeConfig.publish_idle_seconds:g} s"),
        ("already publishing on this connection", "a second stream on a connection that already publishes one",
         "one stream per RTMP connection"),
        ("non-existent domain", "the URL names no ingest domain of yours: non-existent domain",
         "Copy the RTMP URL from the URL generator"),
        ("address 198.51.100.7 is not on the domain's allow list",
         "refused by push.example.com's IP list: address 198.51.100.7 is not on the domain's allow list",
         "push.example.com's Access lists page"),
    ],
    ids=["bad signature", "unsigned", "expired", "forbidden", "disabled", "already live", "same connection",
         "unknown domain", "ip list"],
)  # fmt: skip
def test_it_explains_the_last_rtmp_refusal(owner, rtmp_url, reason, says, advice):
    refuse("no auth_key", at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=3))
    refuse(reason)
    report = check_url(owner, rtmp_url)
    step = steps(report)["refusals"]
    assert step.status == "fail" and step.title == "Publishers are not refused"
    assert step.reason.startswith("2 RTMP refusals in the last 15 min; the last at ")
    assert "from 198.51.100.7:5000" in step.reason
    assert says in step.reason and advice in step.advice
    # RTMP's explanations do not speak SRT.
    assert "SRT" not in step.reason + step.advice and "stream ID" not in step.reason


@pytest.mark.django_db
def test_each_protocols_url_shows_its_own_refusals(owner, rtmp_url):
    refuse("wrong passphrase", protocol="srt", code=SrtRejectReason.BADSECRET)
    step = steps(check_url(owner, rtmp_url))["refusals"]
    assert step.status == "pass"
    assert step.reason == "no RTMP publisher of the stream was refused in the last 15 min"
    srt_url = domain_services.generate_urls(owner, INGEST, "live", "cam1").ingest["srt"]
    refuse("invalid md5hash")
    step = steps(check_url(owner, srt_url))["refusals"]
    assert step.status == "fail" and step.reason.startswith("1 SRT refusal in the last 15 min")
    assert "passphrase" in step.reason


@pytest.mark.django_db
def test_a_refusal_while_live_warns_and_playback_urls_have_no_refusal_step(owner, rtmp_url):
    publish(INGEST, "live", "cam1", "s1")
    refuse("stream is already being published")
    step = steps(check_url(owner, rtmp_url))["refusals"]
    assert step.status == "warn"
    assert "the stream is live, but an RTMP publisher was refused" in step.reason
    flv = domain_services.generate_urls(owner, INGEST, "live", "cam1").playback["flv"]
    assert "refusals" not in steps(check_url(owner, flv))


@pytest.mark.media
@pytest.mark.django_db(transaction=True)
def test_an_rtmp_publish_with_a_bad_signature_is_kept_and_explained(owner, rtmp_url):
    # One hex digit of the md5hash changed.
    head, _, _ = rtmp_url.rpartition("-")
    md5hash = rtmp_url.rpartition("-")[2]
    tampered = f"{head}-{'0' if md5hash[0] != '0' else '1'}{md5hash[1:]}"
    with MediaNodeThread() as media:
        publisher = start_publisher(media.local(tampered), seconds=5, size="320x240", rate=10)
        assert publisher.process.wait(30) != 0
        publisher.stop()
        row = wait_until(lambda: PublishRefusal.objects.filter(protocol="rtmp").first(), timeout=15)
    assert row is not None
    assert (row.domain_name, row.app, row.stream, row.reason, row.code) == (
        INGEST, "live", "cam1", "invalid md5hash", 0
    )  # fmt: skip
    assert row.client_addr.startswith("127.0.0.1:") and row.node_id == "media-test"
    step = steps(check_url(owner, tampered))["refusals"]
    assert step.status == "fail"
    assert step.reason.startswith("1 RTMP refusal in the last 15 min; the last at ")
    assert "from 127.0.0.1:" in step.reason and "the URL's signature failed: invalid md5hash" in step.reason
    assert step.advice.startswith("md5hash is md5(")
