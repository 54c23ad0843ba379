"""The certificate page's HTTPS switches and expiry warning (issue 15)."""

import datetime as dt

import pytest

from domains import services
from domains.models import Domain, DomainCertificate
from tests.pagesupport import add_streaming, assert_field_error, page

pytestmark = pytest.mark.django_db

URL = "/domains/play.example.com/certificate/"
HTTPS_URL = URL + "https/"


@pytest.fixture
def domain(owner, certificate_factory):
    domain = add_streaming(owner)
    cert, key = certificate_factory(["play.example.com"])
    services.upload_certificate(domain, cert, key)
    return domain


def stored() -> Domain:
    return Domain.objects.get(domain_name="play.example.com")


def test_it_switches_https_and_the_redirect(client, owner, domain):
    client.force_login(owner)
    assert 'id="https-form"' in page(client.get(URL))
    response = client.post(HTTPS_URL, {"https_enabled": "on", "https_redirect": "https"})
    assert response.status_code == 302
    assert (stored().https_enabled, stored().https_redirect) == (True, "https")
    client.post(HTTPS_URL, {"https_redirect": ""})
    assert (stored().https_enabled, stored().https_redirect) == (False, "")
    assert "HTTPS off" in page(client.get("/domains/play.example.com/"))


def test_it_refuses_a_redirect_with_https_off(client, owner, domain):
    client.force_login(owner)
    response = client.post(HTTPS_URL, {"https_redirect": "https"})
    assert_field_error(response, "https_form", "https_redirect", "turn HTTPS on before forcing a redirect")
    assert stored().https_redirect == ""


def test_it_shows_the_days_left_and_warns_30_days_ahead(client, owner, domain):
    client.force_login(owner)
    cert = DomainCertificate.objects.get(domain=domain)
    assert "89 days left" in page(client.get(URL))  # issued for 90 days, a moment ago
    assert 'id="certificate-expiry-warning"' not in page(client.get(URL))
    cert.not_after = dt.datetime.now(dt.UTC) + dt.timedelta(days=29, hours=1)
    cert.save()
    body = page(client.get(URL))
    assert "29 days left" in body and "expires in 29 days" in body
    cert.not_after = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    cert.save()
    assert "nodes no longer serve it" in page(client.get(URL))


def test_it_is_a_404_for_an_outsider(client, outsider, domain):
    client.force_login(outsider)
    assert client.post(HTTPS_URL, {"https_enabled": "on"}).status_code == 404
