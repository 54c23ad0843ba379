"""The forbidden streams page, /streams/blocked/, and its Resume buttons."""

import datetime as dt

import pytest
from django.utils import timezone

from streams import services
from streams.models import StreamBlock, StreamControlEvent
from tests.pagesupport import add_ingest, assert_login_redirect, page

pytestmark = pytest.mark.django_db

URL = "/streams/blocked/"
RESUME = "/streams/resume/"
STREAM = {"domain": "push.example.com", "app": "live", "stream": "cam1"}


@pytest.fixture
def blocked(owner):
    add_ingest(owner)
    add_ingest(owner, "push2.example.com")
    resume = timezone.now() + dt.timedelta(days=2)
    services.forbid_stream(owner, "push.example.com", "live", "cam1", resume_at=resume)
    services.forbid_stream(owner, "push2.example.com", "live", "cam2")
    return resume


def test_it_requires_login(client):
    assert_login_redirect(client.get(URL), URL)
    assert_login_redirect(client.post(RESUME, STREAM), RESUME)


def test_it_lists_forbidden_streams_with_resume_buttons(client, owner, blocked):
    client.force_login(owner)
    body = page(client.get(URL))
    assert 'data-stream="push.example.com/live/cam1"' in body
    assert 'data-stream="push2.example.com/live/cam2"' in body
    assert f"{blocked:%Y-%m-%d %H:%M}" in body
    assert 'action="/streams/resume/"' in body
    assert '<input type="hidden" name="stream" value="cam1">' in body
    assert 'id="control-history"' in body and "until " in body


def test_it_filters_by_domain(client, owner, blocked):
    client.force_login(owner)
    body = page(client.get(URL, {"domain": "push2.example.com"}))
    assert "push2.example.com/live/cam2" in body and "push.example.com/live/cam1" not in body


def test_it_shows_none_of_another_operators_blocks(client, outsider, blocked):
    client.force_login(outsider)
    body = page(client.get(URL))
    assert 'id="no-blocked"' in body
    assert "push.example.com" not in body


def test_it_resumes_a_stream(client, owner, blocked):
    client.force_login(owner)
    response = client.post(RESUME, STREAM, follow=True)
    assert response.redirect_chain == [("/streams/blocked/", 302)]
    body = page(response)
    assert "Resumed push.example.com/live/cam1: it may publish again." in body
    assert not StreamBlock.objects.filter(stream="cam1").exists()
    assert StreamBlock.objects.filter(stream="cam2").exists()


def test_it_says_when_a_stream_was_not_forbidden(client, owner, blocked):
    client.force_login(owner)
    body = page(client.post(RESUME, {**STREAM, "stream": "cam7"}, follow=True))
    assert "push.example.com/live/cam7 was not forbidden." in body


def test_it_lets_no_outsider_resume_the_owners_stream(client, outsider, blocked):
    client.force_login(outsider)
    events = StreamControlEvent.objects.count()
    body = page(client.post(RESUME, STREAM, follow=True))
    assert "push.example.com is not one of your domains" in body
    assert StreamBlock.objects.count() == 2
    assert StreamControlEvent.objects.count() == events


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"app": ""}, "app name is required"), ({"stream": "a b"}, "stream name must be 1-255 letters")],
)
def test_it_names_the_field_of_a_bad_resume(client, owner, blocked, changes, message):
    client.force_login(owner)
    body = page(client.post(RESUME, {**STREAM, **changes}, follow=True))
    assert message in body
    assert StreamBlock.objects.count() == 2


def test_it_resumes_only_on_post(client, owner, blocked):
    client.force_login(owner)
    assert client.get(RESUME, STREAM).status_code == 405
    assert StreamBlock.objects.count() == 2
