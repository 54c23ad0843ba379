"""Transcoding, recording and snapshots of a stream published over SRT, on
a real Celery worker (issue 13: "an SRT-published stream is a stream like
any other"): ffmpeg (libsrt) publishes to the SRT URL the URL generator
signs; the jobs read it back from the node as they read an RTMP one."""

from __future__ import annotations

import av
import pytest
from django.db import connections

from domains import services
from mediajobs import services as media_services
from mediajobs.models import MediaJob, Recording, Snapshot
from tests.test_media_record_snapshot import decoded_seconds, ffprobe_duration
from tests.test_media_transcode import PLAY, PUSH, add_domains
from tests.workersupport import MediaNodeThread, Workers, jobs_ended, probe, start_publisher, stop, wait_until

pytestmark = [pytest.mark.worker, pytest.mark.media, pytest.mark.django_db(transaction=True)]

PUBLISH_SECONDS = 30
CYCLE_SECONDS = 10
SRT_LATENCY_MS = 2000


def test_an_srt_publish_is_transcoded_recorded_and_snapshotted(owner, settings, tmp_path):
    add_domains(owner)
    media_services.add_template(owner, PLAY, "live", "lld")
    media_services.set_record_config(owner, PLAY, "live", cycle_seconds=CYCLE_SECONDS)
    media_services.set_snapshot_config(owner, PUSH, "*", interval_seconds=5)
    with MediaNodeThread(srt_port=0) as media, Workers(tmp_path, settings) as workers:
        workers.start_worker()
        urls = services.generate_urls(owner, PUSH, "live", "cam1")
        assert urls.ingest["srt"].startswith("srt://")
        # 2 s of SRT latency (ffmpeg's option, in µs): on a loaded machine the
        # default 120 ms can see a packet given up, a frame lost and the
        # recordings' next frames corrupt, which is not what this test is about.
        url = media.local(urls.ingest["srt"]) + f"&latency={SRT_LATENCY_MS * 1000}"
        publisher = start_publisher(url, seconds=PUBLISH_SECONDS, container="mpegts")
        try:
            assert wait_until(lambda: media.node.hub.live_keys()), stop(publisher)
            assert media.node.srt.publishers, "published over SRT"
            # The first viewer of the rendition starts the transcode.
            lld = media.local(services.generate_urls(owner, PLAY, "live", "cam1", template="lld").playback["flv"])
            rendition = probe(lld, seconds=6, entries="packet=pts_time,stream_index", timeout=120)
            assert publisher.wait(PUBLISH_SECONDS + 30) == 0, stop(publisher)
        finally:
            stop(publisher)
        assert jobs_ended(60), workers.output()
    kinds = set(MediaJob.objects.values_list("kind", "state"))
    assert kinds == {("transcode", "finished"), ("record", "finished"), ("snapshot", "finished")}, kinds

    video = next(s for s in rendition["streams"] if s["codec_type"] == "video")
    assert (video["width"], video["height"]) == (640, 360)
    assert len([p for p in rendition["packets"] if p.get("stream_index") == video["index"]]) >= 6 * 10

    recordings = list(Recording.objects.order_by("started_at"))
    assert len(recordings) >= 2, workers.output()
    for recording in recordings:
        path = media_services.recording_file(recording)
        assert abs(ffprobe_duration(path) - recording.duration_seconds) < 0.5
        # Every frame decodes, the last one too: a libsrt caller that ends
        # drops what it has not sent, and the demuxer once passed that cut
        # frame on (mpegts_demux: a PES whose stuffed last packet never came).
        assert abs(decoded_seconds(path) - recording.duration_seconds) < 0.5

    snapshots = list(Snapshot.objects.order_by("taken_at"))
    assert len(snapshots) >= 3, workers.output()
    for snap in snapshots:
        with av.open(str(media_services.snapshot_file(snap))) as jpeg:
            frame = next(jpeg.decode(video=0))
        assert (frame.width, frame.height) == (snap.width, snap.height) == (1280, 720)
    connections.close_all()
