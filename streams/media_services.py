"""Media worker rules (issue 7), shared by the pages, the API, the engine's
event sink (streams/bridge.py) and the Celery tasks (streams/tasks.py).

Operator-facing functions take the operator first and raise
ValidationError keyed by the field at fault, like streams/services.py.
The job functions below them are what the sink and the workers call.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from domains import services as domain_services
from domains.models import Domain
from livecenter.media.policy import RenditionGroup, StreamKey
from livecenter.media.redact import redact_text
from livecenter.media.renditions import PROFILES, STANDARD_TEMPLATES, rendition_name, split_rendition_name

from .media_models import (
    ACTIVE_STATES,
    ANY_APP,
    JobKind,
    JobState,
    MediaJob,
    ReconnectMode,
    RecordConfig,
    Recording,
    Rendition,
    Snapshot,
    SnapshotConfig,
    TemplateGroup,
    TranscodeTemplate,
)
from .models import PublishSession
from .services import ingest_domain_for

log = logging.getLogger(__name__)

TEMPLATE_ID_RE = re.compile(r"^[A-Za-z0-9-]{1,32}$")  # the URL generator's rule: never "_"
GROUP_ID_RE = re.compile(r"^[A-Za-z0-9-]{1,10}$")  # the reference's group id
APP_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
# The reference's ranges (aliyun_spec.md 3.6, 3.8, 3.9).
MIN_SIDE_PX, MAX_LONG_SIDE_PX, MAX_SHORT_SIDE_PX = 100, 2560, 1440
MIN_BITRATE_KBPS, MAX_BITRATE_KBPS = 1, 6000
MAX_FPS = 60
MAX_GOP_SECONDS = 20
MIN_SNAPSHOT_SECONDS, MAX_SNAPSHOT_SECONDS = 5, 3600
MIN_CYCLE_SECONDS, MAX_CYCLE_SECONDS = 10, 6 * 3600
RECORD_FORMATS = ("mp4", "m3u8")  # MP4, or HLS VOD
# A job restarted this many times without finishing is given up.
MAX_ATTEMPTS = 20
# A queued job no worker took for this long is sent again (its message was lost).
REQUEUE_SECONDS = 30


def _invalid(field: str, message: str) -> ValidationError:
    return ValidationError({field: [message]})


def _app(value: str | None, field: str = "app") -> str:
    value = (value or "").strip()
    if value == ANY_APP:
        return value
    if not APP_RE.match(value):
        raise _invalid(field, "app name must be 1-255 letters, digits, '_' or '-', or '*' for every app")
    return value


def _for_app(queryset: QuerySet, app: str) -> QuerySet:
    return queryset.filter(app__in=(app, ANY_APP))


def _exact_first(rows: list, app: str) -> list:
    return sorted(rows, key=lambda row: row.app != app)


# --- Transcoding templates and groups -----------------------------------------------------


def _number(field: str, value, low: float, high: float, label: str, *, allow_zero: bool = True) -> float:
    if value in (None, ""):
        return 0
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _invalid(field, f"{label} must be a number") from None
    if allow_zero and number == 0:
        return 0
    if not low <= number <= high:
        raise _invalid(field, f"{label} must be between {low:g} and {high:g}" + (", or 0" if allow_zero else ""))
    return number


def add_template(
    owner,
    domain_name: str,
    app: str,
    template_id: str,
    *,
    width=0,
    height=0,
    short_side=0,
    video_bitrate_kbps=0,
    fps=0,
    gop_seconds=0,
    profile: str = "high",
    lazy: bool = True,
) -> TranscodeTemplate:
    """Add a standard template (lld, lsd, lhd, lud: its preset, only `lazy`
    applies) or a custom one to a domain's app."""
    domain = ingest_domain_for(owner, domain_name)
    app = _app(app)
    template_id = (template_id or "").strip()
    if not TEMPLATE_ID_RE.match(template_id):
        raise _invalid("template_id", "template id must be 1-32 letters, digits or '-'")
    fields = {"lazy": bool(lazy)}
    if template_id not in STANDARD_TEMPLATES:
        if not video_bitrate_kbps:
            raise _invalid("video_bitrate_kbps", "video bitrate (kbit/s) is required for a custom template")
        bitrate = _number("video_bitrate_kbps", video_bitrate_kbps, MIN_BITRATE_KBPS, MAX_BITRATE_KBPS,
                          "video bitrate (kbit/s)", allow_zero=False)  # fmt: skip
        width = int(_number("width", width, MIN_SIDE_PX, MAX_LONG_SIDE_PX, "width"))
        height = int(_number("height", height, MIN_SIDE_PX, MAX_LONG_SIDE_PX, "height"))
        short_side = int(_number("short_side", short_side, MIN_SIDE_PX, MAX_SHORT_SIDE_PX, "short side"))
        if short_side and (width or height):
            raise _invalid("short_side", "give either the short side or the width and height, not both")
        if width and height and min(width, height) > MAX_SHORT_SIDE_PX:
            raise _invalid("height", f"the short side must be at most {MAX_SHORT_SIDE_PX} pixels")
        if not (short_side or width or height):
            raise _invalid("short_side", "give the short side, or the width and/or height")
        if profile not in PROFILES:
            raise _invalid("profile", f"profile must be one of: {', '.join(PROFILES)}")
        fields.update(
            width=width,
            height=height,
            short_side=short_side,
            video_bitrate_kbps=int(bitrate),
            fps=_number("fps", fps, 1, MAX_FPS, "frame rate"),
            gop_seconds=_number("gop_seconds", gop_seconds, 1, MAX_GOP_SECONDS, "GOP (seconds)"),
            profile=profile,
        )
    if TemplateGroup.objects.filter(domain=domain, app=app, group_id=template_id).exists():
        raise _invalid("template_id", f"{template_id} is a template group's id in this app")
    try:
        with transaction.atomic():
            return TranscodeTemplate.objects.create(domain=domain, app=app, template_id=template_id, **fields)
    except IntegrityError:
        raise _invalid("template_id", f"{domain.domain_name}/{app} already has a template {template_id}") from None


