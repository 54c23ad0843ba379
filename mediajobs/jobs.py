"""The media jobs' life cycle (issue 7): the engine's event sink starts a
job when a stream is published or a rendition is asked for
(nodes/bridge.py), a worker claims it with a conditional UPDATE, beats while
it works and finishes it (mediajobs/tasks.py), and a periodic task recovers
the jobs whose worker died. A job row is the whole state: a duplicate
delivery claims nothing, a lost worker's job starts again elsewhere.

The operator's side (settings, what they see of the work) is services.py.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from domains import services as domain_services
from domains.models import Domain
from livecenter.media.capacity import WORKER_TOKEN_PARAM, worker_token
from livecenter.media.hls_crypto import encrypt_aes128, encrypt_vod_playlist, sequence_iv
from livecenter.media.policy import StreamKey
from livecenter.media.redact import redact_text
from livecenter.media.renditions import rendition_name, split_rendition_name
from streams.models import PublishSession

from . import signals
from .models import (
    ACTIVE_STATES,
    JobKind,
    JobState,
    MediaJob,
    RecordConfig,
    Recording,
    Rendition,
    Snapshot,
    SnapshotConfig,
    TemplateGroup,
    TranscodeTemplate,
)

# The settings' app rules (an exact app wins over "*") are the operator side's.
from .services import _config_for, _exact_first, _for_app, find_template, recording_files

log = logging.getLogger(__name__)

# A job restarted this many times without finishing is given up.
MAX_ATTEMPTS = 20
# A queued job no worker took for this long is sent again (its message was lost).
REQUEUE_SECONDS = 30
# How long a worker's capacity exemption in its source URL holds: the job's
# URL is made again on every (re)start, and a read that began inside it goes on.
WORKER_TOKEN_SECONDS = 24 * 3600


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
            # A stopped one is published again from the next keyframe: its idle time starts over then.
            again = {"published_at": None} if rendition.stopped else {}
            Rendition.objects.filter(pk=rendition.pk).update(
                stopped=False, lazy=lazy and rendition.lazy, last_watched_at=now, **again
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
    renditions that always run (non-lazy templates, every group's). Jobs
    still running on the stream read it here from their next attempt on (a
    relay moved to another center, a node came back on other ports)."""
    if is_rendition(key):
        return
    moved = (
        MediaJob.objects.filter(domain_name=key.domain, app=key.app, stream=key.stream, state__in=ACTIVE_STATES)
        .exclude(node_host=node.host, node_rtmp_port=node.rtmp_port, node_http_port=node.http_port)
        .update(node_host=node.host, node_rtmp_port=node.rtmp_port, node_http_port=node.http_port)
    )
    if moved:
        log.info("%d media jobs of %s now read it on %s", moved, key, node.host)
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
    if done and failed:
        _announce(signals.media_job_failed, job_id=job_id)
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


