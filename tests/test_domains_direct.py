"""domains/direct.py: which form of a URL clients are given where a domain
has no DNS (LIVECENTER_PLAYER_MEDIA_HOST "auto", the default), and the URL
generator's direct URLs."""

from __future__ import annotations

import html
import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from domains import direct, services
from domains.lib.resolve import BoundedResolver
from livecenter.media.admission import domain_of
from livecenter.media.liveurl import parse_live_url, parse_srt_streamid
from livecenter.media.signing import verify
from tests.pagesupport import page
from tests.streamsupport import add_pair
from tests.test_streams_pages_player import sources

pytestmark = pytest.mark.django_db

RESOLVING = {"play.example.com": ("192.0.2.80",), "console.example.net": ("192.0.2.10",)}


@pytest.fixture
def dns(monkeypatch, settings):
    """A resolver that knows only RESOLVING (and what a test adds to it)."""
    known = dict(RESOLVING)
    monkeypatch.setattr(direct, "_resolver", BoundedResolver(5, 60, lookup=lambda name: known.get(name, ())))
    settings.LIVECENTER_PLAYER_MEDIA_HOST = "auto"
    return known


def test_it_sends_clients_of_a_domain_without_dns_to_the_node_and_others_to_the_domain(dns, owner):
    push, play = add_pair(owner)  # play.example.com resolves, push.example.com does not
    assert direct.media_host(play, "127.0.0.1:8000") == ""
    assert direct.media_host(push, "127.0.0.1:8000") == "127.0.0.1"
    found = direct.reach(push, "127.0.0.1:8000")
    assert found.direct and found.reason == "push.example.com does not resolve on this machine (no DNS record yet)"
    assert direct.reach(play).reason == "play.example.com resolves on this machine"


def test_a_local_domain_goes_direct_even_where_its_name_resolves(dns, owner):
    _, play = add_pair(owner)
    services.update_domain(play, local=True)
    found = direct.reach(play, "127.0.0.1:8000")
    assert found.direct and found.reason == "play.example.com is a local or test domain (no DNS)"


def test_the_setting_overrides_the_lookup(dns, owner, settings):
    push, play = add_pair(owner)
    settings.LIVECENTER_PLAYER_MEDIA_HOST = ""
    assert direct.media_host(push, "127.0.0.1:8000") == ""
    settings.LIVECENTER_PLAYER_MEDIA_HOST = "192.0.2.99"
    assert direct.media_host(play, "127.0.0.1:8000") == "192.0.2.99"


@pytest.mark.parametrize(
    ("host_header", "address"),
    [
        ("127.0.0.1:8000", "127.0.0.1"),
        ("[::1]:8000", "::1"),
        ("192.0.2.5", "192.0.2.5"),
        ("localhost:8000", "127.0.0.1"),
        ("console.example.net:8000", "192.0.2.10"),  # a name: its address (domain= needs one)
        ("unknown.example.net", "127.0.0.1"),
        ("", "127.0.0.1"),
        (None, "127.0.0.1"),
    ],
)
def test_the_node_address_is_where_the_browser_reached_the_console(dns, host_header, address):
    assert direct.node_address(host_header) == address


def test_the_direct_forms_name_the_domain_the_way_the_node_reads_it():
    rtmp = direct.via_media_host(
        "rtmp://push.example.com:1935/live/cam1?auth_key=1-0-0-ab", "127.0.0.1", "push.example.com"
    )
    assert rtmp == "rtmp://127.0.0.1:1935/live/cam1?auth_key=1-0-0-ab&domain=push.example.com"
    parsed = parse_live_url(rtmp)
    assert (parsed.host, parsed.signed_uri, parsed.auth_key) == ("push.example.com", "/live/cam1", "1-0-0-ab")
    srt = "srt://push.example.com:1105?streamid=#!::h=push.example.com,r=/live/cam1?auth_key=1-0-0-ab,m=publish"
    moved = direct.via_media_host(srt, "127.0.0.1", "push.example.com")
    # Only the host changes: the stream ID names the domain and takes no other parameter.
    assert moved == srt.replace("srt://push.example.com:", "srt://127.0.0.1:")
    assert parse_srt_streamid(moved.split("streamid=", 1)[1]).host == "push.example.com"
    whep = direct.via_media_host("http://play.example.com:8080/live/cam1.whep?auth_key=x", "::1", "play.example.com")
    assert whep == "http://[::1]:8080/live/cam1.whep?auth_key=x&domain=play.example.com"
    query = {k: v[0] for k, v in parse_qs(urlsplit(whep).query).items()}
    assert domain_of("[::1]:8080", query) == "play.example.com"
    for tls in ("https://play.example.com:443/live/cam1.flv?auth_key=x", "rtmps://push.example.com:1936/live/cam1"):
        assert direct.via_media_host(tls, "127.0.0.1", "push.example.com") == tls


