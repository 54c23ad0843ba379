"""Viewer telemetry end to end (issue 19) in headless Chromium (Debian's,
through Playwright): the built-in player plays the latency calibrator's
stream over HTTP-FLV from a media node with the database policy, its
beacons (static/js/beacon.js) reach the node, the node's report reaches
monitoring, and the stream's and the domain's monitoring pages show the
session, its time to first frame and its latency; the same page's
forged and oversized beacons are refused. And beacon.js alone, told what
player.js tells it of a fallback, a stall and a bitrate switch, sends a
beacon the node sums into exactly those figures."""

from __future__ import annotations

import http.server
import json
import os
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import connections

from domains import services
from livecenter.media.beacon import LATENCY_BUCKETS_MS, TTFF_BUCKETS_MS
from livecenter.media.policy import PlaybackReported
from monitoring.models import PlaybackReport
from tests import test_browser_player
from tests.browsersupport import log_in_as_owner
from tests.mediasupport import NodeThread
from tests.test_browser_player import STARTED, start_calibrator
from tests.test_media_beacon import beacon_url
from tests.test_streams_live import local, wait_until
from tests.workersupport import MediaNodeThread

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.media, pytest.mark.django_db(transaction=True)]

PLAY_SECONDS = 4
browser_page = test_browser_player.browser_page  # the fixture: Chromium that plays without a gesture
ROOT = Path(__file__).resolve().parent.parent


# A beacon sent from the player's page to `url`, as another player would: its status.
POST_BEACON = """async ([url, body]) => {
  const response = await fetch(url, {method: "POST", body, headers: {"Content-Type": "text/plain"}});
  return [response.status, response.headers.get("X-LiveCenter-Error")];
}"""


def test_the_players_beacons_arrive_and_show_on_the_monitoring_pages(browser_page, live_server, owner, settings):
    page = browser_page
    push = services.add_domain(owner, "push.beacon.test", "ingest", "overseas", "ap-southeast-1")
    play = services.add_domain(owner, "play.beacon.test", "streaming", "overseas", "ap-southeast-1")
    services.associate_ingest(play, push.domain_name)
    with MediaNodeThread(node_id="beacon-test", play_wait_seconds=3, beacon_flush_seconds=1) as media:
        settings.LIVECENTER_PLAYER_MEDIA_HOST = "127.0.0.1"
        settings.LIVECENTER_RTMP_PORT = media.node.rtmp_port
        settings.LIVECENTER_HTTP_PORT = media.node.http_port
        urls = services.generate_urls(owner, "push.beacon.test", "live", "calib")
        calibrator = start_calibrator(local(urls.ingest["rtmp"], media.node.rtmp_port), seconds=60)
        try:
            assert wait_until(lambda: media.node.hub.live_keys() or calibrator.poll() is not None), "not live"
            assert calibrator.poll() is None, calibrator.communicate()

            log_in_as_owner(page, live_server.url)
            page.goto(f"{live_server.url}/player/?domain=play.beacon.test&app=live&stream=calib&protocol=flv")
            page.wait_for_function(STARTED)
            assert page.evaluate("window.livecenterPlayer.stats.state") == "playing"
            page.wait_for_function("window.livecenterPlayer.stats.latencyMs !== null")
            page.wait_for_timeout(PLAY_SECONDS * 1000)
            # The batch now rather than at the next 10 s tick; the node takes it (204).
            page.evaluate("window.livecenterBeacon.flush()")
            page.wait_for_function("window.livecenterBeacon.state.sent >= 1", timeout=10_000)
            beacon = page.evaluate("window.livecenterBeacon.state")
            assert (beacon["lastStatus"], beacon["refused"]) == (204, 0), beacon
            url = page.evaluate("window.livecenterBeacon.url('flv')")
            assert "/live/calib.beacon?auth_key=" in url and "domain=play.beacon.test" in url

            # Forged (signed for this stream, sent for another domain and for another stream) and oversized.
            body = '{"v": 1, "session": "forged-session-1", "events": [{"type": "start", "protocol": "flv"}]}'
            forged_domain = url.replace("domain=play.beacon.test", "domain=push.beacon.test")
            assert page.evaluate(POST_BEACON, [forged_domain, body]) == [403, "not a streaming domain"]
            other_stream = url.replace("/live/calib.beacon", "/live/other.beacon")
            assert page.evaluate(POST_BEACON, [other_stream, body]) == [403, "invalid md5hash"]
            status, reason = page.evaluate(POST_BEACON, [url, body[:-1] + " " * 17_000 + "}"])
            assert (status, reason) == (413, "the body is longer than 16384 bytes")

            # The node's report (every second here) reaches the database.
            rows = wait_until(lambda: list(PlaybackReport.objects.filter(app="live", stream="calib")) or None)
            assert rows, "no playback report"
            [row] = rows if len(rows) == 1 else [max(rows, key=lambda r: r.sessions)]
            assert (row.domain_name, row.streaming_domain, row.protocol, row.region) == (
                "push.beacon.test", "play.beacon.test", "flv", "local",
            )  # fmt: skip
            assert wait_until(lambda: sum(r.watch_ms for r in PlaybackReport.objects.all()) >= PLAY_SECONDS * 1000)
            totals = {
                "sessions": sum(r.sessions for r in PlaybackReport.objects.all()),
                "first_frames": sum(sum(r.ttff_counts) for r in PlaybackReport.objects.all()),
                "latency_windows": sum(sum(r.latency_counts) for r in PlaybackReport.objects.all()),
            }
            assert totals["sessions"] == 1 and totals["first_frames"] == 1 and totals["latency_windows"] >= 1, totals

            # The stream's monitoring page shows them beside its uplink charts.
            page.goto(f"{live_server.url}/monitoring/stream/?domain=push.beacon.test&app=live&stream=calib")
            page.wait_for_function("!document.getElementById('playback-figures').hidden")
            assert page.inner_text("#playback-sessions").startswith("1 (")
            assert page.inner_text("#playback-stall-ratio").endswith("%")
            assert page.inner_text("#playback-ttff").startswith("p50 ≤ ")
            assert page.inner_text("#playback-latency").startswith("≤ ")
            assert page.inner_text("#playback-by-protocol tbody tr[data-name=flv] td") == "flv"
            assert page.inner_text("#playback-by-region tbody tr[data-name=local] td") == "local"
            assert page.locator("#bitrate-chart").is_visible()
            # And the domain's.
            page.goto(f"{live_server.url}/monitoring/?domain=push.beacon.test")
            page.wait_for_function("!document.getElementById('playback-figures').hidden")
            assert page.inner_text("#playback-sessions").startswith("1 (")
        finally:
            calibrator.terminate()
            calibrator.communicate(timeout=20)
    connections.close_all()


