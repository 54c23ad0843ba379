"""The Statistics page (/monitoring/statistics/) and the usage panel on the
monitoring pages: the scope the form picks, for the owner only; a stopped
stream's page keeps its last figures."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.monitoringsupport import record, stream_sample
from tests.streamsupport import add_pair, publish

PAGE = "/monitoring/statistics/"
pytestmark = pytest.mark.django_db


def test_it_shows_the_usage_panel_for_the_scope_picked(owner, client):
    add_pair(owner)
    client.force_login(owner)
    r = client.get(PAGE)
    html = r.content.decode()
    assert r.status_code == 200 and 'id="nav-statistics"' in html
    assert 'data-usage-api="/api/v1/monitoring/usage/"' in html and 'data-domain="push.example.com"' in html
    assert 'data-app="" data-stream=""' in html
    assert "js/charts.js" in html and "vendor/uplot/uPlot.iife.min.js" in html
    assert '<option value="30d">Last 30 days</option>' in html and 'value="custom"' in html
    r = client.get(PAGE, {"domain": "push.example.com", "app": "live", "stream": "cam1"})
    assert 'data-app="live" data-stream="cam1"' in r.content.decode()


def test_it_names_the_field_of_a_bad_scope(owner, client):
    add_pair(owner)
    client.force_login(owner)
    html = client.get(PAGE, {"domain": "push.example.com", "stream": "cam1"}).content.decode()
    assert "name the app of the stream" in html and "data-usage-api" not in html


def test_an_operator_picks_only_their_own_domains(owner, outsider, client):
    add_pair(owner)
    add_pair(outsider, "push.other.com", "play.other.com")
    client.force_login(outsider)
    html = client.get(PAGE).content.decode()
    assert 'data-domain="push.other.com"' in html and "push.example.com" not in html
    html = client.get(PAGE, {"domain": "push.example.com"}).content.decode()
    assert "data-usage-api" not in html and "domain must be one of the listed choices" in html


def test_it_asks_a_user_with_no_domains_to_add_one(outsider, client):
    client.force_login(outsider)
    assert 'id="no-domains"' in client.get(PAGE).content.decode()
    client.logout()
    assert client.get(PAGE).status_code == 302


def test_the_monitoring_pages_carry_the_usage_panel(owner, client):
    add_pair(owner)
    publish("push.example.com", "live", "cam1", "s1")
    record(stream_sample())
    client.force_login(owner)
    html = client.get("/monitoring/", {"domain": "push.example.com"}).content.decode()
    assert 'data-usage-api="/api/v1/monitoring/usage/" data-domain="push.example.com" data-app=""' in html
    html = client.get("/monitoring/stream/", {"domain": "push.example.com", "app": "live", "stream": "cam1"}).content
    assert b'data-domain="push.example.com" data-app="live" data-stream="cam1"' in html


def test_a_stream_stopped_long_ago_shows_its_last_figures(owner, client):
    add_pair(owner)
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    record(stream_sample(at=long_ago - dt.timedelta(seconds=1), video_frame_rate=25.0))
    record(stream_sample(at=long_ago, video_frame_rate=24.0))
    client.force_login(owner)
    r = client.get("/monitoring/stream/", {"domain": "push.example.com", "app": "live", "stream": "cam1"})
    assert [s["video_frame_rate"] for s in r.context["history"]] == [24.0]
    html = r.content.decode()
    assert 'data-live="false"' in html and 'id="last-seen" hidden' in html  # charts.js fills and shows it
