import pytest

from domains import services
from domains.models import Domain
from tests.pagesupport import add_ingest, add_streaming, assert_field_error, assert_login_redirect, page

pytestmark = pytest.mark.django_db

URL = "/domains/play.example.com/rts/"


def test_it_requires_login(client, owner):
    add_streaming(owner)
    assert_login_redirect(client.get(URL), URL)
    assert_login_redirect(client.post(URL, {}), URL)
    assert Domain.objects.get().rts_enabled


def test_it_is_a_404_for_an_outsider(client, owner, outsider):
    add_streaming(owner)
    client.force_login(outsider)
    assert client.get(URL).status_code == 404
    assert client.post(URL, {}).status_code == 404
    assert Domain.objects.get().rts_enabled


def test_it_shows_both_switches_on_for_a_new_streaming_domain(client, owner):
    add_streaming(owner)
    client.force_login(owner)
    r = client.get(URL)
    assert r.status_code == 200
    body = page(r)
    assert 'name="rts_enabled" class="form-check-input" id="id_rts_enabled" checked' in body
    assert 'name="html5_transcode" class="form-check-input" aria-describedby="id_html5_transcode_helptext"' in body
    assert r.context["form"]["html5_transcode"].value() is True


def test_it_switches_rts_and_html5_transcoding(client, owner):
    add_streaming(owner)
    client.force_login(owner)
    r = client.post(URL, {"html5_transcode": "on"})
    assert r["Location"] == URL
    domain = Domain.objects.get()
    assert (domain.rts_enabled, domain.html5_transcode) == (False, True)
    # The confirmation names what changed, and only that (HTML5 auto-transcoding was on already).
    assert "RTS turned off for play.example.com." in page(client.get(URL))
    client.post(URL, {"rts_enabled": "on"})
    domain.refresh_from_db()
    assert (domain.rts_enabled, domain.html5_transcode) == (True, False)


def test_it_explains_that_rts_is_set_on_the_streaming_domain(client, owner):
    ingest = add_ingest(owner)
    streaming = add_streaming(owner)
    services.associate_ingest(streaming, ingest.domain_name)
    client.force_login(owner)
    r = client.get("/domains/push.example.com/rts/")
    assert r.status_code == 200
    body = page(r)
    assert "switched on the streaming domain" in body
    assert 'href="/domains/play.example.com/rts/"' in body
    assert 'id="rts-form"' not in body


def test_it_refuses_rts_on_an_ingest_domain(client, owner):
    add_ingest(owner)
    client.force_login(owner)
    r = client.post("/domains/push.example.com/rts/", {"rts_enabled": "on"})
    assert_field_error(r, "form", "rts_enabled", "rts_enabled applies only to streaming domains")
    domain = Domain.objects.get()
    assert (domain.rts_enabled, domain.html5_transcode) == (False, False)