def list_templates(owner, domain_name: str | None = None) -> QuerySet[TranscodeTemplate]:
    rows = TranscodeTemplate.objects.filter(domain__owner=owner)
    if (domain_name or "").strip():
        rows = rows.filter(domain=ingest_domain_for(owner, domain_name))
    return rows.select_related("domain").order_by("domain__domain_name", "app", "template_id")


def delete_template(owner, domain_name: str, app: str, template_id: str) -> None:
    domain = ingest_domain_for(owner, domain_name)
    deleted, _ = TranscodeTemplate.objects.filter(domain=domain, app=app, template_id=template_id).delete()
    if not deleted:
        raise _invalid("template_id", f"{domain.domain_name}/{app} has no template {template_id}")


def add_group(owner, domain_name: str, app: str, group_id: str, template_ids: list[str]) -> TemplateGroup:
    """A multi-bitrate group of templates the app already has."""
    domain = ingest_domain_for(owner, domain_name)
    app = _app(app)
    group_id = (group_id or "").strip()
    if not GROUP_ID_RE.match(group_id):
        raise _invalid("group_id", "group id must be 1-10 letters, digits or '-'")
    ids = [t.strip() for t in template_ids or [] if t and t.strip()]
    if not ids:
        raise _invalid("template_ids", "name at least one template")
    known = set(_for_app(domain.transcode_templates.all(), app).values_list("template_id", flat=True))
    missing = [t for t in ids if t not in known]
    if missing:
        raise _invalid("template_ids", f"{domain.domain_name}/{app} has no template {', '.join(missing)}; add it first")
    if group_id in known:
        raise _invalid("group_id", f"{group_id} is a template's id in this app")
    try:
        with transaction.atomic():
            return TemplateGroup.objects.create(domain=domain, app=app, group_id=group_id, template_ids=ids)
    except IntegrityError:
        raise _invalid("group_id", f"{domain.domain_name}/{app} already has a group {group_id}") from None


