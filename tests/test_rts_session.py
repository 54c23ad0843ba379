"""The WHEP session's waits (livecenter/media/rts/session.py) run on events,
not polling: a POST for a stream that just went live wakes on its first
frames (or its end) through a probe subscription that counts as no viewer
and is gone after; a session that never connects, or whose stream ends
first, is ended with the reason. Whole WHEP exchanges are in
tests/test_rts_whep.py and tests/test_browser_rts.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from livecenter.media.flv import VIDEO
from livecenter.media.hub import StreamHub
from livecenter.media.policy import StreamKey
from livecenter.media.rts import session as rts_session
from livecenter.media.rts.session import FIRST_FRAMES, RtsService, WhepSession
from tests.test_mpegts import ffmpeg_flv, flv_tags

KEY = StreamKey("push.test", "live", "cam1")
WAIT_SECONDS = 60.0  # longer than any test runs: finishing early shows an event woke it


def video_tags():
    return [t for t in flv_tags(ffmpeg_flv(seconds=1)) if t.tag_type == VIDEO]


def test_a_post_waiting_for_first_frames_wakes_on_them_and_leaves_no_subscriber(monkeypatch):
    monkeypatch.setattr(rts_session, "FIRST_FRAMES_WAIT_SECONDS", WAIT_SECONDS)
    tags = video_tags()

    async def run():
        hub = StreamHub()
        service = RtsService(SimpleNamespace(hub=hub))
        publication = hub.publish(KEY)
        stream = hub.stream(KEY)
        waiting = asyncio.ensure_future(service._wait_first_frames(KEY))
        await asyncio.sleep(0)
        assert not waiting.done()
        assert len(stream.subscribers) == 1 and stream.viewers() == {}, "the probe is no viewer"
        pushed = 0
        for tag in tags:
            publication.push("video", tag.timestamp, tag.body)
            await asyncio.sleep(0)
            pushed += tag.body[1] == 1
            if waiting.done():
                break
        await asyncio.wait_for(waiting, 30)
        assert pushed == FIRST_FRAMES and stream.video_frames == FIRST_FRAMES
        assert not stream.subscribers, "the probe is closed"

    asyncio.run(run())


def test_a_post_waiting_for_first_frames_wakes_when_the_stream_ends(monkeypatch):
    monkeypatch.setattr(rts_session, "FIRST_FRAMES_WAIT_SECONDS", WAIT_SECONDS)

    async def run():
        hub = StreamHub(reconnect_grace_seconds=0)
        service = RtsService(SimpleNamespace(hub=hub))
        publication = hub.publish(KEY)
        waiting = asyncio.ensure_future(service._wait_first_frames(KEY))
        await asyncio.sleep(0)
        publication.close()
        await asyncio.wait_for(waiting, 30)
        assert hub.stream(KEY) is None

    asyncio.run(run())


def test_a_post_for_a_stream_past_its_first_frames_does_not_wait():
    tags = video_tags()

    async def run():
        hub = StreamHub()
        service = RtsService(SimpleNamespace(hub=hub))
        publication = hub.publish(KEY)
        for tag in tags[:10]:
            publication.push("video", tag.timestamp, tag.body)
        await service._wait_first_frames(KEY)
        assert not hub.stream(KEY).subscribers

    asyncio.run(run())


@pytest.mark.parametrize(
    ("connects", "stream_ends", "reason"),
    [(False, False, "did not connect"), (False, True, "stream ended"), (True, True, "stream ended")],
    ids=["never-connects", "stream-ends-before-it-connects", "stream-ends-after-it-connects"],
)
def test_a_session_is_ended_with_the_reason(monkeypatch, connects, stream_ends, reason):
    # Only the session that never connects may wait out the connect timeout.
    monkeypatch.setattr(rts_session, "CONNECT_TIMEOUT_SECONDS", WAIT_SECONDS if stream_ends else 0.2)

    async def run():
        reasons = []
        service = SimpleNamespace(end=lambda session, reason: reasons.append(reason))
        viewer = SimpleNamespace(ended=asyncio.Event())
        session = WhepSession(service, "session-1", KEY, viewer, "127.0.0.1")
        watch = asyncio.ensure_future(session._watch_session())
        await asyncio.sleep(0)
        if connects:
            session._connected.set()  # what the connectionstatechange event does on "connected"
            await asyncio.sleep(0)
            assert not watch.done() and not reasons
        if stream_ends:
            viewer.ended.set()
        try:
            await asyncio.wait_for(watch, 30)
        finally:
            await session.pc.close()
        assert reasons == [reason]

    asyncio.run(run())
