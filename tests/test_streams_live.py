"""The whole path with the database: domains made in the console, URLs from
the URL generator, ffmpeg publishing to the media node (database policy and
event sink), the online list and publish history through the API, and a
forbid through the API kicking the live publisher."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from rest_framework.test import APIClient

from domains import services
from tests.mediasupport import probe_packets, start_publisher
from tests.workersupport import MediaNodeThread

pytestmark = [pytest.mark.media, pytest.mark.django_db(transaction=True), pytest.mark.backends]


class DatabaseNode(MediaNodeThread):
    """running_media_node in a thread of its own, as the console runs it,
    with a short play wait."""

    def __init__(self) -> None:
        super().__init__(node_id="live-test", play_wait_seconds=3)


def local(url: str, port: int) -> str:
    """The generated URL, sent to this machine's node: the domain goes in
    the documented `domain=` fallback instead of DNS."""
    parts = urlsplit(url)
    return f"{parts.scheme}://127.0.0.1:{port}{parts.path}?{parts.query}&domain={parts.hostname}"


def wait_until(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return None


def test_it_lists_a_live_stream_and_kicks_it_on_forbid(owner):
    push = services.add_domain(owner, "push.live.test", "ingest", "overseas", "ap-southeast-1")
    play = services.add_domain(owner, "play.live.test", "streaming", "overseas", "ap-southeast-1")
    services.associate_ingest(play, push.domain_name)
    api = APIClient()
    api.force_authenticate(owner)
    with DatabaseNode() as media:
        urls = services.generate_urls(owner, "push.live.test", "live", "cam1")
        publisher = start_publisher(local(urls.ingest["rtmp"], media.node.rtmp_port), seconds=30)
        try:

            def online():
                rows = api.get("/api/v1/streams/online/", {"domain": "push.live.test"}).json()
                rows = rows.get("results", rows) if isinstance(rows, dict) else rows
                return [r for r in rows if r["stream_name"] == "cam1" and r["width"]] or None

            rows = wait_until(online)
            assert rows, publisher.stop()
            row = rows[0]
            assert (row["width"], row["height"]) == (1280, 720)
            assert row["video_codec"] == "H264" and row["audio_codec"] == "AAC"
            assert 25 <= row["frame_rate"] <= 35
            assert row["client_ip"].startswith("127.0.0.1")

            # Play it back with the generated, signed FLV URL.
            assert len(probe_packets(local(urls.playback["flv"], media.node.http_port), seconds=2)) >= 30

            r = api.post("/api/v1/streams/forbid/", {"domain": "push.live.test", "app": "live", "stream": "cam1"},
                         format="json")  # fmt: skip
            assert r.status_code in (200, 201), r.content
            assert wait_until(lambda: publisher.process.poll() is not None, timeout=15) or publisher.process.poll()
            assert wait_until(lambda: not media.node.hub.is_live(media.node.hub.live_keys()[0])
                              if media.node.hub.live_keys() else True)  # fmt: skip
            again = start_publisher(local(urls.ingest["rtmp"], media.node.rtmp_port), seconds=5)
            assert again.process.wait(30) != 0
        finally:
            publisher.stop()
        history = api.get("/api/v1/streams/history/", {"domain": "push.live.test"}).json()
        history = history.get("results", history) if isinstance(history, dict) else history
        assert history and history[0]["stop_time"] is not None
