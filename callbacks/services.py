"""Callbacks (issue 16): an ingest domain's event URL, publish hook and
secret; the events, queued as Delivery rows; and their delivery by a Celery
task (tasks.py), with retries and exponential backoff for
LIVECENTER_CALLBACKS_RETRY_HOURS.

Events come from the node's event sink (sink.py: published, unpublished)
and from the media workers' and monitoring's signals (receivers.py:
recording ready, snapshot taken, transcode failed, alarm opened and closed). Queuing one is a row and a task message
sent on commit; the node's side never waits for a receiver.

A URL is checked when it is saved (scheme, then every address its name
resolves to, against webhooks.AddressRule) and again at every call, after
resolution, by the client (webhook_client.py): a name may point elsewhere
later.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import socket
import uuid
from collections.abc import Iterable

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone

from domains.models import Domain
from livecenter.lib.api import FieldErrors, invalid
from livecenter.media.policy import PublishHook, StreamPublished, StreamUnpublished
from livecenter.media.publish_hook import client_ip
from livecenter.media.redact import redact_text
from livecenter.media.webhook_client import WebhookError, WebhookRefused, post
from livecenter.media.webhooks import AddressRule, CallbackUrlError, parse_callback_url, signed_headers
from streams.models import PublishSession

from .models import CallbackConfig, Delivery, DeliveryAttempt, DeliveryStatus

log = logging.getLogger(__name__)

STREAM_PUBLISHED = "stream.published"
STREAM_UNPUBLISHED = "stream.unpublished"
RECORDING_READY = "recording.ready"
SNAPSHOT_TAKEN = "snapshot.taken"
TRANSCODE_FAILED = "transcode.failed"
ALARM_OPENED = "alarm.opened"
ALARM_CLOSED = "alarm.closed"
EVENTS = (STREAM_PUBLISHED, STREAM_UNPUBLISHED, RECORDING_READY, SNAPSHOT_TAKEN, TRANSCODE_FAILED, ALARM_OPENED,
          ALARM_CLOSED)  # fmt: skip

MIN_SECRET_CHARS = 16
MAX_SECRET_CHARS = 128
MIN_HOOK_TIMEOUT_MS = 100
MAX_HOOK_TIMEOUT_MS = 10_000
# A delivery's latest attempts the console shows and the API lists.
RECENT_DELIVERIES = 100

FIELD_LABELS = {"url": "callback URL", "publish_hook_url": "publish authorisation URL"}


# --- Configuration ------------------------------------------------------------------------------


def address_rule() -> AddressRule:
    """webhooks.AddressRule from the settings: the product's own ports (the
    console's and the media node's) and hosts, and whether loopback and
    private addresses may be called."""
    ports = {
        settings.LIVECENTER_CONSOLE_PORT,
        settings.LIVECENTER_RTMP_PORT,
        settings.LIVECENTER_HTTP_PORT,
        settings.LIVECENTER_SRT_PORT,
        settings.LIVECENTER_HTTPS_PORT,
        settings.LIVECENTER_RTMPS_PORT,
        settings.LIVECENTER_MEDIA_RTMP_PORT,
        settings.LIVECENTER_MEDIA_HTTP_PORT,
        settings.LIVECENTER_MEDIA_SRT_PORT,
        settings.LIVECENTER_MEDIA_HTTPS_PORT,
        settings.LIVECENTER_MEDIA_RTMPS_PORT,
        *settings.LIVECENTER_CALLBACKS_REFUSED_PORTS,
    }
    hosts = {settings.LIVECENTER_CONSOLE_HOST, settings.LIVECENTER_MEDIA_HOST, settings.LIVECENTER_MEDIA_INTERNAL_HOST}
    return AddressRule(
        allow_private=settings.LIVECENTER_CALLBACKS_ALLOW_PRIVATE,
        own_ports=frozenset(p for p in ports if p),
        own_hosts=frozenset(h for h in hosts if h and h not in ("0.0.0.0", "::")),
    )


def check_url(field: str, url: str, rule: AddressRule | None = None) -> None:
    """A ValidationError naming `field` unless `url` may be called now."""
    label = FIELD_LABELS[field]
    try:
        target = parse_callback_url(url)
    except CallbackUrlError as exc:
        raise invalid(field, f"{label} {exc}") from None
    rule = rule or address_rule()
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise invalid(field, f"{label}: cannot resolve {target.host} ({exc})") from None
    refusal = rule.first_refusal(list(dict.fromkeys(info[4][0] for info in infos)), target.port)
    if refusal:
        raise invalid(field, f"{label} must not point at this address: {refusal}")


def config_of(domain: Domain) -> CallbackConfig:
    """The domain's callback settings (unsaved and empty when it has none)."""
    try:
        return domain.callback_config
    except CallbackConfig.DoesNotExist:
        return CallbackConfig(domain=domain)


