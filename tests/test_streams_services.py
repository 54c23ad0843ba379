"""streams.services: forbid, resume, and the online, history and block lists."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from domains import services as domain_services
from livecenter.media.policy import StreamKey
from streams import services
from streams.models import ControlAction, PublishSession, StreamBlock, StreamControlEvent
from tests.pagesupport import add_ingest, add_streaming
from tests.streamsupport import FakeEngine, add_pair, at, publish, unpublish

pytestmark = pytest.mark.django_db

KEY = StreamKey("push.example.com", "live", "cam1")


def field_errors(exc: pytest.ExceptionInfo) -> dict:
    return exc.value.message_dict


def assert_nothing_saved(engine: FakeEngine) -> None:
    assert not StreamBlock.objects.exists()
    assert not StreamControlEvent.objects.exists()
    assert engine.kicked == []


# --- Forbid ---------------------------------------------------------------------------


def test_it_forbids_a_stream_for_six_months_by_default(owner, engine, settings):
    add_ingest(owner)
    before = timezone.now()
    result = services.forbid_stream(owner, "push.example.com", "live", "cam1")
    block = StreamBlock.objects.get()
    assert (block.domain.domain_name, block.app, block.stream, block.created_by) == (
        "push.example.com",
        "live",
        "cam1",
        owner,
    )
    assert settings.LIVECENTER_FORBID_DEFAULT_DAYS == 183
    expected = before + dt.timedelta(days=183)
    assert expected <= block.resume_at <= expected + dt.timedelta(seconds=5)
    assert result == services.ForbidResult("push.example.com", "live", "cam1", block.resume_at)
    assert not result.oneshot
    assert engine.kicked == [KEY]
    event = StreamControlEvent.objects.get()
    assert (event.action, event.domain_name, event.app, event.stream, event.by) == (
        ControlAction.FORBID,
        "push.example.com",
        "live",
        "cam1",
        owner,
    )
    assert event.detail.startswith("until ")


def test_it_forbids_until_a_resume_time_in_the_future(owner, engine):
    add_ingest(owner)
    resume = timezone.now() + dt.timedelta(hours=2)
    result = services.forbid_stream(owner, "push.example.com", "live", "cam1", resume_at=resume)
    assert StreamBlock.objects.get().resume_at == resume == result.resume_at


def test_it_reads_a_naive_resume_time_as_utc(owner, engine):
    add_ingest(owner)
    resume = (timezone.now() + dt.timedelta(hours=2)).replace(tzinfo=None, microsecond=0)
    services.forbid_stream(owner, "push.example.com", "live", "cam1", resume_at=resume)
    assert StreamBlock.objects.get().resume_at == resume.replace(tzinfo=dt.UTC)


def test_it_refuses_a_resume_time_in_the_past(owner, engine):
    add_ingest(owner)
    with pytest.raises(ValidationError) as exc:
        services.forbid_stream(
            owner, "push.example.com", "live", "cam1", resume_at=timezone.now() - dt.timedelta(minutes=1)
        )
    assert field_errors(exc) == {"resume_time": ["resume time must be in the future"]}
    assert_nothing_saved(engine)


def test_it_refuses_a_resume_time_beyond_ten_years(owner, engine):
    add_ingest(owner)
    now = timezone.now()
    with pytest.raises(ValidationError) as exc:
        services.forbid_stream(
            owner,
            "push.example.com",
            "live",
            "cam1",
            resume_at=now + services.MAX_BLOCK_DURATION,
            now=now - dt.timedelta(seconds=1),
        )
    assert "within 10 years" in field_errors(exc)["resume_time"][0]
    assert_nothing_saved(engine)
    services.forbid_stream(
        owner, "push.example.com", "live", "cam1", resume_at=now + services.MAX_BLOCK_DURATION, now=now
    )
    assert StreamBlock.objects.get().resume_at == now + services.MAX_BLOCK_DURATION


def test_it_moves_the_resume_time_of_a_stream_forbidden_again(owner, engine):
    add_ingest(owner)
    later = timezone.now() + dt.timedelta(days=2)
    services.forbid_stream(owner, "push.example.com", "live", "cam1", resume_at=later - dt.timedelta(days=1))
    services.forbid_stream(owner, "push.example.com", "live", "cam1", resume_at=later)
    assert StreamBlock.objects.get().resume_at == later
    assert StreamControlEvent.objects.count() == 2
    assert engine.kicked == [KEY, KEY]


def test_it_reuses_an_expired_block(owner, engine):
    add_ingest(owner)
    now = timezone.now()
    services.forbid_stream(owner, "push.example.com", "live", "cam1", resume_at=now + dt.timedelta(minutes=1))
    assert services.list_blocked_streams(owner, now=now + dt.timedelta(minutes=2)).count() == 0
    services.forbid_stream(owner, "push.example.com", "live", "cam1", now=now + dt.timedelta(minutes=2))
    assert StreamBlock.objects.count() == 1
    assert services.list_blocked_streams(owner, now=now + dt.timedelta(minutes=2)).count() == 1


def test_it_interrupts_only_this_once_without_blocking(owner, engine):
    add_ingest(owner)
    result = services.forbid_stream(owner, "push.example.com", "live", "cam1", oneshot=True)
    assert result.oneshot and result.resume_at is None
    assert not StreamBlock.objects.exists()
    assert engine.kicked == [KEY]
    event = StreamControlEvent.objects.get()
    assert event.action == ControlAction.KICK


def test_it_keeps_an_existing_block_when_interrupting_once(owner, engine):
    add_ingest(owner)
    services.forbid_stream(owner, "push.example.com", "live", "cam1")
    services.forbid_stream(owner, "push.example.com", "live", "cam1", oneshot=True)
    assert StreamBlock.objects.count() == 1


def test_it_refuses_a_resume_time_with_only_this_once(owner, engine):
    add_ingest(owner)
    with pytest.raises(ValidationError) as exc:
        services.forbid_stream(
            owner,
            "push.example.com",
            "live",
            "cam1",
            resume_at=timezone.now() + dt.timedelta(hours=1),
            oneshot=True,
        )
    assert "resume_time" in field_errors(exc)
    assert_nothing_saved(engine)


def test_it_forbids_on_the_ingest_domain_of_a_streaming_domain(owner, engine):
    _, play = add_pair(owner)
    sub = add_streaming(owner, "play2.example.com")
    domain_services.bind_main_domain(sub, play.domain_name)
    services.forbid_stream(owner, "play.example.com", "live", "cam1")
    services.forbid_stream(owner, "play2.example.com", "live", "cam2")
    assert {b.stream_url for b in StreamBlock.objects.all()} == {
        "push.example.com/live/cam1",
        "push.example.com/live/cam2",
    }
    assert engine.kicked == [KEY, StreamKey("push.example.com", "live", "cam2")]


def test_it_refuses_a_streaming_domain_without_an_ingest_domain(owner, engine):
    add_streaming(owner)
    with pytest.raises(ValidationError) as exc:
        services.forbid_stream(owner, "play.example.com", "live", "cam1")
    assert "play.example.com is a streaming domain with no ingest domain" in field_errors(exc)["domain"][0]
    assert_nothing_saved(engine)


def test_it_refuses_another_operators_domain(owner, outsider, engine):
    add_ingest(owner)
    with pytest.raises(ValidationError) as exc:
        services.forbid_stream(outsider, "push.example.com", "live", "cam1")
    assert field_errors(exc) == {"domain": ["push.example.com is not one of your domains"]}
    assert_nothing_saved(engine)


@pytest.mark.parametrize(
    ("app", "stream", "field", "message"),
    [
        ("", "cam1", "app", "app name is required"),
        ("live", " ", "stream", "stream name is required"),
        ("li ve", "cam1", "app", "app name must be 1-255 letters, digits, '_' or '-'"),
        ("live", "cam/1", "stream", "stream name must be 1-255 letters, digits, '_' or '-'"),
        ("*", "cam1", "app", "app name must be 1-255 letters, digits, '_' or '-'"),
    ],
)
def test_it_names_the_field_of_a_bad_name(owner, engine, app, stream, field, message):
    add_ingest(owner)
    with pytest.raises(ValidationError) as exc:
        services.forbid_stream(owner, "push.example.com", app, stream)
    assert field_errors(exc) == {field: [message]}
    assert_nothing_saved(engine)


def test_it_requires_a_domain(owner, engine):
    with pytest.raises(ValidationError) as exc:
        services.forbid_stream(owner, "", "live", "cam1")
    assert field_errors(exc) == {"domain": ["domain is required"]}


def test_it_holds_an_operator_to_the_forbidden_stream_limit(owner, engine, settings):
    settings.LIVECENTER_MAX_BLOCKED_STREAMS = 1
    add_ingest(owner)
    services.forbid_stream(owner, "push.example.com", "live", "cam1")
    services.forbid_stream(owner, "push.example.com", "live", "cam1")  # the same one again is fine
    with pytest.raises(ValidationError) as exc:
        services.forbid_stream(owner, "push.example.com", "live", "cam2")
    assert "limit" in field_errors(exc)["stream"][0]
    assert StreamBlock.objects.count() == 1


# --- Resume -----------------------------------------------------------------------------


def test_it_resumes_a_forbidden_stream(owner, engine):
    add_ingest(owner)
    services.forbid_stream(owner, "push.example.com", "live", "cam1")
    result = services.resume_stream(owner, "push.example.com", "live", "cam1")
    assert result == services.ResumeResult("push.example.com", "live", "cam1", 1)
    assert not StreamBlock.objects.exists()
    actions = list(StreamControlEvent.objects.values_list("action", flat=True))
    assert actions == [ControlAction.RESUME, ControlAction.FORBID]  # newest first


def test_it_resumes_a_stream_in_every_app_with_a_star(owner, engine):
    add_ingest(owner)
    for app in ("live", "backup"):
        services.forbid_stream(owner, "push.example.com", app, "cam1")
    services.forbid_stream(owner, "push.example.com", "live", "cam2")
    assert services.resume_stream(owner, "push.example.com", "*", "cam1").resumed == 2
    assert [b.stream_url for b in StreamBlock.objects.all()] == ["push.example.com/live/cam2"]


def test_it_says_when_a_resumed_stream_was_not_forbidden(owner, engine):
    add_ingest(owner)
    assert services.resume_stream(owner, "push.example.com", "live", "cam1").resumed == 0
    assert StreamControlEvent.objects.get().detail == "was not forbidden"


def test_it_resumes_through_a_streaming_domain(owner, engine):
    add_pair(owner)
    services.forbid_stream(owner, "push.example.com", "live", "cam1")
    assert services.resume_stream(owner, "play.example.com", "live", "cam1").resumed == 1


def test_it_refuses_to_resume_another_operators_stream(owner, outsider, engine):
    add_ingest(owner)
    services.forbid_stream(owner, "push.example.com", "live", "cam1")
    with pytest.raises(ValidationError) as exc:
        services.resume_stream(outsider, "push.example.com", "live", "cam1")
    assert field_errors(exc) == {"domain": ["push.example.com is not one of your domains"]}
    assert StreamBlock.objects.count() == 1
    assert StreamControlEvent.objects.count() == 1


def test_it_names_the_field_of_a_bad_resume(owner, engine):
    add_ingest(owner)
    with pytest.raises(ValidationError) as exc:
        services.resume_stream(owner, "push.example.com", "li ve", "cam1")
    assert field_errors(exc) == {"app": ["app name must be 1-255 letters, digits, '_' or '-', or '*' for every app"]}
    assert not StreamControlEvent.objects.exists()


# --- Forbidden streams and control history -------------------------------------------------


def test_it_lists_only_the_operators_current_blocks(owner, outsider, engine):
    add_ingest(owner)
    add_ingest(owner, "push2.example.com")
    add_ingest(outsider, "theirs.example.com")
    now = timezone.now()
    services.forbid_stream(owner, "push.example.com", "live", "cam1", resume_at=now + dt.timedelta(hours=1))
    services.forbid_stream(owner, "push2.example.com", "live", "cam2")
    services.forbid_stream(outsider, "theirs.example.com", "live", "cam3")
    assert {b.stream_url for b in services.list_blocked_streams(owner)} == {
        "push.example.com/live/cam1",
        "push2.example.com/live/cam2",
    }
    assert [b.stream for b in services.list_blocked_streams(owner, "push2.example.com")] == ["cam2"]
    later = now + dt.timedelta(hours=2)
    assert [b.stream for b in services.list_blocked_streams(owner, now=later)] == ["cam2"]
    with pytest.raises(ValidationError) as exc:
        services.list_blocked_streams(owner, "theirs.example.com")
    assert field_errors(exc) == {"domain": ["theirs.example.com is not one of your domains"]}


def test_it_lists_the_operators_control_history(owner, outsider, engine):
    add_ingest(owner)
    add_ingest(outsider, "theirs.example.com")
    services.forbid_stream(owner, "push.example.com", "live", "cam1")
    services.resume_stream(owner, "push.example.com", "live", "cam1")
    services.forbid_stream(outsider, "theirs.example.com", "live", "cam1", oneshot=True)
    history = services.list_control_history(owner)
    assert [e.action for e in history] == [ControlAction.RESUME, ControlAction.FORBID]
    assert [e.action for e in services.list_control_history(outsider)] == [ControlAction.KICK]


# --- Online streams ----------------------------------------------------------------------------


def test_it_lists_the_operators_live_streams(owner, outsider):
    add_pair(owner)
    add_ingest(owner, "push2.example.com")
    add_ingest(outsider, "theirs.example.com")
    publish("push.example.com", "live", "cam1", "s1", started_at=at("2026-05-01T10:00:00"))
    publish("push2.example.com", "live", "cam2", "s2", started_at=at("2026-05-01T11:00:00"))
    stopped = publish("push.example.com", "live", "cam3", "s3")
    unpublish(stopped, at("2026-05-01T12:00:00"))
    publish("theirs.example.com", "live", "cam4", "s4")
    assert [s.session_id for s in services.list_online_streams(owner)] == ["s2", "s1"]
    assert [s.session_id for s in services.list_online_streams(outsider)] == ["s4"]


def test_it_filters_live_streams_by_domain_app_and_stream(owner):
    add_pair(owner)
    add_ingest(owner, "push2.example.com")
    publish("push.example.com", "live", "cam1", "s1")
    publish("push.example.com", "live", "cam10", "s2")
    publish("push.example.com", "backup", "cam1", "s3")
    publish("push2.example.com", "live", "cam1", "s4")

    def ids(**filters):
        return sorted(s.session_id for s in services.list_online_streams(owner, **filters))

    assert ids(domain_name="push.example.com") == ["s1", "s2", "s3"]
    assert ids(domain_name="play.example.com") == ["s1", "s2", "s3"]  # its ingest domain's streams
    assert ids(domain_name="push.example.com", app="live") == ["s1", "s2"]
    assert ids(stream="CAM1") == ["s1", "s2", "s3", "s4"]  # fuzzy: contains, any case
    assert ids(stream="cam1", query_type="strict") == ["s1", "s3", "s4"]
    assert ids(app="live", stream="cam1", query_type="strict") == ["s1", "s4"]


def test_it_refuses_another_operators_domain_and_a_bad_query_type(owner, outsider):
    add_ingest(outsider, "theirs.example.com")
    with pytest.raises(ValidationError) as exc:
        services.list_online_streams(owner, "theirs.example.com")
    assert field_errors(exc) == {"domain": ["theirs.example.com is not one of your domains"]}
    with pytest.raises(ValidationError) as exc:
        services.list_online_streams(owner, stream="cam", query_type="exact")
    assert field_errors(exc) == {"query_type": ["query type must be one of: fuzzy, strict"]}


# --- Publish history ---------------------------------------------------------------------------


@pytest.fixture
def history(owner):
    add_pair(owner)
    rows = {
        "before": ("2026-05-01T06:00:00", "2026-05-01T07:00:00"),
        "across_start": ("2026-05-01T07:30:00", "2026-05-01T08:30:00"),
        "inside": ("2026-05-01T09:00:00", "2026-05-01T09:30:00"),
        "live": ("2026-05-01T09:45:00", None),
        "after": ("2026-05-01T10:30:00", None),
    }
    for name, (start, stop) in rows.items():
        session = publish("push.example.com", "live", name, name, started_at=at(start))
        if stop:
            unpublish(session, at(stop))
    return rows


def test_it_lists_sessions_live_during_the_range(owner, history):
    sessions = services.list_publish_history(
        owner, "push.example.com", start=at("2026-05-01T08:00:00"), end=at("2026-05-01T10:00:00")
    )
    assert [s.session_id for s in sessions] == ["across_start", "inside", "live"]


def test_it_defaults_to_the_day_up_to_now(owner, history):
    sessions = services.list_publish_history(owner, now=at("2026-05-02T07:15:00"))
    assert [s.session_id for s in sessions] == ["across_start", "inside", "live", "after"]  # not "before"


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [
        ("publish_time_asc", ["across_start", "inside", "live"]),
        ("publish_time_desc", ["live", "inside", "across_start"]),
        ("stream_name_asc", ["across_start", "inside", "live"]),
        ("stream_name_desc", ["live", "inside", "across_start"]),
    ],
)
def test_it_orders_the_history(owner, history, order_by, expected):
    sessions = services.list_publish_history(
        owner, start=at("2026-05-01T08:00:00"), end=at("2026-05-01T10:00:00"), order_by=order_by
    )
    assert [s.session_id for s in sessions] == expected


def test_it_filters_the_history_by_app_and_stream(owner, history):
    publish("push.example.com", "backup", "inside2", "other-app", started_at=at("2026-05-01T09:00:00"))
    window = {"start": at("2026-05-01T08:00:00"), "end": at("2026-05-01T10:00:00")}
    assert [s.session_id for s in services.list_publish_history(owner, app="backup", **window)] == ["other-app"]
    assert [s.session_id for s in services.list_publish_history(owner, stream="insi", **window)] == [
        "inside",
        "other-app",
    ]
    strict = services.list_publish_history(owner, stream="inside", query_type="strict", **window)
    assert [s.session_id for s in strict] == ["inside"]


def test_it_keeps_history_of_the_operators_domains_only(owner, outsider, history):
    window = {"start": at("2026-05-01T00:00:00"), "end": at("2026-05-02T00:00:00")}
    assert services.list_publish_history(outsider, **window).count() == 0
    with pytest.raises(ValidationError) as exc:
        services.list_publish_history(outsider, "push.example.com", **window)
    assert field_errors(exc) == {"domain": ["push.example.com is not one of your domains"]}


@pytest.mark.parametrize(
    ("start", "end", "field", "message"),
    [
        ("2026-05-01T10:00:00", "2026-05-01T10:00:00", "end_time", "end time must be after the start time"),
        ("2026-05-01T10:00:00", "2026-05-01T09:00:00", "end_time", "end time must be after the start time"),
        ("2026-04-01T09:59:59", "2026-05-01T10:00:00", "end_time", "the time range must not exceed 30 days"),
    ],
)
def test_it_names_the_field_of_a_bad_range(owner, start, end, field, message):
    with pytest.raises(ValidationError) as exc:
        services.list_publish_history(owner, start=at(start), end=at(end))
    assert field_errors(exc) == {field: [message]}


def test_it_accepts_a_range_of_exactly_thirty_days(owner, history):
    sessions = services.list_publish_history(owner, start=at("2026-04-01T10:00:00"), end=at("2026-05-01T10:00:00"))
    assert sessions.count() == 4


def test_it_refuses_an_unknown_order(owner):
    with pytest.raises(ValidationError) as exc:
        services.list_publish_history(owner, order_by="random")
    assert list(field_errors(exc)) == ["order_by"]


def test_it_keeps_a_deleted_domains_sessions_out_of_the_lists(owner, history):
    domain_services.delete_domain(domain_services.get_owned_domain(owner, "push.example.com"))
    window = {"start": at("2026-05-01T00:00:00"), "end": at("2026-05-02T00:00:00")}
    assert services.list_publish_history(owner, **window).count() == 0
    assert PublishSession.objects.count() == 5  # kept for the record
