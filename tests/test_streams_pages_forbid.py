"""The forbid form, /streams/forbid/."""

import datetime as dt

import pytest
from django.utils import timezone

from livecenter.media.policy import StreamKey
from streams.models import ControlAction, StreamBlock, StreamControlEvent
from tests.pagesupport import add_ingest, assert_field_error, assert_login_redirect, page
from tests.streamsupport import FakeEngine

pytestmark = pytest.mark.django_db

URL = "/streams/forbid/"
STREAM = {"domain": "push.example.com", "app": "live", "stream": "cam1"}
KEY = StreamKey("push.example.com", "live", "cam1")


def assert_nothing_saved(engine: FakeEngine) -> None:
    assert not StreamBlock.objects.exists()
    assert not StreamControlEvent.objects.exists()
    assert engine.kicked == []


def test_it_requires_login(client, engine):
    assert_login_redirect(client.get(URL), URL)
    assert_login_redirect(client.post(URL, STREAM), URL)
    assert_nothing_saved(engine)


def test_it_fills_the_form_from_the_forbid_link(client, owner):
    add_ingest(owner)
    add_ingest(owner, "push2.example.com")
    client.force_login(owner)
    body = page(client.get(URL, {**STREAM, "domain": "push2.example.com"}))
    assert '<option value="push2.example.com" selected>' in body
    assert 'name="app" value="live"' in body and 'name="stream" value="cam1"' in body
    assert 'name="oneshot"' in body and 'type="datetime-local" name="resume_time"' in body
    assert "Empty: 183 days from now." in body


def test_it_forbids_a_stream(client, owner, engine):
    add_ingest(owner)
    client.force_login(owner)
    response = client.post(URL, STREAM, follow=True)
    assert response.redirect_chain == [("/streams/blocked/", 302)]
    block = StreamBlock.objects.get()
    until = f"{block.resume_at:%Y-%m-%d %H:%M:%S} UTC"
    message = f"Forbade push.example.com/live/cam1: its publisher was cut and publishing is refused until {until}."
    assert message in page(response)
    assert engine.kicked == [KEY]


def test_it_forbids_until_the_resume_time_given(client, owner, engine):
    add_ingest(owner)
    resume = (timezone.now() + dt.timedelta(days=3)).replace(second=0, microsecond=0)
    client.force_login(owner)
    client.post(URL, {**STREAM, "resume_time": f"{resume:%Y-%m-%dT%H:%M}"})
    assert StreamBlock.objects.get().resume_at == resume


def test_it_interrupts_only_this_once(client, owner, engine):
    add_ingest(owner)
    client.force_login(owner)
    response = client.post(URL, {**STREAM, "oneshot": "on"}, follow=True)
    assert response.redirect_chain == [("/streams/", 302)]
    assert "Interrupted push.example.com/live/cam1" in page(response)
    assert not StreamBlock.objects.exists()
    assert StreamControlEvent.objects.get().action == ControlAction.KICK
    assert engine.kicked == [KEY]


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"resume_time": "2020-01-01T00:00"}, "resume_time", "resume time must be in the future"),
        ({"resume_time": "tomorrow"}, "resume_time", "resume time (utc) must be a date and time"),
        ({"oneshot": "on", "resume_time": "2099-01-01T00:00"}, "resume_time", "takes no resume time"),
        ({"app": ""}, "app", "app name is required"),
        ({"stream": "cam 1"}, "stream", "stream name must be 1-255 letters, digits, '_' or '-'"),
        ({"domain": "theirs.example.net"}, "domain", "domain must be one of the listed choices"),
    ],
)
def test_it_names_the_field_of_bad_input_and_saves_nothing(client, owner, outsider, engine, changes, field, message):
    add_ingest(owner)
    add_ingest(outsider, "theirs.example.net")
    client.force_login(owner)
    response = client.post(URL, {**STREAM, **changes})
    assert_field_error(response, "form", field, message)
    assert_nothing_saved(engine)


def test_it_lets_no_outsider_forbid_the_owners_stream(client, owner, outsider, engine):
    add_ingest(owner)
    add_ingest(outsider, "theirs.example.net")
    client.force_login(outsider)
    body = page(client.get(URL, STREAM))
    assert "push.example.com" not in body
    response = client.post(URL, STREAM)
    assert_field_error(response, "form", "domain", "domain must be one of the listed choices")
    assert_nothing_saved(engine)


def test_it_says_to_add_an_ingest_domain_first(client, owner):
    client.force_login(owner)
    assert 'id="no-domains"' in page(client.get(URL))
