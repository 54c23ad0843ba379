"""The monitoring pages and their WebSockets (monitoring/consumers.py), for
an owner and an outsider; the prune task."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from django.conf import settings

from livecenter.asgi import application
from livecenter.media.policy import StreamKey
from monitoring import live, services
from monitoring.models import StreamSample
from monitoring.tasks import prune_samples
from tests.monitoringsupport import WebsocketClient, record, record_seconds, stream_sample
from tests.streamsupport import add_pair, publish, unpublish

STREAM_PAGE = "/monitoring/stream/"


@pytest.mark.django_db
def test_it_shows_a_live_streams_page_with_its_history(owner, client):
    add_pair(owner)
    publish("push.example.com", "live", "cam1", "s1")
    record_seconds(5)
    client.force_login(owner)
    r = client.get(STREAM_PAGE, {"domain": "play.example.com", "app": "live", "stream": "cam1"})
    assert r.status_code == 200
    html = r.content.decode()
    assert 'id="stream-monitor"' in html and 'data-live="true"' in html
    assert "/ws/monitoring/stream/?domain=push.example.com&amp;app=live&amp;stream=cam1" in html
    assert r.context["history"][-1]["video_frame_rate"] == 30.0 and len(r.context["history"]) == 5
    assert "vendor/uplot/uPlot.iife.min.js" in html


@pytest.mark.django_db
def test_it_refuses_another_operators_stream_page(owner, outsider, client):
    add_pair(owner)
    client.force_login(outsider)
    r = client.get(STREAM_PAGE, {"domain": "push.example.com", "app": "live", "stream": "cam1"})
    assert "push.example.com is not one of your domains" in r.content.decode()
    assert 'id="stream-monitor"' not in r.content.decode()


@pytest.mark.django_db
def test_it_shows_the_domain_overview(owner, client):
    add_pair(owner)
    publish("push.example.com", "live", "cam1", "s1")
    publish("push.example.com", "live", "cam2", "s2")
    record(stream_sample(), stream_sample(stream="cam2", session_id="s2", viewers={"hls": 4}, bitrate_out={}))
    client.force_login(owner)
    r = client.get("/monitoring/")
    assert r.status_code == 200
    html = r.content.decode()
    assert '<div class="h3 mb-0" id="total-streams">2</div>' in html
    assert '<div class="h3 mb-0" id="total-users">7</div>' in html
    assert '<div class="h3 mb-0" id="total-in">4256 kbit/s</div>' in html
    assert "Monitoring" in html and 'href="/monitoring/"' in html


@pytest.mark.django_db
def test_it_keeps_streams_stopped_in_the_last_hour_with_their_last_figures(owner, client):
    add_pair(owner)
    now = dt.datetime.now(dt.UTC)
    minutes = lambda n: now - dt.timedelta(minutes=n)  # noqa: E731
    publish("push.example.com", "live", "cam1", "s1")  # live
    record(stream_sample(at=now))
    # Stopped 10 minutes ago, its last sample from two nodes (the edge that held it and a center).
    old = publish("push.example.com", "live", "cam2", "s2", started_at=minutes(20))
    record(stream_sample(stream="cam2", session_id="s2", at=minutes(15), video_frame_rate=10.0))
    last = stream_sample(stream="cam2", session_id="s2", at=minutes(10), video_frame_rate=24.0, viewers={"flv": 2})
    record(last, node_id="edge-1")
    relayed = stream_sample(stream="cam2", session_id="s2", at=minutes(10), viewers={"hls": 5}, upstream_node="edge-1")
    record(relayed, node_id="center-1")
    unpublish(old, minutes(10), "connection lost")
    # Stopped 2 hours ago: gone from the overview.
    unpublish(publish("push.example.com", "live", "cam3", "s3", started_at=minutes(130)), minutes(120))
    # Stopped 5 minutes ago and published again: live, listed once.
    unpublish(publish("push.example.com", "live", "cam4", "s4", started_at=minutes(8)), minutes(5))
    publish("push.example.com", "live", "cam4", "s5")
    # The newest of two stopped sessions of a stream.
    unpublish(publish("push.example.com", "live", "cam5", "s6", started_at=minutes(40)), minutes(30))
    unpublish(publish("push.example.com", "live", "cam5", "s7", started_at=minutes(3)), minutes(2), "no data")

    view = services.domain_view(owner, "push.example.com")
    assert [(s.session.stream, s.session.session_id) for s in view.stopped] == [("cam5", "s7"), ("cam2", "s2")]
    cam5, cam2 = view.stopped
    assert cam5.last is None
    # The edge's figures (it held the publisher), the viewers of both nodes.
    assert (cam2.last.video_frame_rate, cam2.last.viewers) == (24.0, {"flv": 2, "hls": 5})
    client.force_login(owner)
    r = client.get("/monitoring/", {"domain": "push.example.com"})
    html = r.content.decode()
    assert 'id="domain-stopped"' in html
    [first, second] = r.context["stopped"]
    assert (first["stream_url"], first["reason"], first["sample"]) == ("push.example.com/live/cam5", "no data", None)
    assert (second["stream_url"], second["reason"]) == ("push.example.com/live/cam2", "connection lost")
    assert second["stopped_at"] == minutes(10).timestamp()
    assert second["sample"]["at"] == pytest.approx(minutes(10).timestamp(), abs=0.001)  # samples keep ms
    assert sorted(second["sample"]["viewers"].items()) == [("flv", 2), ("hls", 5)]
    # Only live streams count as online.
    assert '<div class="h3 mb-0" id="total-streams">2</div>' in html


@pytest.mark.django_db
def test_it_tells_a_new_operator_to_add_a_domain(outsider, client):
    client.force_login(outsider)
    assert 'id="no-domains"' in client.get("/monitoring/").content.decode()


@pytest.mark.django_db
def test_it_links_online_streams_to_their_monitoring_page(owner, client):
    add_pair(owner)
    publish("push.example.com", "live", "cam1", "s1")
    client.force_login(owner)
    html = client.get("/streams/").content.decode()
    assert 'href="/monitoring/stream/?domain=push.example.com&amp;app=live&amp;stream=cam1"' in html


def test_it_asks_for_login():
    from django.test import Client

    for path in ("/monitoring/", STREAM_PAGE, "/monitoring/troubleshoot/"):
        assert Client().get(path).status_code == 302


# --- WebSockets ----------------------------------------------------------------------


async def connect(user, path: str) -> tuple[WebsocketClient, bool, int | None]:
    client = WebsocketClient(application, path, user)
    connected, code = await client.connect()
    return client, connected, code


@pytest.mark.django_db(transaction=True)
def test_it_streams_samples_and_states_over_the_websocket(owner):
    add_pair(owner)
    session = publish("push.example.com", "live", "cam1", "s1")
    record(stream_sample(at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)))

    async def run():
        ws, connected, _ = await connect(owner, "/ws/monitoring/stream/?domain=play.example.com&app=live&stream=cam1")
        assert connected
        opening = await ws.receive_json()
        assert opening["type"] == "history" and opening["live"] is True and opening["session_id"] == "s1"
        assert len(opening["samples"]) == 1
        key = StreamKey("push.example.com", "live", "cam1")
        data = live.event_sample_json(stream_sample(), "node-1")
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        await layer.group_send(live.stream_group(key), {"type": live.SAMPLE, "sample": data})
        assert await ws.receive_json() == {"type": "sample", "sample": data}
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: unpublish(session, dt.datetime.now(dt.UTC), "no data")
        )
        state = await ws.receive_json()
        assert state["type"] == "state" and state["live"] is False and state["reason"] == "no data"
        await ws.disconnect()

        dws, connected, _ = await connect(owner, "/ws/monitoring/domain/?domain=push.example.com")
        assert connected
        snapshot = await dws.receive_json()
        assert (snapshot["type"], snapshot["domain"], snapshot["streams"]) == ("snapshot", "push.example.com", [])
        # Stopped a moment ago: listed with its last figures, not as live.
        [stopped] = snapshot["stopped"]
        expected = ("push.example.com/live/cam1", "s1", "no data")
        assert (stopped["stream_url"], stopped["session_id"], stopped["reason"]) == expected
        assert stopped["sample"]["video_frame_rate"] == 30.0
        await layer.group_send(live.domain_group("push.example.com"), {"type": live.SAMPLES, "samples": [data]})
        assert await dws.receive_json() == {"type": "samples", "samples": [data]}
        await dws.disconnect()

    asyncio.run(run())


@pytest.mark.django_db(transaction=True)
def test_it_closes_the_websocket_for_an_outsider_or_anonymous(owner, outsider):
    from django.contrib.auth.models import AnonymousUser

    add_pair(owner)

    async def run():
        path = "/ws/monitoring/stream/?domain=push.example.com&app=live&stream=cam1"
        _, connected, code = await connect(outsider, path)
        assert (connected, code) == (False, 4403)
        _, connected, code = await connect(AnonymousUser(), path)
        assert (connected, code) == (False, 4401)
        _, connected, code = await connect(outsider, "/ws/monitoring/domain/?domain=push.example.com")
        assert (connected, code) == (False, 4403)

    asyncio.run(run())


# --- Retention ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_prunes_old_samples_in_batches(settings_override=None):
    now = dt.datetime(2026, 5, 2, 12, 0, tzinfo=dt.UTC)
    old = now - dt.timedelta(hours=settings.LIVECENTER_MONITORING_RETENTION_HOURS, seconds=1)
    for i in range(7):
        record(stream_sample(at=old - dt.timedelta(seconds=i)))
    record(stream_sample(at=now - dt.timedelta(minutes=1)))
    from django.test import override_settings

    with override_settings(LIVECENTER_MONITORING_PRUNE_BATCH=3, LIVECENTER_MONITORING_PRUNE_MAX_BATCHES=2):
        assert services.prune_samples(now) == 6  # two batches of three, the rest next run
        assert services.prune_samples(now) == 1
        assert services.prune_samples(now) == 0
    assert StreamSample.objects.count() == 1


@pytest.mark.django_db
def test_it_schedules_the_prune_task():
    entry = settings.CELERY_BEAT_SCHEDULE["monitoring.prune-samples"]
    assert entry["task"] == prune_samples.name == "monitoring.prune_samples"
    record(stream_sample(at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)))
    prune_samples()
    assert not StreamSample.objects.exists()
