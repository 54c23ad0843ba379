"""The publish authorisation callback (issue 16; livecenter/media/publish_hook.py)
with real ffmpeg publishers over RTMP and SRT and a receiver run by the
test: its "no" refuses the publish with its reason, its "yes" admits and is
kept for a while, and when it does not answer the domain's choice holds,
within the timeout, without holding up another stream."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from livecenter.media import webhooks
from livecenter.media.policy import PublishHook, PublishRefused, StreamKey, StreamUnpublished
from livecenter.media.webhooks import AddressRule
from tests.callbacksupport import Receiver
from tests.mediasupport import INGEST, NodeThread, default_policy, start_publisher

pytestmark = pytest.mark.media

SECRET = "hook-secret-0123456789"
KEY = StreamKey(INGEST, "live", "cam1")
SMALL = {"size": "320x240", "rate": 15}


def node_with_hook(url: str, **hook) -> NodeThread:
    policy = default_policy()
    rule = AddressRule(allow_private=True)  # the receiver is the test's, on loopback
    policy.hooks[INGEST] = PublishHook(url, SECRET, rule=rule, **{"timeout_seconds": 2.0, **hook})
    return NodeThread(policy, srt_port=0).start()


def live(media, key=KEY, timeout: float = 20) -> bool:
    return media.wait_for(lambda: media.node.hub.is_live(key), timeout)


def test_it_refuses_an_rtmp_publish_with_the_receivers_reason(caplog):
    caplog.set_level("INFO", logger="livecenter.media")
    with Receiver(lambda received, count: (403, "not on the guest list")) as receiver:
        media = node_with_hook(receiver.url)
        try:
            publisher = start_publisher(media.publish_url(), seconds=5, **SMALL)
            assert publisher.process.wait(30) != 0
            assert not media.run_sync(lambda: media.node.hub.is_live(KEY))
            assert media.wait_for(lambda: any(isinstance(e, PublishRefused) for e in media.sink.events))
        finally:
            media.stop()
    reason = "refused by the publish callback (403): not on the guest list"
    assert f"publish refused: stream={INGEST}/live/cam1 reason={reason}" in caplog.text
    assert caplog.text.count(reason) == 1  # one line
    assert [e.reason for e in media.sink.events if isinstance(e, PublishRefused)] == [reason]
    (asked,) = receiver.requests
    assert webhooks.verify(SECRET, asked.headers, asked.body, time.time())
    body = asked.json
    assert (body["event"], body["domain"], body["app"], body["stream"]) == ("publish.authorize", INGEST, "live", "cam1")
    assert (body["protocol"], body["client_ip"]) == ("rtmp", "127.0.0.1")


def test_it_checks_the_signed_url_first():
    with Receiver() as receiver:
        media = node_with_hook(receiver.url)
        try:
            unsigned = f"{media.rtmp}/live/cam1?domain={INGEST}"
            assert start_publisher(unsigned, seconds=5, **SMALL).process.wait(30) != 0
        finally:
            media.stop()
    assert receiver.requests == []


def test_it_admits_on_a_2xx_and_keeps_the_answer_for_the_stream_and_client():
    with Receiver(lambda received, count: (204, "")) as receiver:
        media = node_with_hook(receiver.url)
        try:
            for _ in range(2):
                publisher = start_publisher(media.publish_url(), seconds=30, **SMALL)
                assert live(media), publisher.stop()
                assert media.wait_for(lambda: media.node.hub.stream(KEY).bytes_in > 10_000), publisher.stop()
                publisher.stop()
                assert media.wait_for(lambda: not media.node.hub.is_live(KEY))
        finally:
            media.stop()
    assert len(receiver.requests) == 1  # the second publish used the cached answer
    # Each unpublish tells the bytes its publication brought (nobody watched: the hub forgot the stream).
    ended = [e for e in media.sink.events if isinstance(e, StreamUnpublished)]
    assert len(ended) == 2 and all(e.bytes_received > 10_000 for e in ended), ended


def test_it_refuses_an_srt_publish_with_the_receivers_reason(caplog):
    caplog.set_level("INFO", logger="livecenter.media")
    with Receiver(lambda received, count: (401, "stream key revoked")) as receiver:
        media = node_with_hook(receiver.url)
        try:
            url = media.srt_publish_url()
            publisher = start_publisher(url, seconds=5, container="mpegts", **SMALL)
            assert publisher.process.wait(30) != 0
            assert not media.run_sync(lambda: media.node.hub.is_live(KEY))
        finally:
            media.stop()
    assert "reason=refused by the publish callback (401): stream key revoked (1403)" in caplog.text
    assert receiver.requests[0].json["protocol"] == "srt"


@pytest.mark.parametrize("allow", [True, False])
def test_it_follows_the_domains_choice_when_the_receiver_does_not_answer_in_time(caplog, allow):
    caplog.set_level("INFO", logger="livecenter.media")
    # A receiver that answers after 5 s, to a node that waits 0.5 s.
    with Receiver(lambda received, count: (200, "ok"), delay_seconds=5) as receiver:
        media = node_with_hook(receiver.url, timeout_seconds=0.5, allow_when_unreachable=allow)
        try:
            publisher = start_publisher(media.publish_url(), seconds=30, **SMALL)
            if allow:
                assert live(media), publisher.stop()
            else:
                assert publisher.process.wait(30) != 0
                assert "reason=publish authorisation callback unreachable" in caplog.text
            publisher.stop()
        finally:
            media.stop()
    assert "no answer within 0.5 s; publish " + ("allowed" if allow else "refused") in caplog.text
    assert len(receiver.requests) == 1


def test_it_holds_up_only_the_publisher_whose_receiver_is_slow():
    # The receiver of push.test answers only when the test lets it; a
    # publisher of another domain (no hook) goes live meanwhile.
    release = threading.Event()

    def answer(received, count):
        release.wait(60)
        return 200, "ok"

    with Receiver(answer) as receiver:
        media = node_with_hook(receiver.url, timeout_seconds=60)
        other = "push2.test"
        media.policy.domains[other] = replace(media.policy.domains[INGEST], name=other)
        other_key = StreamKey(other, "live", "cam1")
        slow = fast = None
        try:
            slow = start_publisher(media.publish_url(), seconds=60, **SMALL)
            assert media.wait_for(lambda: len(receiver.requests) == 1, 30), slow.stop()
            fast = start_publisher(media.publish_url(domain=other), seconds=60, **SMALL)
            assert live(media, other_key), fast.stop()
            assert not media.run_sync(lambda: media.node.hub.is_live(KEY))  # still waiting for its answer
            release.set()
            assert live(media), slow.stop()
        finally:
            release.set()
            for publisher in (slow, fast):
                if publisher is not None:
                    publisher.stop()
            media.stop()
