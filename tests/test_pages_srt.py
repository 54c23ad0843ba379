import logging

import pytest
from django.db import connection

from domains import services
from domains.models import Domain
from tests.pagesupport import add_ingest, add_streaming, assert_field_error, assert_login_redirect, page

pytestmark = pytest.mark.django_db

URL = "/domains/push.example.com/srt/"
PASSPHRASE = "correct horse battery"


def form_data(**changes):
    return {"srt_latency_ms": "120", "srt_passphrase": "", **changes}


def domain(name: str = "push.example.com") -> Domain:
    return Domain.objects.get(domain_name=name)


def test_it_requires_login(client, owner):
    add_ingest(owner)
    assert_login_redirect(client.get(URL), URL)
    assert_login_redirect(client.post(URL, form_data(srt_passphrase=PASSPHRASE)), URL)
    assert domain().srt_passphrase == ""


def test_it_is_a_404_for_an_outsider(client, owner, outsider):
    add_ingest(owner)
    client.force_login(outsider)
    assert client.get(URL).status_code == 404
    assert client.post(URL, form_data(srt_latency_ms="500", srt_passphrase=PASSPHRASE)).status_code == 404
    assert (domain().srt_latency_ms, domain().srt_passphrase) == (120, "")


def test_it_shows_the_defaults_of_a_new_ingest_domain(client, owner):
    add_ingest(owner)
    client.force_login(owner)
    r = client.get(URL)
    assert r.status_code == 200
    body = page(r)
    assert 'id="srt-latency">120 ms<' in body
    assert 'id="srt-passphrase-masked">none<' in body
    assert 'name="srt_latency_ms" value="120"' in body
    assert 'name="remove_srt_passphrase"' in body
    assert 'id="srt-unencrypted-hint"' in body
    assert "srt://push.example.com:1105?streamid=#!::h=push.example.com,r=/{app}/{stream}?auth_key=…,m=publish" in body
    assert 'href="/domains/push.example.com/srt/"' in body  # the tab


def test_it_sets_the_latency_and_passphrase_and_shows_the_passphrase_masked(client, owner):
    add_ingest(owner)
    client.force_login(owner)
    r = client.post(URL, form_data(srt_latency_ms="400", srt_passphrase=PASSPHRASE))
    assert r["Location"] == URL
    d = domain()
    assert (d.srt_latency_ms, d.srt_passphrase) == (400, PASSPHRASE)
    assert d.srt_passphrase_set_at is not None
    body = page(client.get(URL))
    assert (
        "SRT latency set to 400 ms and SRT passphrase replaced for push.example.com; publishers connecting from now"
        " on use them"
    ) in body
    assert PASSPHRASE not in body
    assert PASSPHRASE not in body and "correct" not in body
    assert 'id="srt-passphrase-masked">********<' in body
    assert 'id="srt-passphrase-set-at">set ' in body
    tag = body.split('name="srt_passphrase"')[1].split(">")[0]
    assert "value=" not in tag
    # The push hint says what a publisher must add, without the passphrase.
    assert 'id="srt-passphrase-hint"' in body
    assert "&amp;passphrase={your SRT passphrase, percent-encoded}" in body
    assert "&amp;pbkeylen=16, 24 or 32" in body


def test_it_keeps_the_passphrase_when_the_input_is_empty(client, owner):
    services.configure_srt(add_ingest(owner), srt_passphrase=PASSPHRASE)
    client.force_login(owner)
    client.post(URL, form_data(srt_latency_ms="250"))
    assert (domain().srt_latency_ms, domain().srt_passphrase) == (250, PASSPHRASE)


def test_it_replaces_the_passphrase(client, owner):
    services.configure_srt(add_ingest(owner), srt_passphrase=PASSPHRASE)
    client.force_login(owner)
    client.post(URL, form_data(srt_passphrase="another passphrase"))
    assert domain().srt_passphrase == "another passphrase"


