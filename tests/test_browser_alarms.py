"""Alarms in headless Chromium (Debian's, through Playwright): a rule added
through the Alarms page's form, an alarm the evaluation opens from known
samples, the banner it puts on every page (inside the viewport at 1280 and
375 px), its link to the Alarms page, and the banner gone once it closes."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from monitoring import alarms
from monitoring.models import AlarmRule
from tests.browsersupport import chromium_page, log_in_as_owner
from tests.monitoringsupport import record, stream_sample
from tests.pagesupport import add_ingest
from tests.streamsupport import publish
from tests.test_browser_console import CHROMIUM, CHROMIUM_ARGS

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

T0 = dt.datetime(2026, 12, 1, 12, 0, 0, tzinfo=dt.UTC)


def inside(page, selector: str, width: int) -> bool:
    box = page.locator(selector).bounding_box()
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width


def test_the_banner_opens_and_closes_with_an_alarm(live_server, owner, tmp_path):
    add_ingest(owner)
    # Made before the browser starts: the node's sink runs on an event loop of its own.
    publish("push.example.com", "live", "cam1", "s1", started_at=T0)
    for s in range(1, 11):
        record(stream_sample(at=T0 + dt.timedelta(seconds=s), video_frame_rate=5.0 if s <= 5 else 30.0))
    with chromium_page(CHROMIUM, CHROMIUM_ARGS) as page:
        page.set_viewport_size({"width": 1280, "height": 800})
        log_in_as_owner(page, live_server.url)
        page.goto(f"{live_server.url}/monitoring/alarms/")
        page.fill("#id_app", "live")
        page.select_option("#id_metric", "frame_rate")
        page.fill("#id_threshold", "20")
        page.fill("#id_duration_seconds", "3")
        page.click("#alarm-rule-submit")
        page.wait_for_selector("tr.alarm-rule")
        assert "frame rate below 20 fps" in page.inner_text("#alarm-rules")
        assert page.locator("#alarm-banner").count() == 0
        rule = AlarmRule.objects.get()
        assert (rule.app, rule.duration_seconds) == ("live", 3)

        assert alarms.evaluate(T0 + dt.timedelta(seconds=5)) == (1, 0)

        for width in (1280, 375):
            page.set_viewport_size({"width": width, "height": 800})
            page.goto(f"{live_server.url}/streams/")
            page.wait_for_selector("#alarm-banner")
            assert "push.example.com/live/cam1" in page.inner_text("#alarm-banner")
            assert inside(page, "#alarm-banner a.alert-link", width)
            page.screenshot(path=str(tmp_path / f"banner-{width}.png"), full_page=True)
        page.click("#alarm-banner a.alert-link")
        page.wait_for_selector("#open-alarms tr.alarm")
        assert "12:00:01" in page.inner_text("#open-alarms")
        page.screenshot(path=str(tmp_path / "alarms-375.png"), full_page=True)

        assert alarms.evaluate(T0 + dt.timedelta(seconds=10)) == (0, 1)
        page.reload()
        page.wait_for_selector("#past-alarms tr.alarm")
        assert page.locator("#alarm-banner").count() == 0
        assert "12:00:06" in page.inner_text("#past-alarms")