def check_callbacks(
    *,
    url: str | None = None,
    secret: str | None = None,
    publish_hook_url: str | None = None,
    publish_hook_timeout_ms: int | None = None,
) -> None:
    """configure_callbacks' rules on the values given (None: not given),
    every bad field reported at once."""
    errors = FieldErrors()
    url = url.strip() if url is not None else None
    publish_hook_url = publish_hook_url.strip() if publish_hook_url is not None else None
    for field, value in (("url", url), ("publish_hook_url", publish_hook_url)):
        if value:
            with errors.check():
                check_url(field, value)
    if secret is not None:
        # The message never repeats the secret, nor its length.
        with errors.check():
            if not MIN_SECRET_CHARS <= len(secret) <= MAX_SECRET_CHARS:
                raise invalid("secret", f"secret must be {MIN_SECRET_CHARS} to {MAX_SECRET_CHARS} characters")
            if secret != secret.strip() or not secret.isprintable():
                raise invalid("secret", "secret must be printable and not begin or end with a space")
    if publish_hook_timeout_ms is not None:
        with errors.check():
            if not MIN_HOOK_TIMEOUT_MS <= publish_hook_timeout_ms <= MAX_HOOK_TIMEOUT_MS:
                raise invalid(
                    "publish_hook_timeout_ms",
                    f"publish authorisation timeout must be {MIN_HOOK_TIMEOUT_MS} to {MAX_HOOK_TIMEOUT_MS}"
                    " milliseconds",
                )
    errors.raise_any()


def configure_callbacks(
    domain: Domain,
    *,
    url: str | None = None,
    secret: str | None = None,
    publish_hook_url: str | None = None,
    publish_hook_timeout_ms: int | None = None,
    publish_hook_allow_when_unreachable: bool | None = None,
) -> CallbackConfig:
    """Change an ingest domain's callbacks. None keeps a value; an empty URL
    turns that callback off. A URL needs a secret, set now or before."""
    if not domain.is_ingest:
        raise invalid(
            "url",
            "callbacks belong to an ingest domain: its streams are published there,"
            " and their events are sent from there",
        )
    url = url.strip() if url is not None else None
    publish_hook_url = publish_hook_url.strip() if publish_hook_url is not None else None
    check_callbacks(url=url, secret=secret, publish_hook_url=publish_hook_url,
                    publish_hook_timeout_ms=publish_hook_timeout_ms)  # fmt: skip
    config = config_of(domain)
    if url is not None:
        config.url = url
    if publish_hook_url is not None:
        config.publish_hook_url = publish_hook_url
    if secret is not None:
        config.secret = secret
        config.secret_set_at = timezone.now()
    if publish_hook_timeout_ms is not None:
        config.publish_hook_timeout_ms = publish_hook_timeout_ms
    if publish_hook_allow_when_unreachable is not None:
        config.publish_hook_allow_when_unreachable = publish_hook_allow_when_unreachable
    if (config.url or config.publish_hook_url) and not config.secret:
        raise invalid("secret", "secret is required: it signs every callback, so receivers can check them")
    config.save()
    return config


