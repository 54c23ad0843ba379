import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from domains import services
from domains.models import DomainCertificate
from tests.apisupport import add_streaming, client_for, domain_url

pytestmark = pytest.mark.django_db

URL = domain_url("play.example.com", "certificate")


@pytest.fixture
def domain(owner):
    return add_streaming(owner)


def upload_body(certificate_factory, names=("play.example.com",), **kwargs) -> dict:
    cert, key = certificate_factory(list(names), **kwargs)
    return {"name": "play-cert", "certificate": cert, "private_key": key}


def assert_no_private_key(response) -> None:
    text = response.content.decode()
    assert "PRIVATE KEY" not in text and "private_key" not in text


@pytest.mark.parametrize("method", ["put", "post"])
def test_it_uploads_a_certificate(owner, domain, certificate_factory, method):
    body = upload_body(certificate_factory, names=("play.example.com", "*.example.com"))
    response = getattr(client_for(owner), method)(URL, body, format="json")
    assert response.status_code == 200
    data = response.json()
    assert data["name"] == "play-cert"
    assert data["subject"] == "CN=play.example.com"
    assert data["issuer"] == "CN=play.example.com"
    assert data["sans"] == ["play.example.com", "*.example.com"]
    assert data["not_before"] and data["not_after"]
    assert len(data["fingerprint_sha256"].split(":")) == 32
    assert_no_private_key(response)
    assert DomainCertificate.objects.get(domain=domain).name == "play-cert"


def test_it_names_the_certificate_when_no_name_is_given(owner, domain, certificate_factory):
    body = upload_body(certificate_factory)
    del body["name"]
    response = client_for(owner).put(URL, body, format="json")
    assert response.status_code == 200
    assert response.json()["name"].startswith("play.example.com-")


def test_it_shows_the_certificate_but_never_the_key(owner, domain, certificate_factory):
    cert, key = certificate_factory(["play.example.com"])
    services.upload_certificate(domain, cert, key, name="mine")
    client = client_for(owner)
    response = client.get(URL)
    assert response.status_code == 200
    assert response.json()["name"] == "mine"
    assert_no_private_key(response)
    detail = client.get(domain_url("play.example.com"))
    assert detail.json()["certificate"]["name"] == "mine"
    assert_no_private_key(detail)


def test_it_answers_404_when_there_is_no_certificate(owner, domain):
    response = client_for(owner).get(URL)
    assert response.status_code == 404
    assert response.json() == {"detail": "play.example.com has no certificate"}


def test_it_replaces_a_certificate(owner, domain, certificate_factory):
    client = client_for(owner)
    client.put(URL, upload_body(certificate_factory), format="json")
    response = client.put(URL, {**upload_body(certificate_factory), "name": "second"}, format="json")
    assert response.status_code == 200
    assert list(DomainCertificate.objects.values_list("name", flat=True)) == ["second"]


def test_it_rejects_a_key_that_does_not_match(owner, domain, certificate_factory):
    body = upload_body(certificate_factory)
    _, other_key = certificate_factory(["play.example.com"], key=ec.generate_private_key(ec.SECP256R1()))
    response = client_for(owner).put(URL, {**body, "private_key": other_key}, format="json")
    assert response.status_code == 400
    assert response.json() == {"private_key": ["private key does not match the certificate"]}
    assert not DomainCertificate.objects.exists()


def test_it_rejects_an_expired_certificate(owner, domain, certificate_factory):
    now = dt.datetime.now(dt.UTC)
    body = upload_body(
        certificate_factory, not_before=now - dt.timedelta(days=90), not_after=now - dt.timedelta(days=1)
    )
    response = client_for(owner).put(URL, body, format="json")
    assert response.status_code == 400
    [message] = response.json()["certificate"]
    assert message.startswith("certificate expired on ") and message.endswith("UTC; upload a current one")
    assert not DomainCertificate.objects.exists()


def test_it_rejects_a_certificate_that_does_not_cover_the_domain(owner, domain, certificate_factory):
    body = upload_body(certificate_factory, names=("other.example.com", "*.play.example.com"))
    response = client_for(owner).put(URL, body, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "certificate": ["certificate does not cover play.example.com (it covers other.example.com, *.play.example.com)"]
    }
    assert not DomainCertificate.objects.exists()


def test_it_keeps_the_current_certificate_when_an_upload_fails(owner, domain, certificate_factory):
    cert, key = certificate_factory(["play.example.com"])
    services.upload_certificate(domain, cert, key, name="good")
    bad = upload_body(certificate_factory, names=("other.example.com",))
    assert client_for(owner).put(URL, bad, format="json").status_code == 400
    assert DomainCertificate.objects.get(domain=domain).name == "good"


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"certificate": "not a pem"}, "certificate", "certificate is not a valid PEM certificate"),
        ({"certificate": ""}, "certificate", "paste the certificate in PEM format"),
        ({"private_key": "not a pem"}, "private_key", "private key is not a valid PEM private key"),
        ({"private_key": ""}, "private_key", "paste the private key in PEM format"),
        ({"name": "n" * 129}, "name", "certificate name must be at most 128 characters"),
        ({"certificate": None}, "certificate", "This field may not be null."),
        ({"fingerprint_sha256": "AA"}, "fingerprint_sha256", "fingerprint sha256 cannot be changed"),
        ({"pem": "x"}, "pem", "unknown field"),
    ],
)
def test_it_rejects_bad_input_naming_the_field(owner, domain, certificate_factory, change, field, message):
    body = {**upload_body(certificate_factory), **change}
    response = client_for(owner).put(URL, body, format="json")
    assert response.status_code == 400
    assert message in response.json()[field][0]
    assert not DomainCertificate.objects.exists()


@pytest.mark.parametrize("field", ["certificate", "private_key"])
def test_it_names_a_missing_field(owner, domain, certificate_factory, field):
    body = upload_body(certificate_factory)
    del body[field]
    response = client_for(owner).put(URL, body, format="json")
    assert response.status_code == 400
    assert response.json() == {field: ["This field is required."]}


def test_it_deletes_the_certificate(owner, domain, certificate_factory):
    cert, key = certificate_factory(["play.example.com"])
    services.upload_certificate(domain, cert, key)
    assert client_for(owner).delete(URL).status_code == 204
    assert not DomainCertificate.objects.exists()


@pytest.mark.parametrize("method", ["get", "put", "post", "delete"])
def test_it_hides_the_owners_domain_from_an_outsider(owner, outsider, domain, certificate_factory, method):
    cert, key = certificate_factory(["play.example.com"])
    services.upload_certificate(domain, cert, key, name="owners")
    body = {**upload_body(certificate_factory), "name": "outsiders"}
    response = getattr(client_for(outsider), method)(URL, body, format="json")
    assert response.status_code == 404
    assert list(DomainCertificate.objects.values_list("name", flat=True)) == ["owners"]


@pytest.mark.parametrize("method", ["get", "put", "post", "delete"])
def test_it_refuses_anonymous(owner, domain, certificate_factory, method):
    response = getattr(client_for(), method)(URL, upload_body(certificate_factory), format="json")
    assert response.status_code in (401, 403)
    assert not DomainCertificate.objects.exists()
