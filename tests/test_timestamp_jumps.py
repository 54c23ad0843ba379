"""Bad publisher timestamps through a real node (issue 11 items 1 and 3): a
frame stamped near 2**32, a forward jump past the viewers' lag limit. A
hand-made RTMP publisher (TagPublisher) sends real H.264/AAC tags with the
timestamps each test chooses; HLS and HTTP-FLV clients read over sockets."""

from __future__ import annotations

import threading
import time
import urllib.request

import pytest

from livecenter.media.flv import (
    AUDIO,
    SCRIPT,
    VIDEO,
    FlvReader,
    audio_is_sequence_header,
    video_is_keyframe,
    video_is_sequence_header,
)
from livecenter.media.hub import SUBSCRIBER_MAX_LAG_MS
from tests.mediasupport import NodeThread, TagPublisher
from tests.test_hls import Playlist
from tests.test_hls_integration import fetch, m3u8_url
from tests.test_mpegts import ffmpeg_flv, flv_tags

pytestmark = pytest.mark.media

KINDS = {VIDEO: "video", AUDIO: "audio", SCRIPT: "meta"}


@pytest.fixture
def media():
    node = NodeThread(play_wait_seconds=5).start()
    yield node
    node.stop()


def source() -> tuple[list, list]:
    """(headers, media) tags of 6 s of 30 fps H.264 with AAC."""
    tags = [t for t in flv_tags(ffmpeg_flv(seconds=6)) if t.tag_type in KINDS]
    headers = [
        t
        for t in tags
        if t.tag_type == SCRIPT
        or (t.tag_type == VIDEO and video_is_sequence_header(t.body))
        or (t.tag_type == AUDIO and audio_is_sequence_header(t.body))
    ]
    return headers, [t for t in tags if t not in headers]


def first_keyframe(tags):
    keyframe = next(t for t in tags if t.tag_type == VIDEO)
    assert video_is_keyframe(keyframe.body)
    return keyframe


def send(publisher: TagPublisher, tags, offset: int = 0, pace: float = 0.0) -> None:
    for tag in tags:
        publisher.send(KINDS[tag.tag_type], tag.timestamp + offset, tag.body)
        if pace and tag.tag_type == VIDEO:
            time.sleep(pace)


def packager(media):
    """The node's one HLS packager (call on the node's loop)."""
    return next(iter(media.node.hls.streams.values())).packager


def test_hls_goes_on_after_one_frame_stamped_near_2_to_the_32(media):
    headers, tags = source()
    publisher = TagPublisher(media.publish_url())

    def publish() -> None:
        send(publisher, headers)
        publisher.send("video", 0xFFFF_FFF0, first_keyframe(tags).body)  # a wild timestamp
        for round_ in range(5):  # then 30 s of normal timestamps, at 3x real time
            send(publisher, tags, offset=6000 * round_ + 33, pace=0.01)

    sender = threading.Thread(target=publish, daemon=True)
    try:
        sender.start()
        first = Playlist(fetch(m3u8_url(media), timeout=30)[2].decode())  # the packager starts
        sender.join(120)
        assert not sender.is_alive()
        assert media.wait_for(lambda: packager(media).last_msn_part()[0] >= first.media_sequence + 15, 20)
        status, _, body = fetch(m3u8_url(media))
        assert status == 200, body
        # The playlist slides with the media: it stayed at its first segment for good.
        playlist = Playlist(body.decode())
        assert playlist.media_sequence >= first.media_sequence + 10, body
        assert all(s["duration"] <= 1.1 for s in playlist.segments), body
        pushed = 5 * sum(len(t.body) for t in tags)
        held = media.run_sync(lambda: packager(media).held_bytes)
        assert held < pushed / 2, (held, pushed)
    finally:
        publisher.close()


class FlvViewer(threading.Thread):
    """An HTTP-FLV client reading the stream's tags until it ends."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.tags: list = []
        self.ended = threading.Event()

    def run(self) -> None:
        reader = FlvReader()
        try:
            with urllib.request.urlopen(self.url, timeout=60) as response:
                while data := response.read1(65536):
                    self.tags += reader.receive_data(data)
        except OSError:
            pass
        finally:
            self.ended.set()

    def video_timestamps(self) -> list[int]:
        return [t.timestamp for t in list(self.tags) if t.tag_type == VIDEO and not video_is_sequence_header(t.body)]


def test_a_forward_jump_past_the_lag_limit_keeps_flv_viewers_and_reaches_them_rebased(media):
    headers, tags = source()
    jump = SUBSCRIBER_MAX_LAG_MS + 10_000
    publisher = TagPublisher(media.publish_url())
    viewers = [FlvViewer(media.flv_url()) for _ in range(3)]
    try:
        send(publisher, headers)
        send(publisher, tags[:60])
        for viewer in viewers:
            viewer.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(v.video_timestamps() for v in viewers):
            send(publisher, tags[:2], pace=0.03)  # keep the stream going while they join
        # 2 s, then the clock leaps 30 s and 2 s more, sent at once.
        send(publisher, tags[60:180])
        send(publisher, tags[60:180], offset=jump)
        expected = sum(1 for t in tags[60:180] if t.tag_type == VIDEO) * 2
        for viewer in viewers:
            assert media.wait_for(lambda v=viewer: len(v.video_timestamps()) >= expected, 30), len(
                viewer.video_timestamps()
            )
            assert not viewer.ended.is_set()  # still connected: not cut as a laggard
            times = viewer.video_timestamps()
            steps = [b - a for a, b in zip(times, times[1:], strict=False)]
            assert min(steps) >= 0 and max(steps) < 2000, (min(steps), max(steps))
        stream = media.run_sync(lambda: media.node.hub.stream(media.node.hub.live_keys()[0]))
        assert media.run_sync(lambda: stream.counters.timestamp_jumps) >= 1
    finally:
        publisher.close()
