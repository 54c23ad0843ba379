"""The monitoring pages in headless Chromium (Debian's, through Playwright):
the charts of a live ffmpeg stream gain a point every second over the
WebSocket with no polling, the page says when the stream stops and keeps its
history, and the charts continue when it comes back.

Twice: embedded (the console on uvicorn and the media node in one event
loop, in-memory channel layer), and scaled (`manage.py medianode` and the
console as two processes, samples crossing through Redis; only when
REDIS_URL is set)."""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import uvicorn
from asgiref.sync import sync_to_async
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connections

from domains import services
from livecenter.management.commands.runall import ConsoleServer
from livecenter.media.node import NodeConfig
from nodes.medianode import running_media_node
from tests.browsersupport import chromium_page, log_in_as_owner
from tests.mediasupport import TEST_MAX_LOOP_LAG_MS, start_publisher
from tests.test_browser_console import CHROMIUM, CHROMIUM_ARGS
from tests.test_streams_live import local
from tests.whipsupport import WhipPublisher
from tests.workersupport import database_env

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.media, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent
START_SECONDS = 60
WATCH_SECONDS = 8

# Arrival times of samples, recorded by the page itself.
RECORD_ARRIVALS = """() => {
  const el = document.getElementById("bitrate-chart");
  window.sampleArrivals = [];
  new MutationObserver(() => window.sampleArrivals.push([Date.now(), Number(el.dataset.points)]))
    .observe(el, {attributes: true, attributeFilter: ["data-points"]});
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedConsole:
    """What `manage.py runall` runs, in a thread of this process: uvicorn
    serving the ASGI app (WebSockets included) with the media node in the
    same event loop, on this test's database."""

    def __init__(self, srt: bool = False) -> None:
        self.port = free_port()
        self.srt = srt
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.node = None
        self.server = ConsoleServer(
            uvicorn.Config(
                "livecenter.asgi:application", host="127.0.0.1", port=self.port, lifespan="off", log_level="warning"
            )  # fmt: skip
        )
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(),), daemon=True)

    async def _run(self) -> None:
        config = NodeConfig(host="127.0.0.1", rtmp_port=0, http_port=0, node_id="monitor-test", play_wait_seconds=3,
                            srt_port=0 if self.srt else None, max_loop_lag_ms=TEST_MAX_LOOP_LAG_MS)  # fmt: skip
        try:
            async with running_media_node(config) as node:
                self.node = node
                serving = asyncio.create_task(self.server.serve())
                while not self.server.started and not serving.done():
                    await asyncio.sleep(0.05)
                self.started.set()
                await serving
        finally:
            self.started.set()
            await sync_to_async(connections.close_all, thread_sensitive=True)()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def rtmp_port(self) -> int:
        return self.node.rtmp_port

    def __enter__(self) -> EmbeddedConsole:
        self.thread.start()
        assert self.started.wait(START_SECONDS) and self.server.started, "the console did not start"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


