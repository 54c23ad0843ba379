"""A worker killed with kill -9 in the middle of a transcode (issue 7): the
beat task notices its job's heartbeat stopped and another worker takes the
job; the rendition comes back, and a viewer that was watching it goes on
(the node holds it through the publisher's reconnect grace)."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from django.db import OperationalError, connections
from django.utils import timezone

from domains import services
from livecenter.media.policy import StreamKey
from mediajobs import jobs as media_jobs
from mediajobs import services as media_services
from mediajobs import tasks
from mediajobs.models import JobState, MediaJob, Recording
from tests.streamsupport import publish, unpublish
from tests.test_media_transcode import PLAY, PUSH, add_domains
from tests.workersupport import MediaNodeThread, Workers, probe, start_publisher, stop, wait_until

pytestmark = [pytest.mark.worker, pytest.mark.media, pytest.mark.django_db(transaction=True), pytest.mark.backends]


def test_it_restarts_a_transcode_on_another_worker_after_kill_9(owner, settings, tmp_path):
    add_domains(owner)
    media_services.add_template(owner, PLAY, "live", "lld")
    with MediaNodeThread() as media, Workers(tmp_path, settings) as workers:
        first, second = workers.start_worker(), workers.start_worker()
        workers.start_beat()
        source_urls = services.generate_urls(owner, PUSH, "live", "cam1")
        publisher = start_publisher(media.local(source_urls.ingest["rtmp"]), seconds=120, size="640x360")
        try:
            assert wait_until(lambda: media.node.hub.live_keys()), stop(publisher)
            url = media.local(services.generate_urls(owner, PLAY, "live", "cam1", template="lld").playback["flv"])
            assert probe(url, seconds=2)["packets"], workers.output()
            job = MediaJob.objects.get(kind="transcode", stream="cam1")
            pid = int(job.worker.split(":")[1])
            assert pid in (first.pid, second.pid)

            # A viewer watches the rendition across the kill.
            watched: dict = {}

            def watch() -> None:
                started = time.monotonic()
                try:
                    watched["result"] = probe(url, seconds=30, entries="packet=pts_time", timeout=90)
                except AssertionError as exc:
                    watched["error"] = str(exc)
                watched["seconds"] = time.monotonic() - started

            viewer = threading.Thread(target=watch)
            viewer.start()
            time.sleep(3)
            killed_at = time.monotonic()
            workers.kill(pid)

            def restarted():
                job.refresh_from_db()
                return job.attempt >= 2 and job.state == JobState.RUNNING and str(pid) not in job.worker

            assert wait_until(restarted, 30), workers.output()
            key = next(k for k in media.node.hub.live_keys() if k.stream == "cam1")
            rendition = type(key)(key.domain, key.app, "cam1_lld")
            assert wait_until(lambda: media.node.hub.is_live(rendition), 30), workers.output()
            back_after = time.monotonic() - killed_at
            assert back_after < 20, back_after
            assert probe(url, seconds=2)["packets"]
            viewer.join(90)
            assert "error" not in watched, watched
            times = [float(p["pts_time"]) for p in watched["result"]["packets"]]
            # It read on through the restart (the reconnect grace held it).
            assert max(times) - min(times) >= 25, (min(times), max(times), back_after)
            print(f"rendition back {back_after:.1f} s after kill -9")
        finally:
            stop(publisher)
        assert wait_until(lambda: MediaJob.objects.get(pk=job.pk).state == JobState.FINISHED, 60), workers.output()
    connections.close_all()


def test_it_claims_a_job_once_and_requeues_it_when_its_heartbeat_stops(owner, monkeypatch):
    """A duplicate delivery of the same attempt, or one for an attempt that
    was superseded, does nothing; a job whose worker stopped beating while
    its source is live is sent again as the next attempt."""
    add_domains(owner)
    sent = []
    monkeypatch.setattr(tasks.run_media_job, "apply_async", lambda args, **kw: sent.append(tuple(args)))
    publish(PUSH, "live", "cam1", "session-1")
    node = media_jobs.NodeAddress("127.0.0.1", 1935, 8080)
    job, created = media_jobs.start_job("record", StreamKey(PUSH, "live", "cam1"), node)
    assert created and sent == [(job.pk, 1)]
    again, created = media_jobs.start_job("record", StreamKey(PUSH, "live", "cam1"), node)
    assert (again.pk, created) == (job.pk, False)

    assert media_jobs.claim_job(job.pk, 1, "host:1:1")
    assert not media_jobs.claim_job(job.pk, 1, "host:2:1")  # a duplicate delivery
    assert media_jobs.beat_job(job.pk, 1)
    assert media_jobs.recover_jobs() == []  # beating: left alone

    MediaJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - dt.timedelta(seconds=60))
    assert media_jobs.recover_jobs() == [(job.pk, 2)]
    assert sent[-1] == (job.pk, 2)
    assert not media_jobs.beat_job(job.pk, 1)  # the old worker learns it lost the job
    assert not media_jobs.claim_job(job.pk, 1, "host:1:1")
    assert media_jobs.claim_job(job.pk, 2, "host:3:1")
    job.refresh_from_db()
    assert (job.state, job.worker) == (JobState.RUNNING, "host:3:1")


def test_it_ends_a_lost_job_whose_source_has_gone(owner, monkeypatch):
    add_domains(owner)
    monkeypatch.setattr(tasks.run_media_job, "apply_async", lambda args, **kw: None)
    session = publish(PUSH, "live", "cam1", "session-1")
    node = media_jobs.NodeAddress("127.0.0.1", 1935, 8080)
    job, _ = media_jobs.start_job("snapshot", StreamKey(PUSH, "live", "cam1"), node)
    assert media_jobs.claim_job(job.pk, 1, "host:1:1")
    unpublish(session, timezone.now())
    MediaJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - dt.timedelta(seconds=60))
    assert media_jobs.recover_jobs() == []
    job.refresh_from_db()
    assert job.state == JobState.FINISHED
    assert "source ended" in job.detail


def test_it_keeps_a_transcode_a_viewer_asked_for_as_it_ended(owner, monkeypatch):
    add_domains(owner)
    monkeypatch.setattr(tasks.run_media_job, "apply_async", lambda args, **kw: None)
    media_services.add_template(owner, PUSH, "live", "lld")
    publish(PUSH, "live", "cam1", "session-1")
    node = media_jobs.NodeAddress("127.0.0.1", 1935, 8080)
    source = StreamKey(PUSH, "live", "cam1")
    assert media_jobs.rendition_requested(source, "lld", node)
    assert not media_jobs.rendition_requested(source, "lhd", node)  # no such template
    job = MediaJob.objects.get(kind="transcode")
    assert media_jobs.claim_job(job.pk, 1, "host:1:1")
    # The job found nothing wanted and is ending, but lld is wanted again.
    assert not media_jobs.finish_job(job.pk, 1, "no renditions wanted", unless_wanted=True)
    job.renditions.update(stopped=True)
    assert media_jobs.finish_job(job.pk, 1, "no renditions wanted", unless_wanted=True)


def test_it_keeps_an_on_demand_rendition_until_it_was_published_and_then_idle(owner, monkeypatch, settings):
    """A job that reached a worker later than the idle time (a loaded
    machine, a busy pool) stopped the rendition before it was ever published,
    while its viewer still waited in the node's play wait."""
    add_domains(owner)
    monkeypatch.setattr(tasks.run_media_job, "apply_async", lambda args, **kw: None)
    settings.LIVECENTER_TRANSCODE_IDLE_SECONDS = 4
    media_services.add_template(owner, PUSH, "live", "lld")
    publish(PUSH, "live", "cam1", "session-1")
    node = media_jobs.NodeAddress("127.0.0.1", 1935, 8080)
    source = StreamKey(PUSH, "live", "cam1")
    assert media_jobs.rendition_requested(source, "lld", node)
    job = MediaJob.objects.get(kind="transcode")
    assert media_jobs.claim_job(job.pk, 1, "host:1:1")
    later = lambda seconds: timezone.now() + dt.timedelta(seconds=seconds)  # noqa: E731

    assert set(media_jobs.wanted_renditions(job, later(30))) == {"lld"}  # not published yet: not idle
    media_jobs.rendition_published(job, "lld", 640, 360)
    assert set(media_jobs.wanted_renditions(job, later(3))) == {"lld"}
    assert media_jobs.wanted_renditions(job, later(5)) == {}  # published, and nobody watched it since

    # Asked for again: kept until it is published again, and idle from then.
    assert media_jobs.rendition_requested(source, "lld", node)
    assert set(media_jobs.wanted_renditions(job, later(30))) == {"lld"}
    media_jobs.rendition_published(job, "lld", 640, 360)
    assert media_jobs.wanted_renditions(job, later(5)) == {}


