"""Callbacks end to end (issue 16): ffmpeg publishes to a media node on the
database policy, a real Celery worker records, snapshots and delivers; the
receiver run by the test gets every event signed, the publish event on the
third try after two failures, and the deliveries page shows the attempts."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from callbacks import services as callback_services
from callbacks.models import Delivery, DeliveryAttempt, DeliveryStatus
from domains import services
from domains.models import Domain
from livecenter.media import webhooks
from mediajobs import jobs
from mediajobs import services as media_services
from mediajobs.models import JobKind, JobState, MediaJob
from tests.callbacksupport import Receiver
from tests.test_media_transcode import PLAY, PUSH, add_domains
from tests.workersupport import MediaNodeThread, Workers, jobs_ended, start_publisher, stop, wait_until

pytestmark = [pytest.mark.worker, pytest.mark.media, pytest.mark.django_db(transaction=True)]

SECRET = "end-to-end-secret-0123"
PUBLISH_SECONDS = 12
EVENTS = {"stream.published", "stream.unpublished", "recording.ready", "snapshot.taken", "transcode.failed"}


def answer(received, count):
    """The publish event fails twice (the receiver is "down"), then is taken."""
    if received.headers.get("X-LiveCenter-Event") == "stream.published" and count < 2:
        return 500, "not yet"
    return 200, "ok"


def test_it_tells_the_receiver_every_event_signed_retrying_until_it_takes_them(client, owner, settings, tmp_path):
    settings.LIVECENTER_CALLBACKS_ALLOW_PRIVATE = True
    add_domains(owner)
    media_services.set_record_config(owner, PLAY, "live", cycle_seconds=3600)
    media_services.set_snapshot_config(owner, PUSH, "*", interval_seconds=5)
    env = {"LIVECENTER_CALLBACKS_ALLOW_PRIVATE": "1", "LIVECENTER_CALLBACKS_BACKOFF_SECONDS": "0.5"}
    with Receiver(answer) as receiver, MediaNodeThread() as media, Workers(tmp_path, settings, **env) as workers:
        settings.LIVECENTER_CALLBACKS_QUEUE = workers.queue
        workers.env["LIVECENTER_CALLBACKS_QUEUE"] = workers.queue  # the worker queues its retries there
        callback_services.configure_callbacks(Domain.objects.get(domain_name=PUSH), url=receiver.url, secret=SECRET)
        workers.start_worker()
        urls = services.generate_urls(owner, PUSH, "live", "cam1")
        publisher = start_publisher(media.local(urls.ingest["rtmp"]), seconds=PUBLISH_SECONDS, size="320x240")
        try:
            assert wait_until(lambda: media.node.hub.live_keys()), stop(publisher)
            assert publisher.wait(PUBLISH_SECONDS + 30) == 0, stop(publisher)
        finally:
            stop(publisher)
        assert jobs_ended(60), workers.output()
        # A transcode that failed for good, as a worker ends one.
        transcode = MediaJob.objects.create(kind=JobKind.TRANSCODE, domain=Domain.objects.get(domain_name=PUSH),
                                            domain_name=PUSH, app="live", stream="cam1", state=JobState.RUNNING,
                                            node_host="127.0.0.1", node_rtmp_port=1, node_http_port=1,
                                            queued_at=timezone.now())  # fmt: skip
        assert jobs.finish_job(transcode.pk, transcode.attempt, "gave up: ffmpeg exited", failed=True)

        def all_delivered():
            seen = {r.headers.get("X-LiveCenter-Event") for r in receiver.requests}
            pending = Delivery.objects.exclude(status=DeliveryStatus.DELIVERED).exists()
            return seen >= EVENTS and not pending

        assert wait_until(all_delivered, 60), (receiver.requests, workers.output())

        # Every request is signed with the domain's secret, recently.
        for received in receiver.requests:
            assert webhooks.verify(SECRET, received.headers, received.body, time.time(), tolerance_seconds=120)
        published = receiver.events("stream.published")
        assert len(published) == 3 and len({r.headers["X-LiveCenter-Delivery"] for r in published}) == 1
        event = published[-1].json
        assert (event["domain"], event["app"], event["stream"], event["protocol"]) == (PUSH, "live", "cam1", "rtmp")
        assert "auth_key" not in event["publish_url"]
        (done,) = [r.json for r in receiver.events("stream.unpublished")]
        assert 3 <= done["duration_seconds"] <= PUBLISH_SECONDS + 30 and done["bytes_received"] > 10_000
        recording = receiver.events("recording.ready")[0].json
        assert recording["size_bytes"] > 0 and recording["duration_seconds"] > 1
        assert recording["download_url"].endswith(f"/api/v1/streams/recordings/{recording['recording_id']}/download/")
        assert recording["path"].startswith(f"{PUSH}/live/cam1/")
        snapshot = receiver.events("snapshot.taken")[0].json
        assert (snapshot["width"], snapshot["height"]) == (320, 240)
        failed = receiver.events("transcode.failed")[0].json
        assert (failed["job_id"], failed["detail"]) == (transcode.pk, "gave up: ffmpeg exited")

        # The deliveries page shows the publish event's three attempts.
        delivery = Delivery.objects.get(event="stream.published")
        attempts = DeliveryAttempt.objects.filter(delivery=delivery)
        assert [(a.number, a.status_code) for a in attempts] == [(1, 500), (2, 500), (3, 200)]
        client.force_login(owner)
        body = client.get(f"/domains/{PUSH}/callbacks/").content.decode()
        for number in (1, 2, 3):
            assert f'data-delivery="{delivery.event_id}" data-attempt="{number}"' in body

        # A resend goes out again with the same event id.
        unpublished = Delivery.objects.get(event="stream.unpublished")
        assert client.post(f"/domains/{PUSH}/callbacks/{unpublished.pk}/resend/").status_code == 302
        assert wait_until(lambda: len(receiver.events("stream.unpublished")) == 2, 60), workers.output()
        ids = {r.headers["X-LiveCenter-Delivery"] for r in receiver.events("stream.unpublished")}
        assert ids == {unpublished.event_id}
