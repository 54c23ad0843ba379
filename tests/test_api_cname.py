import pytest

from domains.models import Domain
from tests.apisupport import add_streaming, client_for, domain_url

pytestmark = pytest.mark.django_db

TARGET = "play.example.com.cname.livecenter.example"


def test_it_shows_the_record_to_add(owner):
    add_streaming(owner)
    response = client_for(owner).get(domain_url("play.example.com", "cname-check"))
    assert response.status_code == 200
    assert response.json() == {
        "record": {"host": "play.example.com", "type": "CNAME", "value": TARGET},
        "status": "pending",
        "detail": "",
        "checked_at": None,
    }


def test_it_finds_a_configured_cname_over_dns(owner, loopback_dns):
    add_streaming(owner)
    loopback_dns.set_cname("play.example.com", TARGET)
    client = client_for(owner)
    response = client.post(domain_url("play.example.com", "cname-check"))
    assert response.status_code == 200
    body = response.json()
    assert body["configured"] is True
    assert body["status"] == "configured"
    assert body["found"] == [TARGET]
    assert TARGET in body["detail"]
    assert body["checked_at"]
    assert body["record"]["value"] == TARGET
    assert client.get(domain_url("play.example.com")).json()["status"] == "online"
    last = client.get(domain_url("play.example.com", "cname-check")).json()
    assert last["status"] == "configured" and last["checked_at"] == body["checked_at"]


def test_it_reports_a_cname_pointing_elsewhere_as_pending(owner, loopback_dns):
    add_streaming(owner)
    loopback_dns.set_cname("play.example.com", "cdn.other.example")
    body = client_for(owner).post(domain_url("play.example.com", "cname-check")).json()
    assert body["configured"] is False
    assert body["status"] == "pending"
    assert body["found"] == ["cdn.other.example"]
    assert "not " + TARGET in body["detail"]
    assert Domain.objects.get(domain_name="play.example.com").status == "configuring"


def test_it_reports_a_missing_name(owner, loopback_dns):
    add_streaming(owner)
    body = client_for(owner).post(domain_url("play.example.com", "cname-check")).json()
    assert body["configured"] is False
    assert "NXDOMAIN" in body["detail"]


@pytest.mark.parametrize("method", ["get", "post"])
def test_it_hides_the_owners_domain_from_an_outsider(owner, outsider, loopback_dns, method):
    add_streaming(owner)
    loopback_dns.set_cname("play.example.com", TARGET)
    response = getattr(client_for(outsider), method)(domain_url("play.example.com", "cname-check"))
    assert response.status_code == 404
    assert Domain.objects.get(domain_name="play.example.com").cname_checked_at is None


@pytest.mark.parametrize("method", ["get", "post"])
def test_it_refuses_anonymous(owner, loopback_dns, method):
    add_streaming(owner)
    response = getattr(client_for(), method)(domain_url("play.example.com", "cname-check"))
    assert response.status_code in (401, 403)
    assert Domain.objects.get(domain_name="play.example.com").cname_checked_at is None


def test_it_answers_404_for_an_unknown_domain(owner, loopback_dns):
    response = client_for(owner).post(domain_url("nothing.example.com", "cname-check"))
    assert response.status_code == 404
    assert "detail" in response.json()