def list_groups(owner, domain_name: str | None = None) -> QuerySet[TemplateGroup]:
    rows = TemplateGroup.objects.filter(domain__owner=owner)
    if (domain_name or "").strip():
        rows = rows.filter(domain=ingest_domain_for(owner, domain_name))
    return rows.select_related("domain").order_by("domain__domain_name", "app", "group_id")


def delete_group(owner, domain_name: str, app: str, group_id: str) -> None:
    domain = ingest_domain_for(owner, domain_name)
    deleted, _ = TemplateGroup.objects.filter(domain=domain, app=app, group_id=group_id).delete()
    if not deleted:
        raise _invalid("group_id", f"{domain.domain_name}/{app} has no group {group_id}")


def find_template(domain_name: str, app: str, template_id: str) -> TranscodeTemplate | None:
    """The template an ingest domain's app uses (an exact app wins over "*")."""
    rows = list(
        _for_app(TranscodeTemplate.objects.filter(domain__domain_name=domain_name, template_id=template_id), app)
    )
    return _exact_first(rows, app)[0] if rows else None


def find_group(domain_name: str, app: str, group_id: str) -> TemplateGroup | None:
    rows = list(_for_app(TemplateGroup.objects.filter(domain__domain_name=domain_name, group_id=group_id), app))
    return _exact_first(rows, app)[0] if rows else None


def rendition_group(domain_name: str, app: str, group_id: str) -> RenditionGroup | None:
    """The engine's view of a group (streams/bridge.py's policy)."""
    group = find_group(domain_name, app, group_id)
    if group is None:
        return None
    specs = []
    for template_id in group.template_ids:
        template = find_template(domain_name, app, template_id)
        if template is not None:
            specs.append(template.spec())
    return RenditionGroup(group.group_id, tuple(specs)) if specs else None


# --- Recording and snapshot settings -------------------------------------------------------


def set_record_config(
    owner, domain_name: str, app: str, *, cycle_seconds=6 * 3600, on_reconnect: str = "continue", format: str = "mp4"
) -> RecordConfig:
    domain = ingest_domain_for(owner, domain_name)
    app = _app(app)
    cycle = int(_number("cycle_seconds", cycle_seconds, MIN_CYCLE_SECONDS, MAX_CYCLE_SECONDS, "recording cycle (s)",
                        allow_zero=False) or 0)  # fmt: skip
    if not cycle:
        raise _invalid("cycle_seconds", f"recording cycle must be {MIN_CYCLE_SECONDS}-{MAX_CYCLE_SECONDS} seconds")
    if on_reconnect not in ReconnectMode.values:
        raise _invalid("on_reconnect", f"on_reconnect must be one of: {', '.join(ReconnectMode.values)}")
    if format not in RECORD_FORMATS:
        raise _invalid("format", f"format must be one of: {', '.join(RECORD_FORMATS)}")
    config, _ = RecordConfig.objects.update_or_create(
        domain=domain, app=app, defaults={"cycle_seconds": cycle, "on_reconnect": on_reconnect, "format": format}
    )
    return config


def set_snapshot_config(owner, domain_name: str, app: str, *, interval_seconds=10) -> SnapshotConfig:
    domain = ingest_domain_for(owner, domain_name)
    app = _app(app)
    interval = _number("interval_seconds", interval_seconds, MIN_SNAPSHOT_SECONDS, MAX_SNAPSHOT_SECONDS,
                       "snapshot interval (s)", allow_zero=False)  # fmt: skip
    if not interval:
        raise _invalid("interval_seconds", "snapshot interval (s) is required")
    config, _ = SnapshotConfig.objects.update_or_create(
        domain=domain, app=app, defaults={"interval_seconds": int(interval)}
    )
    return config