def publish_hook(domain_name: str) -> PublishHook | None:
    """The ingest domain's publish authorisation callback, for the node's policy."""
    config = (
        CallbackConfig.objects.filter(domain__domain_name=domain_name, domain__domain_type="ingest")
        .exclude(publish_hook_url="")
        .first()
    )
    if config is None or not config.secret:
        return None
    return PublishHook(
        url=config.publish_hook_url,
        secret=config.secret,
        timeout_seconds=config.publish_hook_timeout_ms / 1000,
        allow_when_unreachable=config.publish_hook_allow_when_unreachable,
        rule=address_rule(),
    )


# --- Events -------------------------------------------------------------------------------------


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if value is not None else None


def _unix(seconds: float) -> str:
    return _iso(dt.datetime.fromtimestamp(seconds, dt.UTC))


def _console_url(path: str) -> str:
    return settings.LIVECENTER_CALLBACKS_CONSOLE_URL.rstrip("/") + path


def queue_event(domain_name: str, event: str, data: dict) -> Delivery | None:
    """Queue `event` for the domain's event URL; None when it has none. The
    task is sent once the row is committed."""
    config = (
        CallbackConfig.objects.select_related("domain")
        .filter(domain__domain_name=domain_name, domain__domain_type="ingest")
        .exclude(url="")
        .first()
    )
    if config is None:
        return None
    now = timezone.now()
    event_id = uuid.uuid4().hex
    payload = {"event": event, "id": event_id, "time": _iso(now), "domain": domain_name, **data}
    delivery = Delivery.objects.create(
        domain=config.domain,
        event_id=event_id,
        event=event,
        url=config.url,
        payload=payload,
        created_at=now,
        retry_until=now + dt.timedelta(hours=settings.LIVECENTER_CALLBACKS_RETRY_HOURS),
        next_attempt_at=now,
    )
    _send_on_commit(delivery.pk, 1)
    return delivery


def _send_on_commit(delivery_id: int, attempt: int, countdown: float = 0) -> None:
    from . import tasks

    transaction.on_commit(
        lambda: tasks.deliver_callback.apply_async(
            (delivery_id, attempt), countdown=countdown, queue=settings.LIVECENTER_CALLBACKS_QUEUE
        )
    )


def stream_published(event: StreamPublished) -> None:
    if event.relayed_from:  # a center hearing of an edge's publisher: the edge tells
        return
    queue_event(
        event.key.domain,
        STREAM_PUBLISHED,
        {"app": event.key.app, "stream": event.key.stream, "session_id": event.session_id,
         "protocol": event.protocol, "client_ip": client_ip(event.client_addr),
         "publish_url": redact_text(event.publish_url), "node_id": event.node_id,
         "started_at": _unix(event.started_at)},
    )  # fmt: skip


def stream_unpublished(event: StreamUnpublished) -> None:
    if event.relayed_from:
        return
    started = PublishSession.objects.filter(session_id=event.session_id).values_list("started_at", flat=True).first()
    stopped = dt.datetime.fromtimestamp(event.stopped_at, dt.UTC)
    queue_event(
        event.key.domain,
        STREAM_UNPUBLISHED,
        {"app": event.key.app, "stream": event.key.stream, "session_id": event.session_id,
         "node_id": event.node_id, "started_at": _iso(started), "stopped_at": _iso(stopped),
         "duration_seconds": round((stopped - started).total_seconds(), 3) if started else None,
         "bytes_received": event.bytes_received, "reason": event.reason},
    )  # fmt: skip


def recording_ready(recording) -> None:
    download = reverse("streams-api:recording-download", args=[recording.pk])
    queue_event(
        recording.domain_name,
        RECORDING_READY,
        {"app": recording.app, "stream": recording.stream, "recording_id": recording.pk,
         "path": recording.path, "format": recording.format, "started_at": _iso(recording.started_at),
         "ended_at": _iso(recording.ended_at), "duration_seconds": recording.duration_seconds,
         "size_bytes": recording.size_bytes, "download_url": _console_url(download)},
    )  # fmt: skip


