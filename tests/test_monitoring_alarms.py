"""Alarms (issue 19): rules and their bad input (the service, the page and
the API name the field), alarms that open and close with the condition in
known samples and viewers' reports (evaluated at explicit times),
interruption (a publisher gone silent, a node gone away, a session a
restarted node closed), delivery through the callbacks, the banner, and
each operator's own."""

from __future__ import annotations

import datetime as dt

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from callbacks import services as callback_services
from callbacks import tasks as callback_tasks
from livecenter.media.policy import PlaybackReported, PlaybackRow, StreamKey
from monitoring import alarms
from monitoring import tasks as monitoring_tasks
from monitoring.models import AlarmEvent, AlarmRule
from nodes.bridge import DatabaseEventSink
from tests.callbacksupport import Receiver
from tests.monitoringsupport import record, stream_sample
from tests.pagesupport import add_ingest, assert_field_error, page
from tests.streamsupport import add_pair, publish, unpublish

pytestmark = pytest.mark.django_db(transaction=True)

T0 = dt.datetime(2026, 12, 1, 12, 0, 0, tzinfo=dt.UTC)
DOMAIN = "push.example.com"
PAGE = "/monitoring/alarms/"
API_RULES = "/api/v1/monitoring/alarm-rules/"
API_ALARMS = "/api/v1/monitoring/alarms/"


def t(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def seconds(first: int, last: int, stream: str = "cam1", node_id: str = "node-1", **fields) -> None:
    """One publisher sample a second at T0+first … T0+last."""
    for s in range(first, last + 1):
        record(stream_sample(stream=stream, session_id=f"s-{stream}", at=t(s), **fields), node_id=node_id)


def live(stream: str = "cam1", started: float = 0, node_id: str = "node-1"):
    return publish(DOMAIN, "live", stream, f"s-{stream}", started_at=t(started), node_id=node_id)


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


# --- Rules and their bad input -----------------------------------------------------------------


def test_it_adds_a_rule_with_the_metrics_own_comparison(owner):
    push, play = add_pair(owner)
    rule = alarms.add_rule(owner, "play.example.com", metric="frame_rate", threshold=20)
    assert (rule.domain, rule.app, rule.comparison, rule.duration_seconds) == (push, "", "below", 10)
    assert rule.condition == "frame rate below 20 fps" and rule.scope == DOMAIN


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"metric": "frame_rate", "threshold": 20, "comparison": "above"}, "comparison", "compares below"),
        ({"metric": "keyframe_interval", "threshold": 5, "comparison": "below"}, "comparison", "compares above"),
        ({"metric": "frame_rate", "threshold": 0}, "threshold", "0.1 to 240 fps"),
        ({"metric": "bitrate", "threshold": float("nan")}, "threshold", "1 to 1e+06 kbit/s"),
        ({"metric": "interruption", "threshold": 2}, "threshold", "3 to 600 s"),
        ({"metric": "interruption", "threshold": 601}, "threshold", "3 to 600 s"),
        ({"metric": "frame_rate", "threshold": 20, "duration_seconds": 0}, "duration_seconds", "1 to 600 seconds"),
        ({"metric": "frame_rate", "threshold": 20, "duration_seconds": 601}, "duration_seconds", "1 to 600"),
        ({"metric": "frame_rate", "threshold": 20, "app": "no spaces"}, "app", "app name must be"),
        ({"metric": "loudness", "threshold": 20}, "metric", "metric must be one of"),
    ],
)
def test_it_names_the_field_of_a_bad_rule(owner, fields, field, words):
    add_ingest(owner)
    with pytest.raises(ValidationError) as caught:
        alarms.add_rule(owner, DOMAIN, **fields)
    assert any(words in m for m in caught.value.message_dict[field]), caught.value.message_dict
    assert not AlarmRule.objects.exists()


def test_it_reports_every_bad_field_at_once(owner):
    add_ingest(owner)
    with pytest.raises(ValidationError) as caught:
        alarms.add_rule(owner, DOMAIN, metric="frame_rate", threshold=-1, duration_seconds=0, app="a b")
    assert set(caught.value.message_dict) == {"threshold", "duration_seconds", "app"}


