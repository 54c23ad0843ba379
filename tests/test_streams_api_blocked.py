"""GET /api/v1/streams/blocked/ and /api/v1/streams/control-history/
(DescribeLiveStreamsBlockList, DescribeLiveStreamsControlHistory)."""

import datetime as dt

import pytest
from django.utils import timezone

from streams import services
from tests.apisupport import client_for
from tests.pagesupport import add_ingest

pytestmark = pytest.mark.django_db

BLOCKED = "/api/v1/streams/blocked/"
HISTORY = "/api/v1/streams/control-history/"


@pytest.fixture
def forbidden(owner, outsider):
    add_ingest(owner)
    add_ingest(owner, "push2.example.com")
    add_ingest(outsider, "theirs.example.com")
    resume = (timezone.now() + dt.timedelta(days=1)).replace(microsecond=0)
    services.forbid_stream(owner, "push.example.com", "live", "cam1", resume_at=resume)
    services.forbid_stream(owner, "push2.example.com", "live", "cam2")
    services.resume_stream(owner, "push2.example.com", "live", "cam2")
    services.forbid_stream(owner, "push2.example.com", "live", "cam3", oneshot=True)
    services.forbid_stream(outsider, "theirs.example.com", "live", "cam9")
    return resume


def test_it_lists_the_operators_forbidden_streams(owner, forbidden):
    response = client_for(owner).get(BLOCKED)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    row = body["results"][0]
    assert row == {
        "domain_name": "push.example.com",
        "app_name": "live",
        "stream_name": "cam1",
        "stream_url": "push.example.com/live/cam1",
        "resume_time": forbidden.isoformat().replace("+00:00", "Z"),
        "forbidden_at": row["forbidden_at"],
        "forbidden_by": "owner",
    }
    assert client_for(owner).get(BLOCKED, {"domain": "push2.example.com"}).json()["count"] == 0


def test_it_lists_the_operators_control_history(owner, forbidden):
    response = client_for(owner).get(HISTORY)
    assert response.status_code == 200
    rows = response.json()["results"]
    assert [(r["action"], r["stream_name"]) for r in rows] == [
        ("kick", "cam3"),
        ("resume", "cam2"),
        ("forbid", "cam2"),
        ("forbid", "cam1"),
    ]
    assert set(rows[0]) == {"action", "domain_name", "app_name", "stream_name", "time_stamp", "by", "detail"}
    assert rows[0]["by"] == "owner"
    only = client_for(owner).get(HISTORY, {"domain": "push.example.com"}).json()["results"]
    assert [r["stream_name"] for r in only] == ["cam1"]


@pytest.mark.parametrize("url", [BLOCKED, HISTORY])
def test_it_shows_an_outsider_only_their_own(outsider, forbidden, url):
    rows = client_for(outsider).get(url).json()["results"]
    assert [r["stream_name"] for r in rows] == ["cam9"]
    response = client_for(outsider).get(url, {"domain": "push.example.com"})
    assert response.status_code == 400
    assert response.json() == {"domain": ["push.example.com is not one of your domains"]}


@pytest.mark.parametrize("url", [BLOCKED, HISTORY])
def test_it_refuses_anonymous(forbidden, url):
    assert client_for().get(url).status_code in (401, 403)


@pytest.mark.parametrize("url", [BLOCKED, HISTORY])
def test_it_names_an_unknown_parameter(owner, url):
    response = client_for(owner).get(url, {"domain_name": "push.example.com"})
    assert response.status_code == 400
    assert list(response.json()) == ["domain_name"]
