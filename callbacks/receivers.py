"""This app's answers to what the media workers and monitoring announce
(mediajobs/signals.py, monitoring/signals.py); apps.py connects them."""

from __future__ import annotations

from mediajobs.models import JobKind, MediaJob

from . import services


def recording_ready(sender, recording, **kwargs) -> None:
    services.recording_ready(recording)


def snapshot_taken(sender, snapshot, **kwargs) -> None:
    services.snapshot_taken(snapshot)


def media_job_failed(sender, job_id: int, **kwargs) -> None:
    job = MediaJob.objects.filter(pk=job_id, kind=JobKind.TRANSCODE).first()
    if job is not None:
        services.transcode_failed(job)


def alarm_opened(sender, alarm, **kwargs) -> None:
    services.alarm_event(services.ALARM_OPENED, alarm)


def alarm_closed(sender, alarm, **kwargs) -> None:
    services.alarm_event(services.ALARM_CLOSED, alarm)