def test_it_removes_the_passphrase(client, owner):
    services.configure_srt(add_ingest(owner), srt_passphrase=PASSPHRASE)
    client.force_login(owner)
    r = client.post(URL, form_data(remove_srt_passphrase="on"))
    assert r["Location"] == URL
    d = domain()
    assert (d.srt_passphrase, d.srt_passphrase_set_at) == ("", None)
    body = page(client.get(URL))
    assert "SRT passphrase removed for push.example.com;" in body
    assert 'id="srt-passphrase-masked">none<' in body
    assert 'id="srt-passphrase-hint"' not in body


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"srt_latency_ms": "19"}, "srt_latency_ms", "SRT latency must be between 20 and 8000 milliseconds"),
        ({"srt_latency_ms": "8001"}, "srt_latency_ms", "SRT latency must be between 20 and 8000 milliseconds"),
        ({"srt_latency_ms": "soon"}, "srt_latency_ms", "SRT latency must be a whole number of milliseconds"),
        ({"srt_latency_ms": ""}, "srt_latency_ms", "SRT latency is required"),
        ({"srt_passphrase": "x" * 9}, "srt_passphrase", "SRT passphrase must be 10-79 printable ASCII characters"),
        ({"srt_passphrase": "x" * 80}, "srt_passphrase", "SRT passphrase must be 10-79 printable ASCII characters"),
        ({"srt_passphrase": "pässphrase123"}, "srt_passphrase", "SRT passphrase must be 10-79 printable ASCII"),
        ({"srt_passphrase": " padded passphrase "}, "srt_passphrase", "must not begin or end with a space"),
        (
            {"srt_passphrase": "another passphrase", "remove_srt_passphrase": "on"},
            "srt_passphrase",
            "enter a new passphrase or tick “Remove the passphrase”, not both",
        ),
    ],
)
def test_it_names_the_field_of_bad_input_and_saves_nothing(client, owner, changes, field, words):
    services.configure_srt(add_ingest(owner), srt_passphrase=PASSPHRASE)
    client.force_login(owner)
    # A good value beside the bad one is not saved either.
    data = {"srt_latency_ms": "300", **changes} if field != "srt_latency_ms" else changes
    r = client.post(URL, form_data(**data))
    assert_field_error(r, "form", field, words)
    assert (domain().srt_latency_ms, domain().srt_passphrase) == (120, PASSPHRASE)
    body = page(r)
    assert PASSPHRASE not in body and "another passphrase" not in body
    if field == "srt_passphrase":
        assert changes["srt_passphrase"] not in body


@pytest.mark.parametrize("latency", [20, 8000])
def test_it_takes_the_latency_limits(client, owner, latency):
    add_ingest(owner)
    client.force_login(owner)
    assert client.post(URL, form_data(srt_latency_ms=str(latency)))["Location"] == URL
    assert domain().srt_latency_ms == latency


@pytest.mark.parametrize("length", [10, 79])
def test_it_takes_the_passphrase_length_limits(client, owner, length):
    add_ingest(owner)
    client.force_login(owner)
    assert client.post(URL, form_data(srt_passphrase="p" * length))["Location"] == URL
    assert domain().srt_passphrase == "p" * length


def test_it_explains_that_srt_is_set_on_the_ingest_domain(client, owner):
    ingest = add_ingest(owner)
    services.associate_ingest(add_streaming(owner), ingest.domain_name)
    client.force_login(owner)
    r = client.get("/domains/play.example.com/srt/")
    assert r.status_code == 200
    body = page(r)
    assert "belong to the ingest domain" in body
    assert 'href="/domains/push.example.com/srt/"' in body
    assert 'id="srt-form"' not in body


def test_it_refuses_srt_settings_on_a_streaming_domain(client, owner):
    add_streaming(owner)
    client.force_login(owner)
    r = client.post("/domains/play.example.com/srt/", form_data(srt_latency_ms="500", srt_passphrase=PASSPHRASE))
    assert r.status_code == 200
    assert "srt_latency_ms applies only to ingest domains" in page(r)
    assert PASSPHRASE not in page(r)
    d = domain("play.example.com")
    assert (d.srt_latency_ms, d.srt_passphrase) == (120, "")


def test_it_stores_the_passphrase_encrypted_and_never_logs_it(client, owner, caplog):
    caplog.set_level(logging.DEBUG)
    add_ingest(owner)
    client.force_login(owner)
    client.post(URL, form_data(srt_passphrase=PASSPHRASE))
    with connection.cursor() as cursor:
        cursor.execute("SELECT srt_passphrase FROM domains_domain")
        (stored,) = cursor.fetchone()
    assert stored and PASSPHRASE not in stored
    assert domain().srt_passphrase == PASSPHRASE
    assert "srt settings changed for push.example.com (latency=120 ms, passphrase set)" in caplog.text
    assert "horse" not in caplog.text


def test_the_cname_guide_of_an_encrypted_ingest_domain_says_what_publishers_add(client, owner):
    services.configure_srt(add_ingest(owner), srt_latency_ms=300, srt_passphrase=PASSPHRASE)
    client.force_login(owner)
    body = page(client.get("/domains/push.example.com/cname/"))
    assert 'id="srt-ingest-url"' in body
    assert 'id="srt-latency-hint">300 ms<' in body
    assert "&amp;passphrase={your SRT passphrase, percent-encoded}" in body
    assert PASSPHRASE not in body


def test_the_cname_guide_of_a_streaming_domain_has_no_srt_hint(client, owner):
    add_streaming(owner)
    client.force_login(owner)
    assert 'id="srt-ingest-hint"' not in page(client.get("/domains/play.example.com/cname/"))