def test_it_keeps_one_rule_per_scope_metric_and_comparison(owner):
    add_ingest(owner)
    alarms.add_rule(owner, DOMAIN, metric="bitrate", threshold=500)
    alarms.add_rule(owner, DOMAIN, metric="bitrate", comparison="above", threshold=8000)
    alarms.add_rule(owner, DOMAIN, app="live", metric="bitrate", threshold=500)
    with pytest.raises(ValidationError) as caught:
        alarms.add_rule(owner, DOMAIN, metric="bitrate", threshold=300)
    assert caught.value.message_dict["metric"] == [f"{DOMAIN} has a bitrate below rule already; change that one"]


def test_it_limits_the_rules_of_a_domain(owner):
    add_ingest(owner)
    for i in range(alarms.MAX_RULES_PER_DOMAIN):
        alarms.add_rule(owner, DOMAIN, app=f"app{i}", metric="frame_rate", threshold=20)
    with pytest.raises(ValidationError) as caught:
        alarms.add_rule(owner, DOMAIN, app="one-more", metric="frame_rate", threshold=20)
    assert "at most 50 alarm rules" in caught.value.message_dict["domain"][0]


def test_it_shows_a_bad_rule_on_the_page_and_keeps_the_input(client, owner):
    add_ingest(owner)
    client.force_login(owner)
    data = {"domain": DOMAIN, "app": "live", "metric": "frame_rate", "comparison": "", "threshold": "500",
            "duration_seconds": "10", "enabled": "on"}  # fmt: skip
    response = client.post(PAGE, data)
    assert_field_error(response, "form", "threshold", "0.1 to 240 fps")
    assert 'value="500"' in page(response) and not AlarmRule.objects.exists()
    response = client.post(PAGE, {**data, "threshold": "12.5"})
    assert response.status_code == 302
    rule = AlarmRule.objects.get()
    assert (rule.app, rule.threshold, rule.enabled) == ("live", 12.5, True)
    body = page(client.get(PAGE))
    assert "Added the alarm rule frame rate below 12.5 fps on push.example.com/live." in body
    assert f'data-rule="{rule.pk}"' in body


def test_it_edits_and_deletes_a_rule_on_the_page(client, owner):
    add_ingest(owner)
    rule = alarms.add_rule(owner, DOMAIN, metric="bitrate", threshold=500)
    client.force_login(owner)
    url = f"/monitoring/alarms/rules/{rule.pk}/"
    assert 'value="500.0"' in page(client.get(url))
    data = {"app": "", "metric": "bitrate", "comparison": "above", "threshold": "9000", "duration_seconds": "30"}
    assert client.post(url, data).status_code == 302  # `enabled` unticked
    rule.refresh_from_db()
    assert (rule.comparison, rule.threshold, rule.duration_seconds, rule.enabled) == ("above", 9000, 30, False)
    assert_field_error(client.post(url, {**data, "duration_seconds": "x"}), "form", "duration_seconds", "whole number")
    assert client.post(f"{url}delete/").status_code == 302
    assert not AlarmRule.objects.exists()


def test_it_manages_rules_through_the_api(owner):
    add_pair(owner)
    client = api(owner)
    response = client.post(API_RULES, {"domain": "play.example.com", "metric": "interruption", "threshold": 8},
                           format="json")  # fmt: skip
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["domain"] == DOMAIN and body["comparison"] == "above" and body["unit"] == "s"
    assert body["condition"] == "no data for 8 s"
    rule_url = f"{API_RULES}{body['id']}/"
    response = client.patch(rule_url, {"threshold": 1}, format="json")
    assert response.status_code == 400 and "3 to 600 s" in response.json()["threshold"][0]
    response = client.patch(rule_url, {"domain": "other.example.com"}, format="json")
    assert response.status_code == 400 and "domain" in response.json()
    response = client.patch(rule_url, {"threshold": 12, "enabled": False}, format="json")
    assert response.status_code == 200 and response.json()["threshold"] == 12 and not response.json()["enabled"]
    response = client.post(API_RULES, {"domain": DOMAIN, "metric": "bitrate", "threshold": "fast"}, format="json")
    assert response.status_code == 400 and "threshold" in response.json()
    assert [r["id"] for r in client.get(API_RULES, {"domain": DOMAIN}).json()["results"]] == [body["id"]]
    assert client.delete(rule_url).status_code == 204
    assert client.get(rule_url).status_code == 404


# --- Opening and closing with the condition -----------------------------------------------------


