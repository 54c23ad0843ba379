"""HLS VOD recordings of a stream whose HLS is encrypted (issue 16): the
recorder encrypts the segments when a file closes, keeps the key in the
recording's row (encrypted at rest) and serves it beside the segments to
the owner only, so the recording stays playable with its key."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess

import pytest
from django.db import connection

from domains import services as domain_services
from mediajobs import jobs
from mediajobs.models import MediaJob, Recording
from mediajobs.transcode import pipeline
from tests.apisupport import client_for
from tests.pagesupport import add_streaming
from tests.streamsupport import add_pair

pytestmark = pytest.mark.django_db


def job_for(push, app: str = "live") -> MediaJob:
    return MediaJob(domain=push, domain_name=push.domain_name, app=app, stream="cam1")


def test_a_recording_is_encrypted_when_a_streaming_domain_encrypts_its_app(owner):
    push, play = add_pair(owner)
    assert not jobs.hls_recording_encrypted(job_for(push))
    domain_services.configure_hls_encryption(play, enabled=True, apps=["live"])
    assert jobs.hls_recording_encrypted(job_for(push))
    assert not jobs.hls_recording_encrypted(job_for(push, app="other"))


def test_a_sub_streaming_domains_encryption_counts_too(owner):
    push, play = add_pair(owner)
    sub = add_streaming(owner, "sub.example.com")
    sub = domain_services.bind_main_domain(sub, play.domain_name)
    domain_services.configure_hls_encryption(sub, enabled=True)
    assert jobs.hls_recording_encrypted(job_for(push))


@pytest.mark.media
def test_an_encrypted_hls_recording_stays_playable_with_its_key(owner, outsider, tmp_path, settings):
    push, _ = add_pair(owner)
    settings.LIVECENTER_RECORDINGS_DIR = tmp_path
    source = tmp_path / "source.flv"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15", "-f", "lavfi",
                    "-i", "sine", "-t", "8", "-c:v", "libx264", "-preset", "ultrafast", "-g", "15", "-c:a", "aac",
                    str(source)], check=True, timeout=120)  # fmt: skip
    recording = Recording.objects.create(domain=push, domain_name=push.domain_name, app="live", stream="cam1",
                                         path="live/cam1/rec.m3u8", format="m3u8",
                                         started_at=dt.datetime.now(dt.UTC))  # fmt: skip
    key = os.urandom(16)

    class Control:  # what mediajobs.tasks._JobRun does for a recording of an encrypted stream
        def should_stop(self):
            return False

        def split_now(self):
            return False

        def source_live(self):
            return False

        def open_file(self, started_at):
            path = tmp_path / recording.path
            path.parent.mkdir(parents=True, exist_ok=True)
            return path

        def file_closed(self, path, started_at, ended_at, duration_s):
            jobs.encrypt_hls_recording(path, key)
            jobs.recording_closed(recording, ended_at, duration_s, key)

    assert pipeline.record(str(source), Control(), cycle_seconds=3600) == "source ended"
    recording.refresh_from_db()
    assert recording.hls_key == key.hex()
    with connection.cursor() as cursor:  # encrypted at rest
        cursor.execute("SELECT hls_key FROM streams_recording WHERE id = %s", [recording.pk])
        stored = cursor.fetchone()[0]
    assert stored and key.hex() not in stored

    folder = tmp_path / "live/cam1"
    segments = sorted(folder.glob("rec_*.ts"))
    assert len(segments) >= 2
    assert all(len(p.read_bytes()) % 16 == 0 and p.read_bytes()[188:189] != b"G" for p in segments)
    assert not list(folder.glob("*.key")) and not list(folder.glob("*.tmp"))  # no key on disk

    mine, theirs = client_for(owner), client_for(outsider)
    url = f"/api/v1/streams/recordings/{recording.pk}/download/"
    text = b"".join(mine.get(url).streaming_content).decode()
    assert '#EXT-X-KEY:METHOD=AES-128,URI="rec.key"' in text and "#EXT-X-ENDLIST" in text
    served = mine.get(url + "rec.key")
    assert served.status_code == 200 and served.content == key
    assert served["Cache-Control"] == "private, no-store"
    assert theirs.get(url + "rec.key").status_code == 404

    # A player with the playlist, its segments and its key decodes it all.
    player = tmp_path / "player"
    shutil.copytree(folder, player)
    (player / "rec.key").write_bytes(served.content)
    cmd = ["ffmpeg", "-v", "error", "-allowed_extensions", "ALL", "-i", str(player / "rec.m3u8"), "-f", "null", "-"]
    decoded = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert decoded.returncode == 0 and decoded.stderr == "", decoded.stderr
    cmd = ["ffprobe", "-v", "error", "-allowed_extensions", "ALL", "-show_entries", "format=duration", "-of", "csv=p=0"]
    probe = subprocess.run([*cmd, str(player / "rec.m3u8")], capture_output=True, text=True, check=True)
    assert 7.5 <= float(probe.stdout) <= 8.5