def snapshot_taken(snapshot) -> None:
    image = reverse("streams-api:snapshot-image", args=[snapshot.pk])
    queue_event(
        snapshot.domain_name,
        SNAPSHOT_TAKEN,
        {"app": snapshot.app, "stream": snapshot.stream, "snapshot_id": snapshot.pk, "path": snapshot.path,
         "width": snapshot.width, "height": snapshot.height, "size_bytes": snapshot.size_bytes,
         "taken_at": _iso(snapshot.taken_at), "image_url": _console_url(image)},
    )  # fmt: skip


def transcode_failed(job) -> None:
    queue_event(
        job.domain_name,
        TRANSCODE_FAILED,
        {"app": job.app, "stream": job.stream, "job_id": job.pk, "attempt": job.attempt,
         "detail": redact_text(job.detail), "failed_at": _iso(job.finished_at)},
    )  # fmt: skip


def alarm_event(event: str, alarm) -> None:
    """An alarm (monitoring.models.AlarmEvent) opened or closed."""
    data = {"alarm_id": alarm.pk, "rule_id": alarm.rule_id, "app": alarm.app, "stream": alarm.stream,
            "metric": alarm.metric, "comparison": alarm.comparison, "threshold": alarm.threshold,
            "unit": alarm.unit, "value": alarm.value, "condition": alarm.condition,
            "started_at": _iso(alarm.started_at), "alarms_url": _console_url(reverse("monitoring:alarms"))}  # fmt: skip
    if event == ALARM_CLOSED:
        data.update(ended_at=_iso(alarm.ended_at), reason=alarm.end_reason,
                    duration_seconds=round((alarm.ended_at - alarm.started_at).total_seconds(), 3))  # fmt: skip
    queue_event(alarm.domain_name, event, data)


# --- Delivery -----------------------------------------------------------------------------------


def backoff_seconds(attempt: int) -> float:
    """The wait after failed attempt `attempt` (1, 2, …): the base, doubled
    each time, at most LIVECENTER_CALLBACKS_MAX_BACKOFF_SECONDS."""
    base = settings.LIVECENTER_CALLBACKS_BACKOFF_SECONDS
    return min(base * 2 ** (attempt - 1), settings.LIVECENTER_CALLBACKS_MAX_BACKOFF_SECONDS)


def claim(delivery_id: int, attempt: int) -> Delivery | None:
    """Take attempt `attempt` of a pending delivery; a duplicate message, or
    one for an attempt already made, claims nothing (None). The claim holds
    for the attempt's timeout: past it, a worker that died meanwhile leaves
    the delivery to send_overdue."""
    lease = timezone.now() + dt.timedelta(seconds=settings.LIVECENTER_CALLBACKS_TIMEOUT_SECONDS)
    claimed = Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING, attempts=attempt - 1).update(
        attempts=attempt, next_attempt_at=lease
    )
    return Delivery.objects.select_related("domain").get(pk=delivery_id) if claimed else None


def _secret(delivery: Delivery) -> str:
    return CallbackConfig.objects.filter(domain=delivery.domain).values_list("secret", flat=True).first() or ""


def attempt_delivery(delivery_id: int, attempt: int) -> None:
    """Make attempt `attempt` of a delivery, record it, and queue the next
    one after the backoff, or give up past the retry period."""
    delivery = claim(delivery_id, attempt)
    if delivery is None:
        return
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    timestamp = int(timezone.now().timestamp())
    headers = signed_headers(_secret(delivery), timestamp, body, delivery.event, delivery.event_id)
    timeout = settings.LIVECENTER_CALLBACKS_TIMEOUT_SECONDS
    status_code = latency = None
    error, give_up = "", False
    try:
        response = asyncio.run(post(delivery.url, body, headers, timeout_seconds=timeout, rule=address_rule()))
    except WebhookRefused as exc:
        error, give_up = f"not sent: {exc}", True  # not transient: the URL must change
    except WebhookError as exc:
        error = str(exc)
    else:
        status_code, latency = response.status, round(response.latency_ms, 1)
        if not response.ok:
            redirect = 300 <= response.status < 400
            error = f"HTTP {response.status}" + (" (redirects are not followed)" if redirect else "")
    now = timezone.now()
    ok = not error
    DeliveryAttempt.objects.create(
        delivery=delivery, number=attempt, at=now, ok=ok, status_code=status_code, latency_ms=latency, error=error[:255]
    )
    fields = {"status_code": status_code, "latency_ms": latency, "error": error[:255]}
    wait = backoff_seconds(attempt)
    retry = not ok and not give_up and now + dt.timedelta(seconds=wait) <= delivery.retry_until
    if ok:
        fields.update(status=DeliveryStatus.DELIVERED, delivered_at=now)
    elif retry:
        fields["next_attempt_at"] = now + dt.timedelta(seconds=wait)
    else:
        fields["status"] = DeliveryStatus.FAILED
        log.info("callback %s %s to domain %s given up after %d attempts: %s", delivery.event,
                 delivery.event_id, delivery.domain.domain_name, attempt, error)  # fmt: skip
    # Only if no resend took the next attempt meanwhile.
    if Delivery.objects.filter(pk=delivery.pk, attempts=attempt).update(**fields) and retry:
        _send_on_commit(delivery.pk, attempt + 1, countdown=wait)


