"""A local or test domain (Domain.local, issue 19): no DNS record expected,
so it is online without its CNAME, and the troubleshooter says why it does
not check the CNAME rather than failing or passing it."""

from __future__ import annotations

import pytest

from domains import services
from domains.lib.hostnames import in_test_zone
from domains.models import Domain
from monitoring.troubleshoot import check_url
from tests.apisupport import client_for, domain_url
from tests.pagesupport import page
from tests.streamsupport import add_pair

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("name", "local"),
    [("play.lab.test", True), ("play.localhost", True), ("a.b.invalid", True), ("play.example", True),
     ("play.example.com", False), ("test.example.com", False), ("play.testing", False)],
)  # fmt: skip
def test_it_knows_the_reserved_test_zones(name, local):
    assert in_test_zone(name) is local


def test_a_local_domain_is_online_without_its_cname(owner):
    push, _ = add_pair(owner)
    assert (push.status, push.get_status_display()) == ("configuring", "Configuring")
    services.update_domain(push, local=True)
    assert (push.status, push.get_status_display()) == ("online", "Online (local)")
    services.set_switches(push, enabled=False)
    assert (push.status, push.get_status_display()) == ("offline", "Offline")


def test_a_domain_under_a_test_zone_is_local_from_the_start(owner):
    domain = services.add_domain(owner, "push.lab.test", "ingest", "overseas", "ap-southeast-1")
    assert domain.local and domain.get_status_display() == "Online (local)"
    other = services.add_domain(owner, "push.example.com", "ingest", "overseas", "ap-southeast-1")
    assert not other.local


def test_the_api_adds_lists_and_changes_the_flag(owner, outsider):
    api = client_for(owner)
    response = api.post(
        "/api/v1/domains/",
        {"domain_name": "push.example.com", "domain_type": "ingest", "region": "overseas",
         "live_center": "ap-southeast-1", "local": True},
        format="json",
    )  # fmt: skip
    assert response.status_code == 201, response.json()
    assert (response.json()["local"], response.json()["status"]) == (True, "online")
    response = api.patch(domain_url("push.example.com"), {"local": False}, format="json")
    assert (response.json()["local"], response.json()["status"]) == (False, "configuring")
    response = api.patch(domain_url("push.example.com"), {"local": "maybe"}, format="json")
    assert response.status_code == 400 and "local" in str(response.json()), response.json()
    # Another operator cannot see or change it.
    assert client_for(outsider).patch(domain_url("push.example.com"), {"local": True}, format="json").status_code == 404
    assert Domain.objects.get(domain_name="push.example.com").local is False


def test_the_console_marks_and_unmarks_a_domain(client, owner, outsider):
    push, _ = add_pair(owner)
    client.force_login(owner)
    body = page(client.get("/domains/push.example.com/cname/"))
    assert "Mark as local or test domain (no DNS)" in body
    response = client.post("/domains/push.example.com/cname/local/", {"local": "on"}, follow=True)
    body = page(response)
    assert "push.example.com is now a local domain" in body and 'id="local-badge"' in body
    listed = page(client.get("/domains/"))
    assert "Online (local)" in listed and "Not needed (local)" in listed
    push.refresh_from_db()
    assert push.local
    client.post("/domains/push.example.com/cname/local/", {"local": "off"})
    push.refresh_from_db()
    assert not push.local
    # Only the owner: another operator's request is a 404 and changes nothing.
    client.force_login(outsider)
    assert client.post("/domains/push.example.com/cname/local/", {"local": "on"}).status_code == 404
    push.refresh_from_db()
    assert not push.local
    assert client.get("/domains/push.example.com/cname/local/").status_code in (404, 405)


def test_the_add_form_takes_the_flag(client, owner):
    client.force_login(owner)
    response = client.post(
        "/domains/add/",
        {"domain_type": "ingest", "domain_name": "push.example.com", "region": "overseas",
         "live_center": "ap-southeast-1", "local": "on"},
        follow=True,
    )  # fmt: skip
    assert "Added push.example.com as a local domain" in page(response)
    assert Domain.objects.get(domain_name="push.example.com").local


def test_the_troubleshooter_skips_the_cname_of_a_local_domain_and_says_why(owner):
    push, play = add_pair(owner)
    url = services.generate_urls(owner, "push.example.com", "live", "cam1").playback["flv"]
    cname = {s.name: s for s in check_url(owner, url).steps}["cname"]
    assert cname.status == "fail"
    services.update_domain(play, local=True)
    report = check_url(owner, url)
    cname = {s.name: s for s in report.steps}["cname"]
    assert cname.status == "skip"
    assert cname.reason == (
        "not checked: play.example.com is marked as a local or test domain (no DNS): clients reach the node by its"
        " address with domain="
    )
    assert "cname" not in {s.name for s in report.steps if s.status == "fail"}
