"""POST /api/v1/streams/forbid/ and /api/v1/streams/resume/
(ForbidLiveStream, ResumeLiveStream)."""

import datetime as dt

import pytest
from django.utils import timezone

from livecenter.media.policy import StreamKey
from streams.models import StreamBlock, StreamControlEvent
from tests.apisupport import client_for
from tests.pagesupport import add_ingest
from tests.streamsupport import add_pair

pytestmark = pytest.mark.django_db

FORBID = "/api/v1/streams/forbid/"
RESUME = "/api/v1/streams/resume/"
STREAM = {"domain": "push.example.com", "app": "live", "stream": "cam1"}
KEY = StreamKey("push.example.com", "live", "cam1")


def snapshot() -> tuple:
    return list(StreamBlock.objects.values()), list(StreamControlEvent.objects.values())


def test_it_forbids_a_stream_and_kicks_its_publisher(owner, engine):
    add_pair(owner)
    response = client_for(owner).post(FORBID, {**STREAM, "domain": "play.example.com"}, format="json")
    assert response.status_code == 200
    body = response.json()
    block = StreamBlock.objects.get()
    assert body == {
        "domain_name": "push.example.com",
        "app_name": "live",
        "stream_name": "cam1",
        "oneshot": False,
        "resume_time": block.resume_at.isoformat().replace("+00:00", "Z"),
    }
    assert engine.kicked == [KEY]


def test_it_forbids_until_the_resume_time_given(owner, engine):
    add_ingest(owner)
    resume = (timezone.now() + dt.timedelta(days=1)).replace(microsecond=0)
    response = client_for(owner).post(
        FORBID, {**STREAM, "resume_time": resume.isoformat().replace("+00:00", "Z")}, format="json"
    )
    assert response.status_code == 200
    assert StreamBlock.objects.get().resume_at == resume


def test_it_interrupts_only_this_once(owner, engine):
    add_ingest(owner)
    response = client_for(owner).post(FORBID, {**STREAM, "oneshot": True}, format="json")
    assert response.status_code == 200
    assert response.json()["oneshot"] is True and response.json()["resume_time"] is None
    assert not StreamBlock.objects.exists()
    assert engine.kicked == [KEY]


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"resume_time": "2020-01-01T00:00:00Z"}, "resume_time", "resume time must be in the future"),
        ({"resume_time": "soon"}, "resume_time", "Datetime has wrong format"),
        ({"oneshot": True, "resume_time": "2099-01-01T00:00:00Z"}, "resume_time", "takes no resume time"),
        ({"oneshot": "sometimes"}, "oneshot", "Must be a valid boolean"),
        ({"app": ""}, "app", "app name is required"),
        ({"stream": "a b"}, "stream", "stream name must be"),
        ({"domain": "nowhere.example.com"}, "domain", "nowhere.example.com is not one of your domains"),
        ({"live_stream_type": "publisher"}, "live_stream_type", "unknown field"),
    ],
)
def test_it_names_the_field_of_bad_input_and_saves_nothing(owner, engine, changes, field, message):
    add_ingest(owner)
    response = client_for(owner).post(FORBID, {**STREAM, **changes}, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert list(errors) == [field]
    assert message in errors[field][0]
    assert snapshot() == ([], [])
    assert engine.kicked == []


def test_it_requires_the_stream_fields(owner, engine):
    response = client_for(owner).post(FORBID, {}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"domain", "app", "stream"}


def test_it_resumes_a_stream(owner, engine):
    add_ingest(owner)
    client = client_for(owner)
    client.post(FORBID, STREAM, format="json")
    response = client.post(RESUME, STREAM, format="json")
    assert response.status_code == 200
    assert response.json() == {
        "domain_name": "push.example.com",
        "app_name": "live",
        "stream_name": "cam1",
        "resumed": 1,
    }
    assert not StreamBlock.objects.exists()
    again = client.post(RESUME, {**STREAM, "app": "*"}, format="json")
    assert again.json()["resumed"] == 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"app": "a b"}, "app"), ({"stream": ""}, "stream"), ({"domain": "x.example.com"}, "domain"), ({"x": 1}, "x")],
)
def test_it_names_the_field_of_a_bad_resume(owner, engine, changes, field):
    add_ingest(owner)
    client_for(owner).post(FORBID, STREAM, format="json")
    before = snapshot()
    response = client_for(owner).post(RESUME, {**STREAM, **changes}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert snapshot() == before


def test_it_lets_no_outsider_forbid_or_resume(owner, outsider, engine):
    add_ingest(owner)
    client_for(owner).post(FORBID, STREAM, format="json")
    before = snapshot()
    for url in (FORBID, RESUME):
        response = client_for(outsider).post(url, STREAM, format="json")
        assert response.status_code == 400
        assert response.json() == {"domain": ["push.example.com is not one of your domains"]}
    assert snapshot() == before
    assert engine.kicked == [KEY]  # the owner's forbid only


def test_it_refuses_anonymous(owner, engine):
    add_ingest(owner)
    for url in (FORBID, RESUME):
        assert client_for().post(url, STREAM, format="json").status_code in (401, 403)
    assert snapshot() == ([], [])
    assert engine.kicked == []
