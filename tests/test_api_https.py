"""A domain's HTTPS switches (issue 15): on only with a certificate, the
forced redirect, and the https:// and rtmps:// URLs of the URL generator."""

import pytest

from domains import services
from nodes import registry
from tests.apisupport import add_ingest, add_streaming, client_for, domain_url
from tests.nodesupport import T0, a_beat, beat_now

pytestmark = pytest.mark.django_db

PLAY = "play.example.com"


@pytest.fixture
def pair(owner):
    ingest, streaming = add_ingest(owner), add_streaming(owner)
    services.associate_ingest(streaming, ingest.domain_name)
    return ingest, streaming


def upload(owner, certificate_factory, name=PLAY):
    cert, key = certificate_factory([name])
    response = client_for(owner).put(domain_url(name, "certificate"), {"certificate": cert, "private_key": key},
                                     format="json")  # fmt: skip
    assert response.status_code == 200, response.json()
    return response


def patch(owner, body, name=PLAY):
    return client_for(owner).patch(domain_url(name), body, format="json")


def test_it_shows_https_off_for_a_new_domain(owner, pair):
    body = client_for(owner).get(domain_url(PLAY)).json()
    assert (body["https_enabled"], body["https_redirect"]) == (False, "")


def test_it_refuses_https_without_a_certificate(owner, pair):
    response = patch(owner, {"https_enabled": True})
    assert response.status_code == 400
    assert response.json()["https_enabled"] == [f"upload a certificate for {PLAY} before turning HTTPS on"]


def test_a_first_certificate_turns_https_on_and_a_replacement_keeps_the_switch(owner, pair, certificate_factory):
    assert upload(owner, certificate_factory).json()["days_left"] == 89  # issued for 90 days, a moment ago
    assert patch(owner, {}).json()["https_enabled"] is True
    assert patch(owner, {"https_enabled": False}).json()["https_enabled"] is False
    upload(owner, certificate_factory)
    assert client_for(owner).get(domain_url(PLAY)).json()["https_enabled"] is False


def test_it_forces_a_redirect_only_with_https_on(owner, pair, certificate_factory):
    response = patch(owner, {"https_redirect": "https"})
    assert response.status_code == 400
    assert response.json()["https_redirect"] == ["turn HTTPS on before forcing a redirect between HTTP and HTTPS"]
    upload(owner, certificate_factory)
    for value in ("https", "http", ""):
        assert patch(owner, {"https_redirect": value}).json()["https_redirect"] == value


def test_it_names_the_redirect_values(owner, pair, certificate_factory):
    upload(owner, certificate_factory)
    response = patch(owner, {"https_redirect": "always"})
    assert response.status_code == 400
    assert "https_redirect" in response.json()
    assert '"https" (HTTP to HTTPS)' in response.json()["https_redirect"][0]


def test_turning_https_off_drops_the_redirect_and_removing_the_certificate_turns_it_off(
    owner, pair, certificate_factory
):
    upload(owner, certificate_factory)
    patch(owner, {"https_redirect": "https"})
    body = patch(owner, {"https_enabled": False}).json()
    assert (body["https_enabled"], body["https_redirect"]) == (False, "")
    patch(owner, {"https_enabled": True, "https_redirect": "https"})
    assert client_for(owner).delete(domain_url(PLAY, "certificate")).status_code == 204
    body = client_for(owner).get(domain_url(PLAY)).json()
    assert (body["https_enabled"], body["https_redirect"]) == (False, "")


def test_the_url_generator_writes_https_and_rtmps_for_domains_with_https_on(owner, pair, certificate_factory, settings):
    settings.LIVECENTER_HTTPS_PORT, settings.LIVECENTER_RTMPS_PORT = 8443, 1936
    generate = {"domain": "push.example.com", "app": "live", "stream": "cam1"}
    plain = client_for(owner).post("/api/v1/urls/", generate, format="json").json()
    assert plain["playback"]["flv"].startswith(f"http://{PLAY}:8080/live/cam1.flv?auth_key=")
    upload(owner, certificate_factory)
    body = client_for(owner).post("/api/v1/urls/", generate, format="json").json()
    playback = body["playback"]
    assert playback["flv"].startswith(f"https://{PLAY}:8443/live/cam1.flv?auth_key=")
    assert playback["m3u8"].startswith(f"https://{PLAY}:8443/live/cam1.m3u8?auth_key=")
    assert playback["whep"].startswith(f"https://{PLAY}:8443/live/cam1.whep?auth_key=")
    assert playback["rtmp"].startswith(f"rtmps://{PLAY}:1936/live/cam1?auth_key=")
    # The ingest domain has no certificate: its URLs stay plain.
    assert body["ingest"]["rtmp"].startswith("rtmp://push.example.com:1935/live/cam1?auth_key=")
    upload(owner, certificate_factory, "push.example.com")
    body = client_for(owner).post("/api/v1/urls/", generate, format="json").json()
    assert body["ingest"]["rtmp"].startswith("rtmps://push.example.com:1936/live/cam1?auth_key=")


def test_an_outsider_cannot_switch_https(owner, outsider, pair):
    assert patch(outsider, {"https_enabled": False}).status_code == 404


def test_the_url_generator_notes_when_no_node_up_serves_the_tls_urls(
    owner, pair, certificate_factory, settings, registry_clock
):
    """The nodes' heartbeats advertise their HTTPS and RTMPS ports: the URL
    generator says when none serves the https:// URLs it gives, or serves
    them on another port."""
    settings.REDIS_URL, settings.LIVECENTER_HTTPS_PORT, settings.LIVECENTER_RTMPS_PORT = "", 443, 1936
    generate = {"domain": PLAY, "app": "live", "stream": "cam1"}

    def notes() -> str:
        return " ".join(client_for(owner).post("/api/v1/urls/", generate, format="json").json()["notes"])

    upload(owner, certificate_factory)
    assert "serves HTTPS" not in notes()  # no node up: nothing to say
    store = registry.registry()
    beat_now(store, a_beat("plain-edge"))
    registry_clock.now = T0 + 1
    said = notes()
    assert "No media node that is up serves HTTPS" in said and "LIVECENTER_MEDIA_HTTPS_PORT" in said, said
    assert "No media node that is up serves RTMPS" in said, said
    beat_now(store, a_beat("tls-edge", https_port=443, rtmps_port=1936))
    assert "serves HTTPS" not in notes() and "RTMPS" not in notes()
    beat_now(store, a_beat("tls-edge", https_port=8443, rtmps_port=1936))
    said = notes()
    assert "serve HTTPS on port 8443; the URLs name 443" in said and "RTMPS" not in said, said
