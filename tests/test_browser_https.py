"""The web player over HTTPS in headless Chromium (issue 15): Debian's
Chromium trusts the test CA by its public key hash
(--ignore-certificate-errors-spki-list) and resolves the streaming domain to
loopback (--host-resolver-rules), so it asks the node for the domain by name
(SNI) as it would on the Internet; the player plays RTS (WHEP over HTTPS)
and HTTP-FLV over HTTPS from the URLs the console gives it."""

from __future__ import annotations

import os

import pytest
from django.db import connections

from domains import services
from tests.browsersupport import chromium_page
from tests.mediasupport import start_publisher
from tests.test_browser_console import CHROMIUM
from tests.test_browser_player import stats
from tests.test_browser_rts import RTS_CHROMIUM_ARGS, STARTED
from tests.test_streams_live import local, wait_until
from tests.tlssupport import TestCa, spki_hash
from tests.workersupport import MediaNodeThread

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.media, pytest.mark.django_db(transaction=True)]

PUSH, PLAY = "push.https.test", "play.https.test"


@pytest.fixture
def ca(tmp_path):
    return TestCa(tmp_path)


@pytest.fixture
def browser_page(ca):
    args = [*RTS_CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={spki_hash(ca)}",
            f"--host-resolver-rules=MAP {PLAY} 127.0.0.1"]  # fmt: skip
    with chromium_page(CHROMIUM, args) as page:
        yield page


@pytest.fixture
def media(settings, owner, ca):
    push = services.add_domain(owner, PUSH, "ingest", "overseas", "ap-southeast-1")
    play = services.add_domain(owner, PLAY, "streaming", "overseas", "ap-southeast-1")
    services.associate_ingest(play, push.domain_name)
    services.set_switches(play, rts_enabled=True)
    leaf = ca.issue([PLAY])
    services.upload_certificate(play, leaf.chain_pem, leaf.key_pem)
    with MediaNodeThread(node_id="https-test", play_wait_seconds=3, https_port=0) as node:
        settings.LIVECENTER_PLAYER_MEDIA_HOST = "127.0.0.1"
        settings.LIVECENTER_RTMP_PORT = node.node.rtmp_port
        settings.LIVECENTER_HTTPS_PORT = node.node.https_port
        urls = services.generate_urls(owner, PUSH, "live", "cam1")
        publisher = start_publisher(local(urls.ingest["rtmp"], node.node.rtmp_port), seconds=90, size="640x360")
        try:
            assert wait_until(lambda: node.node.hub.live_keys() or publisher.process.poll() is not None)
            assert publisher.process.poll() is None, publisher.stop()
            yield node
        finally:
            publisher.stop()
    connections.close_all()


def open_player(page, live_server, protocol: str) -> dict:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "owner")
    page.fill("#id_password", "owner-pass-123")
    page.click("#login-button")
    page.wait_for_url("**/domains/")
    page.goto(f"{live_server.url}/player/?domain={PLAY}&app=live&stream=cam1&protocol={protocol}")
    page.wait_for_function(STARTED)
    return stats(page)


@pytest.mark.parametrize(("protocol", "source"), [("rts", "rts"), ("flv", "flv")])
def test_the_player_plays_over_https(browser_page, live_server, owner, media, protocol, source):
    page = browser_page
    first = open_player(page, live_server, protocol)
    url = page.evaluate(f"window.livecenterPlayer.config.{source}")
    assert url.startswith(f"https://{PLAY}:{media.node.https_port}/live/cam1."), url
    assert first["state"] == "playing" and first["protocol"] == protocol, first
    before = stats(page)
    page.wait_for_timeout(3000)
    after = stats(page)
    assert after["state"] == "playing", after
    assert after["currentTime"] - before["currentTime"] > 1.5, (before, after)  # plays on, not stuck
    assert (after["width"], after["height"]) == (640, 360), after
    if protocol == "rts":
        rtc = page.evaluate("({...window.livecenterPlayer.stats.rtc})")
        assert rtc["framesDecoded"] > 30, rtc