def test_an_alarm_opens_and_closes_with_the_condition(owner):
    add_ingest(owner)
    rule = alarms.add_rule(owner, DOMAIN, metric="frame_rate", threshold=20, duration_seconds=5)
    live()
    seconds(1, 10, video_frame_rate=30.0)
    seconds(11, 20, video_frame_rate=10.0)
    seconds(21, 22, video_frame_rate=30.0)
    seconds(23, 23, video_frame_rate=12.0)  # a dip inside the hysteresis: the alarm stays open
    seconds(24, 35, video_frame_rate=29.0)

    assert alarms.evaluate(t(14)) == (0, 0)  # below for 4 s of 5
    assert alarms.evaluate(t(15)) == (1, 0)
    alarm = AlarmEvent.objects.get()
    assert (alarm.rule, alarm.stream_url, alarm.metric, alarm.value, alarm.threshold) == (
        rule, f"{DOMAIN}/live/cam1", "frame_rate", 10.0, 20.0
    )  # fmt: skip
    assert alarm.started_at == t(11) and alarm.ended_at is None
    assert alarms.evaluate(t(15)) == (0, 0)  # a repeated run (another worker, a restart) changes nothing
    assert alarms.evaluate(t(25)) == (0, 0)  # clear since 24: 2 s of 5
    assert alarms.evaluate(t(27)) == (0, 0)
    assert alarms.evaluate(t(28)) == (0, 1)
    alarm.refresh_from_db()
    assert (alarm.ended_at, alarm.end_reason, alarm.duration_text) == (t(24), "", "0:00:13")
    assert alarms.evaluate(t(35)) == (0, 0) and AlarmEvent.objects.count() == 1


@pytest.mark.parametrize(
    ("metric", "comparison", "threshold", "bad", "good", "value"),
    [
        ("bitrate", "below", 500, {"video_bitrate": 200_000.0, "audio_bitrate": 64_000.0}, {}, 264.0),
        ("bitrate", "above", 3000, {"video_bitrate": 4_000_000.0}, {}, 4128.0),
        ("keyframe_interval", "above", 4, {"keyframe_interval_ms": 10_000}, {"keyframe_interval_ms": 2000}, 10.0),
    ],
)
def test_it_watches_bitrate_and_keyframe_interval(owner, metric, comparison, threshold, bad, good, value):
    add_ingest(owner)
    alarms.add_rule(owner, DOMAIN, app="live", metric=metric, comparison=comparison, threshold=threshold,
                    duration_seconds=3)  # fmt: skip
    live()
    seconds(1, 5, **good)
    seconds(6, 10, **bad)
    seconds(11, 15, **good)
    assert alarms.evaluate(t(8)) == (1, 0)
    assert AlarmEvent.objects.get().value == value
    assert alarms.evaluate(t(13)) == (0, 1)
    assert AlarmEvent.objects.get().ended_at == t(11)


def test_it_reads_the_publishers_node_only_and_the_rules_app_only(owner):
    add_ingest(owner)
    alarms.add_rule(owner, DOMAIN, app="live", metric="frame_rate", threshold=20, duration_seconds=3)
    live()
    seconds(1, 10, video_frame_rate=30.0)
    # A center's copy of the stream relayed from the edge that holds the publisher: not the ingest's figures.
    for s in range(1, 11):
        record(stream_sample(session_id="s-cam1", at=t(s), video_frame_rate=5.0, upstream_node="node-1"),
               node_id="center-1")  # fmt: skip
    # Another app's stream: outside the rule.
    publish(DOMAIN, "other", "cam2", "s-other", started_at=t(0))
    for s in range(1, 11):
        record(stream_sample(app="other", stream="cam2", session_id="s-other", at=t(s), video_frame_rate=5.0))
    assert alarms.evaluate(t(10)) == (0, 0)


def test_an_alarm_closes_when_its_stream_stops_and_when_its_rule_changes(owner):
    add_ingest(owner)
    rule = alarms.add_rule(owner, DOMAIN, metric="frame_rate", threshold=20, duration_seconds=2)
    session = live()
    seconds(1, 5, video_frame_rate=1.0)
    assert alarms.evaluate(t(5)) == (1, 0)
    unpublish(session, t(6))
    assert alarms.evaluate(t(7)) == (0, 1)
    alarm = AlarmEvent.objects.get()
    assert (alarm.ended_at, alarm.end_reason) == (t(6), "stream stopped")

    publish(DOMAIN, "live", "cam1", "s-cam1-b", started_at=t(10))
    seconds(11, 15, video_frame_rate=1.0)
    assert alarms.evaluate(t(15)) == (1, 0)
    alarms.update_rule(rule, enabled=False)
    reopened = AlarmEvent.objects.get(started_at=t(11))
    assert reopened.end_reason == "rule disabled" and reopened.ended_at is not None
    assert alarms.evaluate(t(15)) == (0, 0)  # a disabled rule opens nothing