def test_the_player_page_gives_direct_urls_for_a_domain_without_dns(dns, client, owner):
    push, play = add_pair(owner)
    del dns["play.example.com"]
    direct.resolver().forget()
    client.force_login(owner)
    config = sources(client.get("/player/", {"domain": "play.example.com", "app": "live", "stream": "cam1"},
                                HTTP_HOST="127.0.0.1:8000"))  # fmt: skip
    for key, suffix in (("flv", ".flv"), ("hls", ".m3u8"), ("rts", ".whep")):
        url = config[key]
        assert url.startswith(f"http://127.0.0.1:8080/live/cam1{suffix}?auth_key="), url
        assert url.endswith("&domain=play.example.com"), url
        # The signature covers the path alone: the direct URL verifies as the DNS one does.
        uri = "/live/cam1" if key == "rts" else f"/live/cam1{suffix}"
        token = parse_qs(urlsplit(url).query)["auth_key"][0]
        assert verify(uri, token, play.signing_keys(), play.validity_seconds, time.time()).ok


def test_the_player_page_keeps_a_resolving_domains_name(dns, client, owner):
    add_pair(owner)
    client.force_login(owner)
    config = sources(client.get("/player/", {"domain": "play.example.com", "app": "live", "stream": "cam1"},
                                HTTP_HOST="127.0.0.1:8000"))  # fmt: skip
    assert config["flv"].startswith("http://play.example.com:8080/live/cam1.flv?auth_key=")


def generated(client, domain: str) -> tuple[str, dict[str, str]]:
    response = client.post(
        "/tools/url-generator/", {"domain": domain, "app": "live", "stream": "cam1"}, HTTP_HOST="127.0.0.1:8000"
    )
    assert response.status_code == 200
    body = page(response)
    found = re.findall(r'<input type="text" [^>]*id="(url-[a-z-]+[a-z0-9]+)"[^>]*value="([^"]*)"', body)
    return body, {id_: html.unescape(value) for id_, value in found}


def test_the_url_generator_shows_both_forms_and_says_which_applies(dns, client, owner):
    push, play = add_pair(owner)
    client.force_login(owner)
    body, urls = generated(client, "push.example.com")
    # push.example.com has no DNS: the direct form applies; play.example.com resolves: the DNS form.
    assert re.search(r'id="ingest-reach" data-direct="true"', body)
    assert "push.example.com does not resolve on this machine" in body
    assert re.search(r'id="playback-reach" data-direct="false"', body)
    assert "play.example.com resolves on this machine" in body
    token = parse_qs(urlsplit(urls["url-ingest-rtmp"]).query)["auth_key"][0]
    assert urls["url-ingest-direct-rtmp"] == (
        f"rtmp://127.0.0.1:1935/live/cam1?auth_key={token}&domain=push.example.com"
    )
    assert urls["url-ingest-direct-whip"].startswith("http://127.0.0.1:8080/live/cam1.whip?auth_key=")
    assert urls["url-ingest-direct-srt"].startswith("srt://127.0.0.1:1105?streamid=#!::h=push.example.com,")
    assert "url-ingest-direct-rts" not in urls  # artc:// names no address
    for key in ("rtmp", "flv", "m3u8", "whep", "srt"):
        assert f"url-playback-direct-{key}" in urls
    assert urls["url-playback-direct-flv"].endswith("&domain=play.example.com")


def test_the_url_generator_marks_a_test_zone_domain_direct(dns, client, owner):
    services.add_domain(owner, "push.lab.test", "ingest", "overseas", "ap-southeast-1")
    client.force_login(owner)
    body, urls = generated(client, "push.lab.test")
    assert "push.lab.test is a local or test domain (no DNS)" in body
    assert urls["url-ingest-direct-rtmp"].startswith("rtmp://127.0.0.1:1935/live/cam1?auth_key=")


def test_the_api_and_the_command_give_the_direct_forms(dns, owner):
    from io import StringIO

    from django.core.management import call_command

    from tests.apisupport import client_for

    add_pair(owner)
    response = client_for(owner).post(
        "/api/v1/urls/", {"domain": "push.example.com", "app": "live", "stream": "cam1"}, format="json",
        HTTP_HOST="127.0.0.1:8000",
    )  # fmt: skip
    assert response.status_code == 200, response.json()
    body = response.json()
    ingest, playback = body["direct"]["ingest"], body["direct"]["playback"]
    assert (ingest["host"], ingest["use"], playback["use"]) == ("127.0.0.1", True, False)
    assert ingest["reason"] == "push.example.com does not resolve on this machine (no DNS record yet)"
    token = parse_qs(urlsplit(body["ingest"]["rtmp"]).query)["auth_key"][0]
    assert ingest["urls"]["rtmp"] == f"rtmp://127.0.0.1:1935/live/cam1?auth_key={token}&domain=push.example.com"
    assert set(playback["urls"]) == {"rtmp", "flv", "m3u8", "whep", "srt"}
    out = StringIO()
    call_command("live_urls", "--user", "owner", "--domain", "push.example.com", "--app", "live", "--stream", "cam1",
                 stdout=out)  # fmt: skip
    text = out.getvalue()
    assert "Ingest, direct to the media node at 127.0.0.1 (no DNS)" in text
    assert "rtmp://127.0.0.1:1935/live/cam1?auth_key=" in text