def list_record_configs(owner, domain_name: str | None = None) -> QuerySet[RecordConfig]:
    rows = RecordConfig.objects.filter(domain__owner=owner)
    if (domain_name or "").strip():
        rows = rows.filter(domain=ingest_domain_for(owner, domain_name))
    return rows.select_related("domain").order_by("domain__domain_name", "app")


def list_snapshot_configs(owner, domain_name: str | None = None) -> QuerySet[SnapshotConfig]:
    rows = SnapshotConfig.objects.filter(domain__owner=owner)
    if (domain_name or "").strip():
        rows = rows.filter(domain=ingest_domain_for(owner, domain_name))
    return rows.select_related("domain").order_by("domain__domain_name", "app")


def delete_record_config(owner, domain_name: str, app: str) -> None:
    domain = ingest_domain_for(owner, domain_name)
    if not RecordConfig.objects.filter(domain=domain, app=app).delete()[0]:
        raise _invalid("app", f"{domain.domain_name}/{app} is not recorded")


def delete_snapshot_config(owner, domain_name: str, app: str) -> None:
    domain = ingest_domain_for(owner, domain_name)
    if not SnapshotConfig.objects.filter(domain=domain, app=app).delete()[0]:
        raise _invalid("app", f"{domain.domain_name}/{app} takes no snapshots")


def _config_for(model, domain_name: str, app: str):
    rows = list(_for_app(model.objects.filter(domain__domain_name=domain_name), app))
    return _exact_first(rows, app)[0] if rows else None


# --- What the operator sees of the work ------------------------------------------------------


def _of_streams(model, owner, domain_name: str | None, app: str | None, stream: str | None) -> QuerySet:
    rows = model.objects.filter(domain__owner=owner)
    if (domain_name or "").strip():
        rows = rows.filter(domain=ingest_domain_for(owner, domain_name))
    if app:
        rows = rows.filter(app=app)
    if stream:
        rows = rows.filter(stream=stream)
    return rows


def list_jobs(owner, domain_name: str | None = None, active: bool = True) -> QuerySet[MediaJob]:
    rows = _of_streams(MediaJob, owner, domain_name, None, None)
    if active:
        rows = rows.filter(state__in=ACTIVE_STATES)
    return rows.prefetch_related("renditions").order_by("-queued_at", "-id")


def failed_recording_jobs(owner, limit: int = 5) -> list[MediaJob]:
    """The latest recording jobs that failed (a full disk, say), for the
    recordings page to say why a stream's recording stopped."""
    rows = _of_streams(MediaJob, owner, None, None, None).filter(kind=JobKind.RECORD, state=JobState.FAILED)
    return list(rows.order_by("-finished_at", "-id")[:limit])


def list_recordings(owner, domain_name=None, app=None, stream=None) -> QuerySet[Recording]:
    return _of_streams(Recording, owner, domain_name, app, stream).order_by("-started_at", "-id")


def get_recording(owner, recording_id: int) -> Recording:
    """Raises Recording.DoesNotExist for another operator's."""
    return Recording.objects.get(pk=recording_id, domain__owner=owner)


def recording_file(recording: Recording) -> Path:
    return Path(settings.LIVECENTER_RECORDINGS_DIR) / recording.path


def list_snapshots(owner, domain_name=None, app=None, stream=None) -> QuerySet[Snapshot]:
    return _of_streams(Snapshot, owner, domain_name, app, stream).order_by("-taken_at", "-id")


def get_snapshot(owner, snapshot_id: int) -> Snapshot:
    return Snapshot.objects.get(pk=snapshot_id, domain__owner=owner)


def snapshot_file(snapshot: Snapshot) -> Path:
    return Path(settings.LIVECENTER_SNAPSHOTS_DIR) / snapshot.path