# --- Interruption --------------------------------------------------------------------------------


def test_an_interruption_opens_when_the_publisher_goes_silent_and_closes_when_data_flows(owner):
    add_ingest(owner)
    alarms.add_rule(owner, DOMAIN, metric="interruption", threshold=5, duration_seconds=3)
    live()
    seconds(1, 10)
    seconds(30, 40)
    assert alarms.evaluate(t(14)) == (0, 0)  # 4 s without data
    assert alarms.evaluate(t(15)) == (1, 0)
    alarm = AlarmEvent.objects.get()
    assert (alarm.metric, alarm.started_at, alarm.value) == ("interruption", t(10), 5.0)
    assert alarms.evaluate(t(29)) == (0, 0)
    assert alarms.evaluate(t(31)) == (0, 0)  # data again, for 2 s of 3
    assert alarms.evaluate(t(32)) == (0, 1)
    alarm.refresh_from_db()
    assert alarm.ended_at == t(30) and alarm.end_reason == ""


def test_a_stream_whose_node_went_away_opens_an_interruption(owner):
    """A node that dies says nothing: its session stays open and its samples stop."""
    add_ingest(owner)
    alarms.add_rule(owner, DOMAIN, metric="interruption", threshold=10, duration_seconds=5)
    live(node_id="edge-7")
    seconds(1, 20, node_id="edge-7")
    assert alarms.evaluate(t(29)) == (0, 0)
    assert alarms.evaluate(t(30)) == (1, 0)
    assert AlarmEvent.objects.get().started_at == t(20)


def test_a_stream_with_no_sample_in_the_lookback_opens_an_interruption_from_its_last_one(owner):
    add_ingest(owner)
    alarms.add_rule(owner, DOMAIN, metric="interruption", threshold=5, duration_seconds=2)
    live()
    seconds(1, 3)
    assert alarms.evaluate(t(600)) == (1, 0)
    assert AlarmEvent.objects.get().started_at == t(3)


def stopped_after_ten_seconds(owner, reason: str) -> None:
    """An interruption rule (5 s, 2 s), and a stream that sent for 10 s and stopped with `reason`."""
    add_ingest(owner)
    alarms.add_rule(owner, DOMAIN, metric="interruption", threshold=5, duration_seconds=2)
    session = live()
    seconds(1, 10)
    unpublish(session, t(10.5), reason=reason)


@pytest.mark.parametrize("reason", ["node restarted", "connection lost", "peer idle timeout", "connection failed"])
def test_a_stream_stopped_without_its_publisher_ending_it_is_an_interruption(owner, reason):
    stopped_after_ten_seconds(owner, reason)  # "node restarted": nodes.bridge.close_orphaned_sessions
    assert alarms.evaluate(t(14)) == (0, 0)
    assert alarms.evaluate(t(16)) == (1, 0)
    assert AlarmEvent.objects.get().started_at == t(10)  # the last data, not the session's close
    assert alarms.evaluate(t(100)) == (0, 0)  # still interrupted
    publish(DOMAIN, "live", "cam1", "s-cam1-b", started_at=t(101))
    seconds(102, 104)
    assert alarms.evaluate(t(104)) == (0, 1)
    assert AlarmEvent.objects.get().ended_at == t(102)


@pytest.mark.parametrize("reason", ["", "peer shut down", "ended by the publisher (DELETE)", "forbidden"])
def test_a_stream_its_publisher_or_operator_ended_is_no_interruption(owner, reason):
    stopped_after_ten_seconds(owner, reason)
    assert alarms.evaluate(t(30)) == (0, 0)


# --- Delivery ------------------------------------------------------------------------------------


