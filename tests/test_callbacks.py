"""Callbacks (issue 16): the settings with their bad input (the page and the
API name the field), the secret at rest, and delivery by the task's own code
to a receiver run by the test: signed, retried with backoff, recorded,
refused at delivery time when the name resolves where callbacks may not go."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from asgiref.sync import async_to_sync
from django.db import OperationalError, connection
from django.urls import include, path
from django.utils import timezone
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from callbacks import services, tasks
from callbacks.models import CallbackConfig, Delivery, DeliveryAttempt, DeliveryStatus
from livecenter import outage
from livecenter.media import webhooks
from livecenter.media.policy import StreamKey, StreamPublished, StreamUnpublished
from nodes import bridge
from tests.callbacksupport import Receiver
from tests.pagesupport import add_ingest, add_streaming, assert_field_error, page

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/domains/push.example.com/callbacks/"
API = "/api/v1/domains/push.example.com/callbacks/"
SECRET = "receiver-shared-secret-1"
KEY = StreamKey("push.example.com", "live", "cam1")


@pytest.fixture
def loopback(settings):
    """Receivers on loopback (the test's own) may be called."""
    settings.LIVECENTER_CALLBACKS_ALLOW_PRIVATE = True
    settings.LIVECENTER_CALLBACKS_BACKOFF_SECONDS = 0.2
    return settings


@pytest.fixture
def sent(monkeypatch):
    """The task messages sent (delivery id, attempt, countdown), not run: the test runs them."""
    messages = []
    monkeypatch.setattr(
        tasks.deliver_callback, "apply_async", lambda args, countdown=0, **kw: messages.append((*args, countdown))
    )
    return messages


def run_messages(sent) -> None:
    """Run the sent messages in order, as a worker would, waiting their countdown."""
    while sent:
        delivery_id, attempt, countdown = sent.pop(0)
        time.sleep(countdown)
        tasks.deliver_callback(delivery_id, attempt)


# --- Settings and bad input ---------------------------------------------------------------------


def test_it_keeps_the_secret_encrypted_and_never_shows_it(client, owner, loopback):
    services.configure_callbacks(add_ingest(owner), url="https://93.184.215.14/live", secret=SECRET)
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM callbacks_callbackconfig")
        (stored,) = cursor.fetchone()
    assert SECRET not in stored and stored
    assert CallbackConfig.objects.get().secret == SECRET
    client.force_login(owner)
    body = page(client.get(URL))
    assert SECRET not in body and 'id="callback-secret-masked">********<' in body
    api = APIClient()
    api.force_authenticate(owner)
    data = api.get(API).json()
    assert data["secret"] == "********" and data["url"] == "https://93.184.215.14/live"


def test_it_saves_the_settings_on_the_page(client, owner, loopback):
    add_ingest(owner)
    client.force_login(owner)
    with Receiver() as receiver:
        data = {"url": receiver.url, "secret": SECRET, "publish_hook_url": receiver.url}
        r = client.post(URL, {**data, "publish_hook_timeout_ms": "1500", "publish_hook_allow_when_unreachable": "on"})
    assert r.status_code == 302 and r["Location"] == URL
    config = CallbackConfig.objects.get()
    assert (config.url, config.secret, config.publish_hook_timeout_ms) == (receiver.url, SECRET, 1500)
    assert config.publish_hook_allow_when_unreachable
    hook = services.publish_hook("push.example.com")
    assert (hook.url, hook.timeout_seconds, hook.allow_when_unreachable) == (receiver.url, 1.5, True)
    body = page(client.get(URL))
    assert f"Callback URL set to {receiver.url}, secret replaced, publish authorisation URL set to" in body
    assert "publish authorisation timeout set to 1500 ms" in body and SECRET not in body


@pytest.mark.parametrize(
    ("field", "url", "allow_private", "words"),
    [
        ("url", "http://169.254.169.254/latest/meta-data/", True, "169.254.169.254, a link-local address"),
        ("url", "http://localhost:9/hook", False, "127.0.0.1, a loopback or private address"),
        ("url", "http://127.0.0.1:8000/", True, "this product's own port 8000"),
        ("url", "http://127.0.0.1:1935/", True, "this product's own port 1935"),
        ("url", "ftp://93.184.215.14/", True, "callback URL must start with http:// or https://"),
        ("publish_hook_url", "http://[::ffff:169.254.169.254]/", True, "link-local"),
        ("publish_hook_url", "http://no-such-host.invalid/", True, "cannot resolve no-such-host.invalid"),
    ],
)
def test_it_refuses_a_url_a_callback_may_not_reach_naming_the_field(
    client, owner, settings, field, url, allow_private, words
):
    settings.LIVECENTER_CALLBACKS_ALLOW_PRIVATE = allow_private
    add_ingest(owner)
    client.force_login(owner)
    data = {"url": "", "secret": SECRET, "publish_hook_url": "", "publish_hook_timeout_ms": "2000", field: url}
    assert_field_error(client.post(URL, data), "form", field, words)
    api = APIClient()
    api.force_authenticate(owner)
    r = api.patch(API, {field: url, "secret": SECRET}, format="json")
    assert r.status_code == 400 and words in r.json()[field][0], r.json()
    assert not CallbackConfig.objects.exists()


def test_it_names_the_other_bad_fields(owner, loopback):
    domain = add_ingest(owner)
    api = APIClient()
    api.force_authenticate(owner)
    cases = [
        ({"url": "https://93.184.215.14/"}, "secret", "secret is required"),
        ({"secret": "short"}, "secret", "secret must be 16 to 128 characters"),
        ({"publish_hook_timeout_ms": 50}, "publish_hook_timeout_ms", "must be 100 to 10000 milliseconds"),
        ({"colour": "red"}, "colour", ""),
    ]
    for data, field, words in cases:
        r = api.patch(API, data, format="json")
        assert r.status_code == 400 and field in r.json(), (data, r.json())
        assert words in str(r.json()[field]), r.json()
    streaming = add_streaming(owner)
    with pytest.raises(Exception, match="callbacks belong to an ingest domain"):
        services.configure_callbacks(streaming, url="https://93.184.215.14/", secret=SECRET)
    assert services.config_of(domain).pk is None


def test_it_is_a_404_for_an_outsider(client, owner, outsider, loopback, sent):
    services.configure_callbacks(add_ingest(owner), url="https://93.184.215.14/", secret=SECRET)
    delivery = services.queue_event("push.example.com", services.STREAM_PUBLISHED, {"app": "live"})
    client.force_login(outsider)
    assert client.get(URL).status_code == 404
    assert client.post(f"{URL}{delivery.pk}/resend/").status_code == 404
    api = APIClient()
    api.force_authenticate(outsider)
    assert api.get(API).status_code == 404
    assert api.get(f"{API}deliveries/").status_code == 404
    assert api.post(f"/api/v1/callbacks/deliveries/{delivery.pk}/resend/").status_code == 404
    assert CallbackConfig.objects.get().url == "https://93.184.215.14/"


# --- Delivery -------------------------------------------------------------------------------------


def test_it_delivers_a_signed_event_after_two_failures_and_shows_the_three_attempts(client, owner, loopback, sent):
    with Receiver(lambda received, count: (500, "busy") if count < 2 else (200, "ok")) as receiver:
        services.configure_callbacks(add_ingest(owner), url=receiver.url, secret=SECRET)
        started = time.time()
        services.stream_published(StreamPublished(KEY, "s1", "rtmp", "127.0.0.1:5555", "rtmp://push.example.com/live/cam1", started, "node-a"))  # fmt: skip  # noqa: E501
        services.stream_unpublished(StreamUnpublished(KEY, "s1", started + 5, "", "node-a", "", 123456))
        run_messages(sent)
    published, unpublished = receiver.events("stream.published"), receiver.events("stream.unpublished")
    assert len(published) == 3 and len(unpublished) == 3
    assert len({r.headers["X-LiveCenter-Delivery"] for r in published}) == 1  # one event, tried three times
    for received in receiver.requests:
        assert webhooks.verify(SECRET, received.headers, received.body, time.time())
    event = published[-1].json
    assert (event["event"], event["domain"], event["app"], event["stream"]) == (
        "stream.published", "push.example.com", "live", "cam1")  # fmt: skip
    assert (event["protocol"], event["client_ip"], event["session_id"]) == ("rtmp", "127.0.0.1", "s1")
    done = unpublished[-1].json
    assert done["bytes_received"] == 123456 and done["session_id"] == "s1"
    delivery = Delivery.objects.get(event="stream.published")
    assert (delivery.status, delivery.attempts, delivery.status_code) == (DeliveryStatus.DELIVERED, 3, 200)
    attempts = list(DeliveryAttempt.objects.filter(delivery=delivery))
    assert [(a.number, a.ok, a.status_code) for a in attempts] == [(1, False, 500), (2, False, 500), (3, True, 200)]
    assert all(a.latency_ms is not None and a.latency_ms >= 0 for a in attempts)
    # Backoff: the base, then twice it.
    assert (attempts[1].at - attempts[0].at).total_seconds() >= 0.2
    assert (attempts[2].at - attempts[1].at).total_seconds() >= 0.4

    client.force_login(owner)
    body = page(client.get(URL))
    for number in (1, 2, 3):
        assert f'data-delivery="{delivery.event_id}" data-attempt="{number}"' in body
    assert body.count('class="attempt-code">500<') == 4 and body.count('class="attempt-code">200<') == 2
    assert "HTTP 500" in body and "Delivered" in body


def test_it_resends_a_delivery_with_its_event_id(client, owner, loopback, sent):
    with Receiver(lambda received, count: (200, "ok")) as receiver:
        services.configure_callbacks(add_ingest(owner), url=receiver.url, secret=SECRET)
        delivery = services.queue_event("push.example.com", services.STREAM_PUBLISHED, {"app": "live"})
        run_messages(sent)
        client.force_login(owner)
        r = client.post(f"{URL}{delivery.pk}/resend/")
        assert r.status_code == 302
        run_messages(sent)
        api = APIClient()
        api.force_authenticate(owner)
        assert api.post(f"/api/v1/callbacks/deliveries/{delivery.pk}/resend/").status_code == 202
        run_messages(sent)
    assert [r.headers["X-LiveCenter-Delivery"] for r in receiver.requests] == [delivery.event_id] * 3
    rows = api.get(f"{API}deliveries/").json()
    rows = rows.get("results", rows)
    assert [(row["event_id"], row["status"], row["attempts"]) for row in rows] == [(delivery.event_id, "delivered", 3)]
    assert [a["number"] for a in rows[0]["attempt_log"]] == [1, 2, 3]


def test_it_gives_up_after_the_retry_period(owner, loopback, sent):
    loopback.LIVECENTER_CALLBACKS_RETRY_HOURS = 0.6 / 3600  # room for the first two waits (0.2 s, 0.4 s), not a third
    with Receiver(lambda received, count: (503, "down")) as receiver:
        services.configure_callbacks(add_ingest(owner), url=receiver.url, secret=SECRET)
        services.queue_event("push.example.com", services.SNAPSHOT_TAKEN, {"app": "live"})
        run_messages(sent)
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED and 2 <= delivery.attempts <= 3
    assert len(receiver.requests) == delivery.attempts


def test_it_refuses_at_delivery_a_name_that_resolves_to_loopback(owner, loopback, sent):
    with Receiver() as receiver:
        url = receiver.url.replace("127.0.0.1", "localhost")
        services.configure_callbacks(add_ingest(owner), url=url, secret=SECRET)  # allowed when saved
        loopback.LIVECENTER_CALLBACKS_ALLOW_PRIVATE = False  # and no longer
        services.queue_event("push.example.com", services.RECORDING_READY, {"app": "live"})
        run_messages(sent)
    assert receiver.requests == []
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 1  # not retried: the URL must change
    assert "127.0.0.1, a loopback or private address" in delivery.error


def test_it_queues_nothing_for_a_domain_without_a_url(owner, sent):
    add_ingest(owner)
    assert services.queue_event("push.example.com", services.STREAM_PUBLISHED, {}) is None
    assert sent == [] and not Delivery.objects.exists()


def test_it_generates_the_api_schema_without_warnings():
    GENERATOR_STATS.reset()
    generator = SchemaGenerator(patterns=[path("api/v1/", include("callbacks.api_urls"))])
    schema = generator.get_schema(request=None, public=True)
    assert not GENERATOR_STATS, "drf-spectacular warned while generating the API schema"
    validate_schema(schema)
    assert set(schema["paths"]) == {
        "/api/v1/domains/{domain_name}/callbacks/",
        "/api/v1/domains/{domain_name}/callbacks/deliveries/",
        "/api/v1/callbacks/deliveries/{delivery_id}/resend/",
    }
    update = schema["components"]["schemas"]["PatchedCallbackConfigUpdateRequest"]["properties"]
    assert update["secret"]["writeOnly"] is True


def test_it_drops_finished_deliveries_after_the_keeping_period(owner, loopback, sent):
    services.configure_callbacks(add_ingest(owner), url="https://93.184.215.14/", secret=SECRET)
    old, new, pending = (services.queue_event("push.example.com", services.SNAPSHOT_TAKEN, {}) for _ in range(3))
    Delivery.objects.filter(pk__in=[old.pk, pending.pk]).update(
        created_at=timezone.now() - dt.timedelta(days=loopback.LIVECENTER_CALLBACKS_KEEP_DAYS + 1)
    )
    Delivery.objects.filter(pk__in=[old.pk, new.pk]).update(status=DeliveryStatus.DELIVERED)
    assert services.prune_deliveries() == 1
    assert set(Delivery.objects.values_list("pk", flat=True)) == {new.pk, pending.pk}


def test_it_sends_again_what_a_lost_message_left_pending(owner, loopback, sent):
    services.configure_callbacks(add_ingest(owner), url="https://93.184.215.14/", secret=SECRET)
    lost, due = (services.queue_event("push.example.com", services.SNAPSHOT_TAKEN, {}) for _ in range(2))
    sent.clear()
    Delivery.objects.filter(pk=lost.pk).update(attempts=2, next_attempt_at=timezone.now() - dt.timedelta(minutes=2))
    Delivery.objects.filter(pk=due.pk).update(next_attempt_at=timezone.now() + dt.timedelta(minutes=2))
    assert services.send_overdue() == 1
    assert sent == [(lost.pk, 3, 0)]
    # A duplicate of a message already taken claims nothing.
    assert services.claim(lost.pk, 3) is not None and services.claim(lost.pk, 3) is None


def test_a_publish_during_a_database_outage_is_called_back_once_it_is_written(owner, loopback, sent, monkeypatch):
    services.configure_callbacks(add_ingest(owner), url="http://127.0.0.1:9/hook", secret=SECRET)
    sink = bridge.DatabaseEventSink()
    event = StreamPublished(KEY, "s1", "rtmp", "127.0.0.1:5555", "rtmp://push.example.com/live/cam1", time.time(), "n")
    written = bridge._db

    async def unreachable(*args, **kwargs):
        raise OperationalError("the database is down")

    monkeypatch.setattr(bridge, "_db", unreachable)
    async_to_sync(sink.published)(event)
    assert len(sink.pending) == 1 and not Delivery.objects.exists()  # buffered, and no callback yet
    monkeypatch.setattr(bridge, "_db", written)
    monkeypatch.setattr(outage.database, "_next_try", 0.0)  # the next event tries the database again
    async_to_sync(sink.replay)()
    outage.database.succeeded()
    assert not len(sink.pending)
    delivery = Delivery.objects.get()
    assert delivery.event == "stream.published" and len(sent) == 1
