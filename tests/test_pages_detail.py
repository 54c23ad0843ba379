import pytest

from domains.models import Domain
from tests.pagesupport import add_ingest, add_streaming, assert_login_redirect, page

pytestmark = pytest.mark.django_db


def test_it_requires_login(client, owner):
    add_ingest(owner)
    assert_login_redirect(client.get("/domains/push.example.com/"), "/domains/push.example.com/")


def test_it_is_a_404_for_an_outsider(client, owner, outsider):
    add_ingest(owner)
    client.force_login(outsider)
    assert client.get("/domains/push.example.com/").status_code == 404


def test_it_is_a_404_for_a_missing_or_invalid_name(client, owner):
    client.force_login(owner)
    assert client.get("/domains/nothing.example.com/").status_code == 404
    assert client.get("/domains/not_a_name/").status_code == 404


def test_it_shows_the_basic_information(client, owner):
    domain = add_streaming(owner, "play.example.com", live_center="ap-southeast-1", region="overseas")
    client.force_login(owner)
    r = client.get("/domains/play.example.com/")
    assert r.status_code == 200
    body = page(r)
    assert domain.cname in body
    assert "Streaming domain" in body
    assert "Singapore" in body and "Outside Chinese mainland" in body
    assert "Configuring" in body
    assert f"{domain.created_at:%Y-%m-%d %H:%M}" in body
    assert "Not required" in body  # ICP filing
    for part in ("cname", "mapping", "certificate", "rts", "srt", "url-signing", "access-control"):
        assert f'href="/domains/play.example.com/{part}/"' in body


def test_it_finds_a_domain_by_its_unicode_name(client, owner):
    domain = add_ingest(owner, "直播.例子.中国")
    client.force_login(owner)
    r = client.get("/domains/直播.例子.中国/")
    assert r.status_code == 200
    assert domain.cname in page(r)


def test_it_disables_and_enables(client, owner):
    add_ingest(owner)
    client.force_login(owner)
    r = client.post("/domains/push.example.com/disable/")
    assert r["Location"] == "/domains/push.example.com/"
    assert not Domain.objects.get().enabled
    assert "Offline" in page(client.get(r["Location"]))
    r = client.post("/domains/push.example.com/enable/", {"next": "/domains/"})
    assert r["Location"] == "/domains/"
    assert Domain.objects.get().enabled


def test_it_does_not_redirect_off_site_after_a_switch(client, owner):
    add_ingest(owner)
    client.force_login(owner)
    r = client.post("/domains/push.example.com/disable/", {"next": "https://evil.example/"})
    assert r["Location"] == "/domains/push.example.com/"


def test_it_switches_only_on_post(client, owner):
    add_ingest(owner)
    client.force_login(owner)
    assert client.get("/domains/push.example.com/disable/").status_code == 405
    assert Domain.objects.get().enabled


def test_it_does_not_let_an_outsider_switch_or_delete(client, owner, outsider):
    add_ingest(owner)
    client.force_login(outsider)
    assert client.post("/domains/push.example.com/disable/").status_code == 404
    assert client.get("/domains/push.example.com/delete/").status_code == 404
    assert client.post("/domains/push.example.com/delete/").status_code == 404
    domain = Domain.objects.get()
    assert domain.enabled


def test_it_asks_before_deleting(client, owner):
    add_ingest(owner)
    client.force_login(owner)
    r = client.get("/domains/push.example.com/delete/")
    assert r.status_code == 200
    assert 'id="delete-form"' in page(r) and 'method="post"' in page(r)
    assert Domain.objects.exists()


def test_it_deletes_on_post(client, owner):
    add_ingest(owner)
    client.force_login(owner)
    r = client.post("/domains/push.example.com/delete/")
    assert r["Location"] == "/domains/"
    assert not Domain.objects.exists()
    assert "Deleted push.example.com" in page(client.get("/domains/"))


def test_anonymous_cannot_switch_or_delete(client, owner):
    add_ingest(owner)
    assert_login_redirect(client.post("/domains/push.example.com/disable/"), "/domains/push.example.com/disable/")
    assert_login_redirect(client.post("/domains/push.example.com/delete/"), "/domains/push.example.com/delete/")
    assert Domain.objects.get().enabled
