"""The publish history page, /streams/history/."""

import pytest

from domains import services as domain_services
from tests.pagesupport import add_ingest, assert_field_error, assert_login_redirect, page
from tests.streamsupport import add_pair, at, publish, unpublish

pytestmark = pytest.mark.django_db

URL = "/streams/history/"
MAY_FIRST = {"start_time": "2026-05-01T00:00", "end_time": "2026-05-02T00:00"}


@pytest.fixture
def sessions(owner):
    add_pair(owner)
    unpublish(
        publish("push.example.com", "live", "cam1", "s1", started_at=at("2026-05-01T09:00:00")),
        at("2026-05-01T09:30:00"),
        "kicked",
    )
    publish("push.example.com", "live", "cam2", "s2", started_at=at("2026-05-01T10:00:00"))
    unpublish(
        publish("push.example.com", "live", "cam3", "s3", started_at=at("2026-04-20T10:00:00")),
        at("2026-04-20T11:00:00"),
    )


def test_it_requires_login(client):
    assert_login_redirect(client.get(URL), URL)


def test_it_shows_sessions_in_the_date_range(client, owner, sessions):
    client.force_login(owner)
    body = page(client.get(URL, MAY_FIRST))
    assert 'data-session="s1"' in body and 'data-session="s2"' in body and 'data-session="s3"' not in body
    assert body.index('data-session="s2"') < body.index('data-session="s1"')  # newest first
    for shown in ("2026-05-01 09:00:00", "2026-05-01 09:30:00", "kicked", "rtmp://push.example.com/live/cam1"):
        assert shown in body
    assert (
        'Sessions live between <time datetime="2026-05-01T00:00:00Z" class="utc">2026-05-01 00:00:00 UTC</time>'
        ' and <time datetime="2026-05-02T00:00:00Z" class="utc">2026-05-02 00:00:00 UTC</time>'
    ) in body
    assert 'value="2026-05-01T00:00"' in body  # the range stays in the form


def test_it_shows_the_last_day_by_default(client, owner):
    add_ingest(owner)
    publish("push.example.com", "live", "cam1", "s1")
    client.force_login(owner)
    assert 'data-session="s1"' in page(client.get(URL))


def test_it_shows_none_of_another_operators_history(client, outsider, sessions):
    client.force_login(outsider)
    body = page(client.get(URL, MAY_FIRST))
    assert "push.example.com" not in body and 'data-session="' not in body


def test_it_keeps_a_deleted_domains_sessions_out(client, owner, sessions):
    domain_services.delete_domain(domain_services.get_owned_domain(owner, "push.example.com"))
    client.force_login(owner)
    assert 'data-session="' not in page(client.get(URL, MAY_FIRST))


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"start_time": "2026-04-01T00:00", "end_time": "2026-05-02T00:00"}, "end_time", "must not exceed 30 days"),
        ({"start_time": "2026-05-02T00:00", "end_time": "2026-05-01T00:00"}, "end_time", "after the start time"),
        ({"start_time": "May 1st"}, "start_time", "from (utc) must be a date and time"),
        ({"domain": "theirs.example.net"}, "domain", "domain must be one of the listed choices"),
    ],
)
def test_it_names_the_field_of_a_bad_filter(client, owner, outsider, sessions, params, field, message):
    add_ingest(outsider, "theirs.example.net")
    client.force_login(owner)
    response = client.get(URL, params)
    assert_field_error(response, "form", field, message)
    assert 'data-session="' not in page(response)


def test_it_shows_an_srt_sessions_protocol_and_publish_url(client, owner):
    add_pair(owner)
    publish("push.example.com", "live", "cam1", "s1", protocol="srt")
    client.force_login(owner)
    body = page(client.get(URL))
    row = body[body.index('data-session="s1"') :].split("</tr>", 1)[0]
    assert '<div class="small text-muted">SRT</div>' in row
    assert "srt://push.example.com?streamid=#!::h=push.example.com,r=/live/cam1,m=publish" in row
    assert "RTMP" not in row and "rtmp://" not in row
