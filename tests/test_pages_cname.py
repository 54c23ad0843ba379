import pytest

from domains.models import CnameStatus, Domain
from tests.pagesupport import add_ingest, assert_login_redirect, page

pytestmark = pytest.mark.django_db

URL = "/domains/push.example.com/cname/"


def test_it_requires_login(client, owner):
    add_ingest(owner)
    assert_login_redirect(client.get(URL), URL)
    assert_login_redirect(client.post(URL + "verify/"), URL + "verify/")


def test_it_is_a_404_for_an_outsider(client, owner, outsider, loopback_dns):
    domain = add_ingest(owner)
    loopback_dns.set_cname(domain.domain_name, domain.cname)
    client.force_login(outsider)
    assert client.get(URL).status_code == 404
    assert client.post(URL + "verify/").status_code == 404
    assert Domain.objects.get().cname_checked_at is None


def test_it_shows_the_record_to_add_and_how_to_check_it(client, owner):
    domain = add_ingest(owner)
    client.force_login(owner)
    r = client.get(URL)
    assert r.status_code == 200
    body = page(r)
    assert '<code id="cname-host">push.example.com</code>' in body
    assert "<code>CNAME</code>" in body
    assert f'<code id="cname-value">{domain.cname}</code>' in body
    assert "nslookup -type=cname push.example.com" in body
    assert "Not checked yet" in body
    assert 'action="/domains/push.example.com/cname/verify/"' in body


def test_it_verifies_a_configured_cname_over_dns(client, owner, loopback_dns):
    domain = add_ingest(owner)
    loopback_dns.set_cname(domain.domain_name, domain.cname)
    client.force_login(owner)
    r = client.post(URL + "verify/")
    assert r["Location"] == URL
    domain.refresh_from_db()
    assert domain.cname_status == CnameStatus.CONFIGURED
    body = page(client.get(URL))
    assert "CNAME configured" in body
    assert f'id="cname-found">push.example.com is a CNAME for {domain.cname}<' in body
    assert "Online" in body


def test_it_shows_pending_with_what_was_found(client, owner, loopback_dns):
    add_ingest(owner)
    loopback_dns.set_cname("push.example.com", "elsewhere.cdn.example")
    client.force_login(owner)
    client.post(URL + "verify/")
    body = page(client.get(URL))
    assert "CNAME pending" in body
    assert "is a CNAME for elsewhere.cdn.example, not" in body
    assert Domain.objects.get().cname_status == CnameStatus.PENDING


def test_it_reports_a_name_missing_from_dns(client, owner, loopback_dns):
    add_ingest(owner)
    client.force_login(owner)
    client.post(URL + "verify/")
    assert "does not exist in DNS (NXDOMAIN)" in page(client.get(URL))


def test_it_verifies_only_on_post(client, owner, loopback_dns):
    add_ingest(owner)
    client.force_login(owner)
    assert client.get(URL + "verify/").status_code == 405
    assert Domain.objects.get().cname_checked_at is None
