"""The URL generator's direct URLs (domains/direct.py) actually publish and
play: ffmpeg publishes over RTMP and SRT to 127.0.0.1 with the ingest
domain in `domain=` (or the stream ID), and ffprobe reads HTTP-FLV and HLS
from 127.0.0.1 with the streaming domain in `domain=`, on the media node
with the database policy, for domains no DNS knows (`.test`, local)."""

from __future__ import annotations

import html
import re

import pytest

from domains import services
from tests.mediasupport import probe_packets, start_publisher
from tests.test_streams_live import wait_until
from tests.workersupport import MediaNodeThread

pytestmark = [pytest.mark.media, pytest.mark.django_db(transaction=True)]


def direct_urls_of(client, domain: str) -> dict[str, str]:
    """The direct URLs the generator page hands out, by input id."""
    response = client.post(
        "/tools/url-generator/", {"domain": domain, "app": "live", "stream": "cam1"}, HTTP_HOST="127.0.0.1:8000"
    )
    assert response.status_code == 200
    body = response.content.decode()
    found = re.findall(r'<input type="text" [^>]*id="(url-[a-z]+-direct-[a-z0-9]+)"[^>]*value="([^"]*)"', body)
    return {id_: html.unescape(value) for id_, value in found}


@pytest.mark.parametrize("protocol", ["rtmp", "srt"])
def test_the_direct_urls_publish_and_play(client, owner, settings, protocol):
    push = services.add_domain(owner, "push.direct.test", "ingest", "overseas", "ap-southeast-1")
    play = services.add_domain(owner, "play.direct.test", "streaming", "overseas", "ap-southeast-1")
    services.associate_ingest(play, push.domain_name)
    assert push.local and play.local  # RFC 6761 names: no DNS, by definition
    settings.LIVECENTER_PLAYER_MEDIA_HOST = "auto"
    client.force_login(owner)
    with MediaNodeThread(node_id="direct-test", play_wait_seconds=5, srt_port=0) as media:
        settings.LIVECENTER_RTMP_PORT = media.node.rtmp_port
        settings.LIVECENTER_HTTP_PORT = media.node.http_port
        settings.LIVECENTER_SRT_PORT = media.node.srt_port
        urls = direct_urls_of(client, "push.direct.test")
        publish_url = urls[f"url-ingest-direct-{protocol}"]
        assert publish_url.startswith(f"{protocol}://127.0.0.1:")
        container = "flv" if protocol == "rtmp" else "mpegts"
        publisher = start_publisher(publish_url, seconds=30, size="640x360", container=container)
        try:
            assert wait_until(lambda: media.node.hub.live_keys() or publisher.process.poll() is not None), "not live"
            assert publisher.process.poll() is None, publisher.stop()
            for key in ("flv", "m3u8"):
                url = urls[f"url-playback-direct-{key}"]
                assert url.startswith("http://127.0.0.1:") and url.endswith("&domain=play.direct.test"), url
                packets = probe_packets(url, seconds=2)
                assert len(packets) >= 20, (key, len(packets))
        finally:
            publisher.stop()
