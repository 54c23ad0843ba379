"""The seed's ten steps (seeds/: activate, add an ingest and a streaming
domain, CNAME, associate, SSL, RTS, URL signing, generate URLs, push, play)
walked in headless Chromium (Debian's, through Playwright) against the
product as `make run` starts it — `manage.py migrate`, `ensure_demo_operator`,
`runall` — in a temporary data folder on free ports, with no DNS entry for
its domains and no other settings (issue 19).

Every page on the way is checked at 1280 and 375 px wide: no page is wider
than the window, and every visible action (buttons, links styled as
buttons, navigation and tab links) lies inside the window and inside any
scrolling box around it, from the elements' boxes. A screenshot of each is
kept (LIVECENTER_SCREENSHOTS names a folder to keep them in; else the
test's temporary folder). The walk ends with moving video in the player over
RTS, HTTP-FLV and HLS, pushed by ffmpeg to the URL the generator signs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.test_browser_player import STARTED, browser_page, stats  # noqa: F401 - the player tests' Chromium
from tests.test_runall import answer, free_port, stop_with_ctrl_c
from tests.test_streams_live import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.media, pytest.mark.worker]

ROOT = Path(__file__).resolve().parent.parent
START_SECONDS = 90
# A worker ends its running recording before it stops (Celery's warm
# shutdown), which takes a while on a loaded machine.
STOP_SECONDS = 120
WIDTHS = (1280, 375)
HEIGHT = 800
INGEST, STREAMING = "push.seed.example", "play.seed.example"
PLAY_SECONDS = 6

# Every visible action on the page whose box is not inside the window, or
# is cut by a scrolling or clipping box around it; and how wide the page is.
LAYOUT = """() => {
  const width = document.documentElement.clientWidth;
  const outside = [];
  const actions = document.querySelectorAll(
    "a.btn, button, input[type=submit], input[type=button], .nav-link, .navbar-toggler");
  for (const el of actions) {
    const box = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    if (box.width === 0 || box.height === 0 || style.visibility === "hidden") continue;  // not shown
    let left = 0, right = width;
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      if (/(auto|scroll|hidden|clip)/.test(getComputedStyle(p).overflowX)) {
        const clip = p.getBoundingClientRect();
        left = Math.max(left, clip.left);
        right = Math.min(right, clip.right);
      }
    }
    if (box.left < left - 0.5 || box.right > right + 0.5) {
      const text = (el.innerText || el.value || el.getAttribute("aria-label") || "").trim().slice(0, 40);
      outside.push({text, left: Math.round(box.left), right: Math.round(box.right),
                    within: [Math.round(left), Math.round(right)]});
    }
  }
  return {outside, pageWidth: document.documentElement.scrollWidth, width, actions: actions.length};
}"""


@pytest.fixture
def product(tmp_path):
    """`make run`'s three commands in a fresh data folder. Only the ports
    are chosen (free ones, so that tests run side by side): the console's,
    and the public RTMP, HTTP and SRT ports the URL generator hands out and
    the node listens on. No DNS entry names the domains the test adds."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env = {k: v for k, v in env.items() if not k.startswith("LIVECENTER_")}
    env["LIVECENTER_DATA_DIR"] = str(tmp_path)
    ports = {"console": free_port(), "rtmp": free_port(), "http": free_port(), "srt": free_port()}
    env["LIVECENTER_RTMP_PORT"], env["LIVECENTER_HTTP_PORT"] = str(ports["rtmp"]), str(ports["http"])
    env["LIVECENTER_SRT_PORT"] = str(ports["srt"])
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, cwd=ROOT, check=True, timeout=180)
    created = subprocess.run([*manage, "ensure_demo_operator"], env=env, cwd=ROOT, check=True, capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    username, password = re.search(r"Log in with: (\S+) / (\S+)", created.stdout).groups()
    log_path = tmp_path / "runall.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            ["nice", "-n", "19", *manage, "runall", "--port", str(ports["console"])],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{ports['console']}"
    try:
        status, _ = answer(f"{base}/accounts/login/", START_SECONDS)
        assert status == 200, log_path.read_text()[-3000:]
        yield {"base": base, "ports": ports, "username": username, "password": password, "log": log_path}
    finally:
        stop_with_ctrl_c(proc, STOP_SECONDS)


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("LIVECENTER_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Walk:
    """The browser on the product, checking each page's layout at both widths."""

    def __init__(self, page, base: str, shots: Path) -> None:
        self.page, self.base, self.shots = page, base, shots
        self.checked: list[str] = []

    def goto(self, path: str, name: str) -> None:
        self.page.goto(self.base + path)
        self.check(name)

    def check(self, name: str) -> None:
        """Both widths: the page fits, every action is inside the window; a screenshot of each."""
        page = self.page
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": HEIGHT})
            page.wait_for_function(f"document.documentElement.clientWidth <= {width}")
            layout = page.evaluate(LAYOUT)
            page.screenshot(path=str(self.shots / f"{len(self.checked):02d}-{name}-{width}.png"), full_page=True)
            assert layout["pageWidth"] <= width, f"{name} at {width} px is {layout['pageWidth']} px wide"
            assert not layout["outside"], f"{name} at {width} px: actions outside the window: {layout['outside']}"
        page.set_viewport_size({"width": WIDTHS[0], "height": HEIGHT})
        self.checked.append(name)


def add_domain(walk: Walk, kind: str, name: str) -> None:
    page = walk.page
    walk.goto("/domains/add/", f"add-{kind}")
    page.check("#id_domain_type_0" if kind == "ingest" else "#id_domain_type_1")
    page.fill("#id_domain_name", name)
    page.select_option("#id_region", "overseas")
    page.select_option("#id_live_center", "ap-southeast-1")
    page.click("#add-domain-submit")
    page.wait_for_url(f"**/domains/{name}/cname/")


def start_ffmpeg(url: str, seconds: float) -> subprocess.Popen:
    """testsrc2 and a tone, H.264 without B-frames and AAC, in real time, a keyframe a second."""
    cmd = ["nice", "-n", "19", "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
           "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=frequency=440",
           "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30",
           "-b:v", "800k", "-c:a", "aac", "-b:a", "64k", "-f", "flv", url]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


# A node whose event loop is behind refuses new viewers for a moment
# (livecenter/media/capacity.py), as it may on a loaded machine: the viewer
# tries again, as a person would.
CAPACITY_TRIES = 10
CAPACITY_WAIT_MS = 5000


def start_playing(page) -> dict:
    for _ in range(CAPACITY_TRIES):
        page.wait_for_function(STARTED, timeout=60_000)
        now = stats(page)
        if now["state"] != "failed" or "at capacity" not in page.inner_text("#player-error"):
            # Started: a loaded machine may stall it for a moment (shown as buffering).
            page.wait_for_function("window.livecenterPlayer.stats.state !== 'buffering'", timeout=30_000)
            return stats(page)
        page.wait_for_timeout(CAPACITY_WAIT_MS)
        page.reload()
    return now


def test_it_walks_the_seed_on_a_fresh_make_run_without_dns(product, browser_page, shots):  # noqa: F811
    page = browser_page
    walk = Walk(page, product["base"], shots)

    # 1. Activate: log in as the operator `make run` made.
    walk.goto("/accounts/login/", "login")
    page.fill("#id_username", product["username"])
    page.fill("#id_password", product["password"])
    page.click("#login-button")
    page.wait_for_url("**/domains/")
    walk.check("domains-empty")
    # The navigation folds into a menu on a phone, and opens.
    page.set_viewport_size({"width": 375, "height": HEIGHT})
    assert not page.is_visible("#nav-links a[href='/streams/']")
    page.click("#nav-toggler")
    page.wait_for_selector("#nav-links a[href='/streams/']", state="visible")
    walk.check("navigation-open")
    page.reload()

    # 2. An ingest domain and a streaming domain.
    add_domain(walk, "ingest", INGEST)
    walk.check("cname-ingest")
    add_domain(walk, "streaming", STREAMING)

    # 3. The CNAME record: shown, and checked (it cannot exist here: no DNS).
    walk.check("cname-streaming")
    page.click("#cname-verify")
    page.wait_for_selector("#messages .alert")
    walk.check("cname-verified")

    # 4. Associate the streaming domain with the ingest domain.
    walk.goto(f"/domains/{STREAMING}/mapping/", "mapping")
    page.select_option("#id_ingest_domain", INGEST)
    page.click("#associate-submit")
    page.wait_for_selector("#messages .alert-success")
    walk.check("mapping-saved")
    walk.goto("/domains/", "domains")
    # One time format, in UTC, with the viewer's local time on hover (finding 5).
    created = page.locator("#domain-table time.utc").first
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", created.inner_text())
    assert created.get_attribute("title").startswith("Your local time: ")

    # 5. (Optional) SSL certificates: the page, without one.
    walk.goto(f"/domains/{STREAMING}/certificate/", "certificate")

    # 6. RTS with HTML5 auto-transcoding: on by default for a new streaming
    # domain; saved again, the confirmation says nothing changed.
    walk.goto(f"/domains/{STREAMING}/rts/", "rts")
    assert page.is_checked("#id_rts_enabled") and page.is_checked("#id_html5_transcode")
    page.click("#rts-submit")
    assert "Nothing changed for play.seed.example" in page.inner_text("#messages")

    # 7. Custom URL signing keys on both domains.
    for name, key in ((INGEST, "SeedPushKey2026"), (STREAMING, "SeedPlayKey2026")):
        walk.goto(f"/domains/{name}/url-signing/", f"url-signing-{name.split('.')[0]}")
        page.fill("#id_primary_key", key)
        page.click("#url-signing-submit")
        assert page.inner_text("#messages") == f"Primary key replaced for {name}."
        assert key not in page.content()
    for path, name in ((f"/domains/{INGEST}/", "detail"), (f"/domains/{INGEST}/srt/", "srt"),
                       (f"/domains/{INGEST}/access-control/", "access-control"),
                       (f"/domains/{INGEST}/callbacks/", "callbacks"),
                       (f"/domains/{STREAMING}/hls-encryption/", "hls-encryption")):  # fmt: skip
        walk.goto(path, name)

    # 8. Ingest and streaming URLs.
    walk.goto(f"/tools/url-generator/?domain={INGEST}", "url-generator")
    page.fill("#id_app", "live")
    page.fill("#id_stream", "cam1")
    page.click("#url-generator-submit")
    page.wait_for_selector("#url-playback-flv")
    walk.check("url-generator-urls")
    assert page.input_value("#url-ingest-rtmp").startswith(f"rtmp://{INGEST}:")  # the DNS form

    # 9. Push with ffmpeg to the URL the generator gives for this machine:
    # the node's address with the domain in `domain=`, as the name does not
    # resolve (issue 19, finding 1).
    rtmp = page.input_value("#url-ingest-direct-rtmp")
    parts = urlsplit(rtmp)
    assert parts.port == product["ports"]["rtmp"] and parse_qs(parts.query)["domain"] == [INGEST], rtmp
    publisher = start_ffmpeg(rtmp, seconds=240)
    try:

        def online() -> bool:
            page.goto(product["base"] + "/streams/")
            return page.locator("#online-table tr[data-stream]").count() > 0 or publisher.poll() is not None

        assert wait_until(online, 60), "the stream is not in the online list"
        assert publisher.poll() is None, publisher.communicate()[1][-2000:]
        walk.check("online-streams")
        for path, name in (("/streams/history/", "history"), ("/streams/blocked/", "blocked"),
                           (f"/streams/forbid/?domain={INGEST}&app=live&stream=cam1", "forbid"),
                           ("/streams/media/", "media"), ("/streams/recordings/", "recordings"),
                           ("/monitoring/", "monitoring"),
                           (f"/monitoring/stream/?domain={INGEST}&app=live&stream=cam1", "monitoring-stream"),
                           (f"/monitoring/troubleshoot/?domain={STREAMING}", "troubleshoot"),
                           ("/nodes/", "nodes"), ("/monitoring/alarms/", "alarms"),
                           ("/monitoring/statistics/", "statistics"), ("/player/", "player-live-list"),
                           (f"/domains/{INGEST}/go-live/", "go-live"),
                           ("/domains/no-such.example/", "not-found")):  # fmt: skip
            walk.goto(path, name)

        # Recording, set while the stream is live, starts on it at once, and
        # the recordings list shows it growing without a reload (finding 6).
        page.goto(product["base"] + "/streams/media/")
        page.click("text=Record…")
        page.select_option("#id_record-domain", INGEST)
        page.fill("#id_record-app", "live")
        page.click("#record-submit")
        assert "started now on 1 live stream" in page.inner_text("#messages")
        walk.check("media-recording-set")

        def recording_row() -> bool:
            page.goto(product["base"] + "/streams/recordings/")
            return page.locator("tr[data-in-progress]").count() == 1

        assert wait_until(recording_row, 90), "no recording in progress"
        size = page.inner_text("tr[data-in-progress] .recording-size")
        page.wait_for_function(
            "(before) => { const cell = document.querySelector('tr[data-in-progress] .recording-size');"
            " return cell && cell.innerText !== before; }",
            arg=size,
            timeout=60_000,
        )
        assert page.inner_text("tr[data-in-progress] .recording-size").endswith("so far")
        walk.check("recording-in-progress")

        # 10. Play: moving video over RTS, HTTP-FLV and HLS.
        for protocol in ("rts", "flv", "hls"):
            walk.goto(f"/player/?domain={STREAMING}&app=live&stream=cam1&protocol={protocol}", f"player-{protocol}")
            first = start_playing(page)
            assert (first["state"], first["protocol"]) == ("playing", protocol), first
            # Moving: the picture advances by PLAY_SECONDS of media. Not timed:
            # on a loaded machine the node may hold it for a while meanwhile.
            start = page.evaluate("document.getElementById('player-video').currentTime")
            page.wait_for_function(
                "(end) => document.getElementById('player-video').currentTime >= end",
                arg=start + PLAY_SECONDS,
                timeout=120_000,
            )
            now = stats(page)
            assert (now["width"], now["height"]) == (640, 360), now
            walk.check(f"player-{protocol}-playing")
    finally:
        publisher.kill()
        publisher.wait()
    assert len(walk.checked) >= 35, walk.checked
