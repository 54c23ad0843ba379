"""pipeline.LiveSource (issue 11 item 3): a media job's source that drops
while the stream is live is read again; one that does not come back raises
SourceLost. The source here is an FLV file, read again as a reconnect."""

from __future__ import annotations

import subprocess

import pytest

from mediajobs.transcode import pipeline

pytestmark = pytest.mark.media


@pytest.fixture(scope="module")
def flv(tmp_path_factory):
    path = tmp_path_factory.mktemp("source") / "source.flv"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15", "-f", "lavfi",
                    "-i", "sine", "-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-g", "15", "-c:a", "aac",
                    str(path)], check=True)  # fmt: skip
    return path


class Control:
    def __init__(self, live_checks: int) -> None:
        self.live_checks = live_checks  # how many times the stream is said to be live
        self.sleeps: list[float] = []

    def should_stop(self) -> bool:
        return False

    def source_live(self) -> bool:
        self.live_checks -= 1
        return self.live_checks >= 0


def test_it_reads_the_source_again_while_the_stream_is_live(flv):
    once = [(p.dts, v) for p, v in pipeline.LiveSource(str(flv), Control(0)).packets()]
    control = Control(2)
    source = pipeline.LiveSource(str(flv), control, sleep=control.sleeps.append)
    packets = [(p.dts, v) for p, v in source.packets()]
    assert packets == once * 3 and any(v for _, v in once) and not all(v for _, v in once)
    assert source.reconnects == 2 and source.reason == "source ended"
    first = pipeline.SOURCE_RECONNECT_BACKOFF_SECONDS[0]
    assert control.sleeps == [first, first]  # each drop starts the backoff again


def test_it_raises_source_lost_when_a_live_source_does_not_come_back(flv, tmp_path):
    gone = tmp_path / "gone.flv"
    gone.write_bytes(flv.read_bytes())
    control = Control(10**6)
    now = [0.0]

    def sleep(seconds: float) -> None:
        control.sleeps.append(seconds)
        now[0] += seconds

    source = pipeline.LiveSource(str(gone), control, sleep=sleep, clock=lambda: now[0])
    gone.unlink()
    with pytest.raises(pipeline.SourceLost, match=r"source ended; not back within 60 s"):
        list(source.packets())
    assert sum(control.sleeps) >= pipeline.SOURCE_RECONNECT_SECONDS
    assert max(control.sleeps) == pipeline.SOURCE_RECONNECT_BACKOFF_SECONDS[-1]


def test_it_ends_when_the_stream_is_no_longer_live(flv):
    source = pipeline.LiveSource(str(flv), Control(0), video_only=True)
    assert all(is_video for _, is_video in source.packets())
    assert source.reconnects == 0 and source.reason == "source ended"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("live", [True, False])
def test_it_tries_a_job_again_when_its_source_is_lost_while_the_stream_is_live(owner, monkeypatch, live):
    from django.utils import timezone

    from livecenter.media.policy import StreamKey
    from mediajobs import jobs as media_jobs
    from mediajobs import services as media_services
    from mediajobs import tasks
    from mediajobs.models import JobState, MediaJob
    from tests.streamsupport import publish, unpublish
    from tests.test_media_transcode import PUSH, add_domains

    add_domains(owner)
    media_services.set_snapshot_config(owner, PUSH, "*", interval_seconds=5)
    sent = []
    monkeypatch.setattr(tasks.run_media_job, "apply_async", lambda args, **kw: sent.append(tuple(args)))
    session = publish(PUSH, "live", "cam1", "session-1")
    node = media_jobs.NodeAddress("127.0.0.1", 1935, 8080)
    job, _ = media_jobs.start_job("snapshot", StreamKey(PUSH, "live", "cam1"), node)

    def lost(url, control, interval_seconds):
        if not live:
            unpublish(session, timezone.now())
        raise pipeline.SourceLost("source ended; not back within 60 s")

    monkeypatch.setattr(pipeline, "snapshot", lost)
    tasks.run_media_job(job.pk, 1)
    job.refresh_from_db()
    if live:  # given back for another attempt, not ended
        assert (job.state, job.attempt, sent[-1]) == (JobState.QUEUED, 2, (job.pk, 2))
    else:  # the stream ended: so does the job, without failing
        assert job.state == JobState.FINISHED and MediaJob.objects.filter(attempt=2).count() == 0
    assert job.detail == "source lost: source ended; not back within 60 s"