def send_overdue(now: dt.datetime | None = None) -> int:
    """Send again the messages of pending deliveries overdue by a minute (a
    lost message, a broker restart); a duplicate claims nothing."""
    now = now or timezone.now()
    overdue = Delivery.objects.filter(
        status=DeliveryStatus.PENDING, next_attempt_at__lt=now - dt.timedelta(seconds=60)
    ).values_list("pk", "attempts")[:1000]
    count = 0
    for pk, attempts in overdue:
        _send_on_commit(pk, attempts + 1)
        count += 1
    return count


def prune_deliveries(now: dt.datetime | None = None) -> int:
    """Delete finished deliveries older than LIVECENTER_CALLBACKS_KEEP_DAYS, in one batch."""
    now = now or timezone.now()
    old = Delivery.objects.exclude(status=DeliveryStatus.PENDING).filter(
        created_at__lt=now - dt.timedelta(days=settings.LIVECENTER_CALLBACKS_KEEP_DAYS)
    )
    ids = list(old.values_list("pk", flat=True)[:5000])
    if not ids:
        return 0
    return Delivery.objects.filter(pk__in=ids).delete()[1].get(Delivery._meta.label, 0)


# --- What the operator sees -----------------------------------------------------------------------


def list_deliveries(owner, domain_name: str | None = None) -> QuerySet[Delivery]:
    rows = Delivery.objects.filter(domain__owner=owner).select_related("domain")
    if domain_name:
        rows = rows.filter(domain__domain_name=domain_name)
    return rows


def get_delivery(owner, delivery_id: int) -> Delivery:
    """The operator's delivery, or Delivery.DoesNotExist (another's too)."""
    return list_deliveries(owner).get(pk=delivery_id)


def attempts_of(deliveries: Iterable[Delivery]) -> dict[int, list[DeliveryAttempt]]:
    by_delivery: dict[int, list[DeliveryAttempt]] = {}
    for row in DeliveryAttempt.objects.filter(delivery__in=[d.pk for d in deliveries]):
        by_delivery.setdefault(row.delivery_id, []).append(row)
    return by_delivery


def resend(delivery: Delivery) -> Delivery:
    """Try a delivery again now, with its event id (a receiver that took it
    already drops it), its retry period starting again. The URL is the
    domain's current one."""
    config = config_of(delivery.domain)
    if not config.url:
        raise invalid("url", "callback URL is not set: set one before resending")
    now = timezone.now()
    with transaction.atomic():
        row = Delivery.objects.select_for_update().get(pk=delivery.pk)
        Delivery.objects.filter(pk=row.pk).update(
            status=DeliveryStatus.PENDING,
            url=config.url,
            next_attempt_at=now,
            retry_until=now + dt.timedelta(hours=settings.LIVECENTER_CALLBACKS_RETRY_HOURS),
        )
        # Whichever message for the next attempt comes first makes it (a
        # pending one's scheduled retry, or this); the other claims nothing.
        _send_on_commit(row.pk, row.attempts + 1)
    delivery.refresh_from_db()
    return delivery
