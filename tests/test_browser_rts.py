"""RTS in headless Chromium (Debian's, through Playwright): the web player
plays a live stream published by ffmpeg over WHEP, and getStats() shows video
frames decoded and audio packets received rising for 10 s, for a stream
without B-frames (passed through) and one with B-frames (auto-transcoded);
the calibrator's latency readout works over RTS; where WebRTC is refused
(B-frames with HTML5 auto-transcoding off) the player falls back to HTTP-FLV
and says why. The media node runs with the database policy and binds
loopback, so its ICE candidates are 127.0.0.1."""

from __future__ import annotations

import os

import pytest
from django.db import connections

from domains import services
from tests.browsersupport import chromium_page
from tests.mediasupport import start_publisher
from tests.test_browser_console import CHROMIUM, CHROMIUM_ARGS
from tests.test_browser_player import BUFFER_STATE, start_calibrator, stats
from tests.test_streams_live import DatabaseNode, local, wait_until

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.media, pytest.mark.django_db(transaction=True)]

PLAY_SECONDS = 10
# WebRTC on one machine: let Chromium offer and use loopback candidates and
# show its real addresses rather than mDNS names.
RTS_CHROMIUM_ARGS = [
    *CHROMIUM_ARGS,
    "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
STARTED = "window.livecenterPlayer && ['playing', 'failed'].includes(window.livecenterPlayer.stats.state)"


@pytest.fixture
def browser_page():
    with chromium_page(CHROMIUM, RTS_CHROMIUM_ARGS) as page:
        yield page


@pytest.fixture
def domains(owner):
    push = services.add_domain(owner, "push.rts.test", "ingest", "overseas", "ap-southeast-1")
    play = services.add_domain(owner, "play.rts.test", "streaming", "overseas", "ap-southeast-1")
    services.associate_ingest(play, push.domain_name)
    return push, play


@pytest.fixture
def media(settings):
    with DatabaseNode() as node:
        settings.LIVECENTER_PLAYER_MEDIA_HOST = "127.0.0.1"
        settings.LIVECENTER_RTMP_PORT = node.node.rtmp_port
        settings.LIVECENTER_HTTP_PORT = node.node.http_port
        yield node
    connections.close_all()


def open_player(page, live_server, protocol: str = "auto", stream: str = "cam1") -> dict:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "owner")
    page.fill("#id_password", "owner-pass-123")
    page.click("#login-button")
    page.wait_for_url("**/domains/")
    page.goto(f"{live_server.url}/player/?domain=play.rts.test&app=live&stream={stream}&protocol={protocol}")
    page.wait_for_function(STARTED)
    return stats(page)


def publish(owner, media, stream: str = "cam1", bframes: int = 0):
    urls = services.generate_urls(owner, "push.rts.test", "live", stream)
    # -bf needs a preset and tune that allow B-frames (zerolatency turns them off).
    extra = ("-bf", str(bframes)) if bframes else ()
    publisher = start_publisher(
        local(urls.ingest["rtmp"], media.node.rtmp_port),
        seconds=90,
        size="640x360",
        extra=extra,
        tune="" if bframes else "zerolatency",
        preset="veryfast" if bframes else "ultrafast",
    )
    assert wait_until(lambda: media.node.hub.live_keys() or publisher.process.poll() is not None), "not live"
    assert publisher.process.poll() is None, publisher.stop()
    return publisher


def rts_mode(media) -> str | None:
    sources = list(media.node.rts.sources.values())
    return sources[0].mode if sources else None


def assert_rising_for_ten_seconds(page) -> list[dict]:
    """getStats() counters, sampled every second: frames decoded and audio
    packets received grow at every step."""
    page.wait_for_function("window.livecenterPlayer.stats.rtc !== null")
    samples = []
    for _ in range(PLAY_SECONDS + 1):
        samples.append(page.evaluate("({...window.livecenterPlayer.stats.rtc})"))
        page.wait_for_timeout(1000)
    diag = page.evaluate(BUFFER_STATE)
    for before, after in zip(samples, samples[1:], strict=False):
        assert after["framesDecoded"] > before["framesDecoded"], (samples, diag)
        assert after["audioPacketsReceived"] > before["audioPacketsReceived"], (samples, diag)
    # 30 fps; a loaded machine may decode fewer, never a trickle.
    assert samples[-1]["framesDecoded"] - samples[0]["framesDecoded"] >= 15 * PLAY_SECONDS, samples
    # Opus is 50 packets a second.
    assert samples[-1]["audioPacketsReceived"] - samples[0]["audioPacketsReceived"] >= 25 * PLAY_SECONDS, samples
    return samples


