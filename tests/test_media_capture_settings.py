"""Recording and snapshot settings apply to the streams live now, not only
from the next publish, and the confirmation says which; a recording in
progress shows its duration and size growing from the job's reports
(issue 19, finding 6)."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from mediajobs import jobs
from mediajobs.models import JobKind, MediaJob
from nodes.models import Node
from tests.pagesupport import page
from tests.streamsupport import add_pair, publish

pytestmark = pytest.mark.django_db

RECORD = {"record-domain": "push.example.com", "record-app": "live", "record-format": "mp4",
          "record-cycle_seconds": "600", "record-on_reconnect": "continue"}  # fmt: skip


@pytest.fixture
def queued(monkeypatch):
    """The Celery messages the jobs would send, caught here."""
    sent = []
    monkeypatch.setattr(jobs, "_enqueue_on_commit", lambda job_id, attempt, countdown=0: sent.append(job_id))
    return sent


def register_node(node_id: str = "node-1") -> None:
    Node.objects.create(node_id=node_id, role="center", region="cn-shanghai", host="10.0.0.7", rtmp_port=1935,
                        http_port=8080, started_at=dt.datetime.now(dt.UTC))  # fmt: skip


def test_it_starts_recording_the_live_streams_of_the_app_at_once(client, owner, queued):
    add_pair(owner)
    register_node()
    publish("push.example.com", "live", "cam1", "s1")
    publish("push.example.com", "other", "cam2", "s2")  # another app: not recorded
    assert not MediaJob.objects.exists()  # the publishes above came before any setting
    client.force_login(owner)
    response = client.post("/streams/media/?form=record", RECORD, follow=True)
    job = MediaJob.objects.get()
    assert (job.kind, job.stream_url, job.node_host, job.node_http_port) == (
        JobKind.RECORD, "push.example.com/live/cam1", "10.0.0.7", 8080
    )  # fmt: skip
    assert queued == [job.pk]
    assert (
        "Recording set for push.example.com/live: MP4, a new file every 600 s; started now on 1 live stream"
    ) in page(response)


def test_it_takes_snapshots_of_every_app_at_once_and_says_so(client, owner, queued):
    add_pair(owner)
    register_node()
    publish("push.example.com", "live", "cam1", "s1")
    publish("push.example.com", "other", "cam2", "s2")
    client.force_login(owner)
    form = {"snapshot-domain": "push.example.com", "snapshot-app": "*", "snapshot-interval_seconds": "30"}
    response = client.post("/streams/media/?form=snapshot", form, follow=True)
    assert sorted(MediaJob.objects.values_list("kind", "stream")) == [("snapshot", "cam1"), ("snapshot", "cam2")]
    assert "Snapshots set for every app of push.example.com: one every 30 s; started now on 2 live streams" in page(
        response
    )


def test_it_says_when_no_stream_is_live(client, owner, queued):
    add_pair(owner)
    client.force_login(owner)
    response = client.post("/streams/media/?form=record", RECORD, follow=True)
    assert not MediaJob.objects.exists()
    assert "no stream of it is live now; each starts when it is published" in page(response)
    assert 'id="record-applies"' in page(response)  # the form says when it applies before it is used


def test_it_starts_nothing_on_another_operators_streams(client, owner, outsider, queued):
    add_pair(owner)
    add_pair(outsider, "push.other.example", "play.other.example")
    register_node()
    publish("push.other.example", "live", "cam1", "s1")
    client.force_login(owner)
    client.post("/streams/media/?form=record", RECORD)
    assert not MediaJob.objects.exists()


def test_a_recording_in_progress_grows_on_its_row_and_page(client, owner, tmp_path, settings):
    push, _ = add_pair(owner)
    settings.LIVECENTER_RECORDINGS_DIR = tmp_path
    started = time.time() - 42
    job = MediaJob.objects.create(kind=JobKind.RECORD, domain=push, domain_name=push.domain_name, app="live",
                                  stream="cam1", node_host="127.0.0.1", node_rtmp_port=1935, node_http_port=8080,
                                  queued_at=dt.datetime.now(dt.UTC))  # fmt: skip
    recording = jobs.new_recording(job, started)
    path = tmp_path / recording.path
    path.write_bytes(b"\0" * 1000)
    jobs.recording_progress(recording, time.time() - started)
    recording.refresh_from_db()
    assert recording.ended_at is None and recording.size_bytes == 1000
    assert 42 <= recording.duration_seconds < 60
    client.force_login(owner)
    body = page(client.get("/streams/recordings/"))
    assert f'data-recording="{recording.pk}" data-in-progress' in body
    assert 'class="badge text-bg-danger recording-live">recording<' in body
    assert "1000\xa0bytes so far" in body and "0:4" in body  # filesizeformat; 0:42 and up
    # It grows; once closed, a late progress report changes nothing.
    path.write_bytes(b"\0" * 5000)
    jobs.recording_progress(recording, 50)
    recording.refresh_from_db()
    assert (recording.size_bytes, recording.duration_seconds) == (5000, 50)
    jobs.recording_closed(recording, time.time(), 51.5)
    jobs.recording_progress(recording, 99)
    recording.refresh_from_db()
    assert (recording.size_bytes, recording.duration_seconds) == (5000, 51.5)
    assert f'data-recording="{recording.pk}" data-in-progress' not in page(client.get("/streams/recordings/"))


def test_it_says_which_setting_it_deleted(client, owner, queued):
    add_pair(owner)
    client.force_login(owner)
    client.post("/streams/media/?form=record", RECORD)
    form = {"what": "record", "domain": "push.example.com", "app": "live"}
    response = client.post("/streams/media/delete/", form, follow=True)
    assert "Deleted the record setting of push.example.com/live." in page(response)
