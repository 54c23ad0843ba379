import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from domains import services
from domains.models import DomainCertificate
from tests.pagesupport import add_streaming, assert_field_error, assert_login_redirect, page

pytestmark = pytest.mark.django_db

URL = "/domains/play.example.com/certificate/"


def assert_no_key(body: str, key_pem: str) -> None:
    """No line of the key's PEM body is anywhere in the page."""
    assert "PRIVATE KEY-----\n" not in body
    for line in key_pem.splitlines():
        if not line.startswith("-----"):
            assert line not in body


def test_it_requires_login(client, owner, certificate_factory):
    add_streaming(owner)
    cert, key = certificate_factory(["play.example.com"])
    assert_login_redirect(client.get(URL), URL)
    assert_login_redirect(client.post(URL, {"certificate": cert, "private_key": key}), URL)
    assert not DomainCertificate.objects.exists()


def test_it_is_a_404_for_an_outsider(client, owner, outsider, certificate_factory):
    domain = add_streaming(owner)
    cert, key = certificate_factory(["play.example.com"])
    services.upload_certificate(domain, cert, key)
    client.force_login(outsider)
    other_cert, other_key = certificate_factory(["play.example.com"])
    assert client.get(URL).status_code == 404
    assert client.post(URL, {"certificate": other_cert, "private_key": other_key}).status_code == 404
    assert client.post(URL + "delete/").status_code == 404
    assert DomainCertificate.objects.get().certificate_pem == cert


def test_it_shows_the_upload_form(client, owner):
    add_streaming(owner)
    client.force_login(owner)
    r = client.get(URL)
    assert r.status_code == 200
    body = page(r)
    assert 'id="no-certificate"' in body
    for name in ("name", "certificate", "private_key"):
        assert f'name="{name}"' in body and f'id="id_{name}"' in body


def test_it_uploads_and_shows_the_certificate_but_never_the_key(client, owner, certificate_factory):
    add_streaming(owner)
    cert, key = certificate_factory(["play.example.com", "*.example.com"])
    client.force_login(owner)
    r = client.post(URL, {"name": "my-cert", "certificate": cert, "private_key": key})
    assert r["Location"] == URL
    stored = DomainCertificate.objects.get()
    assert stored.name == "my-cert"
    r = client.get(URL)
    body = page(r)
    assert "Uploaded certificate my-cert" in body
    assert "CN=play.example.com" in body  # subject and issuer (self-signed)
    assert "<code>play.example.com</code>, <code>*.example.com</code>" in body
    assert f">{stored.not_before:%Y-%m-%d %H:%M:%S} UTC</time>" in body
    assert f">{stored.not_after:%Y-%m-%d %H:%M:%S} UTC</time>" in body
    assert stored.fingerprint_sha256 in body
    assert_no_key(body, key)
    assert_no_key(body, stored.private_key)


def test_it_refuses_a_key_that_does_not_match(client, owner, certificate_factory):
    add_streaming(owner)
    cert, _ = certificate_factory(["play.example.com"])
    _, other_key = certificate_factory(["play.example.com"])
    client.force_login(owner)
    r = client.post(URL, {"certificate": cert, "private_key": other_key})
    assert_field_error(r, "form", "private_key", "private key does not match the certificate")
    assert not DomainCertificate.objects.exists()
    body = page(r)
    assert_no_key(body, other_key)
    # The key textarea comes back empty; the certificate is kept to fix the key.
    assert '<textarea name="private_key"' in body
    key_area = body.split('<textarea name="private_key"')[1].split("</textarea>")[0]
    assert key_area.split(">", 1)[1].strip() == ""
    assert cert.splitlines()[1] in body


def test_it_refuses_an_expired_certificate(client, owner, certificate_factory):
    add_streaming(owner)
    now = dt.datetime.now(dt.UTC)
    cert, key = certificate_factory(
        ["play.example.com"], not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1)
    )
    client.force_login(owner)
    r = client.post(URL, {"certificate": cert, "private_key": key})
    assert_field_error(r, "form", "certificate", "certificate expired on")
    assert_no_key(page(r), key)
    assert not DomainCertificate.objects.exists()


def test_it_refuses_a_certificate_for_another_name(client, owner, certificate_factory):
    add_streaming(owner)
    cert, key = certificate_factory(["other.example.org"])
    client.force_login(owner)
    r = client.post(URL, {"certificate": cert, "private_key": key})
    assert_field_error(r, "form", "certificate", "certificate does not cover play.example.com")
    assert_no_key(page(r), key)
    assert not DomainCertificate.objects.exists()


def test_it_refuses_text_that_is_not_pem(client, owner, certificate_factory):
    add_streaming(owner)
    _, key = certificate_factory(["play.example.com"])
    client.force_login(owner)
    r = client.post(URL, {"certificate": "hello", "private_key": key})
    assert_field_error(r, "form", "certificate", "certificate is not a valid PEM certificate")
    assert not DomainCertificate.objects.exists()


@pytest.mark.parametrize(
    ("field", "words"), [("certificate", "certificate is required"), ("private_key", "private key is required")]
)
def test_it_requires_the_certificate_and_the_key(client, owner, certificate_factory, field, words):
    add_streaming(owner)
    cert, key = certificate_factory(["play.example.com"], key=ec.generate_private_key(ec.SECP384R1()))
    client.force_login(owner)
    r = client.post(URL, {"certificate": cert, "private_key": key, field: ""})
    assert_field_error(r, "form", field, words)
    assert_no_key(page(r), key)
    assert not DomainCertificate.objects.exists()


def test_it_refuses_a_name_too_long(client, owner, certificate_factory):
    add_streaming(owner)
    cert, key = certificate_factory(["play.example.com"])
    client.force_login(owner)
    r = client.post(URL, {"name": "n" * 129, "certificate": cert, "private_key": key})
    assert_field_error(r, "form", "name", "certificate name must be at most 128 characters")
    assert not DomainCertificate.objects.exists()


def test_it_deletes_the_certificate(client, owner, certificate_factory):
    domain = add_streaming(owner)
    cert, key = certificate_factory(["play.example.com"])
    services.upload_certificate(domain, cert, key)
    client.force_login(owner)
    assert client.get(URL + "delete/").status_code == 405
    r = client.post(URL + "delete/")
    assert r["Location"] == URL
    assert not DomainCertificate.objects.exists()
