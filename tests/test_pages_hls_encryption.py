"""The HLS encryption page of a domain (/domains/{name}/hls-encryption/)."""

import pytest

from domains import services
from domains.models import Domain
from tests.pagesupport import add_ingest, add_streaming, assert_field_error, assert_login_redirect, page
from tests.streamsupport import add_pair
from tests.test_streams_pages_player import sources

pytestmark = pytest.mark.django_db

URL = "/domains/play.example.com/hls-encryption/"


def test_it_requires_login(client, owner):
    add_streaming(owner)
    assert_login_redirect(client.get(URL), URL)
    assert_login_redirect(client.post(URL, {}), URL)


def test_it_is_a_404_for_an_outsider(client, owner, outsider):
    add_streaming(owner)
    client.force_login(outsider)
    assert client.get(URL).status_code == 404
    assert client.post(URL, {"hls_encryption": "on", "hls_key_rotation_segments": "5"}).status_code == 404
    assert not Domain.objects.get().hls_encryption


def test_it_shows_the_switch_off_and_the_default_period(client, owner):
    add_streaming(owner)
    client.force_login(owner)
    r = client.get(URL)
    assert r.status_code == 200
    body = page(r)
    assert (
        'name="hls_encryption" class="form-check-input"' in body
        and "checked" not in body.split('name="hls_encryption"')[1].split(">")[0]
    )
    assert r.context["form"]["hls_key_rotation_segments"].value() == 10
    assert 'href="/domains/play.example.com/hls-encryption/">HLS encryption</a>' in body


def test_it_switches_encryption_on_for_the_apps_given(client, owner):
    add_streaming(owner)
    client.force_login(owner)
    r = client.post(URL, {"hls_encryption": "on", "hls_key_rotation_segments": "4", "hls_encryption_apps": "live, vip"})
    assert r["Location"] == URL
    domain = Domain.objects.get()
    assert (domain.hls_encryption, domain.hls_key_rotation_segments, domain.hls_encryption_app_list) == (
        True, 4, ["live", "vip"],
    )  # fmt: skip
    body = page(client.get(URL))
    assert (
        "HLS encryption turned on, a new key every 4 segments and apps set to live, vip for play.example.com."
    ) in body
    assert 'value="live, vip"' in body
    detail = page(client.get("/domains/play.example.com/"))
    assert "AES-128, a new key every 4 segments, apps live,vip" in detail


def test_it_names_the_field_of_a_bad_period(client, owner):
    add_streaming(owner)
    client.force_login(owner)
    r = client.post(URL, {"hls_encryption": "on", "hls_key_rotation_segments": "0"})
    assert_field_error(
        r, "form", "hls_key_rotation_segments", "key rotation must be a whole number of segments, 1-1000"
    )
    assert not Domain.objects.get().hls_encryption


def test_it_sends_an_ingest_domain_to_its_streaming_domain(client, owner):
    add_ingest(owner)
    client.force_login(owner)
    body = page(client.get("/domains/push.example.com/hls-encryption/"))
    assert 'id="hls-encryption-ingest-note"' in body
    assert 'id="hls-encryption-form"' not in body


def test_the_player_page_says_which_apps_are_encrypted(client, owner):
    _, play = add_pair(owner)
    client.force_login(owner)
    query = {"domain": "push.example.com", "app": "live", "stream": "cam1"}
    assert sources(client.get("/player/", query))["hls_encryption"] is None
    services.configure_hls_encryption(play, enabled=True, apps=["live"])
    assert sources(client.get("/player/", query))["hls_encryption"] == "AES-128"
    assert sources(client.get("/player/", {**query, "app": "other"}))["hls_encryption"] is None