class ScaledTopology:
    """`manage.py medianode` and the console (`runall --no-media --no-worker`)
    as two processes sharing this test's database and REDIS_URL."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.rtmp_port = free_port()
        self.http_port = free_port()
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _start(self, name: str, args: list[str], env: dict) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "w")  # noqa: SIM115 - read back on failure
        proc = subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)  # fmt: skip
        self.processes.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.log_dir.glob("*.log")))

    def __enter__(self) -> ScaledTopology:
        env = database_env()
        env.update(
            LIVECENTER_MEDIA_HOST="127.0.0.1",
            LIVECENTER_NODE_ID="scaled-monitor-test",
            LIVECENTER_MEDIA_RTMP_PORT=str(self.rtmp_port),
            LIVECENTER_MEDIA_HTTP_PORT=str(self.http_port),
        )
        self._start("medianode", ["medianode"], env)
        self._start("console", ["runall", "--no-media", "--no-worker", "--port", str(self.port)], env)
        deadline = time.monotonic() + START_SECONDS
        ready = set()
        while time.monotonic() < deadline and len(ready) < 2:
            assert all(p.poll() is None for p in self.processes), self.logs()
            for name, port in (("console", self.port), ("node", self.rtmp_port)):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    ready.add(name)
                except OSError:
                    pass
            time.sleep(0.2)
        assert len(ready) == 2, self.logs()
        return self

    def __exit__(self, *exc) -> None:
        for proc in self.processes:
            proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def browser_page():
    with chromium_page(CHROMIUM, CHROMIUM_ARGS) as page:
        yield page


def points(page) -> int:
    return int(page.get_attribute("#bitrate-chart", "data-points"))


def watch_the_charts(page, console, owner, rtmp_port: int) -> None:
    urls = services.generate_urls(owner, "push.monitor.test", "live", "cam1")
    ingest = local(urls.ingest["rtmp"], rtmp_port)
    publisher = start_publisher(ingest, seconds=120, size="320x240", rate=25)
    again = None
    try:
        page.goto(f"{console.url}/accounts/login/")
        page.fill("#id_username", "owner")
        page.fill("#id_password", "owner-pass-123")
        page.click("#login-button")
        page.wait_for_url("**/domains/")
        page.goto(f"{console.url}/monitoring/stream/?domain=play.monitor.test&app=live&stream=cam1")
        page.wait_for_function("document.getElementById('socket-state').textContent === 'connected'")
        # The publisher may still be connecting: the first sample turns the page live.
        page.wait_for_function("Number(document.getElementById('bitrate-chart').dataset.points) >= 1", timeout=60_000)
        assert page.inner_text("#stream-state") == "live"

        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.evaluate(RECORD_ARRIVALS)
        page.wait_for_timeout(WATCH_SECONDS * 1000)
        arrivals = page.evaluate("window.sampleArrivals")
        # A point a second, pushed: the page asked for nothing meanwhile.
        assert len(arrivals) >= WATCH_SECONDS - 2, arrivals
        gaps = [(b[0] - a[0]) / 1000 for a, b in zip(arrivals, arrivals[1:], strict=False)]
        assert 0.7 <= statistics.median(gaps) <= 1.3, gaps
        assert all(b[1] > a[1] or b[1] == 600 for a, b in zip(arrivals, arrivals[1:], strict=False)), arrivals
        assert not requests, requests
        assert page.inner_text("#detail-resolution") == "320×240"
        assert page.inner_text("#detail-video").startswith("H264")
        assert page.inner_text("#detail-fps").endswith(" fps")

        # The stream stops: the page says so and keeps what it has drawn.
        publisher.stop()
        page.wait_for_function("document.getElementById('stream-state').textContent.startsWith('stream stopped')")
        kept = points(page)
        assert kept >= WATCH_SECONDS
        page.wait_for_timeout(2000)
        assert points(page) == kept

        # It comes back: live again, and the same charts go on.
        again = start_publisher(ingest, seconds=120, size="320x240", rate=25)
        page.wait_for_function("document.getElementById('stream-state').textContent === 'live'", timeout=60_000)
        page.wait_for_function(f"Number(document.getElementById('bitrate-chart').dataset.points) >= {kept + 3}",
                               timeout=60_000)  # fmt: skip

        # The domain overview counts it, live too.
        page.goto(f"{console.url}/monitoring/?domain=push.monitor.test")
        page.wait_for_function("document.getElementById('socket-state').textContent === 'connected'")
        page.wait_for_function("document.getElementById('total-in').textContent !== '0 kbit/s'", timeout=30_000)
        assert page.inner_text("#total-streams") == "1"
        row = "#domain-streams tbody tr[data-stream='push.monitor.test/live/cam1']"
        assert page.locator(row).count() == 1

        # It stops: the overview keeps it, greyed, with its last figures and
        # when they were seen, and counts it no more; so does a fresh page.
        again.stop()
        page.wait_for_selector(f"{row}[data-state='stopped']", timeout=30_000)
        for _ in range(2):
            assert page.inner_text("#total-streams") == "0"
            assert "stopped, last seen" in page.inner_text(row)
            assert "text-muted" in page.get_attribute(row, "class")
            assert page.inner_text(f"{row} td:nth-child(3)").endswith(" fps")
            page.reload()
            page.wait_for_function("document.getElementById('socket-state').textContent === 'connected'")
    finally:
        publisher.stop()
        if again is not None:
            again.stop()


def add_domains(owner) -> None:
    push = services.add_domain(owner, "push.monitor.test", "ingest", "overseas", "ap-southeast-1")
    play = services.add_domain(owner, "play.monitor.test", "streaming", "overseas", "ap-southeast-1")
    services.associate_ingest(play, push.domain_name)


def test_it_moves_the_charts_every_second_and_says_when_the_stream_stops(browser_page, owner):
    add_domains(owner)
    with EmbeddedConsole() as console:
        watch_the_charts(browser_page, console, owner, console.rtmp_port)
    connections.close_all()


@pytest.mark.backends
@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="the scaled topology needs REDIS_URL")
def test_it_moves_the_charts_with_the_node_in_another_process_over_redis(browser_page, owner, tmp_path):
    add_domains(owner)
    # The console process checks passwords with the product's hashers, not the tests' fast one.
    owner.password = PBKDF2PasswordHasher().encode("owner-pass-123", PBKDF2PasswordHasher().salt())
    owner.save(update_fields=["password"])
    with ScaledTopology(tmp_path) as topology:
        try:
            watch_the_charts(browser_page, topology, owner, topology.rtmp_port)
        except BaseException:
            print(topology.logs())
            raise
    connections.close_all()


def test_it_charts_an_srt_publishers_link(browser_page, owner):
    """Issue 13: an SRT publisher's page shows its link, live: RTT and packets per second."""
    add_domains(owner)
    page = browser_page
    with EmbeddedConsole(srt=True) as console:
        srt = services.generate_urls(owner, "push.monitor.test", "live", "cam1").ingest["srt"]
        ingest = srt.replace("srt://push.monitor.test:1105", f"srt://127.0.0.1:{console.node.srt_port}")
        publisher = start_publisher(ingest, seconds=120, size="320x240", rate=25, container="mpegts")
        try:
            page.goto(f"{console.url}/accounts/login/")
            page.fill("#id_username", "owner")
            page.fill("#id_password", "owner-pass-123")
            page.click("#login-button")
            page.wait_for_url("**/domains/")
            page.goto(f"{console.url}/monitoring/stream/?domain=push.monitor.test&app=live&stream=cam1")
            page.wait_for_function("document.getElementById('socket-state').textContent === 'connected'")
            page.wait_for_function("Number(document.getElementById('srt-rtt-chart').dataset.points) >= 3",
                                   timeout=60_000)  # fmt: skip
            assert page.is_visible("#srt-panel") and page.is_visible("#srt-loss-chart")
            assert page.inner_text("#srt-peer").startswith("127.0.0.1:")
            assert page.inner_text("#srt-encrypted") == "no"
            assert page.inner_text("#srt-latency") == "120 ms"
            assert page.inner_text("#srt-rtt").endswith(")") and " ms (±" in page.inner_text("#srt-rtt")
            assert " received, " in page.inner_text("#srt-totals")
        finally:
            publisher.stop()
    connections.close_all()