def latest_snapshots(sessions) -> dict[tuple[str, str, str], Snapshot]:
    """The newest snapshot of each live session's stream, for the online list."""
    keys = {(s.domain_name, s.app, s.stream) for s in sessions}
    if not keys:
        return {}
    query = Q()
    for domain_name, app, stream in keys:
        query |= Q(domain_name=domain_name, app=app, stream=stream)
    latest: dict[tuple[str, str, str], Snapshot] = {}
    for snap in Snapshot.objects.filter(query).order_by("-taken_at", "-id")[: 10 * len(keys)]:
        latest.setdefault((snap.domain_name, snap.app, snap.stream), snap)
    return latest


# --- Jobs: what the engine's sink calls ---------------------------------------------------------


@dataclass(frozen=True)
class NodeAddress:
    """Where workers reach the media node that carries a stream."""

    host: str
    rtmp_port: int
    http_port: int


def internal_host(listen_host: str) -> str:
    if settings.LIVECENTER_MEDIA_INTERNAL_HOST:
        return settings.LIVECENTER_MEDIA_INTERNAL_HOST
    return "127.0.0.1" if listen_host in ("", "0.0.0.0", "::") else listen_host


def _enqueue_on_commit(job_id: int, attempt: int, countdown: float = 0) -> None:
    from . import tasks

    transaction.on_commit(
        lambda: tasks.run_media_job.apply_async(
            (job_id, attempt), queue=settings.LIVECENTER_MEDIA_QUEUE, countdown=countdown or None
        )
    )


def start_job(kind: str, key: StreamKey, node: NodeAddress) -> tuple[MediaJob, bool]:
    """The active job of `kind` on `key`, made and queued if there was none."""
    now = timezone.now()
    existing = MediaJob.objects.filter(
        kind=kind, domain_name=key.domain, app=key.app, stream=key.stream, state__in=ACTIVE_STATES
    ).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            job = MediaJob.objects.create(
                kind=kind,
                domain=Domain.objects.filter(domain_name=key.domain).first(),
                domain_name=key.domain,
                app=key.app,
                stream=key.stream,
                node_host=node.host,
                node_rtmp_port=node.rtmp_port,
                node_http_port=node.http_port,
                queued_at=now,
            )
            _enqueue_on_commit(job.pk, job.attempt)
    except IntegrityError:
        # Another event started it at the same moment.
        job = MediaJob.objects.filter(
            kind=kind, domain_name=key.domain, app=key.app, stream=key.stream, state__in=ACTIVE_STATES
        ).first()
        if job is None:
            raise
        return job, False
    log.info("media job %s queued: %s of %s", job.pk, kind, key)
    return job, True


def _want_rendition(key: StreamKey, template: TranscodeTemplate, node: NodeAddress, lazy: bool) -> Rendition:
    # One transaction: a new job's message goes out once its rendition is
    # there for the worker to find.
    with transaction.atomic():
        job, _ = start_job(JobKind.TRANSCODE, key, node)
        now = timezone.now()
        rendition, created = Rendition.objects.get_or_create(
            job=job, template_id=template.template_id, defaults={"lazy": lazy, "last_watched_at": now}
        )
        if not created and (rendition.stopped or rendition.lazy != lazy):
            Rendition.objects.filter(pk=rendition.pk).update(
                stopped=False, lazy=lazy and rendition.lazy, last_watched_at=now
            )
    return rendition


def is_rendition(key: StreamKey) -> bool:
    """Whether `key` is a rendition a transcode job publishes (not a source)."""
    split = split_rendition_name(key.stream)
    if split is None:
        return False
    return Rendition.objects.filter(
        job__kind=JobKind.TRANSCODE,
        job__domain_name=key.domain,
        job__app=key.app,
        job__stream=split[0],
        job__state__in=ACTIVE_STATES,
        template_id=split[1],
    ).exists()


