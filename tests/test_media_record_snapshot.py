"""Recording and snapshots on a real Celery worker (issue 7): a stream of an
app with a recording setting is written to MP4 files split by the cycle, each
playing to its end with the right duration; one with a snapshot setting gets
a JPEG of its own size every interval. Both are listed by the API."""

from __future__ import annotations

import json
import subprocess

import av
import pytest
from django.db import connections
from rest_framework.test import APIClient

from domains import services
from mediajobs import services as media_services
from mediajobs.models import MediaJob, Recording, Snapshot
from streams.models import PublishSession
from tests.test_media_transcode import PLAY, PUSH, add_domains
from tests.workersupport import MediaNodeThread, Workers, jobs_ended, start_publisher, stop, wait_until

pytestmark = [pytest.mark.worker, pytest.mark.media, pytest.mark.django_db(transaction=True)]

PUBLISH_SECONDS = 26
CYCLE_SECONDS = 10
# A record job is queued as the stream goes live, and a ready worker opens
# its source within a second or two even beside a CPU hog on both cores.
JOIN_SECONDS = 10


def ffprobe_duration(path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return float(json.loads(out.stdout)["format"]["duration"])


def decoded_seconds(path) -> float:
    """Decode the whole file (it must play to its end without an error) and
    return the span of its video frames."""
    out = subprocess.run(["ffmpeg", "-v", "error", "-xerror", "-i", str(path), "-map", "0:v", "-f", "framemd5", "-"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
    frames = [line.split(",") for line in out.stdout.splitlines() if line and not line.startswith("#")]
    pts = [int(f[2]) for f in frames]
    timebase = next(line for line in out.stdout.splitlines() if line.startswith("#tb 0:")).split(":")[1].strip()
    num, den = (int(x) for x in timebase.split("/"))
    return (max(pts) - min(pts)) * num / den + 1 / 15


def test_it_records_to_split_mp4_files_and_takes_snapshots(owner, settings, tmp_path):
    add_domains(owner)
    media_services.set_record_config(owner, PLAY, "live", cycle_seconds=CYCLE_SECONDS)
    media_services.set_snapshot_config(owner, PUSH, "*", interval_seconds=5)
    with MediaNodeThread() as media, Workers(tmp_path, settings) as workers:
        workers.start_worker()
        urls = services.generate_urls(owner, PUSH, "live", "cam1")
        publisher = start_publisher(media.local(urls.ingest["rtmp"]), seconds=PUBLISH_SECONDS, size="640x360")
        try:
            assert wait_until(lambda: media.node.hub.live_keys()), stop(publisher)
            assert publisher.wait(PUBLISH_SECONDS + 30) == 0, stop(publisher)
        finally:
            stop(publisher)
        # The jobs end once the node gives up waiting for the publisher (its reconnect grace).
        assert jobs_ended(60), workers.output()
    assert set(MediaJob.objects.values_list("kind", "state")) == {("record", "finished"), ("snapshot", "finished")}

    recordings = list(Recording.objects.order_by("started_at"))
    assert len(recordings) >= 2, workers.output()
    total = 0.0
    for recording in recordings:
        path = media_services.recording_file(recording)
        assert recording.ended_at is not None and recording.size_bytes == path.stat().st_size > 0
        played = decoded_seconds(path)
        # Keyframes are marked (MP4 sync samples), one a second, so players can seek.
        command = [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=flags",
            "-of",
            "csv=p=0",
        ]
        flags = subprocess.run([*command, str(path)], capture_output=True, text=True, check=True).stdout
        assert flags.count("K") >= recording.duration_seconds - 1, flags.count("K")
        assert abs(ffprobe_duration(path) - recording.duration_seconds) < 0.5
        assert abs(played - recording.duration_seconds) < 0.5, (played, recording.duration_seconds)
        total += played
    for recording in recordings[:-1]:
        # Split at the first keyframe past the cycle (1 s keyframes).
        assert CYCLE_SECONDS - 0.2 <= recording.duration_seconds <= CYCLE_SECONDS + 1.2, recording.duration_seconds
    # Everything published was recorded, less what came before the recorder
    # joined (from the GOP the node holds: up to a second before it asked).
    session = PublishSession.objects.get(stream="cam1")
    before_join = (recordings[0].started_at - session.started_at).total_seconds()
    assert 0 < before_join <= JOIN_SECONDS, (before_join, workers.output())
    durations = [r.duration_seconds for r in recordings]
    assert PUBLISH_SECONDS - before_join - 0.5 <= total <= PUBLISH_SECONDS + 0.5, (total, before_join, durations)

    snapshots = list(Snapshot.objects.order_by("taken_at"))
    assert len(snapshots) >= 3, workers.output()
    for snap in snapshots:
        with av.open(str(media_services.snapshot_file(snap))) as jpeg:
            assert jpeg.streams.video[0].codec_context.name == "mjpeg"
            frame = next(jpeg.decode(video=0))
        assert (frame.width, frame.height) == (snap.width, snap.height) == (640, 360)
    gaps = [(b.taken_at - a.taken_at).total_seconds() for a, b in zip(snapshots, snapshots[1:], strict=False)]
    assert all(4.5 <= gap <= 7 for gap in gaps), gaps

    api = APIClient()
    api.force_authenticate(owner)
    rows = api.get("/api/v1/streams/recordings/", {"domain": PLAY}).json()
    rows = rows.get("results", rows)
    assert len(rows) == len(recordings)
    assert {"start_time", "end_time", "size_bytes", "duration_seconds", "download_url"} <= set(rows[0])
    download = api.get(rows[0]["download_url"])
    assert download.status_code == 200
    assert b"".join(download.streaming_content)[4:8] == b"ftyp"
    shots = api.get("/api/v1/streams/snapshots/", {"domain": PUSH, "stream": "cam1"}).json()
    shots = shots.get("results", shots)
    assert len(shots) == len(snapshots)
    assert (shots[0]["width"], shots[0]["height"]) == (640, 360)
    connections.close_all()