class WhipPublishing:
    """An aiortc WHIP publisher (tests/whipsupport.py) in a loop of its own
    thread, so the page can be driven from this one."""

    def __init__(self, url: str, seconds: float) -> None:
        self.url, self.seconds = url, seconds
        self.status = 0
        self.started, self.done = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        publisher = WhipPublisher(self.url, seconds=self.seconds)
        try:
            self.status = await publisher.start()
            self.started.set()
            while not self.done.is_set():
                await asyncio.sleep(0.1)
        finally:
            self.started.set()
            await publisher.stop()

    def __enter__(self) -> WhipPublishing:
        self.thread.start()
        assert self.started.wait(START_SECONDS) and self.status == 201, f"the WHIP publish was answered {self.status}"
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join(30)


def test_it_charts_a_whip_publishers_link(browser_page, owner):
    """Issue 17: a WHIP publisher's page shows its WebRTC link, live: RTT, packets per second, state, codecs."""
    add_domains(owner)
    page = browser_page
    with EmbeddedConsole() as console:
        artc = services.generate_urls(owner, "push.monitor.test", "live", "cam1").ingest["rts"]
        url = (
            f"http://127.0.0.1:{console.node.http_port}/live/cam1.whip?{urlsplit(artc).query}&domain=push.monitor.test"
        )
        with WhipPublishing(url, seconds=60):
            log_in_as_owner(page, console.url)
            page.goto(f"{console.url}/monitoring/stream/?domain=push.monitor.test&app=live&stream=cam1")
            page.wait_for_function("document.getElementById('socket-state').textContent === 'connected'")
            page.wait_for_function("Number(document.getElementById('whip-loss-chart').dataset.points) >= 3",
                                   timeout=60_000)  # fmt: skip
            assert page.is_visible("#whip-panel") and page.is_visible("#whip-rtt-chart")
            assert not page.is_visible("#srt-panel")
            assert page.inner_text("#whip-panel h3") == "WebRTC link (WHIP)"
            assert page.inner_text("#whip-peer").startswith("127.0.0.1:")
            assert page.inner_text("#whip-state") == "connected"
            assert page.inner_text("#whip-codecs") == "H264, opus"
            assert page.inner_text("#whip-lost") == "0.0"
            assert " received, 0 lost, " in page.inner_text("#whip-totals")
            assert page.get_attribute("#troubleshoot-link", "href").endswith(
                "url=http%3A//push.monitor.test/live/cam1.whip"
            )
    connections.close_all()
