"""The recordings disk full (issue 11, Faults): recordings go to a small
tmpfs that fills up. The recording job fails with that reason, the stream
and its viewers are untouched, and the console (recordings page, jobs API)
shows why."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time

import pytest
from django.test import Client

from domains import services
from mediajobs import services as media_services
from mediajobs.models import JobKind, JobState, MediaJob
from tests.test_media_transcode import PLAY, PUSH, add_domains
from tests.workersupport import MediaNodeThread, Workers, probe, start_publisher, stop, wait_until

pytestmark = [
    pytest.mark.root,
    pytest.mark.worker,
    pytest.mark.media,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        os.geteuid() != 0, reason="mounts a small tmpfs for the recordings: needs root (CI runs as root)"
    ),
]

DISK_BYTES = 384 * 1024  # a few seconds of a 2 Mbit/s stream


@contextlib.contextmanager
def small_disk(path, size_bytes: int):
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_it_fails_the_recording_not_the_stream_when_the_disk_is_full(owner, settings, tmp_path):
    add_domains(owner)
    media_services.set_record_config(owner, PLAY, "live", cycle_seconds=60)
    with MediaNodeThread() as media, Workers(tmp_path, settings) as workers:
        with small_disk(tmp_path / "recordings", DISK_BYTES):
            workers.start_worker()
            urls = services.generate_urls(owner, PUSH, "live", "cam1")
            publisher = start_publisher(media.local(urls.ingest["rtmp"]), seconds=90, size="640x360")
            try:
                assert wait_until(lambda: media.node.hub.live_keys(), 30), stop(publisher)

                def failed():
                    return MediaJob.objects.filter(kind=JobKind.RECORD, state=JobState.FAILED).first()

                job = wait_until(failed, 90)
                assert job is not None, workers.output()
                assert job.detail.startswith("no space left on device"), job.detail
                # Not tried again on a full disk, and the stream goes on.
                time.sleep(2)
                assert MediaJob.objects.filter(kind=JobKind.RECORD).count() == 1
                assert job.attempt == 1
                assert publisher.poll() is None, stop(publisher)
                assert probe(media.local(urls.playback["flv"]), seconds=2)["packets"]
                assert media.node.hub.live_keys()
                # The console says why.
                console = Client()
                console.force_login(owner)
                page = console.get("/streams/recordings/")
                assert page.status_code == 200
                assert b"no space left on device" in page.content
                jobs = console.get("/api/v1/streams/jobs/?all=true").json()
                details = [j.get("detail", "") for j in jobs.get("results", jobs)]
                assert any(d.startswith("no space left on device") for d in details), jobs
            finally:
                stop(publisher)