def test_it_delivers_the_opening_and_the_closing_to_the_callback_url(owner, settings, monkeypatch):
    settings.LIVECENTER_CALLBACKS_ALLOW_PRIVATE = True
    sent = []
    monkeypatch.setattr(
        callback_tasks.deliver_callback, "apply_async", lambda args, countdown=0, **kw: sent.append(args)
    )
    domain = add_ingest(owner)
    with Receiver() as receiver:
        callback_services.configure_callbacks(domain, url=receiver.url, secret="receiver-shared-secret-1")
        alarms.add_rule(owner, DOMAIN, metric="frame_rate", threshold=20, duration_seconds=2)
        live()
        seconds(1, 4, video_frame_rate=8.0)
        seconds(5, 8, video_frame_rate=30.0)
        alarms.evaluate(t(4))
        alarms.evaluate(t(4))
        alarms.evaluate(t(8))
        for args in sent:
            callback_tasks.deliver_callback(*args)
        opened = [r.json for r in receiver.events("alarm.opened")]
        closed = [r.json for r in receiver.events("alarm.closed")]
    alarm = AlarmEvent.objects.get()
    assert len(opened) == 1 and len(closed) == 1
    assert {k: opened[0][k] for k in ("alarm_id", "domain", "app", "stream", "metric", "comparison", "threshold",
                                      "unit", "value", "condition", "started_at")} == {
        "alarm_id": alarm.pk, "domain": DOMAIN, "app": "live", "stream": "cam1", "metric": "frame_rate",
        "comparison": "below", "threshold": 20.0, "unit": "fps", "value": 8.0,
        "condition": "frame rate below 20 fps", "started_at": "2026-12-01T12:00:01Z",
    }  # fmt: skip
    assert opened[0]["alarms_url"].endswith("/monitoring/alarms/")
    assert (closed[0]["ended_at"], closed[0]["duration_seconds"], closed[0]["reason"]) == (
        "2026-12-01T12:00:05Z", 4.0, ""
    )  # fmt: skip
    assert "alarm.opened" in callback_services.EVENTS and "alarm.closed" in callback_services.EVENTS


# --- The console, and each operator's own -------------------------------------------------------


def test_the_banner_shows_on_every_page_while_an_alarm_is_open(client, owner, outsider):
    add_ingest(owner)
    alarms.add_rule(owner, DOMAIN, metric="frame_rate", threshold=20, duration_seconds=2)
    live()
    seconds(1, 3, video_frame_rate=2.0)
    seconds(4, 6, video_frame_rate=30.0)
    client.force_login(owner)
    assert 'id="alarm-banner"' not in page(client.get("/domains/"))
    alarms.evaluate(t(3))
    for path in ("/domains/", "/streams/", "/monitoring/", "/nodes/"):
        body = page(client.get(path))
        assert 'id="alarm-banner"' in body and f"{DOMAIN}/live/cam1" in body, path
    alarms_page = page(client.get(PAGE))
    assert 'id="open-alarms"' in alarms_page and "frame rate below 20 fps" in alarms_page
    client.force_login(outsider)
    assert 'id="alarm-banner"' not in page(client.get("/domains/"))
    client.force_login(owner)
    alarms.evaluate(t(6))
    body = page(client.get(PAGE))
    assert 'id="alarm-banner"' not in body and 'id="past-alarms"' in body and "2026-12-01 12:00:04" in body


def test_an_operator_sees_and_changes_only_their_own(client, owner, outsider):
    add_ingest(owner)
    rule = alarms.add_rule(owner, DOMAIN, metric="frame_rate", threshold=20, duration_seconds=2)
    live()
    seconds(1, 3, video_frame_rate=2.0)
    alarms.evaluate(t(3))
    theirs = api(outsider)
    assert theirs.get(API_RULES).json()["results"] == []
    assert theirs.get(API_ALARMS).json()["results"] == []
    for call in (theirs.get, theirs.patch, theirs.delete):
        assert call(f"{API_RULES}{rule.pk}/").status_code == 404
    response = theirs.post(API_RULES, {"domain": DOMAIN, "metric": "bitrate", "threshold": 500}, format="json")
    assert response.status_code == 400 and "not one of your domains" in response.json()["domain"][0]
    assert theirs.get(API_ALARMS, {"domain": DOMAIN}).status_code == 400
    client.force_login(outsider)
    assert f'data-rule="{rule.pk}"' not in page(client.get(PAGE))
    assert client.get(f"/monitoring/alarms/rules/{rule.pk}/").status_code == 404
    assert client.post(f"/monitoring/alarms/rules/{rule.pk}/delete/").status_code == 404
    assert AlarmRule.objects.filter(pk=rule.pk).exists()
    mine = api(owner).get(API_ALARMS, {"state": "open"}).json()["results"]
    assert [(a["stream"], a["open"], a["condition"]) for a in mine] == [("cam1", True, "frame rate below 20 fps")]
    assert api(owner).get(API_ALARMS, {"state": "closed"}).json()["results"] == []


