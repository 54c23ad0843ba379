"""The Statistics page in headless Chromium (Debian's, through Playwright):
the usage panel draws the rollups from the API, the range picker changes the
granularity, the CSV link follows the range, and the hover legend gives the
viewer's local time while the axis is UTC."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from monitoring import usage
from tests.browsersupport import chromium_page, log_in_as_owner
from tests.monitoringsupport import record, stream_sample
from tests.streamsupport import add_pair
from tests.test_browser_console import CHROMIUM, CHROMIUM_ARGS

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page():
    # A zone far from UTC, so the legend's local time is not the axis's.
    viewport = {"width": 1280, "height": 800}
    with chromium_page(CHROMIUM, CHROMIUM_ARGS, 20_000, timezone_id="Asia/Shanghai", locale="en-GB",
                       viewport=viewport) as page:  # fmt: skip
        yield page


@pytest.fixture
def ten_minutes(owner):
    """Ten minutes of a stream, rolled up (before the page: the sink's
    async_to_sync cannot run inside Playwright's event loop)."""
    add_pair(owner)
    start = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(minutes=20)
    # Ten minutes at 800 kbit/s in and 1.6 Mbit/s out to 2 FLV viewers.
    record(*(stream_sample(at=start + dt.timedelta(seconds=s + 0.5), video_bitrate=800_000.0, audio_bitrate=0.0,
                           bitrate_out={"flv": 1_600_000.0}, viewers={"flv": 2},
                           viewer_ids=("00000000000000a1", "00000000000000b2")) for s in range(600)))  # fmt: skip
    usage.roll_up()


def test_it_draws_the_usage_and_follows_the_range_picker(ten_minutes, page, live_server):
    base = live_server.url
    log_in_as_owner(page, base)
    page.click("#nav-statistics")
    page.wait_for_url("**/monitoring/statistics/")
    panel = page.locator(".usage-panel")
    page.wait_for_function("document.querySelector('.usage-panel').dataset.points !== '0'")
    # 24 h of 5-minute points, widened to whole periods.
    assert panel.get_attribute("data-points") in ("288", "289")
    assert "5 minutes" in panel.locator('[data-usage="interval"]').inner_text()
    assert panel.locator('[data-usage="bytes-out"]').inner_text() == "120 MB"  # 600 s x 200 kB/s
    assert panel.locator('[data-usage="bytes-in"]').inner_text() == "60 MB"
    assert panel.locator('[data-usage="peak-out"]').inner_text() == "1.6 Mbit/s"
    assert panel.locator('[data-usage="unique-viewers"]').inner_text() == "2"
    assert panel.locator('[data-usage="by-protocol"]').inner_text() == "FLV 120 MB"

    page.select_option("[data-range]", "1h")
    assert not page.is_visible("[data-start]")
    page.wait_for_function("['60', '61'].includes(document.querySelector('.usage-panel').dataset.points)")
    assert "a minute" in panel.locator('[data-usage="interval"]').inner_text()
    csv = panel.locator('[data-usage="csv"]').get_attribute("href")
    assert csv.startswith("/api/v1/monitoring/usage/csv/?domain=push.example.com") and "start_time=" in csv
    response = page.request.get(base + csv)
    assert response.ok and response.text().splitlines()[-1].startswith("total,60000000,120000000")

    # The custom range: a bad one is said so, a good one drawn.
    page.select_option("[data-range]", "custom")
    assert page.is_visible("[data-start]")
    page.fill("[data-end]", page.input_value("[data-start]"))
    page.dispatch_event("[data-end]", "change")
    assert "end time must be after" in panel.locator('[data-usage="error"]').inner_text()

    # Hovering the bandwidth chart: the legend has the local (UTC+8) time and the UTC one.
    page.select_option("[data-range]", "1h")
    assert not page.is_visible("[data-start]")
    page.wait_for_function("['60', '61'].includes(document.querySelector('.usage-panel').dataset.points)")
    over = panel.locator('[data-usage="bandwidth-chart"] .u-over')
    box = over.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    legend = panel.locator('[data-usage="bandwidth-chart"] .u-legend .u-series').first.inner_text()
    assert "UTC" in legend
    hour_utc = int(legend.split("(")[1][:2])
    hour_local = int(legend.split(",")[1].strip()[:2])
    assert (hour_local - hour_utc) % 24 == 8, legend

    # On a phone: the controls and the charts stay inside the viewport.
    page.set_viewport_size({"width": 375, "height": 800})
    page.wait_for_function(CHARTS_FIT_THEIR_BOXES)  # the charts follow their boxes
    for selector in ("[data-range]", '[data-usage="csv"]', '[data-usage="bandwidth-chart"] canvas'):
        box = page.locator(selector).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 375, (selector, box)


# Every chart as wide as its box, or narrower.
CHARTS_FIT_THEIR_BOXES = """() => [...document.querySelectorAll(".monitor-chart")].every(
  (box) => [...box.querySelectorAll(".uplot")].every((chart) => chart.offsetWidth <= box.clientWidth))"""


@pytest.fixture
def stopped_stream(owner):
    """A stream that stopped two hours ago, its samples rolled up."""
    add_pair(owner)
    end = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=2)
    record(*(stream_sample(at=end - dt.timedelta(seconds=59 - s), viewers={"flv": 3}) for s in range(60)))
    usage.roll_up()
    return end