def stream_published(key: StreamKey, node: NodeAddress) -> None:
    """A stream went live: start its recording, its snapshots and the
    renditions that always run (non-lazy templates, every group's)."""
    if is_rendition(key):
        return
    record = _config_for(RecordConfig, key.domain, key.app)
    if record is not None:
        start_job(JobKind.RECORD, key, node)
    snapshots = _config_for(SnapshotConfig, key.domain, key.app)
    if snapshots is not None:
        start_job(JobKind.SNAPSHOT, key, node)
    always: dict[str, TranscodeTemplate] = {}
    eager = _for_app(TranscodeTemplate.objects.filter(domain__domain_name=key.domain, lazy=False), key.app)
    for template in _exact_first(list(eager), key.app):
        always.setdefault(template.template_id, template)
    for group in _for_app(TemplateGroup.objects.filter(domain__domain_name=key.domain), key.app):
        for template_id in group.template_ids:
            template = find_template(key.domain, key.app, template_id)
            if template is not None:
                always.setdefault(template_id, template)
    for template in always.values():
        _want_rendition(key, template, node, lazy=False)


def rendition_requested(source: StreamKey, template_id: str, node: NodeAddress) -> bool:
    """A viewer asked for `{source}_{template_id}`: produce it if the app has
    that template. Returns whether it will."""
    template = find_template(source.domain, source.app, template_id)
    if template is None:
        return False
    _want_rendition(source, template, node, lazy=template.lazy)
    return True


def stream_watched(key: StreamKey, viewers: int) -> None:
    """The engine counted `viewers` on `key`: a rendition with viewers is not idle."""
    split = split_rendition_name(key.stream)
    if viewers <= 0 or split is None:
        return
    Rendition.objects.filter(
        job__kind=JobKind.TRANSCODE,
        job__domain_name=key.domain,
        job__app=key.app,
        job__stream=split[0],
        job__state__in=ACTIVE_STATES,
        template_id=split[1],
        stopped=False,
    ).update(last_watched_at=timezone.now())


# --- Jobs: what the workers call ----------------------------------------------------------------


def claim_job(job_id: int, attempt: int, worker: str) -> bool:
    """Take a queued job. A duplicate delivery, or a message for an attempt
    that was superseded, claims nothing."""
    now = timezone.now()
    return bool(
        MediaJob.objects.filter(pk=job_id, attempt=attempt, state=JobState.QUEUED).update(
            state=JobState.RUNNING, worker=worker[:255], started_at=now, heartbeat_at=now, detail=""
        )
    )


def beat_job(job_id: int, attempt: int) -> bool:
    """The heartbeat; False when the job is no longer this attempt's."""
    return bool(
        MediaJob.objects.filter(pk=job_id, attempt=attempt, state=JobState.RUNNING).update(heartbeat_at=timezone.now())
    )


def finish_job(job_id: int, attempt: int, detail: str = "", failed: bool = False, unless_wanted: bool = False) -> bool:
    """End a running attempt. With `unless_wanted`, a transcode that was
    asked for a rendition meanwhile is not ended (False): the viewer's
    request and the job's end may cross."""
    with transaction.atomic():
        jobs = MediaJob.objects.filter(pk=job_id, attempt=attempt, state=JobState.RUNNING)
        if unless_wanted:
            jobs = jobs.exclude(Exists(Rendition.objects.filter(job=OuterRef("pk"), stopped=False)))
        done = jobs.update(
            state=JobState.FAILED if failed else JobState.FINISHED,
            finished_at=timezone.now(),
            detail=redact_text(detail)[:255],
        )
        if done:
            Rendition.objects.filter(job_id=job_id).update(stopped=True)
    return bool(done)


def release_job(job_id: int, attempt: int, detail: str, countdown: float = 0) -> None:
    """Give a running job back (the worker is shutting down, or it failed
    while its source is live) for a worker to take again; past MAX_ATTEMPTS
    it fails."""
    if attempt >= MAX_ATTEMPTS:
        finish_job(job_id, attempt, f"gave up: {detail}", failed=True)
        return
    with transaction.atomic():
        if MediaJob.objects.filter(pk=job_id, attempt=attempt, state=JobState.RUNNING).update(
            state=JobState.QUEUED,
            attempt=F("attempt") + 1,
            worker="",
            queued_at=timezone.now(),
            detail=redact_text(detail)[:255],
        ):
            _enqueue_on_commit(job_id, attempt + 1, countdown)


