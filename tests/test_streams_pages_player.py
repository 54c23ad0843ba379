"""The web player page, /player/, and the links to it."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from livecenter.media.signing import verify
from streams.player import via_media_host
from tests.pagesupport import add_ingest, add_streaming, assert_login_redirect, page
from tests.streamsupport import add_pair, publish

pytestmark = pytest.mark.django_db

URL = "/player/"
QUERY = {"domain": "push.example.com", "app": "live", "stream": "cam1"}


def sources(response) -> dict:
    body = page(response)
    start = body.index('<script id="player-sources" type="application/json">') + len(
        '<script id="player-sources" type="application/json">'
    )
    return json.loads(body[start : body.index("</script>", start)])


def token(url: str) -> str:
    return parse_qs(urlsplit(url).query)["auth_key"][0]


def test_it_signs_the_whep_url_over_the_stream_path_and_leaves_it_out_where_rts_is_off(client, owner):
    from domains import services

    _, play = add_pair(owner)
    client.force_login(owner)
    config = sources(client.get(URL, QUERY))
    # RTS is signed like RTMP, over /{app}/{stream} (DESIGN.md, URL signing).
    assert verify("/live/cam1", token(config["rts"]), [play.auth_primary_key], play.validity_seconds, time.time()).ok
    services.set_switches(play, rts_enabled=False)
    assert sources(client.get(URL, QUERY))["rts"] is None


def test_it_gives_the_player_https_urls_for_a_streaming_domain_with_https_on(
    client, owner, certificate_factory, settings
):
    from domains import services

    settings.LIVECENTER_PLAYER_MEDIA_HOST = "127.0.0.1"
    _, play = add_pair(owner)
    services.set_switches(play, rts_enabled=True)
    services.upload_certificate(play, *certificate_factory(["play.example.com"]))
    client.force_login(owner)
    config = sources(client.get(URL, QUERY))
    for key, suffix in (("flv", ".flv"), ("hls", ".m3u8"), ("llhls", ".m3u8"), ("rts", ".whep")):
        assert config[key].startswith(f"https://play.example.com:443/live/cam1{suffix}?auth_key="), config[key]


def test_it_requires_login(client):
    assert_login_redirect(client.get(URL), URL)


def test_it_shows_the_form_without_a_query(client, owner):
    add_pair(owner)
    client.force_login(owner)
    response = client.get(URL)
    assert response.status_code == 200
    body = page(response)
    assert 'id="player-form"' in body and 'id="player-video"' not in body
    assert "player.js" not in body


def test_it_gives_the_player_signed_urls_of_the_streaming_domain(client, owner, settings):
    settings.LIVECENTER_PLAYER_MEDIA_HOST = ""  # DNS in place: the domain's own name
    _, play = add_pair(owner)
    client.force_login(owner)
    response = client.get(URL, {**QUERY, "protocol": "flv"})
    assert response.status_code == 200
    config = sources(response)
    assert config["protocol"] == "flv"
    assert config["streaming_domain"] == "play.example.com" and config["stream"] == "/live/cam1"
    assert config["flv"].startswith("http://play.example.com:8080/live/cam1.flv?auth_key=")
    assert config["hls"] == config["llhls"]
    assert config["hls"].startswith("http://play.example.com:8080/live/cam1.m3u8?auth_key=")
    assert config["rts"].startswith("http://play.example.com:8080/live/cam1.whep?auth_key=")
    key = play.auth_primary_key
    assert verify("/live/cam1.flv", token(config["flv"]), [key], play.validity_seconds, now=time.time()).ok
    body = page(response)
    for element in ("player-video", "player-unmute", "player-error", "player-protocol", "player-resolution",
                    "player-fps", "player-buffer", "player-bitrate", "first-frame-ms", "latency-ms"):  # fmt: skip
        assert f'id="{element}"' in body, element
    for script in ("vendor/mpegts/mpegts.js", "vendor/hls/hls.min.js", "js/player.js"):
        assert script in body


def test_it_plays_from_the_streaming_domain_and_a_template(client, owner, settings):
    settings.LIVECENTER_PLAYER_MEDIA_HOST = ""  # DNS in place: the domain's own name
    add_pair(owner)
    client.force_login(owner)
    config = sources(client.get(URL, {"domain": "play.example.com", "app": "live", "stream": "cam1",
                                      "template": "hd"}))  # fmt: skip
    assert config["protocol"] == "auto"
    assert config["flv"].startswith("http://play.example.com:8080/live/cam1_hd.flv?auth_key=")


def test_it_sends_urls_to_the_configured_media_host(client, owner, settings):
    settings.LIVECENTER_PLAYER_MEDIA_HOST = "127.0.0.1"
    add_pair(owner)
    client.force_login(owner)
    config = sources(client.get(URL, QUERY))
    assert config["flv"].startswith("http://127.0.0.1:8080/live/cam1.flv?auth_key=")
    assert config["flv"].endswith("&domain=play.example.com")


def test_it_rewrites_hosts_for_the_fallback():
    url = "http://play.example.com:8080/live/cam1.flv?auth_key=1-0-0-abc"
    assert via_media_host(url, "", "play.example.com") == url
    assert via_media_host(url, "127.0.0.1", "play.example.com") == (
        "http://127.0.0.1:8080/live/cam1.flv?auth_key=1-0-0-abc&domain=play.example.com"
    )
    assert via_media_host("rtmp://push.example.com/live/cam1", "::1", "push.example.com") == (
        "rtmp://[::1]/live/cam1?domain=push.example.com"
    )


def test_it_keeps_the_domain_of_an_https_url():
    # The certificate is chosen by, and checked against, the name in the URL.
    url = "https://play.example.com:443/live/cam1.flv?auth_key=1-0-0-abc"
    assert via_media_host(url, "127.0.0.1", "play.example.com") == url


def test_it_is_a_404_like_page_for_another_operators_domain(client, owner, outsider):
    add_pair(owner)
    add_ingest(outsider, "theirs.example.net")
    client.force_login(outsider)
    response = client.get(URL, QUERY)
    assert response.status_code == 400
    assert "player-sources" not in page(response)
    assert "domain must be one of the listed choices" in page(response)
    assert "play.example.com" not in page(response)


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ({**QUERY, "protocol": "rtmp"}, "protocol", "protocol must be one of auto, rts, flv, llhls, hls, not rtmp"),
        ({**QUERY, "app": ""}, "app", "app name is required"),
        ({**QUERY, "stream": "a/b"}, "stream", "stream name must be 1-255 letters, digits"),
        ({**QUERY, "template": "a b"}, "template", "transcoding template id must be 1-32"),
        ({**QUERY, "domain": "nope.example.com"}, "domain", "domain must be one of the listed choices"),
    ],
)
def test_it_names_a_bad_query_parameter(client, owner, query, field, words):
    add_pair(owner)
    client.force_login(owner)
    response = client.get(URL, query)
    assert response.status_code == 400
    assert words in response.context["form"].errors[field][0]
    assert words in page(response)
    assert "player-sources" not in page(response)


def test_it_explains_an_ingest_domain_without_a_streaming_domain(client, owner):
    add_ingest(owner)
    client.force_login(owner)
    response = client.get(URL, QUERY)
    assert response.status_code == 400
    assert "has no associated streaming domain" in page(response)


def test_it_shows_only_the_operators_domains_in_the_form(client, owner, outsider):
    add_pair(owner)
    add_streaming(outsider, "theirs.example.net")
    client.force_login(owner)
    body = page(client.get(URL))
    assert "push.example.com" in body and "theirs.example.net" not in body


def test_it_is_linked_from_the_url_generator_and_online_streams(client, owner):
    add_pair(owner)
    client.force_login(owner)
    response = client.post("/tools/url-generator/", {**QUERY, "validity_minutes": 60})
    assert 'href="/player/?domain=play.example.com&amp;app=live&amp;stream=cam1"' in page(response)
    publish("push.example.com", "live", "cam1", "s1")
    assert 'href="/player/?domain=push.example.com&amp;app=live&amp;stream=cam1"' in page(client.get("/streams/"))


def test_it_lists_the_operators_live_streams_and_no_one_elses(client, owner, outsider):
    add_pair(owner)
    add_pair(outsider, "push.theirs.example.net", "play.theirs.example.net")
    publish("push.example.com", "live", "cam1", "s1")
    publish("push.theirs.example.net", "live", "secret", "s2")
    client.force_login(owner)
    body = page(client.get(URL))
    assert 'id="player-live"' in body and 'href="/player/?domain=play.example.com&amp;app=live&amp;stream=cam1"' in body
    assert "secret" not in body and "theirs" not in body
    client.force_login(outsider)
    body = page(client.get(URL))
    assert "push.theirs.example.net/live/secret" in body and "cam1" not in body


def test_it_says_when_nothing_is_live(client, owner):
    add_pair(owner)
    client.force_login(owner)
    assert 'id="player-live-none"' in page(client.get(URL))


def test_a_pasted_url_of_a_streaming_domain_plays_as_it_is_where_dns_is_in_place(client, owner, settings):
    from domains import services

    settings.LIVECENTER_PLAYER_MEDIA_HOST = ""
    add_pair(owner)
    client.force_login(owner)
    url = services.generate_urls(owner, "push.example.com", "live", "cam1").playback["m3u8"]
    config = sources(client.get(URL, {"url": url}))
    assert (config["llhls"], config["hls"], config["flv"], config["rts"]) == (url, url, None, None)
    assert config["stream"] == "/live/cam1" and config["pasted"]
    response = client.get(URL, {"url": url.replace("play.example.com", "push.example.com")})
    assert response.status_code == 400
    assert "url: push.example.com is an ingest domain; paste a streaming domain&#x27;s URL" in page(response)


def test_it_names_the_fields_missing_without_a_url(client, owner):
    add_pair(owner)
    client.force_login(owner)
    response = client.get(URL, {"domain": "play.example.com"})
    assert response.status_code == 400
    body = page(response)
    assert "app name is required, or paste a playback URL" in body
    assert "stream name is required, or paste a playback URL" in body