def test_after_running_late_recovery_judges_no_heartbeat_for_a_stale_period():
    clock = media_jobs.RecoveryClock()
    assert clock.judging(4, now=100.0)  # the first run
    assert clock.judging(4, now=101.0)  # on time
    assert not clock.judging(4, now=119.0)  # 18 s late: the database was locked, heartbeats too
    assert not clock.judging(4, now=122.0)
    assert clock.judging(4, now=123.5)  # heartbeats had a stale period to resume


def test_a_stale_heartbeat_is_left_alone_when_recovery_does_not_judge(owner, monkeypatch):
    add_domains(owner)
    monkeypatch.setattr(tasks.run_media_job, "apply_async", lambda args, **kw: None)
    publish(PUSH, "live", "cam1", "session-1")
    node = media_jobs.NodeAddress("127.0.0.1", 1935, 8080)
    job, _ = media_jobs.start_job("record", StreamKey(PUSH, "live", "cam1"), node)
    assert media_jobs.claim_job(job.pk, 1, "host:1:1")
    MediaJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - dt.timedelta(seconds=60))
    assert media_jobs.recover_jobs(judge_heartbeats=False) == []
    assert media_jobs.recover_jobs() == [(job.pk, 2)]


def test_a_recording_goes_on_while_its_row_cannot_be_written(owner, monkeypatch, settings, tmp_path):
    """The file opens and fills while the database refuses its row (SQLite
    locked); the row is written once the database takes it, the close after."""
    settings.LIVECENTER_RECORDINGS_DIR = str(tmp_path)
    add_domains(owner)
    monkeypatch.setattr(tasks.run_media_job, "apply_async", lambda args, **kw: None)
    publish(PUSH, "live", "cam1", "session-1")
    node = media_jobs.NodeAddress("127.0.0.1", 1935, 8080)
    job, _ = media_jobs.start_job("record", StreamKey(PUSH, "live", "cam1"), node)
    real = media_jobs.new_recording
    refusals = [OperationalError("database is locked")] * 2

    def flaky(*args, **kwargs):
        if refusals:
            raise refusals.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr(media_jobs, "new_recording", flaky)
    run = tasks._JobRun(job)
    started = 1_800_000_000.0
    path = run.open_file(started)
    path.write_bytes(b"\x00" * 1000)  # the pipeline writes on
    assert not Recording.objects.exists()
    run.file_closed(path, started, started + 120, 120.0)
    assert not Recording.objects.exists()  # still refused: owed, in order
    run.settle_rows(5)  # the database takes it now
    recording = Recording.objects.get()
    assert tmp_path / recording.path == path
    assert (recording.duration_seconds, recording.size_bytes) == (120.0, 1000)