class RecoveryClock:
    """When the recovery task last ran, in this process: after it has run
    late, no heartbeat is judged for a stale period. What kept it from
    running (the database locked or unreachable, the process starved) kept
    the heartbeats from being written too, and a job judged lost then is
    restarted while it still runs, losing what it was recording (soak:
    SQLite locked for 18 s at start-up restarted every job)."""

    def __init__(self) -> None:
        self.last: float | None = None
        self.judge_after = 0.0

    def judging(self, stale_seconds: float, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        last, self.last = self.last, now
        if last is not None and now - last > stale_seconds:
            self.judge_after = now + stale_seconds
            log.warning("media jobs: recovery ran %.0f s late; no worker is judged lost for %.0f s while "
                        "heartbeats resume", now - last, stale_seconds)  # fmt: skip
        return now >= self.judge_after


def recover_jobs(now: dt.datetime | None = None, judge_heartbeats: bool = True) -> list[tuple[int, int]]:
    """Requeue running jobs whose heartbeat stopped (unless not
    `judge_heartbeats`: RecoveryClock) and queued jobs nobody took; end
    those whose source has gone. Returns the (job, attempt) messages sent."""
    judging = judge_heartbeats
    now = now or timezone.now()
    sent: list[tuple[int, int]] = []
    stale = now - dt.timedelta(seconds=settings.LIVECENTER_JOB_STALE_SECONDS)
    running = MediaJob.objects.filter(state=JobState.RUNNING, heartbeat_at__lt=stale) if judging else ()
    for job in running:
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
    url = _internal(urls.playback["flv"], job, job.node_http_port, urls.streaming_domain)
    # A worker is not a viewer to refuse at capacity (livecenter/media/capacity.py)
    # nor by the streaming domain's access lists (play.py).
    return _with_worker_token(url)


def _with_worker_token(url: str) -> str:
    expires = int(time.time()) + WORKER_TOKEN_SECONDS
    token = worker_token(settings.LIVECENTER_MEDIA_WORKER_KEY.encode(), urlsplit(url).path, expires)
    return f"{url}&{WORKER_TOKEN_PARAM}={token}"


def publish_url(job: MediaJob, template_id: str) -> str:
    """A signed RTMP URL, from the URL generator, to publish the rendition on
    the source's node like any publisher; its worker token keeps the ingest
    domain's IP list (meant for the operator's encoders) from refusing it."""
    ingest = Domain.objects.select_related("owner").get(domain_name=job.domain_name)
    name = rendition_name(job.stream, template_id)
    urls = domain_services.generate_urls(ingest.owner, ingest.domain_name, job.app, name)
    return _with_worker_token(_internal(urls.ingest["rtmp"], job, job.node_rtmp_port, ingest.domain_name))


def wanted_renditions(job: MediaJob, now: dt.datetime | None = None) -> dict:
    """Template id -> (RenditionSpec, publish URL) of what the job should
    produce now; stops lazy renditions nobody watched for the idle time
    since they were published. One not published yet is not idle: the viewer
    who asked for it waits in the node's play wait, however long the job
    took to reach a worker."""
    now = now or timezone.now()
    idle = now - dt.timedelta(seconds=settings.LIVECENTER_TRANSCODE_IDLE_SECONDS)
    Rendition.objects.filter(job=job, stopped=False, lazy=True, last_watched_at__lt=idle, published_at__lt=idle).update(
        stopped=True
    )
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


def recording_path(job: MediaJob, started_at: float, fmt: str = "mp4") -> str:
    """A new recording file's path under the recordings folder (made)."""
    relative = f"{job.domain_name}/{job.app}/{job.stream}/{_stamp(started_at)}.{fmt}"
    (Path(settings.LIVECENTER_RECORDINGS_DIR) / relative).parent.mkdir(parents=True, exist_ok=True)
    return relative


def new_recording(job: MediaJob, started_at: float, fmt: str = "mp4", relative: str | None = None) -> Recording:
    relative = relative or recording_path(job, started_at, fmt)
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


def _size_bytes(recording: Recording) -> int:
    size = 0
    for path in recording_files(recording).values():
        try:
            size += path.stat().st_size
        except FileNotFoundError:  # a segment the writer replaced meanwhile
            pass
    return size


def recording_progress(recording: Recording, duration_s: float) -> None:
    """A file still being written: its size and duration so far, on its row,
    so the recordings list shows a recording in progress growing (issue 19,
    finding 6). A closed row is left as recording_closed wrote it."""
    Recording.objects.filter(pk=recording.pk, ended_at__isnull=True).update(
        size_bytes=_size_bytes(recording), duration_seconds=round(max(0.0, duration_s), 3)
    )


def recording_closed(recording: Recording, ended_at: float, duration_s: float, hls_key: bytes = b"") -> None:
    """`hls_key`: the key encrypt_hls_recording encrypted its segments with,
    kept (encrypted at rest) so that the recording stays playable."""
    size = _size_bytes(recording)
    recording.ended_at = dt.datetime.fromtimestamp(ended_at, dt.UTC)
    recording.size_bytes, recording.duration_seconds = size, round(duration_s, 3)
    Recording.objects.filter(pk=recording.pk).update(
        ended_at=recording.ended_at,
        size_bytes=size,
        duration_seconds=recording.duration_seconds,
        hls_key=hls_key.hex(),
    )
    _announce(signals.recording_ready, recording=recording)


def _announce(signal, **kwargs) -> None:
    for receiver, result in signal.send_robust(sender=None, **kwargs):
        if isinstance(result, Exception):
            log.error("%s failed on %s", getattr(receiver, "__qualname__", receiver), kwargs, exc_info=result)


def hls_recording_encrypted(job: MediaJob) -> bool:
    """Whether an HLS VOD recording of `job`'s stream is encrypted: when a
    streaming domain that plays its ingest domain encrypts the app's HLS
    (issue 16), its recordings in HLS form are encrypted too."""
    if job.domain_id is None:
        return False
    playing = Domain.objects.filter(Q(ingest_domain=job.domain_id) | Q(main_domain__ingest_domain=job.domain_id))
    return any(d.hls_encrypts(job.app) for d in playing)


def encrypt_hls_recording(playlist: Path, key: bytes) -> None:
    """Encrypt a closed HLS VOD recording in place: each segment with
    AES-128 and its sequence number as IV, and its playlist naming the key
    `{stem}.key` (served from the recording's row, Recording.key_file_name)."""
    text, segments = encrypt_vod_playlist(playlist.read_text(), f"{playlist.stem}.key")
    for uri, msn in segments:
        segment = playlist.parent / uri
        sealed = segment.with_name(segment.name + ".tmp")
        sealed.write_bytes(encrypt_aes128(key, sequence_iv(msn), segment.read_bytes()))
        sealed.replace(segment)
    sealed = playlist.with_name(playlist.name + ".tmp")
    sealed.write_text(text)
    sealed.replace(playlist)


def save_snapshot(job: MediaJob, jpeg: bytes, width: int, height: int, taken_at: float) -> Snapshot:
    relative = f"{job.domain_name}/{job.app}/{job.stream}/{int(taken_at * 1000)}.jpg"
    path = Path(settings.LIVECENTER_SNAPSHOTS_DIR) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg)
    snapshot = Snapshot.objects.create(
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
    _announce(signals.snapshot_taken, snapshot=snapshot)
    return snapshot
