"""The media workers' Celery tasks (issue 7; DESIGN.md, the parts).

`run_media_job(job_id, attempt)` claims a MediaJob row with a conditional
UPDATE (a duplicate delivery, or one for a superseded attempt, does
nothing), then runs the job's media loop (mediajobs/transcode/pipeline.py) in
the task's thread while a heartbeat thread beats the row every
LIVECENTER_JOB_HEARTBEAT_SECONDS. When the row stops being this attempt's
(the beat task gave it to another worker), the heartbeat tells the loop to
stop. The task is acknowledged on receipt, not on completion: the row, not
the broker, is what brings a lost job back, so a transcode that runs for
hours is never delivered twice by a broker's visibility timeout.

`recover_media_jobs` (beat, every LIVECENTER_JOB_RECOVER_SECONDS) requeues
running jobs whose heartbeat stopped — a worker killed with kill -9, a lost
machine — so the job starts again on another worker within seconds.

A recording or snapshot series whose source drops while the stream is
live reconnects in place (pipeline.LiveSource); if the source does not come
back in time (`SourceLost`) and the stream is still live, the job is given
back to be tried again, not ended.

On a warm shutdown a worker gives its running jobs back at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from celery import shared_task
from celery.signals import worker_shutting_down
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

from livecenter.media.redact import redact_text

from . import jobs
from .models import JobKind, MediaJob, ReconnectMode, Recording
from .transcode import pipeline

log = logging.getLogger(__name__)


class _QuietRecovery(logging.Filter):
    """`recover_media_jobs` runs every second or so: keep its routine
    "sending", "received" and "succeeded" lines out of the worker's log (its
    warnings and errors still show)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or "streams.recover_media_jobs" not in record.getMessage()


for _name in ("celery.beat", "celery.worker.strategy", "celery.app.trace"):
    logging.getLogger(_name).addFilter(_QuietRecovery())

# A failed job whose source is still live is tried again after this.
RETRY_SECONDS = 2.0
# How long a job that ends goes on trying to write the recording rows it owes.
ROWS_SETTLE_SECONDS = 30.0
_recovery_clock = jobs.RecoveryClock()
# Set when this worker process shuts down: every job gives itself back.
_shutting_down = threading.Event()


@worker_shutting_down.connect
def _on_worker_shutting_down(**kwargs) -> None:
    _shutting_down.set()


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


@dataclass
class _FileRow:
    """One recording file and, once written, its row."""

    relative: str
    started_at: float
    recording: Recording | None = None


class _JobRun:
    """The control a pipeline asks, for one claimed attempt of a job."""

    def __init__(self, job: MediaJob) -> None:
        self.job = job
        self.lost = threading.Event()
        self.done = threading.Event()
        self.session = jobs.current_session(job)
        self._split = False
        # Recording rows owed to the database, in order (open_file).
        self._rows: deque[tuple[str, _FileRow, tuple]] = deque()
        self._rows_lock = threading.Lock()
        self._rows_owed_since = 0.0
        self._file: _FileRow | None = None

    # -- heartbeat thread --

    def beat(self) -> None:
        interval = settings.LIVECENTER_JOB_HEARTBEAT_SECONDS
        try:
            while not self.done.wait(interval):
                try:
                    if not jobs.beat_job(self.job.pk, self.job.attempt):
                        log.warning("media job %s: claim lost, stopping", self.job.pk)
                        self.lost.set()
                        return
                except DatabaseError as exc:
                    log.warning("media job %s: heartbeat not written: %s", self.job.pk, exc)
                except Exception:
                    log.exception("media job %s: heartbeat failed", self.job.pk)
                if self._rows:
                    self._write_rows()
                self._note_progress()
                if self.job.kind == JobKind.RECORD and not self._split:
                    config = jobs.record_config(self.job)
                    if config is not None and config.on_reconnect == ReconnectMode.NEW_FILE:
                        session = jobs.current_session(self.job)
                        if session is not None and session != self.session:
                            self.session, self._split = session, True
        finally:
            connection.close()

    # -- what the pipelines ask --

    def should_stop(self) -> bool:
        return self.lost.is_set() or _shutting_down.is_set()

    def source_live(self) -> bool:
        return jobs.source_is_live(self.job)

    def wanted(self) -> dict:
        return jobs.wanted_renditions(self.job)

    def published(self, template_id: str, width: int, height: int) -> None:
        jobs.rendition_published(self.job, template_id, width, height)

    def split_now(self) -> bool:
        split, self._split = self._split, False
        return split

    record_format = "mp4"
    encrypt_hls = False  # an HLS VOD recording of a stream whose HLS is encrypted

    def open_file(self, started_at: float) -> Path:
        """A new recording file. Its row is written now if the database
        lets us, else later (`_write_rows`): the media goes on into the file
        meanwhile, as a recorder must not lose what it is given because its
        bookkeeping is slow (soak: SQLite locked for 18 s at start-up)."""
        relative = jobs.recording_path(self.job, started_at, self.record_format)
        self._file = _FileRow(relative, started_at)
        self._rows.append(("open", self._file, ()))
        self._write_rows()
        return Path(settings.LIVECENTER_RECORDINGS_DIR) / relative

    def file_closed(self, path: Path, started_at: float, ended_at: float, duration_s: float) -> None:
        key = b""
        if self.encrypt_hls and path.suffix == ".m3u8" and path.exists():
            key = os.urandom(16)
            try:
                jobs.encrypt_hls_recording(path, key)
            except (OSError, ValueError) as exc:  # a file cut short by a full disk: kept as it is
                log.warning("media job %s: recording %s not encrypted: %s", self.job.pk, path.name, exc)
                key = b""
        self._rows.append(("close", self._file, (ended_at, duration_s, key)))
        self._write_rows()

    def _write_rows(self) -> bool:
        """Write the recording rows owed, in order; stop at the first the
        database refuses (tried again on the next call or heartbeat).
        Whether none is owed now."""
        with self._rows_lock:
            while self._rows:
                kind, row, args = self._rows[0]
                try:
                    if kind == "open":
                        row.recording = jobs.new_recording(self.job, row.started_at, self.record_format, row.relative)
                    else:
                        jobs.recording_closed(row.recording, *args)
                except DatabaseError as exc:
                    if not self._rows_owed_since:
                        self._rows_owed_since = time.monotonic()
                        log.warning("media job %s: recording row of %s not written yet (%s); trying again",
                                    self.job.pk, row.relative, exc)  # fmt: skip
                    return False
                self._rows.popleft()
            if self._rows_owed_since:
                log.warning("media job %s: recording rows written after %.1f s", self.job.pk,
                            time.monotonic() - self._rows_owed_since)  # fmt: skip
                self._rows_owed_since = 0.0
            return True

    def _note_progress(self) -> None:
        """The open recording file's size and duration so far, each heartbeat."""
        row = self._file
        if row is None or row.recording is None:
            return
        try:
            jobs.recording_progress(row.recording, time.time() - row.started_at)
        except DatabaseError as exc:  # shown at the next beat; the file goes on meanwhile
            log.warning("media job %s: progress of %s not written: %s", self.job.pk, row.relative, exc)

    def settle_rows(self, timeout: float) -> None:
        """At the end of the job: the rows still owed, trying for `timeout` s."""
        deadline = time.monotonic() + timeout
        while not self._write_rows():
            if time.monotonic() >= deadline:
                owed = ", ".join(row.relative for _, row, _ in self._rows)
                log.error("media job %s: recording rows not written (database unavailable): %s", self.job.pk, owed)
                return
            time.sleep(0.5)

    def snapshot_taken(self, jpeg: bytes, width: int, height: int, taken_at: float) -> None:
        jobs.save_snapshot(self.job, jpeg, width, height, taken_at)


