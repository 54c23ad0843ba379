"""A recording survives a publisher reconnect (issue 7): within the node's
reconnect grace it continues the same file, or starts a new one, by the
app's setting. Recording and snapshots survive a timestamp jump and their
source dropping while the stream is live (issue 11)."""

from __future__ import annotations

import asyncio
import time

import pytest
from django.db import connections
from django.utils import timezone

from domains import services
from mediajobs import services as media_services
from mediajobs.models import JobState, MediaJob, Recording, Snapshot
from tests.mediasupport import TagPublisher
from tests.test_media_record_snapshot import decoded_seconds
from tests.test_media_transcode import PLAY, PUSH, add_domains
from tests.test_timestamp_jumps import send, source
from tests.workersupport import MediaNodeThread, Workers, jobs_ended, start_publisher, stop

pytestmark = [pytest.mark.worker, pytest.mark.media, pytest.mark.django_db(transaction=True)]

SECONDS = 8


def test_it_continues_or_splits_a_recording_when_the_publisher_reconnects(owner, settings, tmp_path):
    add_domains(owner)
    media_services.set_record_config(owner, PLAY, "cont", on_reconnect="continue")
    media_services.set_record_config(owner, PLAY, "split", on_reconnect="new_file")
    with MediaNodeThread() as media, Workers(tmp_path, settings) as workers:
        workers.start_worker()
        urls = [
            media.local(services.generate_urls(owner, PUSH, app, "cam1").ingest["rtmp"]) for app in ("cont", "split")
        ]
        for round_ in range(2):  # publish, go away for a moment, come back
            publishers = [start_publisher(url, seconds=SECONDS, size="640x360") for url in urls]
            try:
                for publisher in publishers:
                    assert publisher.wait(SECONDS + 30) == 0, stop(publisher)
            finally:
                for publisher in publishers:
                    stop(publisher)
            if round_ == 0:
                assert MediaJob.objects.filter(state=JobState.RUNNING).count() == 2, workers.output()
                time.sleep(2)  # well inside the node's 10 s reconnect grace
        assert jobs_ended(60), workers.output()
    # One job each: the reconnect did not end either recording.
    assert MediaJob.objects.filter(kind="record").count() == 2
    continued = list(Recording.objects.filter(app="cont"))
    assert len(continued) == 1, workers.output()
    played = decoded_seconds(media_services.recording_file(continued[0]))
    assert 2 * SECONDS - 4 <= played <= 2 * SECONDS + 3, played  # both sessions and the gap between them
    split = list(Recording.objects.filter(app="split").order_by("started_at"))
    assert len(split) == 2, [(r.path, r.duration_seconds) for r in split]
    for recording in split:
        assert recording.ended_at is not None
        assert 3 <= decoded_seconds(media_services.recording_file(recording)) <= SECONDS + 3
    connections.close_all()


def drop_flv_readers(media) -> int:
    """End every HTTP-FLV read of the node's live streams (the media jobs'
    sources) while the publisher goes on."""

    async def drop() -> int:
        hub, dropped = media.node.hub, 0
        for key in hub.live_keys():
            for sub in list(hub.stream(key).subscribers):
                if sub.protocol == "flv":
                    sub.close()
                    dropped += 1
        return dropped

    return asyncio.run_coroutine_threadsafe(drop(), media.loop).result(10)


def test_recording_and_snapshots_survive_a_30_s_timestamp_jump_and_a_source_drop(owner, settings, tmp_path):
    """Issue 11 item 3: a forward jump past the viewers' lag limit cut the
    jobs' FLV reads and they ended while the stream went on."""
    add_domains(owner)
    media_services.set_record_config(owner, PLAY, "live")
    media_services.set_snapshot_config(owner, PUSH, "*", interval_seconds=5)
    headers, tags = source()
    with MediaNodeThread() as media, Workers(tmp_path, settings) as workers:
        workers.start_worker()
        url = media.local(services.generate_urls(owner, PUSH, "live", "cam1").ingest["rtmp"])
        publisher = TagPublisher(url)
        try:
            send(publisher, headers)
            running = lambda: MediaJob.objects.filter(state=JobState.RUNNING).count() == 2  # noqa: E731
            offset = 0
            while not running() and offset < 60_000:  # in real time until both jobs read the stream
                send(publisher, tags, offset=offset, pace=1 / 30)
                offset += 6000
            assert running(), workers.output()
            send(publisher, tags, offset=offset, pace=1 / 30)
            # The publisher's clock leaps 30 s (past SUBSCRIBER_MAX_LAG_MS) ...
            offset += 6000 + 30_000
            send(publisher, tags, offset=offset, pace=1 / 30)
            # ... and then the jobs' reads drop while the stream goes on.
            assert drop_flv_readers(media) == 2
            dropped_at = timezone.now()
            for _ in range(2):
                offset += 6000
                send(publisher, tags, offset=offset, pace=1 / 30)
        finally:
            publisher.close()
        assert jobs_ended(90), workers.output()
        log = workers.output()
    jobs = list(MediaJob.objects.values_list("kind", "state", "detail"))
    assert {(kind, state) for kind, state, _ in jobs} == {("record", "finished"), ("snapshot", "finished")}, jobs
    assert "reconnected" in log, log
    recordings = list(Recording.objects.all())
    assert len(recordings) == 1, [(r.path, r.duration_seconds) for r in recordings]
    played = decoded_seconds(media_services.recording_file(recordings[0]))
    # 24 s or more after the first job read, none of the 30 s the clock leapt.
    assert 18 <= played <= offset / 1000 + 6 - 30 + 2, (played, offset)
    assert Snapshot.objects.filter(taken_at__gt=dropped_at).exists()
    connections.close_all()
