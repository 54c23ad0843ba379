import html
import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from domains import services
from livecenter.media.liveurl import parse_srt_streamid
from livecenter.media.signing import verify
from tests.pagesupport import add_ingest, add_streaming, assert_field_error, assert_login_redirect, page

pytestmark = pytest.mark.django_db

URL = "/tools/url-generator/"
INGEST_IDS = ("url-ingest-rtmp", "url-ingest-srt", "url-ingest-rts", "url-ingest-whip")
PLAYBACK_IDS = (
    "url-playback-rtmp",
    "url-playback-flv",
    "url-playback-m3u8",
    "url-playback-rts",
    "url-playback-whep",
    "url-playback-srt",
)


@pytest.fixture
def pair(owner):
    ingest = add_ingest(owner)
    streaming = add_streaming(owner)
    services.associate_ingest(streaming, ingest.domain_name)
    streaming.refresh_from_db()
    return ingest, streaming


def urls_in(body: str) -> dict[str, str]:
    """The generated URLs by input id, as a browser would read them."""
    found = re.findall(r'<input type="text" [^>]*id="(url-[a-z]+-[a-z0-9]+)"[^>]*value="([^"]*)"', body)
    return {id_: html.unescape(value) for id_, value in found}


def check(url: str, domain, path: str | None = None) -> None:
    parts = urlsplit(url)
    auth_key = parse_qs(parts.query)["auth_key"][0]
    result = verify(path or parts.path, auth_key, domain.signing_keys(), domain.validity_seconds, time.time())
    assert result.ok, (url, result)


def test_it_requires_login(client):
    assert_login_redirect(client.get(URL), URL)
    assert_login_redirect(client.post(URL, {}), URL)


def test_it_offers_only_the_operators_domains(client, owner, outsider, pair):
    add_ingest(outsider, "theirs.example.net")
    client.force_login(owner)
    r = client.get(URL)
    assert r.status_code == 200
    body = page(r)
    for name in ("domain", "app", "stream", "template", "validity_minutes"):
        assert f'name="{name}"' in body and f'id="id_{name}"' in body
    assert '<option value="push.example.com">push.example.com (ingest domain)</option>' in body
    assert "theirs.example.net" not in body


def test_it_preselects_the_domain_from_the_query(client, owner, pair):
    client.force_login(owner)
    body = page(client.get(URL + "?domain=play.example.com"))
    assert '<option value="play.example.com" selected>' in body


def test_it_generates_signed_urls_that_verify(client, owner, pair):
    ingest, streaming = pair
    client.force_login(owner)
    r = client.post(URL, {"domain": "push.example.com", "app": "live", "stream": "cam1"})
    assert r.status_code == 200
    urls = urls_in(page(r))
    assert set(urls) == set(INGEST_IDS + PLAYBACK_IDS)
    assert urls["url-ingest-rtmp"].startswith("rtmp://push.example.com:1935/live/cam1?auth_key=")
    assert urls["url-ingest-srt"].startswith(
        "srt://push.example.com:1105?streamid=#!::h=push.example.com,r=/live/cam1?"
    )
    assert urls["url-playback-flv"].startswith("http://play.example.com:8080/live/cam1.flv?auth_key=")
    assert urls["url-playback-rts"].startswith("artc://play.example.com/live/cam1?auth_key=")
    assert urls["url-playback-whep"].startswith("http://play.example.com:8080/live/cam1.whep?auth_key=")
    assert urls["url-ingest-whip"].startswith("http://push.example.com:8080/live/cam1.whip?auth_key=")
    for id_ in ("url-ingest-rtmp", "url-ingest-rts"):
        check(urls[id_], ingest)
    check(urls["url-ingest-whip"], ingest, path="/live/cam1")  # RTS: signed over the bare path
    for id_ in ("url-playback-rtmp", "url-playback-flv", "url-playback-m3u8", "url-playback-rts"):
        check(urls[id_], streaming)
    check(urls["url-playback-whep"], streaming, path="/live/cam1")  # signed over the bare path
    # SRT playback: the streaming domain in h=, m=request, signed over the bare path with its key.
    sid = parse_srt_streamid(urls["url-playback-srt"].partition("streamid=")[2])
    assert urls["url-playback-srt"].startswith("srt://play.example.com:1105?streamid=#!::h=play.example.com,")
    assert (sid.host, sid.app, sid.stream, sid.mode) == ("play.example.com", "live", "cam1", "request")
    assert verify(sid.signed_uri, sid.auth_key, streaming.signing_keys(), streaming.validity_seconds, time.time()).ok
    # A URL for one domain does not verify with the other's key.
    rtmp = urls["url-ingest-rtmp"]
    assert not verify(
        "/live/cam1", parse_qs(urlsplit(rtmp).query)["auth_key"][0], streaming.signing_keys(), 86400, time.time()
    ).ok


