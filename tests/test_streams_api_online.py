"""GET /api/v1/streams/online/ (DescribeLiveStreamsOnlineList)."""

import pytest

from tests.apisupport import client_for
from tests.pagesupport import add_ingest
from tests.streamsupport import HD_INFO, add_pair, at, publish, unpublish

pytestmark = pytest.mark.django_db

URL = "/api/v1/streams/online/"


def test_it_lists_a_live_stream_with_the_reference_fields(owner):
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
    response = client_for(owner).get(URL)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    assert body["results"][0] == {
        "domain_name": "play.example.com",
        "publish_domain": "push.example.com",
        "app_name": "live",
        "stream_name": "cam1",
        "publish_time": "2026-05-01T10:00:00Z",
        "publish_url": "rtmp://push.example.com/live/cam1",
        "protocol": "rtmp",
        "client_ip": "203.0.113.5",
        "client_addr": "203.0.113.5:50000",
        "node": "node-1",
        "publish_type": "center",
        "server_ip": "",
        "center_node": "node-1",
        "session_id": "s1",
        "video_codec": "H264",
        "video_profile": "High",
        "video_data_rate": 2012,
        "frame_rate": pytest.approx(29.97),
        "width": 1280,
        "height": 720,
        "audio_codec": "AAC",
        "audio_data_rate": 128,
        "audio_sample_rate": 44100,
        "audio_channels": 2,
        "has_bframes": False,
        "transcoded": False,
    }


def test_it_gives_no_streaming_domain_when_the_ingest_domain_has_none(owner):
    add_ingest(owner)
    publish("push.example.com", "live", "cam1", "s1")
    row = client_for(owner).get(URL).json()["results"][0]
    assert row["domain_name"] is None and row["publish_domain"] == "push.example.com"


def test_it_leaves_out_stopped_streams(owner):
    add_ingest(owner)
    unpublish(publish("push.example.com", "live", "cam1", "s1"), at("2026-05-01T11:00:00"))
    assert client_for(owner).get(URL).json()["count"] == 0


def test_it_filters_by_domain_app_and_stream(owner):
    add_pair(owner)
    add_ingest(owner, "push2.example.com")
    publish("push.example.com", "live", "cam1", "s1")
    publish("push.example.com", "live", "cam10", "s2")
    publish("push2.example.com", "live", "cam1", "s3")
    client = client_for(owner)

    def ids(**params):
        return sorted(r["session_id"] for r in client.get(URL, params).json()["results"])

    assert ids(domain="play.example.com") == ["s1", "s2"]
    assert ids(domain="push2.example.com") == ["s3"]
    assert ids(stream="cam1") == ["s1", "s2", "s3"]
    assert ids(stream="cam1", query_type="strict", app="live") == ["s1", "s3"]


def test_it_shows_an_outsider_none_of_the_owners_streams(owner, outsider):
    add_ingest(owner)
    publish("push.example.com", "live", "cam1", "s1")
    assert client_for(outsider).get(URL).json()["count"] == 0
    response = client_for(outsider).get(URL, {"domain": "push.example.com"})
    assert response.status_code == 400
    assert response.json() == {"domain": ["push.example.com is not one of your domains"]}


def test_it_refuses_anonymous(owner):
    assert client_for().get(URL).status_code in (401, 403)


@pytest.mark.parametrize(
    ("params", "field"),
    [({"query_type": "exact"}, "query_type"), ({"stream_name": "cam1"}, "stream_name")],
)
def test_it_names_a_bad_parameter(owner, params, field):
    response = client_for(owner).get(URL, params)
    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_it_passes_drf_parameters_through(owner):
    add_ingest(owner)
    publish("push.example.com", "live", "cam1", "s1")
    assert client_for(owner).get(URL, {"page": 1, "format": "json"}).json()["count"] == 1


def test_it_gives_an_srt_streams_protocol_and_publish_url(owner):
    add_pair(owner)
    publish("push.example.com", "live", "cam1", "s1", protocol="srt", client_addr="[2001:db8::5]:40000")
    result = client_for(owner).get(URL).json()["results"][0]
    assert result["protocol"] == "srt"
    assert result["publish_url"] == "srt://push.example.com?streamid=#!::h=push.example.com,r=/live/cam1,m=publish"
    assert (result["client_ip"], result["client_addr"]) == ("2001:db8::5", "[2001:db8::5]:40000")
