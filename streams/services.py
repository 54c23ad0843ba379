"""Stream management rules, shared by the pages and the API: online streams,
publish history, forbid and resume (aliyun_spec.md 3.10).

Everything is scoped to one operator: a domain is named by the operator and
must be theirs ("... is not one of your domains", on the field that named
it). Streams are identified by their ingest domain; a streaming domain is
accepted wherever a domain is asked for and stands for the ingest domain it
plays. Every function raises django.core.exceptions.ValidationError with a
dict keyed by the field at fault, and saves nothing when it does.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from domains.models import Domain
from domains.services import ingest_domain_for, owned_rows
from livecenter.lib.api import invalid
from livecenter.lib.dates import aware
from livecenter.media.liveurl import NAME_RE, NAME_RULE
from livecenter.media.policy import StreamKey

from . import signals
from .models import ControlAction, PublishSession, StreamBlock, StreamControlEvent

log = logging.getLogger(__name__)

ALL_APPS = "*"  # ResumeLiveStream: every app of the stream name
MAX_HISTORY_RANGE = dt.timedelta(days=30)  # DescribeLiveStreamsPublishList's limit
DEFAULT_HISTORY_RANGE = dt.timedelta(days=1)
MAX_BLOCK_DURATION = dt.timedelta(days=10 * 365)  # keeps dates sane, like MAX_VALIDITY_MINUTES

QUERY_TYPES = ("fuzzy", "strict")  # how `stream` matches: contains, or equals
HISTORY_ORDERS = {
    "publish_time_asc": ("started_at", "id"),
    "publish_time_desc": ("-started_at", "-id"),
    "stream_name_asc": ("stream", "started_at"),
    "stream_name_desc": ("-stream", "-started_at"),
}
DEFAULT_HISTORY_ORDER = "publish_time_asc"  # the reference's default


def valid_name(field: str, value: str | None, *, allow_all: bool = False) -> str:
    """An app or stream name, stripped; a ValidationError on `field` when it
    is missing or breaks NAME_RULE (`allow_all`: '*' stands for every app)."""
    value = (value or "").strip()
    if not value:
        raise invalid(field, f"{field} name is required")
    if allow_all and value == ALL_APPS:
        return value
    if not NAME_RE.match(value):
        rule = f"{NAME_RULE}, or '*' for every app" if allow_all else NAME_RULE
        raise invalid(field, f"{field} name must be {rule}")
    return value


def _match(queryset: QuerySet, app: str | None, stream: str | None, query_type: str) -> QuerySet:
    if query_type not in QUERY_TYPES:
        raise invalid("query_type", f"query type must be one of: {', '.join(QUERY_TYPES)}")
    if app:
        queryset = queryset.filter(app=app)
    if stream:
        lookup = "stream" if query_type == "strict" else "stream__icontains"
        queryset = queryset.filter(**{lookup: stream})
    return queryset


# --- Online streams and publish history ---------------------------------------------


def _sessions(owner, domain_name: str | None) -> QuerySet[PublishSession]:
    return owned_rows(PublishSession, owner, domain_name).select_related("domain__streaming_domain")


def list_online_streams(
    owner,
    domain_name: str | None = None,
    app: str | None = None,
    stream: str | None = None,
    query_type: str = "fuzzy",
) -> QuerySet[PublishSession]:
    """The operator's live streams (DescribeLiveStreamsOnlineList), newest first."""
    sessions = _sessions(owner, domain_name).filter(stopped_at__isnull=True)
    return _match(sessions, app, stream, query_type).order_by("-started_at", "-id")


def history_range(
    start: dt.datetime | None, end: dt.datetime | None, now: dt.datetime | None = None
) -> tuple[dt.datetime, dt.datetime]:
    """The time range a history query covers: by default the day up to now."""
    end = aware(end) if end is not None else (now or timezone.now())
    start = aware(start) if start is not None else end - DEFAULT_HISTORY_RANGE
    if start >= end:
        raise invalid("end_time", "end time must be after the start time")
    if end - start > MAX_HISTORY_RANGE:
        raise invalid("end_time", f"the time range must not exceed {MAX_HISTORY_RANGE.days} days")
    return start, end


def list_publish_history(
    owner,
    domain_name: str | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    app: str | None = None,
    stream: str | None = None,
    query_type: str = "fuzzy",
    order_by: str = DEFAULT_HISTORY_ORDER,
    now: dt.datetime | None = None,
) -> QuerySet[PublishSession]:
    """Publish sessions live at any moment in [start, end)
    (DescribeLiveStreamsPublishList); the range is at most 30 days."""
    if order_by not in HISTORY_ORDERS:
        raise invalid("order_by", f"order must be one of: {', '.join(HISTORY_ORDERS)}")
    start, end = history_range(start, end, now)
    sessions = _sessions(owner, domain_name).filter(
        Q(stopped_at__isnull=True) | Q(stopped_at__gte=start), started_at__lt=end
    )
    return _match(sessions, app, stream, query_type).order_by(*HISTORY_ORDERS[order_by])


# --- Forbid and resume ------------------------------------------------------------------