def test_an_evaluation_reads_recent_rows_only_with_as_many_queries_for_many_streams(owner):
    """Cheap: a fixed number of queries however many streams are live, and
    the samples read through the time index, not the stream's whole history."""
    add_ingest(owner)
    alarms.add_rule(owner, DOMAIN, metric="frame_rate", threshold=20, duration_seconds=5)
    alarms.add_rule(owner, DOMAIN, metric="interruption", threshold=10, duration_seconds=5)

    def run(streams: int, prefix: str) -> int:
        for i in range(streams):
            live(f"{prefix}{i}")
            seconds(1, 10, stream=f"{prefix}{i}")
        with CaptureQueriesContext(connection) as queries:
            alarms.evaluate(t(10))
        sample_reads = [q["sql"] for q in queries.captured_queries if "monitoring_streamsample" in q["sql"]]
        assert sample_reads and all('"at" >' in sql for sql in sample_reads)
        return len(queries.captured_queries)

    assert run(2, "a") == run(8, "b")
    assert AlarmEvent.objects.count() == 0


def test_the_beat_task_evaluates_at_the_present(owner, settings):
    assert settings.CELERY_BEAT_SCHEDULE["monitoring.evaluate-alarms"]["task"] == monitoring_tasks.evaluate_alarms.name
    add_ingest(owner)
    alarms.add_rule(owner, DOMAIN, metric="interruption", threshold=5, duration_seconds=2)
    now = dt.datetime.now(dt.UTC)
    publish(DOMAIN, "live", "cam1", "s-cam1", started_at=now - dt.timedelta(seconds=60))
    for s in range(60, 30, -1):
        record(stream_sample(session_id="s-cam1", at=now - dt.timedelta(seconds=s)))
    monitoring_tasks.evaluate_alarms()
    alarm = AlarmEvent.objects.get()
    assert alarm.is_open and alarm.started_at == now - dt.timedelta(seconds=31)


# --- Stall ratio (viewer telemetry, monitoring/playback.py) -------------------------------------


def viewers(minute: float, stall_ms: int, watch_ms: int = 60_000) -> None:
    """What the players' beacons of one minute (from T0+minute) added up to on a node."""
    row = PlaybackRow(int(t(minute).timestamp()), StreamKey(DOMAIN, "live", "cam1"), "play.example.com", "flv",
                      "local", 1, (), 1 if stall_ms else 0, stall_ms, watch_ms, 0, {}, {}, ())  # fmt: skip
    async_to_sync(DatabaseEventSink().playback_reported)(PlaybackReported("node-1", t(minute).timestamp(), (row,)))


def test_a_stall_ratio_alarm_opens_and_closes_with_the_viewers_stalls(owner):
    add_ingest(owner)
    rule = alarms.add_rule(owner, DOMAIN, metric="stall_ratio", threshold=5, duration_seconds=60)
    assert (rule.comparison, rule.condition) == ("above", "stall ratio above 5 %")
    live()
    viewers(0, stall_ms=1000)  # 12:00: 1.7 %
    viewers(60, stall_ms=7200)  # 12:01: 12 %
    viewers(120, stall_ms=0)  # 12:02 and 12:03: none
    viewers(180, stall_ms=0)
    assert alarms.evaluate(t(30)) == (0, 0)  # 12:00 alone
    assert alarms.evaluate(t(90)) == (1, 0)  # 12:00 and 12:01: 8200 of 120000 ms
    alarm = AlarmEvent.objects.get()
    assert (alarm.metric, alarm.value, alarm.unit, alarm.started_at) == ("stall_ratio", 6.833, "%", t(0))
    assert alarms.evaluate(t(150)) == (0, 0)  # 12:01 and 12:02: 6 %, still above
    assert alarms.evaluate(t(210)) == (0, 1)  # 12:02 and 12:03: clear
    alarm.refresh_from_db()
    assert alarm.ended_at == t(210) and alarm.end_reason == ""


def test_nobody_watching_is_no_stall_ratio_verdict(owner):
    add_ingest(owner)
    alarms.add_rule(owner, DOMAIN, metric="stall_ratio", threshold=5, duration_seconds=60)
    live()
    viewers(0, stall_ms=30_000)
    assert alarms.evaluate(t(30)) == (1, 0)
    assert alarms.evaluate(t(600)) == (0, 0)  # no report since: the alarm stays as it is
    assert AlarmEvent.objects.get().is_open
    with pytest.raises(ValidationError) as caught:
        alarms.add_rule(owner, DOMAIN, app="live", metric="stall_ratio", threshold=5, duration_seconds=30)
    assert "stall ratio alarm (the players report per minute) must be 60 to 600" in str(caught.value)
