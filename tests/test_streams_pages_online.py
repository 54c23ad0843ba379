"""The online streams page, /streams/."""

import pytest

from tests.pagesupport import add_ingest, assert_field_error, assert_login_redirect, page
from tests.streamsupport import HD_INFO, add_pair, at, publish, unpublish

pytestmark = pytest.mark.django_db

URL = "/streams/"


def test_it_requires_login(client):
    assert_login_redirect(client.get(URL), URL)


def test_it_is_linked_from_the_navigation(client, owner):
    client.force_login(owner)
    assert '<a class="nav-link active" href="/streams/">Streams</a>' in page(client.get(URL))
    assert '<a class="nav-link" href="/streams/">Streams</a>' in page(client.get("/domains/"))


def test_it_shows_the_operators_live_streams_with_their_media(client, owner):
    add_pair(owner)
    publish(
        "push.example.com",
        "live",
        "cam1",
        "s1",
        started_at=at("2026-05-01T10:00:00"),
        client_addr="203.0.113.5:50000",
        info=HD_INFO,
    )
    client.force_login(owner)
    body = page(client.get(URL))
    assert 'data-stream="push.example.com/live/cam1"' in body
    for shown in (
        "2026-05-01 10:00:00",
        "203.0.113.5:50000",
        "node-1",
        "H264",
        "1280×720",
        "29.97 fps",
        "2012 kbit/s",
        "AAC",
        "128 kbit/s",
    ):
        assert shown in body, shown
    assert 'href="/streams/forbid/?domain=push.example.com&amp;app=live&amp;stream=cam1"' in body
    assert 'href="/streams/history/"' in body


def test_it_shows_none_of_another_operators_streams(client, owner, outsider):
    add_ingest(owner)
    add_ingest(outsider, "theirs.example.net")
    publish("push.example.com", "live", "cam1", "s1")
    publish("theirs.example.net", "live", "cam9", "s9")
    client.force_login(outsider)
    body = page(client.get(URL))
    assert "theirs.example.net/live/cam9" in body
    assert "push.example.com" not in body


def test_it_leaves_out_stopped_streams(client, owner):
    add_ingest(owner)
    unpublish(publish("push.example.com", "live", "cam1", "s1"), at("2026-05-01T11:00:00"))
    client.force_login(owner)
    body = page(client.get(URL))
    assert 'id="no-streams"' in body and "push.example.com/live/cam1" not in body


def test_it_filters_by_the_operators_ingest_domains(client, owner):
    add_pair(owner)
    add_ingest(owner, "push2.example.com")
    publish("push.example.com", "live", "cam1", "s1")
    publish("push2.example.com", "live", "cam2", "s2")
    client.force_login(owner)
    body = page(client.get(URL, {"domain": "push2.example.com"}))
    assert "push2.example.com/live/cam2" in body and "push.example.com/live/cam1" not in body
    # Only ingest domains are offered.
    assert '<option value="push.example.com">' in body and '<option value="play.example.com">' not in body
    body = page(client.get(URL, {"stream": "cam1"}))
    assert "push.example.com/live/cam1" in body and "cam2" not in body


def test_it_refuses_another_operators_domain_in_the_filter(client, owner, outsider):
    add_ingest(owner)
    add_ingest(outsider, "theirs.example.net")
    publish("push.example.com", "live", "cam1", "s1")
    client.force_login(outsider)
    response = client.get(URL, {"domain": "push.example.com"})
    assert_field_error(response, "form", "domain", "domain must be one of the listed choices")
    assert "push.example.com/live/cam1" not in page(response)


def test_it_says_to_add_an_ingest_domain_first(client, owner):
    client.force_login(owner)
    body = page(client.get(URL))
    assert 'id="no-domains"' in body and 'href="/domains/add/"' in body


def test_it_pages_a_long_list(client, owner, monkeypatch):
    monkeypatch.setattr("livecenter.lib.pages.ROWS_PER_PAGE", 2)
    add_ingest(owner)
    for i in range(3):
        publish("push.example.com", "live", f"cam{i}", f"s{i}", started_at=at(f"2026-05-01T1{i}:00:00"))
    client.force_login(owner)
    first = page(client.get(URL, {"app": "live"}))
    assert "Page 1 of 2" in first and 'href="?app=live&amp;page=2"' in first
    second = page(client.get(URL, {"app": "live", "page": 2}))
    assert "push.example.com/live/cam0" in second and "push.example.com/live/cam2" not in second


def test_it_shows_each_streams_publish_protocol(client, owner):
    add_pair(owner)
    publish("push.example.com", "live", "cam1", "s1")
    publish("push.example.com", "live", "cam2", "s2", protocol="srt")
    client.force_login(owner)
    body = page(client.get(URL))
    rows = {
        stream: body[body.index(f'data-stream="push.example.com/live/{stream}"') :].split("</tr>", 1)[0]
        for stream in ("cam1", "cam2")
    }
    assert '<div class="small text-muted">RTMP</div>' in rows["cam1"] and "SRT" not in rows["cam1"]
    assert '<div class="small text-muted">SRT</div>' in rows["cam2"] and "RTMP" not in rows["cam2"]
