"""Encrypted LL-HLS and HLS in headless Chromium (issue 16): the operator
switches HLS encryption on in the console's service, the media node reads it
through the database policy, and the web player's hls.js fetches the keys
the playlist names (with its token) and plays without a stall; the page
says the stream is encrypted."""

from __future__ import annotations

import os

import pytest
from django.db import connections

from domains import services
from tests.browsersupport import chromium_page, log_in_as_owner
from tests.test_browser_console import CHROMIUM, CHROMIUM_ARGS
from tests.test_browser_player import STARTED, start_calibrator, stats
from tests.test_streams_live import DatabaseNode, local, wait_until

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.media, pytest.mark.django_db(transaction=True)]

PLAY_SECONDS = 8


@pytest.fixture
def browser_page():
    args = [*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"]
    with chromium_page(CHROMIUM, args, timeout_ms=20_000) as page:
        yield page


@pytest.mark.parametrize(("protocol", "label"), [("llhls", "LL-HLS"), ("hls", "HLS")])
def test_it_plays_an_encrypted_stream_and_says_so(browser_page, live_server, owner, settings, protocol, label):
    page = browser_page
    push = services.add_domain(owner, "push.aes.test", "ingest", "overseas", "ap-southeast-1")
    play = services.add_domain(owner, "play.aes.test", "streaming", "overseas", "ap-southeast-1")
    services.associate_ingest(play, push.domain_name)
    # Two segments a key: the player crosses key changes within the test.
    services.configure_hls_encryption(play, enabled=True, key_rotation_segments=2)
    with DatabaseNode() as media:
        settings.LIVECENTER_PLAYER_MEDIA_HOST = "127.0.0.1"
        settings.LIVECENTER_RTMP_PORT = media.node.rtmp_port
        settings.LIVECENTER_HTTP_PORT = media.node.http_port
        urls = services.generate_urls(owner, "push.aes.test", "live", "calib")
        calibrator = start_calibrator(local(urls.ingest["rtmp"], media.node.rtmp_port), seconds=60)
        try:
            assert wait_until(lambda: media.node.hub.live_keys() or calibrator.poll() is not None), "not live"
            assert calibrator.poll() is None, calibrator.communicate()
            keys = []
            page.on("request", lambda r: keys.append(r.url) if ".key?" in r.url else None)

            log_in_as_owner(page, live_server.url)
            page.goto(f"{live_server.url}/player/?domain=play.aes.test&app=live&stream=calib&protocol={protocol}")
            page.wait_for_function(STARTED)
            first = stats(page)
            assert first["state"] == "playing", first

            times = []
            for _ in range(PLAY_SECONDS + 1):
                times.append(page.evaluate("document.getElementById('player-video').currentTime"))
                page.wait_for_timeout(1000)
            now = stats(page)
            assert times[-1] - times[0] >= PLAY_SECONDS - 1, (times, now)
            assert now["stalls"] == 0, now
            assert now["framesPresented"] >= 20 * PLAY_SECONDS, now
            assert now["timecodeFound"], now  # the decrypted frames are the calibrator's, read back
            assert now["encryption"] == "AES-128", now
            assert page.inner_text("#player-protocol") == label
            assert page.is_visible("#player-encrypted")
            assert page.inner_text("#player-encrypted") == "encrypted (AES-128)"
            # hls.js fetched more than one key: it crossed a key change.
            assert len({k.split("?")[0] for k in keys}) >= 2, keys
        finally:
            calibrator.terminate()
            calibrator.communicate(timeout=20)
    connections.close_all()


def test_the_badge_stays_hidden_for_a_stream_in_clear(browser_page, live_server, owner, settings):
    page = browser_page
    push = services.add_domain(owner, "push.clear.test", "ingest", "overseas", "ap-southeast-1")
    play = services.add_domain(owner, "play.clear.test", "streaming", "overseas", "ap-southeast-1")
    services.associate_ingest(play, push.domain_name)
    with DatabaseNode() as media:
        settings.LIVECENTER_PLAYER_MEDIA_HOST = "127.0.0.1"
        settings.LIVECENTER_RTMP_PORT = media.node.rtmp_port
        settings.LIVECENTER_HTTP_PORT = media.node.http_port
        urls = services.generate_urls(owner, "push.clear.test", "live", "calib")
        calibrator = start_calibrator(local(urls.ingest["rtmp"], media.node.rtmp_port), seconds=30)
        try:
            assert wait_until(lambda: media.node.hub.live_keys() or calibrator.poll() is not None), "not live"
            log_in_as_owner(page, live_server.url)
            page.goto(f"{live_server.url}/player/?domain=play.clear.test&app=live&stream=calib&protocol=llhls")
            page.wait_for_function("window.livecenterPlayer && window.livecenterPlayer.stats.state === 'playing'")
            assert stats(page)["encryption"] is None
            assert not page.is_visible("#player-encrypted")
        finally:
            calibrator.terminate()
            calibrator.communicate(timeout=20)
    connections.close_all()
