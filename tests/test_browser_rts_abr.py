"""Adaptive bitrate for RTS in headless Chromium (issue 18): the console's
player, opened with `&template=abr` (the URL generator's WHEP URL of the
group, `/live/cam1_abr.whep`), plays cam1 at 640x360 over RTS; a `tc tbf`
rate limit well under that rendition's bitrate on the node's link makes the
node switch the browser to the group's rendition cam1_low (320x180, a
second ffmpeg publisher: the rendition a transcode would make), and the
video element's videoWidth goes down; the limit removed, it comes back up.
One connection throughout.

The media node runs in a network namespace of its own (tests/netns.py: its
loop thread enters it, so every socket it makes, ICE's too, lives there,
on the namespace's address), with the database policy; Chromium, the
console and the publishers stay in the root namespace and reach it over
the veth, whose node end carries the rate limit (tbf on its egress: what
the node sends). Skipped, with the reason, where namespaces cannot be made.
"""

from __future__ import annotations

import asyncio
import os
import time
from urllib.parse import urlsplit

import pytest
from asgiref.sync import SyncToAsync
from django.db import connections

from domains import services
from mediajobs import services as jobs
from tests.browsersupport import log_in_as_owner
from tests.mediasupport import start_publisher
from tests.test_browser_player import stats

# The RTS browser tests' Chromium page and domains (push.rts.test, play.rts.test), as fixtures.
from tests.test_browser_rts import STARTED, browser_page, domains  # noqa: F401
from tests.workersupport import MediaNodeThread

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.media, pytest.mark.netns, pytest.mark.django_db(transaction=True)]

TOP_SIZE, LOW_SIZE = (640, 360), (320, 180)
TOP_KBPS, LOW_KBPS = 1500, 200
# Well under the top rendition (with its audio), with room for the low one.
LIMIT_KBIT = 700
# Generous: a loaded machine starts ffmpeg and Chromium slowly, the node's
# controller holds before it acts (bitrate.py), and a probe up waits
# PROBE_HOLD_SECONDS (longer after a failed one).
SWITCH_WAIT_MS = 120_000
VIDEO_WIDTH = "() => { const v = document.querySelector('video'); return v ? v.videoWidth : 0; }"


def run_sync(node: MediaNodeThread, fn):
    """`fn()` on the node's loop (its state is not thread-safe)."""

    async def call():
        return fn()

    return asyncio.run_coroutine_threadsafe(call(), node.loop).result(30)


@pytest.fixture
def node_network(netns):
    net = netns("node")
    # The database work the node hands to sync_to_async runs on asgiref's one
    # shared thread: started here, in the root namespace, where the database is.
    SyncToAsync.single_thread_executor.submit(lambda: None).result()
    return net


def publish(owner, node, host: str, stream: str, size: tuple[int, int], kbps: int):
    urls = services.generate_urls(owner, "push.rts.test", "live", stream)
    parts = urlsplit(urls.ingest["rtmp"])
    url = f"rtmp://{host}:{node.node.rtmp_port}{parts.path}?{parts.query}&domain={parts.hostname}"
    rate = f"{kbps}k"
    return start_publisher(
        url, seconds=300, size=f"{size[0]}x{size[1]}",
        extra=("-b:v", rate, "-maxrate", rate, "-bufsize", f"{kbps // 2}k"),
    )  # fmt: skip


def wait_for_width(page, width: int, what: str) -> None:
    try:
        page.wait_for_function(f"() => ({VIDEO_WIDTH})() === {width}", timeout=SWITCH_WAIT_MS, polling=250)
    except Exception as exc:  # Playwright's TimeoutError (playwright is imported only where installed)
        raise AssertionError(f"{what}: videoWidth {page.evaluate(VIDEO_WIDTH)}, player {stats(page)}") from exc


def test_the_player_of_a_group_goes_down_under_a_tbf_limit_and_back_up(
    browser_page,  # noqa: F811 (the fixture imported above)
    live_server,
    owner,
    domains,  # noqa: F811
    node_network,
    settings,
):
    net = node_network
    host = net.address("node")
    jobs.add_template(owner, "push.rts.test", "live", "low", width=LOW_SIZE[0], height=LOW_SIZE[1],
                      video_bitrate_kbps=LOW_KBPS)  # fmt: skip
    jobs.add_group(owner, "push.rts.test", "live", "abr", ["low"])
    node = MediaNodeThread(net.netns("node"), node_id="abr-test", play_wait_seconds=5, host=host,
                           rts_ice_addresses=(host,))  # fmt: skip
    with node:
        settings.LIVECENTER_PLAYER_MEDIA_HOST = host
        settings.LIVECENTER_RTMP_PORT = node.node.rtmp_port
        settings.LIVECENTER_HTTP_PORT = node.node.http_port
        publishers = [
            publish(owner, node, host, "cam1", TOP_SIZE, TOP_KBPS),
            publish(owner, node, host, "cam1_low", LOW_SIZE, LOW_KBPS),
        ]
        try:
            deadline = time.monotonic() + 60
            while len(node.node.hub.live_keys()) < 2:
                dead = [p.stop() for p in publishers if p.process.poll() is not None]
                assert not dead and time.monotonic() < deadline, ("not live", dead)
                time.sleep(0.2)
            page = browser_page
            log_in_as_owner(page, live_server.url)
            page.goto(f"{live_server.url}/player/?domain=play.rts.test&app=live&stream=cam1&protocol=rts&template=abr")
            page.wait_for_function(STARTED, timeout=SWITCH_WAIT_MS)
            assert page.inner_text("#player-protocol") == "RTS (WebRTC)"
            wait_for_width(page, TOP_SIZE[0], "it starts on the stream")
            sessions = run_sync(node, lambda: [s.key.stream for s in node.node.rts.sessions.values()])
            assert sessions == ["cam1"], sessions

            net.rate_limit("node", LIMIT_KBIT, latency_ms=200)
            wait_for_width(page, LOW_SIZE[0], f"throttled to {LIMIT_KBIT} kbit/s, it goes down")
            net.run("node", ["tc", "qdisc", "del", "dev", "eth0", "root"])
            wait_for_width(page, TOP_SIZE[0], "the limit removed, it comes back up")

            # One session all along, switched by the node.
            switches = run_sync(node, lambda: [s.viewer.rendition_switches for s in node.node.rts.sessions.values()])
            assert len(switches) == 1 and switches[0] >= 2, switches
        finally:
            for publisher in publishers:
                publisher.stop()
    connections.close_all()