def test_it_shows_copy_buttons_and_the_expiry(client, owner, pair):
    client.force_login(owner)
    before = int(time.time())
    body = page(
        client.post(URL, {"domain": "play.example.com", "app": "live", "stream": "cam1", "validity_minutes": "5"})
    )
    for id_ in INGEST_IDS + PLAYBACK_IDS:
        assert f'data-copy-target="{id_}"' in body
    assert "/static/js/copy.js" in body
    expires_at = int(re.search(r'data-expires-at="(\d+)"', body).group(1))
    assert before + 300 <= expires_at <= int(time.time()) + 300


def test_it_names_transcoded_streams_with_the_template(client, owner, pair):
    _, streaming = pair
    client.force_login(owner)
    r = client.post(URL, {"domain": "play.example.com", "app": "live", "stream": "cam1", "template": "lld"})
    urls = urls_in(page(r))
    assert urls["url-playback-m3u8"].startswith("http://play.example.com:8080/live/cam1_lld.m3u8?auth_key=")
    check(urls["url-playback-m3u8"], streaming)
    assert urls["url-ingest-rtmp"].startswith("rtmp://push.example.com:1935/live/cam1?")


def test_it_notes_a_missing_association(client, owner):
    add_ingest(owner)
    client.force_login(owner)
    body = page(client.post(URL, {"domain": "push.example.com", "app": "live", "stream": "cam1"}))
    assert "has no associated streaming domain, so there are no playback URLs" in body
    assert set(urls_in(body)) == set(INGEST_IDS)


def test_it_tells_srt_publishers_of_an_encrypted_ingest_domain_to_add_the_passphrase(client, owner, pair):
    ingest, _ = pair
    services.configure_srt(ingest, srt_passphrase="correct horse battery")
    client.force_login(owner)
    # From either side of the association.
    for name in ("push.example.com", "play.example.com"):
        body = page(client.post(URL, {"domain": name, "app": "live", "stream": "cam1"}))
        assert "SRT ingest to push.example.com is encrypted" in body
        assert "&amp;passphrase={your SRT passphrase, percent-encoded}" in body
        assert "&amp;pbkeylen=16, 24 or 32" in body
        assert "correct horse battery" not in body
        # The URL itself is unchanged: a publisher adds its own passphrase.
        assert "passphrase" not in urls_in(body)["url-ingest-srt"]


def test_it_has_no_srt_note_for_an_unencrypted_ingest_domain(client, owner, pair):
    client.force_login(owner)
    body = page(client.post(URL, {"domain": "push.example.com", "app": "live", "stream": "cam1"}))
    assert "passphrase" not in body


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"app": ""}, "app", "app name is required"),
        ({"app": "li ve"}, "app", "app name must be 1-255 letters, digits"),
        ({"stream": "a/b"}, "stream", "stream name must be 1-255 letters, digits"),
        ({"template": "no_underscore"}, "template", "transcoding template id must be 1-32 letters"),
        ({"validity_minutes": "0"}, "validity_minutes", "validity must be between 1 and"),
        ({"validity_minutes": "x"}, "validity_minutes", "validity must be a whole number"),
        ({"domain": "unknown.example.com"}, "domain", "domain must be one of the listed choices"),
    ],
)
def test_it_names_the_field_of_bad_input(client, owner, pair, changes, field, words):
    client.force_login(owner)
    r = client.post(URL, {"domain": "push.example.com", "app": "live", "stream": "cam1", **changes})
    assert_field_error(r, "form", field, words)
    assert urls_in(page(r)) == {}


def test_it_does_not_sign_for_an_outsiders_domain(client, owner, outsider, pair):
    client.force_login(outsider)
    r = client.post(URL, {"domain": "push.example.com", "app": "live", "stream": "cam1"})
    assert_field_error(r, "form", "domain", "domain must be one of the listed choices")
    assert urls_in(page(r)) == {}
    assert "push.example.com" not in page(r).split('id="url-generator-form"')[1]


def test_it_points_an_operator_without_domains_to_add_one(client, owner):
    client.force_login(owner)
    body = page(client.get(URL))
    assert 'id="no-domains"' in body and 'href="/domains/add/"' in body
