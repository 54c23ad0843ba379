"""Media worker settings and what the operator sees of the work (issue 7),
shared by the pages and the API: transcoding templates and ABR groups,
recording and snapshot settings, jobs, recordings and snapshots.

Operator-facing functions take the operator first and raise
ValidationError keyed by the field at fault, like streams/services.py.
The jobs' life cycle (start, claim, beat, finish, recover) is jobs.py.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet

from domains.services import ingest_domain_for, owned_rows
from livecenter.lib.api import invalid
from livecenter.media.policy import RenditionGroup
from livecenter.media.renditions import PROFILES, STANDARD_TEMPLATES

from . import signals
from .models import (
    ACTIVE_STATES,
    ANY_APP,
    JobKind,
    JobState,
    MediaJob,
    ReconnectMode,
    RecordConfig,
    Recording,
    Snapshot,
    SnapshotConfig,
    TemplateGroup,
    TranscodeTemplate,
)

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


def _app(value: str | None, field: str = "app") -> str:
    value = (value or "").strip()
    if value == ANY_APP:
        return value
    if not APP_RE.match(value):
        raise invalid(field, "app name must be 1-255 letters, digits, '_' or '-', or '*' for every app")
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
        raise invalid(field, f"{label} must be a number") from None
    if allow_zero and number == 0:
        return 0
    if not low <= number <= high:
        raise invalid(field, f"{label} must be between {low:g} and {high:g}" + (", or 0" if allow_zero else ""))
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
        raise invalid("template_id", "template id must be 1-32 letters, digits or '-'")
    fields = {"lazy": bool(lazy)}
    if template_id not in STANDARD_TEMPLATES:
        if not video_bitrate_kbps:
            raise invalid("video_bitrate_kbps", "video bitrate (kbit/s) is required for a custom template")
        bitrate = _number("video_bitrate_kbps", video_bitrate_kbps, MIN_BITRATE_KBPS, MAX_BITRATE_KBPS,
                          "video bitrate (kbit/s)", allow_zero=False)  # fmt: skip
        width = int(_number("width", width, MIN_SIDE_PX, MAX_LONG_SIDE_PX, "width"))
        height = int(_number("height", height, MIN_SIDE_PX, MAX_LONG_SIDE_PX, "height"))
        short_side = int(_number("short_side", short_side, MIN_SIDE_PX, MAX_SHORT_SIDE_PX, "short side"))
        if short_side and (width or height):
            raise invalid("short_side", "give either the short side or the width and height, not both")
        if width and height and min(width, height) > MAX_SHORT_SIDE_PX:
            raise invalid("height", f"the short side must be at most {MAX_SHORT_SIDE_PX} pixels")
        if not (short_side or width or height):
            raise invalid("short_side", "give the short side, or the width and/or height")
        if profile not in PROFILES:
            raise invalid("profile", f"profile must be one of: {', '.join(PROFILES)}")
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
        raise invalid("template_id", f"{template_id} is a template group's id in this app")
    try:
        with transaction.atomic():
            return TranscodeTemplate.objects.create(domain=domain, app=app, template_id=template_id, **fields)
    except IntegrityError:
        raise invalid("template_id", f"{domain.domain_name}/{app} already has a template {template_id}") from None


def list_templates(owner, domain_name: str | None = None) -> QuerySet[TranscodeTemplate]:
    return (
        owned_rows(TranscodeTemplate, owner, domain_name)
        .select_related("domain")
        .order_by("domain__domain_name", "app", "template_id")
    )


def delete_template(owner, domain_name: str, app: str, template_id: str) -> None:
    domain = ingest_domain_for(owner, domain_name)
    deleted, _ = TranscodeTemplate.objects.filter(domain=domain, app=app, template_id=template_id).delete()
    if not deleted:
        raise invalid("template_id", f"{domain.domain_name}/{app} has no template {template_id}")


def add_group(owner, domain_name: str, app: str, group_id: str, template_ids: list[str]) -> TemplateGroup:
    """A multi-bitrate group of templates the app already has."""
    domain = ingest_domain_for(owner, domain_name)
    app = _app(app)
    group_id = (group_id or "").strip()
    if not GROUP_ID_RE.match(group_id):
        raise invalid("group_id", "group id must be 1-10 letters, digits or '-'")
    ids = [t.strip() for t in template_ids or [] if t and t.strip()]
    if not ids:
        raise invalid("template_ids", "name at least one template")
    known = set(_for_app(domain.transcode_templates.all(), app).values_list("template_id", flat=True))
    missing = [t for t in ids if t not in known]
    if missing:
        raise invalid("template_ids", f"{domain.domain_name}/{app} has no template {', '.join(missing)}; add it first")
    if group_id in known:
        raise invalid("group_id", f"{group_id} is a template's id in this app")
    try:
        with transaction.atomic():
            return TemplateGroup.objects.create(domain=domain, app=app, group_id=group_id, template_ids=ids)
    except IntegrityError:
        raise invalid("group_id", f"{domain.domain_name}/{app} already has a group {group_id}") from None


def list_groups(owner, domain_name: str | None = None) -> QuerySet[TemplateGroup]:
    return (
        owned_rows(TemplateGroup, owner, domain_name)
        .select_related("domain")
        .order_by("domain__domain_name", "app", "group_id")
    )


def delete_group(owner, domain_name: str, app: str, group_id: str) -> None:
    domain = ingest_domain_for(owner, domain_name)
    deleted, _ = TemplateGroup.objects.filter(domain=domain, app=app, group_id=group_id).delete()
    if not deleted:
        raise invalid("group_id", f"{domain.domain_name}/{app} has no group {group_id}")


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
    """The engine's view of a group (nodes/bridge.py's policy)."""
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
        raise invalid("cycle_seconds", f"recording cycle must be {MIN_CYCLE_SECONDS}-{MAX_CYCLE_SECONDS} seconds")
    if on_reconnect not in ReconnectMode.values:
        raise invalid("on_reconnect", f"on_reconnect must be one of: {', '.join(ReconnectMode.values)}")
    if format not in RECORD_FORMATS:
        raise invalid("format", f"format must be one of: {', '.join(RECORD_FORMATS)}")
    config, _ = RecordConfig.objects.update_or_create(
        domain=domain, app=app, defaults={"cycle_seconds": cycle, "on_reconnect": on_reconnect, "format": format}
    )
    config.live_streams_started = _start_on_live_streams(JobKind.RECORD, domain.domain_name, app)
    return config


def set_snapshot_config(owner, domain_name: str, app: str, *, interval_seconds=10) -> SnapshotConfig:
    domain = ingest_domain_for(owner, domain_name)
    app = _app(app)
    interval = _number("interval_seconds", interval_seconds, MIN_SNAPSHOT_SECONDS, MAX_SNAPSHOT_SECONDS,
                       "snapshot interval (s)", allow_zero=False)  # fmt: skip
    if not interval:
        raise invalid("interval_seconds", "snapshot interval (s) is required")
    config, _ = SnapshotConfig.objects.update_or_create(
        domain=domain, app=app, defaults={"interval_seconds": int(interval)}
    )
    config.live_streams_started = _start_on_live_streams(JobKind.SNAPSHOT, domain.domain_name, app)
    return config


def _start_on_live_streams(kind: str, domain_name: str, app: str) -> int:
    """Start `kind` on the app's streams live now (signals.capture_settings_set);
    how many. A job already running on a stream goes on as it is (a
    recording's new split period applies from its next file)."""
    started = 0
    results = signals.capture_settings_set.send_robust(sender=None, kind=kind, domain_name=domain_name, app=app)
    for receiver, result in results:
        if isinstance(result, Exception):
            log.error("starting %s on the live streams of %s/%s failed in %r: %s", kind, domain_name, app,
                      receiver, result)  # fmt: skip
        elif isinstance(result, int):
            started += result
    return started


def list_record_configs(owner, domain_name: str | None = None) -> QuerySet[RecordConfig]:
    return owned_rows(RecordConfig, owner, domain_name).select_related("domain").order_by("domain__domain_name", "app")


def list_snapshot_configs(owner, domain_name: str | None = None) -> QuerySet[SnapshotConfig]:
    return (
        owned_rows(SnapshotConfig, owner, domain_name).select_related("domain").order_by("domain__domain_name", "app")
    )


def delete_record_config(owner, domain_name: str, app: str) -> None:
    domain = ingest_domain_for(owner, domain_name)
    if not RecordConfig.objects.filter(domain=domain, app=app).delete()[0]:
        raise invalid("app", f"{domain.domain_name}/{app} is not recorded")


def delete_snapshot_config(owner, domain_name: str, app: str) -> None:
    domain = ingest_domain_for(owner, domain_name)
    if not SnapshotConfig.objects.filter(domain=domain, app=app).delete()[0]:
        raise invalid("app", f"{domain.domain_name}/{app} takes no snapshots")


def _config_for(model, domain_name: str, app: str):
    rows = list(_for_app(model.objects.filter(domain__domain_name=domain_name), app))
    return _exact_first(rows, app)[0] if rows else None


# --- What the operator sees of the work ------------------------------------------------------


def _of_streams(model, owner, domain_name: str | None, app: str | None, stream: str | None) -> QuerySet:
    rows = owned_rows(model, owner, domain_name)
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


def recording_files(recording: Recording) -> dict[str, Path]:
    """The files of a recording by name: the MP4, or the HLS playlist and its segments."""
    path = recording_file(recording)
    files = {path.name: path} if path.exists() else {}
    if recording.format == "m3u8":
        files.update((p.name, p) for p in path.parent.glob(f"{path.stem}_*.ts"))
    return files


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