@pytest.mark.parametrize(("bframes", "mode"), [(0, "passthrough"), (2, "transcode")])
def test_it_plays_a_live_stream_over_whep(browser_page, live_server, owner, domains, media, bframes, mode):
    page = browser_page
    if bframes:
        services.set_switches(domains[1], html5_transcode=True)
    publisher = publish(owner, media, bframes=bframes)
    try:
        first = open_player(page, live_server)
        assert first["state"] == "playing", first
        assert first["protocol"] == "rts", first
        assert page.inner_text("#player-protocol") == "RTS (WebRTC)"
        assert rts_mode(media) == mode
        assert_rising_for_ten_seconds(page)
        now = stats(page)
        assert (now["width"], now["height"]) == (640, 360), now
        assert now["protocol"] == "rts" and now["state"] == "playing", now
        assert page.inner_text("#player-bitrate").endswith("kbit/s")
        stream = media.node.hub.stream(next(iter(media.node.hub.live_keys())))
        assert stream.has_bframes is bool(bframes)
        # One source for the stream, one hub subscriber for all WebRTC viewers.
        assert stream.viewers().get("rts") == 1
        # Chromium's REMB reaches the node: what RTS ABR decides on (rts/abr.py).
        estimates = [session.viewer.estimate_bps for session in list(media.node.rts.sessions.values())]
        assert estimates and all(bps > 0 for bps in estimates), estimates
    finally:
        publisher.stop()


def test_it_falls_back_to_flv_when_whep_refuses_b_frames(browser_page, live_server, owner, domains, media):
    page = browser_page
    services.set_switches(domains[1], html5_transcode=False)
    publisher = publish(owner, media, bframes=2)
    try:
        assert wait_until(lambda: media.node.hub.stream(next(iter(media.node.hub.live_keys()))).has_bframes)
        first = open_player(page, live_server)
        assert first["state"] == "playing", first
        assert first["protocol"] == "flv", first
        attempts = page.evaluate("window.livecenterPlayer.stats.attempts")
        assert attempts[0]["protocol"] == "rts"
        assert "B-frames" in attempts[0]["error"], attempts
        assert not media.node.rts.sessions
    finally:
        publisher.stop()


def test_it_starts_with_flv_where_rts_is_off(browser_page, live_server, owner, domains, media):
    page = browser_page
    services.set_switches(domains[1], rts_enabled=False)
    publisher = publish(owner, media)
    try:
        first = open_player(page, live_server)
        assert first["protocol"] == "flv", first
        assert page.evaluate("window.livecenterPlayer.config.rts") is None
    finally:
        publisher.stop()


def test_it_shows_the_calibrator_latency_over_rts(browser_page, live_server, owner, domains, media):
    page = browser_page
    urls = services.generate_urls(owner, "push.rts.test", "live", "calib")
    calibrator = start_calibrator(local(urls.ingest["rtmp"], media.node.rtmp_port), seconds=60)
    try:
        assert wait_until(lambda: media.node.hub.live_keys() or calibrator.poll() is not None), "not live"
        assert calibrator.poll() is None, calibrator.communicate()
        first = open_player(page, live_server, protocol="rts", stream="calib")
        assert first["state"] == "playing", first
        assert first["protocol"] == "rts", first
        page.wait_for_function("window.livecenterPlayer.stats.latencySamples.length >= 100")
        now = stats(page)
        assert now["timecodeFound"], now
        assert 0 < now["latencyMs"] < 5000, now
        assert page.inner_text("#latency-ms").endswith(" ms")
        assert 0 < now["firstFrameMs"] < 5000, now
        samples = page.evaluate("window.livecenterPlayer.stats.latencySamples")
        median = sorted(samples)[len(samples) // 2]
        print(f"RTS latency: median {median} ms, {min(samples)}-{max(samples)} ms over {len(samples)} frames;"
              f" first frame {now['firstFrameMs']} ms")  # fmt: skip
    finally:
        calibrator.terminate()
        out, err = calibrator.communicate(timeout=20)
    assert "Calibrator stopped after" in out, err


REFUSAL = """async (url) => {
  const pc = new RTCPeerConnection();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  await pc.setLocalDescription(await pc.createOffer());
  const response = await fetch(url, {
    method: "POST", headers: { "Content-Type": "application/sdp" }, body: pc.localDescription.sdp,
  });
  pc.close();
  return { status: response.status, reason: response.headers.get("X-LiveCenter-Error") };
}"""


def test_it_refuses_a_bad_signature_and_a_domain_with_rts_off(browser_page, live_server, owner, domains, media):
    page = browser_page
    publisher = publish(owner, media)
    try:
        first = open_player(page, live_server, protocol="rts")
        assert first["protocol"] == "rts" and first["state"] == "playing", first
        whep = page.evaluate("window.livecenterPlayer.config.rts")
        # The browser's own WHEP request, its signature's hash altered.
        url, domain = whep.split("&domain=")
        forged = url.rsplit("-", 1)[0] + "-" + "0" * 32 + "&domain=" + domain
        assert page.evaluate(REFUSAL, forged) == {"status": 403, "reason": "invalid md5hash"}
        services.set_switches(domains[1], rts_enabled=False)
        # The node's policy cache (LIVECENTER_POLICY_CACHE_SECONDS) lets the switch through within seconds.
        assert wait_until(lambda: page.evaluate(REFUSAL, whep)["status"] == 403, timeout=20)
        assert page.evaluate(REFUSAL, whep) == {"status": 403, "reason": "RTS is off for this domain"}
    finally:
        publisher.stop()
