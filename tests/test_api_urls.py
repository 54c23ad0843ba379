import datetime as dt
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from domains import services
from livecenter.media.liveurl import parse_srt_streamid
from livecenter.media.signing import AuthFailure, verify
from tests.apisupport import add_ingest, add_streaming, client_for

pytestmark = pytest.mark.django_db

URL = "/api/v1/urls/"


@pytest.fixture
def pair(owner):
    ingest, streaming = add_ingest(owner), add_streaming(owner)
    services.configure_url_signing(ingest, primary_key="ingestKey1", validity_minutes=60)
    services.configure_url_signing(streaming, primary_key="playKey1", secondary_key="playKey2", validity_minutes=30)
    services.associate_ingest(streaming, ingest.domain_name)
    ingest.refresh_from_db()
    streaming.refresh_from_db()
    return ingest, streaming


def auth_key(url: str) -> str:
    return parse_qs(urlsplit(url).query)["auth_key"][0]


def check(url: str, uri: str, domain, now: float | None = None):
    now = time.time() if now is None else now
    return verify(uri, auth_key(url), domain.signing_keys(), domain.validity_seconds, now)


def test_it_generates_signed_urls_from_the_ingest_domain(owner, pair):
    ingest, streaming = pair
    before = int(time.time())
    response = client_for(owner).post(
        URL, {"domain": "push.example.com", "app": "live", "stream": "cam1"}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["ingest_domain"] == "push.example.com"
    assert body["streaming_domain"] == "play.example.com"
    assert (body["app"], body["stream"], body["template"]) == ("live", "cam1", None)
    assert body["notes"] == []
    assert set(body["ingest"]) == {"rtmp", "srt", "rts", "whip"}
    assert set(body["playback"]) == {"rtmp", "flv", "m3u8", "rts", "whep", "srt"}
    assert body["ingest"]["rtmp"].startswith("rtmp://push.example.com:1935/live/cam1?auth_key=")
    assert body["ingest"]["srt"].startswith(
        "srt://push.example.com:1105?streamid=#!::h=push.example.com,r=/live/cam1?auth_key="
    )
    assert body["ingest"]["srt"].endswith(",m=publish")
    assert body["ingest"]["whip"].startswith("http://push.example.com:8080/live/cam1.whip?auth_key=")
    assert body["playback"]["flv"].startswith("http://play.example.com:8080/live/cam1.flv?auth_key=")
    assert body["playback"]["m3u8"].startswith("http://play.example.com:8080/live/cam1.m3u8?auth_key=")
    assert body["playback"]["rts"].startswith("artc://play.example.com/live/cam1?auth_key=")
    assert body["playback"]["whep"].startswith("http://play.example.com:8080/live/cam1.whep?auth_key=")
    assert body["playback"]["srt"].startswith(
        "srt://play.example.com:1105?streamid=#!::h=play.example.com,r=/live/cam1?auth_key="
    )
    assert body["playback"]["srt"].endswith(",m=request")
    # URLs expire after the domain's validity, by default the ingest domain's.
    expires = dt.datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert expires.tzinfo is not None and expires.utcoffset() == dt.timedelta(0)
    assert before + 60 * 60 <= expires.timestamp() <= time.time() + 60 * 60


def test_it_signs_urls_that_the_media_node_accepts(owner, pair):
    ingest, streaming = pair
    body = client_for(owner).post(URL, {"domain": "push.example.com", "app": "live", "stream": "cam1"}).json()
    assert check(body["ingest"]["rtmp"], "/live/cam1", ingest).ok
    # WHIP is RTS: signed over the bare path, the artc:// form's token.
    assert check(body["ingest"]["whip"], "/live/cam1", ingest).ok
    assert auth_key(body["ingest"]["whip"]) == auth_key(body["ingest"]["rts"])
    assert check(body["playback"]["rtmp"], "/live/cam1", streaming).ok
    assert check(body["playback"]["flv"], "/live/cam1.flv", streaming).ok
    assert check(body["playback"]["m3u8"], "/live/cam1.m3u8", streaming).ok
    assert check(body["playback"]["whep"], "/live/cam1", streaming).ok
    sid = parse_srt_streamid(body["playback"]["srt"].partition("streamid=")[2])
    assert verify(sid.signed_uri, sid.auth_key, streaming.signing_keys(), streaming.validity_seconds, time.time()).ok
    # The FLV token is for the FLV path only.
    assert check(body["playback"]["flv"], "/live/cam1", streaming).failure is AuthFailure.BAD_HASH


def test_it_generates_the_same_from_the_streaming_domain(owner, pair):
    body = client_for(owner).post(URL, {"domain": "play.example.com", "app": "live", "stream": "cam1"}).json()
    assert body["ingest_domain"] == "push.example.com"
    assert body["streaming_domain"] == "play.example.com"
    assert check(body["ingest"]["rtmp"], "/live/cam1", pair[0]).ok


def test_it_names_the_transcoded_stream_with_the_template(owner, pair):
    ingest, streaming = pair
    body = {"domain": "push.example.com", "app": "live", "stream": "cam1", "template": "lld"}
    data = client_for(owner).post(URL, body, format="json").json()
    assert data["template"] == "lld"
    assert data["ingest"]["rtmp"].startswith("rtmp://push.example.com:1935/live/cam1?")
    assert data["playback"]["rtmp"].startswith("rtmp://play.example.com:1935/live/cam1_lld?")
    assert data["playback"]["flv"].startswith("http://play.example.com:8080/live/cam1_lld.flv?")
    assert check(data["playback"]["rtmp"], "/live/cam1_lld", streaming).ok
    assert check(data["playback"]["flv"], "/live/cam1_lld.flv", streaming).ok


def test_it_expires_urls_after_the_validity_asked_for(owner, pair):
    ingest, streaming = pair
    body = {"domain": "push.example.com", "app": "live", "stream": "cam1", "validity_minutes": 5}
    data = client_for(owner).post(URL, body, format="json").json()
    expires = dt.datetime.fromisoformat(data["expires_at"].replace("Z", "+00:00")).timestamp()
    assert abs(expires - (time.time() + 300)) < 5
    flv = data["playback"]["flv"]
    assert check(flv, "/live/cam1.flv", streaming, now=expires - 1).ok
    assert check(flv, "/live/cam1.flv", streaming, now=expires + 1).failure is AuthFailure.EXPIRED


def test_it_verifies_with_the_secondary_key_after_rotation(owner, pair):
    ingest, streaming = pair
    data = client_for(owner).post(URL, {"domain": "play.example.com", "app": "live", "stream": "cam1"}).json()
    # Rotate: the old primary becomes the secondary; a live URL keeps working.
    services.configure_url_signing(streaming, primary_key="playKey3", secondary_key="playKey1")
    streaming.refresh_from_db()
    assert check(data["playback"]["flv"], "/live/cam1.flv", streaming).ok


def test_it_leaves_urls_unsigned_when_signing_is_off(owner, pair):
    services.configure_url_signing(pair[1], enabled=False)
    data = client_for(owner).post(URL, {"domain": "play.example.com", "app": "live", "stream": "cam1"}).json()
    assert data["playback"]["flv"] == "http://play.example.com:8080/live/cam1.flv"
    assert "auth_key=" in data["ingest"]["rtmp"]


def test_it_says_why_a_side_is_missing(owner):
    add_ingest(owner)
    data = client_for(owner).post(URL, {"domain": "push.example.com", "app": "live", "stream": "cam1"}).json()
    assert data["streaming_domain"] is None
    assert data["playback"] == {}
    assert data["notes"] == ["push.example.com has no associated streaming domain, so there are no playback URLs."]


def test_it_generates_from_query_parameters_too(owner, pair):
    response = client_for(owner).get(
        URL, {"domain": "push.example.com", "app": "live", "stream": "cam1", "template": "hd", "validity_minutes": "10"}
    )
    assert response.status_code == 200
    assert "/live/cam1_hd.flv?" in response.json()["playback"]["flv"]


def test_it_lets_format_choose_the_renderer_on_get(owner, pair):
    params = {"domain": "push.example.com", "app": "live", "stream": "cam1", "format": "json"}
    response = client_for(owner).get(URL, params)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"app": "li/ve"}, "app", "app name must be 1-255 letters, digits, '_' or '-'"),
        ({"app": ""}, "app", "app name must be"),
        ({"stream": "cam 1"}, "stream", "stream name must be 1-255 letters, digits, '_' or '-'"),
        ({"template": "h_d"}, "template", "transcoding template id must be 1-32 letters, digits or '-'"),
        ({"validity_minutes": 0}, "validity_minutes", "validity must be between 1 and"),
        ({"validity_minutes": "an hour"}, "validity_minutes", "A valid integer is required."),
        ({"domain": "nothing.example.com"}, "domain", "nothing.example.com is not one of your domains"),
        ({"domain": "*.example.com"}, "domain", "*.example.com is not one of your domains"),
        ({"domain": ""}, "domain", "This field may not be blank."),
        ({"stream_name": "cam1"}, "stream_name", "unknown field"),
    ],
)
def test_it_rejects_bad_input_naming_the_field(owner, pair, change, field, message):
    body = {"domain": "push.example.com", "app": "live", "stream": "cam1", **change}
    response = client_for(owner).post(URL, body, format="json")
    assert response.status_code == 400
    assert message in response.json()[field][0]


def test_it_names_every_missing_field(owner):
    response = client_for(owner).post(URL, {}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"domain", "app", "stream"}


def test_it_treats_the_owners_domain_as_unknown_to_an_outsider(owner, outsider, pair):
    response = client_for(outsider).post(URL, {"domain": "push.example.com", "app": "live", "stream": "cam1"})
    assert response.status_code == 400
    assert response.json() == {"domain": ["push.example.com is not one of your domains"]}
    assert "auth_key" not in response.content.decode()


@pytest.mark.parametrize("method", ["get", "post"])
def test_it_refuses_anonymous(owner, pair, method):
    response = getattr(client_for(), method)(URL, {"domain": "push.example.com", "app": "live", "stream": "cam1"})
    assert response.status_code in (401, 403)
    assert "auth_key" not in response.content.decode()