def test_a_stopped_streams_page_shows_its_last_figures_as_such(stopped_stream, page, live_server):
    base = live_server.url
    log_in_as_owner(page, base)
    page.goto(f"{base}/monitoring/stream/?domain=push.example.com&app=live&stream=cam1")
    page.wait_for_selector("#last-seen", state="visible")
    assert page.inner_text("#stream-state").startswith("stream stopped")
    assert page.get_attribute("#last-seen-time", "datetime") == stopped_stream.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert "UTC" in page.inner_text("#last-seen-time")
    assert page.inner_text("#viewers-total") == "3"  # its last, marked as such
    assert "text-muted" in page.get_attribute("#viewers-table", "class")
    # The usage panel of the stream, over the last 24 hours.
    page.wait_for_function("document.querySelector('.usage-panel').dataset.points !== '0'")
    assert page.inner_text('.usage-panel [data-usage="peak-viewers"]') == "3"


# What the page looks like before its scripts have caught up with a change of
# width: neither the window's resize event nor a box's ResizeObserver reaches
# them (the moment between a window's change and the next rendering, where
# Chromium delivers both: CI's seed walk once measured the stream page there).
HOLD_THE_CHARTS = """
window.addEventListener("resize", (event) => event.stopImmediatePropagation(), true);
window.ResizeObserver = class { observe() {} unobserve() {} disconnect() {} };
"""


def test_a_chart_drawn_for_a_wider_window_never_widens_the_page(stopped_stream, page, live_server):
    """The charts (uPlot) are as wide as their box was when drawn: on a phone,
    until they are redrawn, one drawn at 1280 px is clipped, not 782 px wide
    in a 375 px page (CI: "monitoring-stream at 375 px is 823 px wide")."""
    page.add_init_script(HOLD_THE_CHARTS)
    log_in_as_owner(page, live_server.url)
    stream = "/monitoring/stream/?domain=push.example.com&app=live&stream=cam1"
    for path in (stream, "/monitoring/?domain=push.example.com", "/monitoring/statistics/"):
        page.set_viewport_size({"width": 1280, "height": 800})
        page.goto(live_server.url + path)
        page.wait_for_function("document.querySelector('.usage-panel').dataset.points !== '0'")
        drawn = page.evaluate("Math.max(...[...document.querySelectorAll('.uplot')].map((c) => c.offsetWidth))")
        assert drawn > 375, drawn  # drawn for the wide window
        page.set_viewport_size({"width": 375, "height": 800})
        page.wait_for_function("document.documentElement.clientWidth <= 375")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375, path


def test_an_ipv6_publishers_address_wraps_on_a_phone(stopped_stream, page, live_server):
    """The SRT and WHIP link panels name the publisher's address and port,
    one unbroken word of up to 47 characters over IPv6 (set here as
    monitoring.js sets it from a sample's link): it wraps in its cell."""
    log_in_as_owner(page, live_server.url)
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(f"{live_server.url}/monitoring/stream/?domain=push.example.com&app=live&stream=cam1")
    page.evaluate("""() => {
      for (const panel of ["srt-panel", "whip-panel"]) document.getElementById(panel).hidden = false;
      for (const cell of ["srt-peer", "whip-peer"])
        document.getElementById(cell).textContent = "[2001:db8:85a3:1234:5678:8a2e:370:7334]:54321";
    }""")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
