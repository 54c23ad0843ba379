"""Go live in headless Chromium (Debian's, through Playwright; issue 17): the
console's Go live page publishes Chromium's fake camera and microphone over
WHIP, shows the connection connected and the outgoing frame rate and bitrate;
a second page plays the stream in the built-in player over RTS and shows
moving video; Stop ends the session on the node. A refused offer shows the
node's reason. The media node runs with the database policy and binds
loopback, so its ICE candidates are 127.0.0.1; the console sends the WHIP URL
there with `domain=` (LIVECENTER_PLAYER_MEDIA_HOST), as `make run` does."""

from __future__ import annotations

import os

import pytest

from tests.browsersupport import chromium_page, log_in_as_owner
from tests.test_browser_console import CHROMIUM
from tests.test_browser_player import BUFFER_STATE, STARTED, stats

# The RTS browser tests' domains (push.rts.test, play.rts.test) and node, as fixtures.
from tests.test_browser_rts import RTS_CHROMIUM_ARGS, domains, media  # noqa: F401
from tests.test_streams_live import wait_until

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.media, pytest.mark.django_db(transaction=True)]

# Chromium's fake camera (a moving test pattern with a frame counter) and
# microphone (a beep), granted without asking.
GOLIVE_CHROMIUM_ARGS = [
    *RTS_CHROMIUM_ARGS,
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
PLAY_SECONDS = 5
SETTLED = "['live', 'failed'].includes(window.livecenterGoLive.stats.state)"
SENDING = "window.livecenterGoLive.stats.fps > 0 && window.livecenterGoLive.stats.bitrateKbps > 0"

# The player's picture: a small grey-scale copy of the displayed frame, to
# tell a moving picture from a frozen one.
FRAME_SIGNATURE = """() => {
  const v = document.getElementById("player-video");
  const canvas = document.createElement("canvas");
  canvas.width = 64;
  canvas.height = 36;
  const context = canvas.getContext("2d");
  context.drawImage(v, 0, 0, canvas.width, canvas.height);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  const grey = [];
  for (let i = 0; i < data.length; i += 4) grey.push((data[i] + data[i + 1] + data[i + 2]) / 3);
  return grey;
}"""


@pytest.fixture
def browser_page():
    with chromium_page(CHROMIUM, GOLIVE_CHROMIUM_ARGS) as page:
        yield page


def golive_stats(page) -> dict:
    return page.evaluate("({...window.livecenterGoLive.stats})")


def open_go_live(page, live_server, stream: str = "cam1") -> None:
    log_in_as_owner(page, live_server.url)
    page.goto(f"{live_server.url}/domains/push.rts.test/go-live/?app=live&stream={stream}")
    page.wait_for_function("window.livecenterGoLive !== undefined")


def test_it_goes_live_from_the_camera_and_the_player_plays_it_over_rts(browser_page, live_server, domains, media):  # noqa: F811
    page = browser_page
    open_go_live(page, live_server)
    whip = page.evaluate("window.livecenterGoLive.config.whip")
    assert whip.startswith(f"http://127.0.0.1:{media.node.http_port}/live/cam1.whip?auth_key=")
    assert whip.endswith("&domain=push.rts.test")
    page.click("#golive-start")
    page.wait_for_function(SETTLED)
    first = golive_stats(page)
    assert first["state"] == "live" and first["connectionState"] == "connected", first
    page.wait_for_function(SENDING)
    assert wait_until(lambda: media.node.hub.live_keys()), "the node has no live stream"
    sending = golive_stats(page)
    assert sending["width"] > 0 and sending["height"] > 0, sending
    # H.264 is preferred in the offer; Chromium sends Opus.
    assert (sending["videoCodec"], sending["audioCodec"]) == ("H264", "opus"), sending
    assert page.inner_text("#golive-connection") == "connected"
    assert page.inner_text("#golive-fps").endswith(" fps")
    assert page.inner_text("#golive-bitrate").endswith(" kbit/s")
    assert page.inner_text("#golive-resolution") == f"{sending['width']}×{sending['height']}"

    # A second page: the player the Go live page links, over RTS.
    player = page.context.new_page()
    player.set_default_timeout(30_000)
    href = page.get_attribute("#golive-player-link", "href")
    assert href == "/player/?domain=play.rts.test&app=live&stream=cam1"
    player.goto(f"{live_server.url}{href}&protocol=rts")
    player.wait_for_function(STARTED)
    playing = stats(player)
    assert (playing["protocol"], playing["state"]) == ("rts", "playing"), playing
    player.wait_for_function("window.livecenterPlayer.stats.rtc !== null")
    before = player.evaluate("({...window.livecenterPlayer.stats.rtc})")
    pictures = [player.evaluate(FRAME_SIGNATURE)]
    for _ in range(PLAY_SECONDS):
        player.wait_for_timeout(1000)
        pictures.append(player.evaluate(FRAME_SIGNATURE))
    after = player.evaluate("({...window.livecenterPlayer.stats.rtc})")
    diag = player.evaluate(BUFFER_STATE)
    # Frames keep coming (a loaded machine may decode fewer than 30 a second,
    # never a trickle) and the picture changes: the fake camera's pattern moves.
    assert after["framesDecoded"] - before["framesDecoded"] >= 10 * PLAY_SECONDS, (before, after, diag)
    assert after["audioPacketsReceived"] > before["audioPacketsReceived"], (before, after, diag)
    changes = [
        sum(abs(a - b) for a, b in zip(one, two, strict=True)) / len(one)
        for one, two in zip(pictures, pictures[1:], strict=False)
    ]
    assert all(change > 0.5 for change in changes), changes
    print(f"Go live: {sending['width']}x{sending['height']} {sending['fps']} fps {sending['bitrateKbps']} kbit/s"
          f" {sending['videoCodec']}+{sending['audioCodec']}; the player decoded"
          f" {after['framesDecoded'] - before['framesDecoded']} frames in {PLAY_SECONDS} s over RTS,"
          f" picture change per second {min(changes):.1f}-{max(changes):.1f}")  # fmt: skip
    # The picture's size: the sender's, unless its encoder scaled down for
    # CPU or bandwidth since (WebRTC's adaptation), so only that there is one.
    now = stats(player)
    assert now["width"] > 0 and now["height"] > 0, now

    # Stop: the page DELETEs its session and the stream goes offline.
    page.click("#golive-stop")
    page.wait_for_function("window.livecenterGoLive.stats.state === 'stopped'")
    assert wait_until(lambda: not media.node.hub.live_keys()), "the stream is still live after Stop"
    assert page.is_enabled("#golive-start") and not page.is_enabled("#golive-stop")


def test_it_shows_the_nodes_reason_for_a_refusal(browser_page, live_server, domains, media):  # noqa: F811
    page = browser_page
    open_go_live(page, live_server)
    # The page's own WHIP URL, its signature's hash altered.
    page.evaluate("""() => {
      const config = window.livecenterGoLive.config;
      const [url, domain] = config.whip.split("&domain=");
      config.whip = url.slice(0, url.lastIndexOf("-") + 1) + "0".repeat(32) + "&domain=" + domain;
    }""")
    page.click("#golive-start")
    page.wait_for_function(SETTLED)
    refused = golive_stats(page)
    assert refused["state"] == "failed", refused
    assert refused["refusal"] == {"status": 403, "reason": "invalid md5hash"}, refused
    assert page.inner_text("#golive-error").startswith("The node refused to publish (HTTP 403): invalid md5hash.")
    assert not media.node.hub.live_keys()
    # The camera is released and Start works again.
    assert page.is_enabled("#golive-start")
    assert page.evaluate("document.getElementById('golive-preview').srcObject") is None
