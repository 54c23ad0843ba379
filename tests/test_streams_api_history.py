"""GET /api/v1/streams/history/ (DescribeLiveStreamsPublishList)."""

import pytest

from tests.apisupport import client_for
from tests.pagesupport import add_ingest
from tests.streamsupport import add_pair, at, publish, unpublish

pytestmark = pytest.mark.django_db

URL = "/api/v1/streams/history/"
WINDOW = {"start_time": "2026-05-01T08:00:00Z", "end_time": "2026-05-01T12:00:00Z"}


@pytest.fixture
def sessions(owner):
    add_pair(owner)
    first = publish("push.example.com", "live", "cam1", "s1", started_at=at("2026-05-01T09:00:00"))
    unpublish(first, at("2026-05-01T09:30:00"), "kicked")
    publish("push.example.com", "live", "cam2", "s2", started_at=at("2026-05-01T10:00:00"))
    publish("push.example.com", "live", "old", "s0", started_at=at("2026-04-01T10:00:00"))


def test_it_lists_sessions_with_the_reference_fields(owner, sessions):
    response = client_for(owner).get(URL, WINDOW)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["session_id"] for r in results] == ["s0", "s1", "s2"]  # s0 is still live
    assert results[1] == {
        "domain_name": "play.example.com",
        "publish_domain": "push.example.com",
        "app_name": "live",
        "stream_name": "cam1",
        "stream_url": "push.example.com/live/cam1",
        "publish_url": "rtmp://push.example.com/live/cam1",
        "publish_time": "2026-05-01T09:00:00Z",
        "stop_time": "2026-05-01T09:30:00Z",
        "stop_reason": "kicked",
        "protocol": "rtmp",
        "client_addr": "203.0.113.5:50000",
        "client_ip": "203.0.113.5",
        "node": "node-1",
        "publish_type": "center",
        "server_ip": "",
        "center_node": "node-1",
        "session_id": "s1",
        "transcoded": False,
    }
    assert results[2]["stop_time"] is None


def test_it_orders_and_filters(owner, sessions):
    client = client_for(owner)
    desc = client.get(URL, {**WINDOW, "order_by": "publish_time_desc"}).json()["results"]
    assert [r["session_id"] for r in desc] == ["s2", "s1", "s0"]
    by_stream = client.get(URL, {**WINDOW, "stream": "cam", "domain": "push.example.com"}).json()["results"]
    assert [r["session_id"] for r in by_stream] == ["s1", "s2"]


def test_it_shows_an_outsider_none_of_the_owners_history(owner, outsider, sessions):
    assert client_for(outsider).get(URL, WINDOW).json()["count"] == 0
    response = client_for(outsider).get(URL, {**WINDOW, "domain": "play.example.com"})
    assert response.status_code == 400
    assert response.json() == {"domain": ["play.example.com is not one of your domains"]}


def test_it_refuses_anonymous(owner):
    assert client_for().get(URL).status_code in (401, 403)


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"start_time": "2026-04-01T00:00:00Z", "end_time": "2026-05-02T00:00:00Z"}, "end_time", "30 days"),
        ({"start_time": "2026-05-02T00:00:00Z", "end_time": "2026-05-01T00:00:00Z"}, "end_time", "after"),
        ({"start_time": "yesterday"}, "start_time", "Datetime has wrong format"),
        ({"order_by": "random"}, "order_by", "not a valid choice"),
        ({"domain": "nowhere.example.com"}, "domain", "not one of your domains"),
    ],
)
def test_it_names_a_bad_parameter(owner, params, field, message):
    add_ingest(owner)
    response = client_for(owner).get(URL, params)
    assert response.status_code == 400
    errors = response.json()
    assert list(errors) == [field]
    assert message in errors[field][0]
