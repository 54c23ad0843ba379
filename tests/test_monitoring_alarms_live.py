"""Alarms on a real stream: ffmpeg publishes 10 fps to the media node (the
database policy and event sink), the node's samples open a frame-rate alarm
and feed no interruption; when ffmpeg finishes and unpublishes, the alarm
closes as "stream stopped" and still no interruption opens (the publisher
ended the stream)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from domains import services
from monitoring import alarms
from monitoring.models import AlarmEvent
from tests.mediasupport import start_publisher
from tests.test_streams_live import DatabaseNode, local, wait_until

pytestmark = [pytest.mark.media, pytest.mark.django_db(transaction=True), pytest.mark.backends]


def test_a_real_streams_samples_open_and_close_an_alarm(owner):
    services.add_domain(owner, "push.live.test", "ingest", "overseas", "ap-southeast-1")
    alarms.add_rule(owner, "push.live.test", metric="frame_rate", threshold=20, duration_seconds=3)
    alarms.add_rule(owner, "push.live.test", metric="interruption", threshold=5, duration_seconds=2)
    with DatabaseNode() as media:
        urls = services.generate_urls(owner, "push.live.test", "live", "cam1")
        publisher = start_publisher(local(urls.ingest["rtmp"], media.node.rtmp_port), seconds=12, rate=10,
                                    size="320x240")  # fmt: skip
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