def source_is_live(job: MediaJob) -> bool:
    return PublishSession.objects.filter(
        domain_name=job.domain_name, app=job.app, stream=job.stream, stopped_at__isnull=True
    ).exists()


def current_session(job: MediaJob) -> str | None:
    return (
        PublishSession.objects.filter(
            domain_name=job.domain_name, app=job.app, stream=job.stream, stopped_at__isnull=True
        )
        .order_by("-started_at")
        .values_list("session_id", flat=True)
        .first()
    )


def recover_jobs(now: dt.datetime | None = None) -> list[tuple[int, int]]:
    """Requeue running jobs whose heartbeat stopped and queued jobs nobody
    took; end those whose source has gone. Returns the (job, attempt)
    messages sent."""
    now = now or timezone.now()
    sent: list[tuple[int, int]] = []
    stale = now - dt.timedelta(seconds=settings.LIVECENTER_JOB_STALE_SECONDS)
    for job in MediaJob.objects.filter(state=JobState.RUNNING, heartbeat_at__lt=stale):
        if job.attempt >= MAX_ATTEMPTS or not source_is_live(job):
            reason = "gave up after repeated failures" if job.attempt >= MAX_ATTEMPTS else "worker lost; source ended"
            MediaJob.objects.filter(pk=job.pk, attempt=job.attempt, state=JobState.RUNNING).update(
                state=JobState.FAILED if job.attempt >= MAX_ATTEMPTS else JobState.FINISHED,
                finished_at=now,
                detail=reason,
            )
            continue
        with transaction.atomic():
            if MediaJob.objects.filter(
                pk=job.pk, attempt=job.attempt, state=JobState.RUNNING, heartbeat_at__lt=stale
            ).update(  # fmt: skip
                state=JobState.QUEUED,
                attempt=job.attempt + 1,
                worker="",
                queued_at=now,
                detail=f"worker {job.worker} stopped beating; restarted",
            ):
                log.warning("media job %s: worker %s lost, starting again", job.pk, job.worker)
                _enqueue_on_commit(job.pk, job.attempt + 1)
                sent.append((job.pk, job.attempt + 1))
    lost = now - dt.timedelta(seconds=REQUEUE_SECONDS)
    for job in MediaJob.objects.filter(state=JobState.QUEUED, queued_at__lt=lost):
        if not source_is_live(job):
            MediaJob.objects.filter(pk=job.pk, state=JobState.QUEUED).update(
                state=JobState.FINISHED, finished_at=now, detail="source ended before a worker took it"
            )
            continue
        if MediaJob.objects.filter(pk=job.pk, attempt=job.attempt, state=JobState.QUEUED).update(queued_at=now):
            with transaction.atomic():
                _enqueue_on_commit(job.pk, job.attempt)
            sent.append((job.pk, job.attempt))
    return sent


# --- Jobs: URLs and what a transcode produces ----------------------------------------------------


def _internal(url: str, job: MediaJob, port: int, domain: str) -> str:
    """A generated URL sent to the job's node, the domain in the `domain=` fallback."""
    parts = urlsplit(url)
    query = f"{parts.query}&domain={domain}" if parts.query else f"domain={domain}"
    return f"{parts.scheme}://{job.node_host}:{port}{parts.path}?{query}"


def source_url(job: MediaJob) -> str:
    """A signed HTTP-FLV URL of the source on its node, from the URL
    generator, through the ingest domain's streaming domain (the worker is a
    viewer like any other)."""
    ingest = Domain.objects.select_related("owner").get(domain_name=job.domain_name)
    urls = domain_services.generate_urls(ingest.owner, ingest.domain_name, job.app, job.stream)
    if not urls.playback:
        raise ValueError(f"{job.domain_name} has no streaming domain to read {job.stream} from")
    return _internal(urls.playback["flv"], job, job.node_http_port, urls.streaming_domain)


