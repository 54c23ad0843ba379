"""The web player in headless Chromium (Debian's, through Playwright) where
the stream is not there to play (issue 19, finding 4): a stream that is not
live is reported within the play wait and starts by itself when its
publisher starts; a forbidden stream says so and is not retried; a pasted
playback URL (`?url=`) plays; the navigation's Player lists the live
streams to pick from; LL-HLS reports the bitrate it receives. On `.test`
domains with no extra settings: the player reaches the node by its address
with `domain=` (domains/direct.py), as on one machine without DNS."""

from __future__ import annotations

import os
from urllib.parse import quote

import pytest
from django.db import connections

from domains import services
from streams import services as stream_services
from tests.browsersupport import chromium_page, log_in_as_owner
from tests.mediasupport import start_publisher
from tests.test_browser_console import CHROMIUM, CHROMIUM_ARGS
from tests.test_streams_live import DatabaseNode, wait_until

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.media, pytest.mark.django_db(transaction=True)]

STATS = "() => ({...window.livecenterPlayer.stats, latencySamples: undefined})"


@pytest.fixture
def browser_page():
    args = [*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"]
    with chromium_page(CHROMIUM, args, timeout_ms=60_000) as page:
        yield page


@pytest.fixture
def pair(owner):
    push = services.add_domain(owner, "push.wait.test", "ingest", "overseas", "ap-southeast-1")
    play = services.add_domain(owner, "play.wait.test", "streaming", "overseas", "ap-southeast-1")
    services.associate_ingest(play, push.domain_name)
    return push, play


@pytest.fixture
def media(settings, pair):
    with DatabaseNode() as node:
        settings.LIVECENTER_RTMP_PORT = node.node.rtmp_port
        settings.LIVECENTER_HTTP_PORT = node.node.http_port
        yield node
    connections.close_all()


def publish(owner, node, seconds: float = 60):
    urls = services.generate_urls(owner, "push.wait.test", "live", "cam1")
    # What the URL generator hands out for a domain without DNS.
    url = (
        f"rtmp://127.0.0.1:{node.node.rtmp_port}/live/cam1?{urls.ingest['rtmp'].split('?', 1)[1]}&domain=push.wait.test"
    )
    return start_publisher(url, seconds=seconds, size="640x360")


@pytest.mark.parametrize("protocol", ["flv", "auto"])
def test_a_stream_that_is_not_live_is_reported_then_starts_by_itself(browser_page, live_server, owner, media, protocol):
    page = browser_page
    log_in_as_owner(page, live_server.url)
    page.goto(f"{live_server.url}/player/?domain=play.wait.test&app=live&stream=cam1&protocol={protocol}")
    page.wait_for_function("window.livecenterPlayer && window.livecenterPlayer.stats.state === 'not live'")
    box = page.locator("#player-error")
    assert box.get_attribute("data-state") == "not-live"
    assert box.inner_text().startswith("The stream is not live."), box.inner_text()
    assert page.inner_text("#player-state") == "not live"
    first = page.evaluate(STATS)
    # The ladder stopped at the first refusal: no other protocol was tried for nothing.
    assert [a["error"] for a in first["attempts"]] == ["The stream is not live."], first["attempts"]
    # It asks again with back-off, and plays once the publisher starts.
    page.wait_for_function("window.livecenterPlayer.stats.notLive >= 2")
    publisher = publish(owner, media)
    try:
        page.wait_for_function(
            "window.livecenterPlayer.stats.state === 'playing' && window.livecenterPlayer.stats.width > 0",
            timeout=90_000,
        )
        now = page.evaluate(STATS)
        assert now["framesPresented"] > 0 and now["width"] == 640, now
        assert page.locator("#player-error").is_hidden()
    finally:
        publisher.stop()


def test_a_forbidden_stream_says_so_and_is_not_retried(browser_page, live_server, owner, media):
    stream_services.forbid_stream(owner, "push.wait.test", "live", "cam1")
    page = browser_page
    log_in_as_owner(page, live_server.url)
    page.goto(f"{live_server.url}/player/?domain=play.wait.test&app=live&stream=cam1")
    page.wait_for_function("window.livecenterPlayer && window.livecenterPlayer.stats.state === 'failed'")
    assert page.inner_text("#player-error") == "This stream has been blocked by its operator."
    assert page.locator("#player-error").get_attribute("data-state") == "error"
    now = page.evaluate(STATS)
    assert now["notLive"] == 0 and len(now["attempts"]) == 1, now


def test_the_nav_lists_live_streams_a_pasted_url_plays_and_llhls_reports_its_bitrate(
    browser_page, live_server, owner, media
):
    page = browser_page
    publisher = publish(owner, media)
    try:
        assert wait_until(lambda: media.node.hub.live_keys() or publisher.process.poll() is not None)
        assert publisher.process.poll() is None, publisher.stop()
        log_in_as_owner(page, live_server.url)
        # The navigation's Player: the live stream, picked from the list, plays.
        page.click("#nav-player")
        page.wait_for_selector("#player-live")
        rows = page.locator(".player-live-row")
        assert rows.count() == 1 and "push.wait.test/live/cam1" in rows.first.inner_text()
        assert "play.wait.test" in rows.first.inner_text()
        page.click(".player-live-link")
        page.wait_for_function("window.livecenterPlayer && window.livecenterPlayer.stats.state === 'playing'")

        # A pasted playback URL (the DNS form the generator gives) plays.
        urls = services.generate_urls(owner, "play.wait.test", "live", "cam1")
        page.goto(f"{live_server.url}/player/?url={quote(urls.playback['flv'], safe='')}")
        page.wait_for_function("window.livecenterPlayer && window.livecenterPlayer.stats.state === 'playing'")
        pasted = page.evaluate(STATS)
        assert pasted["protocol"] == "flv" and pasted["framesPresented"] > 0, pasted
        assert page.evaluate("window.livecenterPlayer.config.flv").startswith("http://127.0.0.1:")

        # LL-HLS: the bitrate of the parts received (ffmpeg sends 2 Mbit/s of video and 96 kbit/s of audio).
        page.goto(f"{live_server.url}/player/?url={quote(urls.playback['m3u8'], safe='')}")
        page.wait_for_function("window.livecenterPlayer && window.livecenterPlayer.stats.state === 'playing'")
        page.wait_for_function("window.livecenterPlayer.stats.bitrateKbps > 0", timeout=30_000)
        readings = []
        for _ in range(5):
            page.wait_for_timeout(1000)
            readings.append(page.evaluate(STATS)["bitrateKbps"])
        print(f"LL-HLS bitrate, one reading a second: {readings} kbit/s")
        now = page.evaluate(STATS)
        assert now["protocol"] == "llhls", now
        assert all(500 < kbps < 6000 for kbps in readings), readings
        assert page.inner_text("#player-bitrate").endswith(" kbit/s")
    finally:
        publisher.stop()


def test_a_bad_pasted_url_is_a_400_naming_the_field(client, owner, pair, outsider):
    client.force_login(owner)
    response = client.get("/player/", {"url": "rtmp://play.wait.test/live/cam1"})
    assert response.status_code == 400
    assert "url must be an HTTP-FLV (.flv), HLS (.m3u8) or WHEP (.whep) playback URL" in response.content.decode()
    theirs = services.add_domain(outsider, "play.theirs.test", "streaming", "overseas", "ap-southeast-1")
    response = client.get("/player/", {"url": f"http://{theirs.domain_name}:8080/live/cam1.flv"})
    assert response.status_code == 400
    assert "url: play.theirs.test is not one of your domains" in response.content.decode()