# A page with only what beacon.js reads: the player's sources and its video element.
BEACON_PAGE = """<!doctype html><html><body>
<video id="player-video" muted></video>
<script id="player-sources" type="application/json">{sources}</script>
</body></html>"""

# What player.js reports when RTS gives no picture and HTTP-FLV plays, with
# a stall of STALL_MS, two variants (the first is a choice, the second a
# switch) and three latency readings; then the batch goes at once.
PLAYER_STORY = """async (stallMs) => {
  const beacon = window.livecenterBeacon, video = document.getElementById("player-video");
  beacon.record("start", {protocol: "rts"});
  beacon.record("error", {protocol: "rts", kind: "timeout", message: "No picture arrived within 8 s."});
  beacon.record("start", {protocol: "flv"});
  beacon.record("first_frame", {protocol: "flv", ttff_ms: 420});
  video.dispatchEvent(new Event("waiting"));
  await new Promise((resolve) => setTimeout(resolve, stallMs));
  video.dispatchEvent(new Event("playing"));
  beacon.record("level", {protocol: "flv", kbps: 1000});
  beacon.record("level", {protocol: "flv", kbps: 2000});
  for (const ms of [80, 90, 700]) beacon.record("latency", {protocol: "flv", latency_ms: ms});
  beacon.record("latency", {protocol: "flv", latency_ms: -20});  // a clock behind the calibrator's: left out
  beacon.flush();
}"""
STALL_MS = 300


@contextmanager
def serving_page(html: str):
    """Serve `html` at every path from a loopback server of the test's; yields its origin."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_beacon_js_reports_fallbacks_errors_stalls_and_switches(browser_page):
    node = NodeThread(beacon_flush_seconds=3600).start()
    try:
        flv = beacon_url(node).replace(".beacon", ".flv")
        page = browser_page
        html = BEACON_PAGE.format(sources=json.dumps({"flv": flv, "rts": None}))
        # Served from loopback (Chromium lets only a loopback page reach a
        # loopback address), on another port than the node's, as a console is.
        with serving_page(html) as origin:
            page.goto(f"{origin}/player/")
            page.add_script_tag(path=str(ROOT / "static" / "js" / "beacon.js"))
            page.evaluate(PLAYER_STORY, STALL_MS)
            page.wait_for_function("window.livecenterBeacon.state.sent + window.livecenterBeacon.state.refused >= 1")
            state = page.evaluate("window.livecenterBeacon.state")
        assert (state["sent"], state["refused"]) == (1, 0), state
        node.run_sync(node.node.report_playback)
        assert node.wait_for(lambda: any(isinstance(e, PlaybackReported) for e in node.sink.events))
        [report] = [e for e in node.sink.events if isinstance(e, PlaybackReported)]
        rows = {row.protocol: row for row in report.rows}
        assert sorted(rows) == ["flv", "rts"]
        rts, flv_row = rows["rts"], rows["flv"]
        assert (rts.sessions, rts.errors, rts.fallbacks, sum(rts.ttff_counts)) == (1, {"timeout": 1}, {"rts>flv": 1}, 0)
        assert (flv_row.sessions, flv_row.stalls, flv_row.bitrate_switches, flv_row.errors) == (1, 1, 1, {})
        assert flv_row.ttff_counts[TTFF_BUCKETS_MS.index(500)] == 1
        assert STALL_MS - 50 <= flv_row.stall_ms <= flv_row.watch_ms  # stalls are part of watch time
        assert flv_row.latency_counts[LATENCY_BUCKETS_MS.index(100)] == 1 and sum(flv_row.latency_counts) == 1
    finally:
        node.stop()
