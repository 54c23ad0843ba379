"""The Go live page, /domains/<ingest-domain>/go-live/ (issue 17), and the
links to it: the WHIP URL it publishes to is the URL generator's, signed with
the ingest domain's key; only the domain's owner sees it."""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from domains import services
from livecenter.media.signing import verify
from tests.pagesupport import add_ingest, assert_login_redirect, page
from tests.streamsupport import add_pair

pytestmark = pytest.mark.django_db

URL = "/domains/push.example.com/go-live/"
QUERY = {"app": "live", "stream": "cam1"}


def target(response) -> dict:
    body = page(response)
    opening = '<script id="golive-target" type="application/json">'
    start = body.index(opening) + len(opening)
    return json.loads(body[start : body.index("</script>", start)])


def token(url: str) -> str:
    return parse_qs(urlsplit(url).query)["auth_key"][0]


def test_it_requires_login(client):
    assert_login_redirect(client.get(URL), URL)


def test_it_shows_the_form_without_a_query(client, owner):
    add_pair(owner)
    client.force_login(owner)
    response = client.get(URL)
    assert response.status_code == 200
    body = page(response)
    assert 'id="golive-form"' in body and 'name="app"' in body and 'name="stream"' in body
    assert 'id="golive-preview"' not in body and "golive.js" not in body


def test_it_gives_the_page_the_whip_url_signed_with_the_ingest_domains_key(client, owner, settings):
    settings.LIVECENTER_PLAYER_MEDIA_HOST = ""  # DNS in place: the domain's own name
    push, _ = add_pair(owner)
    client.force_login(owner)
    response = client.get(URL, QUERY)
    assert response.status_code == 200
    config = target(response)
    assert config["whip"].startswith("http://push.example.com:8080/live/cam1.whip?auth_key=")
    assert (config["ingest_domain"], config["streaming_domain"], config["stream"]) == (
        "push.example.com",
        "play.example.com",
        "/live/cam1",
    )
    # RTS is signed like RTMP, over /{app}/{stream} (DESIGN.md, URL signing),
    # and only with the ingest domain's key.
    result = verify("/live/cam1", token(config["whip"]), push.signing_keys(), push.validity_seconds, time.time())
    assert result.ok, result
    assert abs(result.expires_at - config["expires_at"]) <= 1
    assert not verify("/live/cam2", token(config["whip"]), push.signing_keys(), push.validity_seconds, time.time()).ok
    body = page(response)
    for element in ("golive-preview", "golive-source-camera", "golive-source-screen", "golive-start", "golive-stop",
                    "golive-error", "golive-state", "golive-connection", "golive-resolution", "golive-fps",
                    "golive-bitrate", "golive-video-codec", "golive-audio-codec"):  # fmt: skip
        assert f'id="{element}"' in body, element
    assert "js/golive.js" in body


def test_it_links_the_player_of_the_associated_streaming_domain(client, owner):
    add_pair(owner)
    client.force_login(owner)
    response = client.get(URL, QUERY)
    assert target(response)["player"] == "/player/?domain=play.example.com&app=live&stream=cam1"
    assert 'id="golive-player-link" href="/player/?domain=play.example.com&amp;app=live&amp;stream=cam1"' in page(
        response
    )


def test_it_has_no_player_link_without_a_streaming_domain(client, owner):
    add_ingest(owner)
    client.force_login(owner)
    response = client.get(URL, QUERY)
    assert response.status_code == 200
    assert target(response)["player"] is None
    body = page(response)
    assert 'id="golive-player-link"' not in body
    assert "push.example.com has no associated streaming domain" in body


def test_it_sends_the_whip_url_to_the_configured_media_host_naming_the_ingest_domain(client, owner, settings):
    settings.LIVECENTER_PLAYER_MEDIA_HOST = "127.0.0.1"
    settings.LIVECENTER_HTTP_PORT = 18080
    push, _ = add_pair(owner)
    client.force_login(owner)
    whip = target(client.get(URL, QUERY))["whip"]
    assert whip.startswith("http://127.0.0.1:18080/live/cam1.whip?auth_key=")
    assert whip.endswith("&domain=push.example.com")
    assert verify("/live/cam1", token(whip), push.signing_keys(), push.validity_seconds, time.time()).ok


def test_it_publishes_over_https_to_an_ingest_domain_with_https_on(client, owner, certificate_factory, settings):
    settings.LIVECENTER_PLAYER_MEDIA_HOST = "127.0.0.1"
    push, _ = add_pair(owner)
    services.upload_certificate(push, *certificate_factory(["push.example.com"]))
    push.refresh_from_db()
    assert push.https_enabled
    client.force_login(owner)
    # The certificate is chosen by, and checked against, the name in the URL.
    assert target(client.get(URL, QUERY))["whip"].startswith("https://push.example.com:443/live/cam1.whip?auth_key=")


def test_it_is_a_404_for_another_operators_domain(client, owner, outsider):
    add_pair(owner)
    add_ingest(outsider, "theirs.example.net")
    client.force_login(outsider)
    assert client.get(URL, QUERY).status_code == 404
    assert client.get(URL).status_code == 404
    client.force_login(owner)
    assert client.get("/domains/theirs.example.net/go-live/", QUERY).status_code == 404


def test_it_is_a_404_for_a_missing_or_a_streaming_domain(client, owner):
    add_pair(owner)
    client.force_login(owner)
    assert client.get("/domains/nothing.example.com/go-live/", QUERY).status_code == 404
    assert client.get("/domains/play.example.com/go-live/", QUERY).status_code == 404


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"app": ""}, "app", "app name is required"),
        ({"app": "li ve"}, "app", "app name must be 1-255 letters, digits"),
        ({"stream": "a/b"}, "stream", "stream name must be 1-255 letters, digits"),
    ],
)
def test_it_names_the_field_of_a_bad_query(client, owner, changes, field, words):
    add_pair(owner)
    client.force_login(owner)
    response = client.get(URL, {**QUERY, **changes})
    assert response.status_code == 400
    assert any(words in error for error in response.context["form"].errors[field])
    assert 'id="golive-target"' not in page(response)


def test_it_logs_no_auth_key(client, owner, caplog):
    add_pair(owner)
    client.force_login(owner)
    with caplog.at_level(logging.DEBUG):
        whip = target(client.get(URL, QUERY))["whip"]
        client.get(URL, {"app": "li ve", "stream": "cam1"})
    secret = token(whip)
    assert secret not in caplog.text
    assert secret.rsplit("-", 1)[1] not in caplog.text  # nor its hash alone


def test_the_url_generator_and_the_domain_tabs_link_it(client, owner):
    add_pair(owner)
    client.force_login(owner)
    body = page(client.post("/tools/url-generator/", {"domain": "play.example.com", "app": "live", "stream": "cam1"}))
    assert 'id="go-live-link" href="/domains/push.example.com/go-live/?app=live&amp;stream=cam1"' in body
    assert 'id="go-live-tab" href="/domains/push.example.com/go-live/"' in page(
        client.get("/domains/push.example.com/")
    )
    # A streaming domain has no Go live of its own.
    assert 'id="go-live-tab"' not in page(client.get("/domains/play.example.com/"))
    # The page marks its own tab.
    assert 'class="nav-link active" id="go-live-tab"' in page(client.get(URL))
