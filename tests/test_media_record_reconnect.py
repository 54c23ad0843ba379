"""A recording survives a publisher reconnect (issue 7): within the node's
reconnect grace it continues the same file, or starts a new one, by the
app's setting."""

from __future__ import annotations

import time

import pytest
from django.db import connections

from domains import services
from mediajobs import services as media_services
from mediajobs.models import JobState, MediaJob, Recording
from tests.test_media_record_snapshot import decoded_seconds
from tests.test_media_transcode import PLAY, PUSH, add_domains
from tests.workersupport import MediaNodeThread, Workers, start_publisher, stop, wait_until

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
        assert wait_until(
            lambda: not MediaJob.objects.filter(state__in=[JobState.QUEUED, JobState.RUNNING]).exists(), 60
        ), workers.output()
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