def publish_url(job: MediaJob, template_id: str) -> str:
    """A signed RTMP URL, from the URL generator, to publish the rendition on
    the source's node like any publisher."""
    ingest = Domain.objects.select_related("owner").get(domain_name=job.domain_name)
    name = rendition_name(job.stream, template_id)
    urls = domain_services.generate_urls(ingest.owner, ingest.domain_name, job.app, name)
    return _internal(urls.ingest["rtmp"], job, job.node_rtmp_port, ingest.domain_name)


def wanted_renditions(job: MediaJob, now: dt.datetime | None = None) -> dict:
    """Template id -> (RenditionSpec, publish URL) of what the job should
    produce now; stops lazy renditions nobody watched for the idle time."""
    now = now or timezone.now()
    idle = now - dt.timedelta(seconds=settings.LIVECENTER_TRANSCODE_IDLE_SECONDS)
    Rendition.objects.filter(job=job, stopped=False, lazy=True, last_watched_at__lt=idle).update(stopped=True)
    wanted = {}
    for rendition in Rendition.objects.filter(job=job, stopped=False):
        template = find_template(job.domain_name, job.app, rendition.template_id)
        if template is None:
            continue  # deleted while running
        wanted[rendition.template_id] = (template.spec(), publish_url(job, rendition.template_id))
    return wanted


def rendition_published(job: MediaJob, template_id: str, width: int, height: int) -> None:
    Rendition.objects.filter(job=job, template_id=template_id).update(
        published_at=timezone.now(), width=width, height=height
    )


def record_config(job: MediaJob) -> RecordConfig | None:
    return _config_for(RecordConfig, job.domain_name, job.app)


def snapshot_config(job: MediaJob) -> SnapshotConfig | None:
    return _config_for(SnapshotConfig, job.domain_name, job.app)


def _stamp(unix: float) -> str:
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")[:-4]


def new_recording(job: MediaJob, started_at: float, fmt: str = "mp4") -> Recording:
    relative = f"{job.domain_name}/{job.app}/{job.stream}/{_stamp(started_at)}.{fmt}"
    (Path(settings.LIVECENTER_RECORDINGS_DIR) / relative).parent.mkdir(parents=True, exist_ok=True)
    return Recording.objects.create(
        domain=job.domain,
        domain_name=job.domain_name,
        app=job.app,
        stream=job.stream,
        job=job,
        path=relative,
        format=fmt,
        started_at=dt.datetime.fromtimestamp(started_at, dt.UTC),
    )


def recording_files(recording: Recording) -> dict[str, Path]:
    """The files of a recording by name: the MP4, or the HLS playlist and its segments."""
    path = recording_file(recording)
    files = {path.name: path} if path.exists() else {}
    if recording.format == "m3u8":
        files.update((p.name, p) for p in path.parent.glob(f"{path.stem}_*.ts"))
    return files


def recording_closed(recording: Recording, ended_at: float, duration_s: float) -> None:
    size = sum(p.stat().st_size for p in recording_files(recording).values())
    Recording.objects.filter(pk=recording.pk).update(
        ended_at=dt.datetime.fromtimestamp(ended_at, dt.UTC), size_bytes=size, duration_seconds=round(duration_s, 3)
    )


def save_snapshot(job: MediaJob, jpeg: bytes, width: int, height: int, taken_at: float) -> Snapshot:
    relative = f"{job.domain_name}/{job.app}/{job.stream}/{int(taken_at * 1000)}.jpg"
    path = Path(settings.LIVECENTER_SNAPSHOTS_DIR) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg)
    return Snapshot.objects.create(
        domain=job.domain,
        domain_name=job.domain_name,
        app=job.app,
        stream=job.stream,
        taken_at=dt.datetime.fromtimestamp(taken_at, dt.UTC),
        path=relative,
        width=width,
        height=height,
        size_bytes=len(jpeg),
    )