def _run(run: _JobRun) -> str:
    job = run.job
    url = jobs.source_url(job)
    if job.kind == JobKind.TRANSCODE:
        report = pipeline.transcode(url, run)
        return f"{report.reason}; frames in {report.frames_in}, out {report.frames_out}"
    if job.kind == JobKind.RECORD:
        config = jobs.record_config(job)
        if config is None:
            return "recording is no longer configured"
        run.record_format = config.format
        run.encrypt_hls = config.format == "m3u8" and jobs.hls_recording_encrypted(job)
        return pipeline.record(url, run, config.cycle_seconds)
    config = jobs.snapshot_config(job)
    if config is None:
        return "snapshots are no longer configured"
    return pipeline.snapshot(url, run, config.interval_seconds)


@shared_task(name="streams.run_media_job", ignore_result=True, acks_late=False)
def run_media_job(job_id: int, attempt: int) -> None:
    close_old_connections()
    if not jobs.claim_job(job_id, attempt, worker_name()):
        log.info("media job %s attempt %s: not claimed (taken, superseded or done)", job_id, attempt)
        return
    job = MediaJob.objects.get(pk=job_id)
    run = _JobRun(job)
    heart = threading.Thread(target=run.beat, name=f"media-job-{job_id}-heartbeat", daemon=True)
    heart.start()
    log.info("media job %s attempt %s: %s of %s", job_id, attempt, job.kind, job.stream_url)
    detail, failed, permanent = "", False, False
    try:
        detail = _run(run)
    except pipeline.SourceLost as exc:
        # Transient while the stream is live: tried again below, else it ended.
        detail, failed = f"source lost: {exc}", jobs.source_is_live(job)
    except (ValueError, pipeline.OutputFailed) as exc:  # cannot be done as configured, or its disk is full
        detail, failed, permanent = str(exc), True, True
    except Exception as exc:
        log.exception("media job %s failed", job_id)
        detail, failed = f"{type(exc).__name__}: {exc}", True
    finally:
        detail = redact_text(detail)  # a signed source URL in an error is a credential
        run.done.set()
        heart.join(5)
        run.settle_rows(ROWS_SETTLE_SECONDS)
    if run.lost.is_set():
        return  # another attempt owns the row now
    if _shutting_down.is_set():
        jobs.release_job(job_id, attempt, "worker shut down; restarted")
        return
    if failed and not permanent and jobs.source_is_live(job):
        # The source is still live: a transient failure (its node was busy,
        # a publish raced); try again shortly, up to MAX_ATTEMPTS.
        jobs.release_job(job_id, attempt, detail, countdown=RETRY_SECONDS)
        return
    if job.kind == JobKind.TRANSCODE and not failed and jobs.source_is_live(job):
        jobs.wanted_renditions(job)  # stops the idle ones
        if not jobs.finish_job(job_id, attempt, detail, unless_wanted=True):
            # A viewer asked for a rendition as the job was ending.
            jobs.release_job(job_id, attempt, "a rendition was asked for as the job ended")
            return
    else:
        jobs.finish_job(job_id, attempt, detail, failed=failed)
    log.info("media job %s finished: %s", job_id, detail)


@shared_task(name="streams.recover_media_jobs", ignore_result=True)
def recover_media_jobs() -> None:
    jobs.recover_jobs(judge_heartbeats=_recovery_clock.judging(settings.LIVECENTER_JOB_STALE_SECONDS))