def _record(owner, action: str, domain: Domain, app: str, stream: str, detail: str) -> StreamControlEvent:
    return StreamControlEvent.objects.create(
        action=action, domain=domain, domain_name=domain.domain_name, app=app, stream=stream, by=owner, detail=detail
    )


@dataclass(frozen=True)
class ForbidResult:
    domain_name: str  # the ingest domain
    app: str
    stream: str
    resume_at: dt.datetime | None  # None: interrupted only this once

    @property
    def oneshot(self) -> bool:
        return self.resume_at is None


@dataclass(frozen=True)
class ResumeResult:
    domain_name: str  # the ingest domain
    app: str  # "*" for every app
    stream: str
    resumed: int  # blocks lifted; 0 when the stream was not forbidden


def default_resume_at(now: dt.datetime | None = None) -> dt.datetime:
    return (now or timezone.now()) + dt.timedelta(days=settings.LIVECENTER_FORBID_DEFAULT_DAYS)


def forbid_stream(
    owner,
    domain_name: str,
    app: str,
    stream: str,
    resume_at: dt.datetime | None = None,
    oneshot: bool = False,
    now: dt.datetime | None = None,
) -> ForbidResult:
    """Cut the stream's live publisher and, unless `oneshot`, refuse its
    publishes until `resume_at` (default: LIVECENTER_FORBID_DEFAULT_DAYS from
    now) (ForbidLiveStream). Forbidding a forbidden stream moves its resume
    time."""
    domain = ingest_domain_for(owner, domain_name)
    app = valid_name("app", app)
    stream = valid_name("stream", stream)
    now = now or timezone.now()
    if oneshot and resume_at is not None:
        raise invalid("resume_time", "an interruption only this once blocks nothing, so it takes no resume time")
    if resume_at is not None:
        resume_at = aware(resume_at)
        if resume_at <= now:
            raise invalid("resume_time", "resume time must be in the future")
        if resume_at - now > MAX_BLOCK_DURATION:
            raise invalid("resume_time", f"resume time must be within {MAX_BLOCK_DURATION.days // 365} years")
    key = StreamKey(domain.domain_name, app, stream)
    with transaction.atomic():
        if oneshot:
            _record(owner, ControlAction.KICK, domain, app, stream, "interrupted once; not blocked")
        else:
            resume_at = resume_at or default_resume_at(now)
            active = StreamBlock.objects.filter(domain__owner=owner, resume_at__gt=now)
            limit = settings.LIVECENTER_MAX_BLOCKED_STREAMS
            if active.count() >= limit and not active.filter(domain=domain, app=app, stream=stream).exists():
                raise invalid("stream", f"you have {limit} forbidden streams, the limit; resume one first")
            StreamBlock.objects.update_or_create(
                domain=domain, app=app, stream=stream, defaults={"resume_at": resume_at, "created_by": owner}
            )
            _record(owner, ControlAction.FORBID, domain, app, stream, f"until {resume_at:%Y-%m-%d %H:%M:%S} UTC")
    log.info("stream %s %s by %s", key, "interrupted" if oneshot else "forbidden", owner)
    # After the commit, so that a publisher who reconnects at once meets the
    # block; the node side kicks (nodes/receivers.py).
    signals.stream_forbidden.send(sender=None, key=key)
    return ForbidResult(domain.domain_name, app, stream, None if oneshot else resume_at)


def resume_stream(owner, domain_name: str, app: str, stream: str) -> ResumeResult:
    """Lift the block on a stream (ResumeLiveStream); app "*" lifts it in
    every app."""
    domain = ingest_domain_for(owner, domain_name)
    app = valid_name("app", app, allow_all=True)
    stream = valid_name("stream", stream)
    blocks = StreamBlock.objects.filter(domain=domain, stream=stream)
    if app != ALL_APPS:
        blocks = blocks.filter(app=app)
    with transaction.atomic():
        apps = list(blocks.values_list("app", flat=True))
        blocks.delete()
        _record(owner, ControlAction.RESUME, domain, app, stream, "" if apps else "was not forbidden")
    for each in apps:
        # The node side drops the engine's cached answer (nodes/receivers.py).
        signals.stream_resumed.send(sender=None, key=StreamKey(domain.domain_name, each, stream))
    log.info("stream %s/%s/%s resumed by %s (%d blocks)", domain.domain_name, app, stream, owner, len(apps))
    return ResumeResult(domain.domain_name, app, stream, len(apps))


def list_blocked_streams(
    owner, domain_name: str | None = None, now: dt.datetime | None = None
) -> QuerySet[StreamBlock]:
    """Streams forbidden now (DescribeLiveStreamsBlockList), newest first."""
    blocks = owned_rows(StreamBlock, owner, domain_name).filter(resume_at__gt=now or timezone.now())
    return blocks.select_related("domain", "created_by").order_by("-created_at", "-id")


def list_control_history(owner, domain_name: str | None = None) -> QuerySet[StreamControlEvent]:
    """Forbids, interruptions and resumes (DescribeLiveStreamsControlHistory),
    newest first."""
    return owned_rows(StreamControlEvent, owner, domain_name).select_related("by").order_by("-at", "-id")
