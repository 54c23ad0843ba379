"""Alarms on a real stream: ffmpeg publishes 10 fps to the media node (the
database policy and event sink), the node's samples open a frame-rate alarm
and feed no interruption; when ffmpeg finishes and unpublishes, the alarm
closes as "stream stopped" and still no interruption opens (the publisher
ended the stream). An ffmpeg killed with SIGKILL mid-publish ends its session
as "connection lost", which opens an interruption."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from domains import services
from monitoring import alarms
from monitoring.models import AlarmEvent
from streams.models import PublishSession
from tests.mediasupport import start_publisher
from tests.test_streams_live import DatabaseNode, local, wait_until

pytestmark = [pytest.mark.media, pytest.mark.django_db(transaction=True), pytest.mark.backends]


def publish_cam1(owner, media, seconds: float):
    """ffmpeg publishing push.live.test/live/cam1 at 10 fps to `media`."""
    urls = services.generate_urls(owner, "push.live.test", "live", "cam1")
    return start_publisher(local(urls.ingest["rtmp"], media.node.rtmp_port), seconds=seconds, rate=10, size="320x240")


def test_a_real_streams_samples_open_and_close_an_alarm(owner):
    services.add_domain(owner, "push.live.test", "ingest", "overseas", "ap-southeast-1")
    alarms.add_rule(owner, "push.live.test", metric="frame_rate", threshold=20, duration_seconds=3)
    alarms.add_rule(owner, "push.live.test", metric="interruption", threshold=5, duration_seconds=2)
    with DatabaseNode() as media:
        publisher = publish_cam1(owner, media, seconds=12)
        try:

            def opened():
                alarms.evaluate()
                return AlarmEvent.objects.filter(metric="frame_rate", ended_at__isnull=True).first()

            alarm = wait_until(opened, timeout=30)
            assert alarm is not None, publisher.stop()
            assert 5 <= alarm.value < 20 and alarm.stream_url == "push.live.test/live/cam1"
            assert alarm.started_at <= timezone.now()
            assert publisher.process.wait(60) == 0

            def closed():
                alarms.evaluate()
                alarm.refresh_from_db()
                return alarm.ended_at is not None

            assert wait_until(closed, timeout=30)
            assert alarm.end_reason == "stream stopped"
        finally:
            publisher.stop()
    # Well past the interruption threshold: the publisher ended the stream, so none opens.
    assert alarms.evaluate(timezone.now() + dt.timedelta(seconds=30)) == (0, 0)
    assert not AlarmEvent.objects.filter(metric="interruption").exists()


def test_a_killed_encoder_opens_an_interruption(owner):
    services.add_domain(owner, "push.live.test", "ingest", "overseas", "ap-southeast-1")
    alarms.add_rule(owner, "push.live.test", metric="interruption", threshold=5, duration_seconds=2)
    with DatabaseNode() as media:
        publisher = publish_cam1(owner, media, seconds=60)
        try:
            sessions = PublishSession.objects.filter(stream="cam1")
            assert wait_until(sessions.exists, timeout=30), publisher.stop()
            publisher.process.kill()  # SIGKILL: no FCUnpublish, no deleteStream
            session = wait_until(lambda: sessions.filter(stopped_at__isnull=False).first(), timeout=30)
            assert session is not None and session.stop_reason == "connection lost"
        finally:
            publisher.stop()
    assert alarms.evaluate(timezone.now() + dt.timedelta(seconds=30)) == (1, 0)
    alarm = AlarmEvent.objects.get(metric="interruption")
    assert alarm.stream_url == "push.live.test/live/cam1" and alarm.ended_at is None
