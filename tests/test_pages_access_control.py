"""The Access lists tab of a domain (/domains/{name}/access-control/)."""

import pytest

from domains import services
from domains.models import Domain
from tests.pagesupport import add_ingest, add_streaming, assert_field_error, assert_login_redirect, page

pytestmark = pytest.mark.django_db

URL = "/domains/play.example.com/access-control/"
PUSH_URL = "/domains/push.example.com/access-control/"


def form_data(**changes):
    return {"ip_mode": "off", "ip_entries": "", "referer_mode": "off", "referer_entries": "", **changes}


def domain(name: str = "play.example.com") -> Domain:
    return Domain.objects.get(domain_name=name)


def test_it_requires_login(client, owner):
    add_streaming(owner)
    assert_login_redirect(client.get(URL), URL)
    assert_login_redirect(client.post(URL, form_data(ip_mode="deny", ip_entries="192.0.2.1")), URL)
    assert domain().ip_acl_mode == "off"


def test_it_is_a_404_for_an_outsider(client, owner, outsider):
    add_streaming(owner)
    client.force_login(outsider)
    assert client.get(URL).status_code == 404
    assert client.post(URL, form_data(ip_mode="allow", ip_entries="192.0.2.1")).status_code == 404
    assert domain().ip_acl_mode == "off"


def test_it_shows_both_lists_off_on_a_streaming_domain(client, owner):
    add_streaming(owner)
    client.force_login(owner)
    body = page(client.get(URL))
    assert 'id="acl-ip">Off<' in body
    assert 'id="acl-referer">Off<' in body
    assert 'name="referer_entries"' in body and 'name="referer_allow_empty"' in body
    assert f'href="{URL}"' in body  # the tab


def test_it_saves_lists_one_entry_a_line_and_shows_them(client, owner):
    add_streaming(owner)
    client.force_login(owner)
    r = client.post(
        URL,
        form_data(
            ip_mode="deny",
            ip_entries="127.0.0.2\r\n10.0.0.0/8, 2001:db8::/32\r\n",
            referer_mode="allow",
            referer_entries="player.example.com\n*.example.org",
            referer_allow_empty="on",
        ),
    )
    assert r["Location"] == URL
    d = domain()
    assert (d.ip_acl_mode, d.ip_acl_entries) == ("deny", ["127.0.0.2", "10.0.0.0/8", "2001:db8::/32"])
    assert (d.referer_acl_mode, d.referer_acl_entries, d.referer_acl_allow_empty) == (
        "allow", ["player.example.com", "*.example.org"], True
    )  # fmt: skip
    body = page(client.get(URL))
    assert (
        "IP list set to Deny list, addresses and networks updated, referer list set to Allow list, hosts updated"
        " and allow an empty Referer turned on for play.example.com; nodes apply them in seconds."
    ) in body
    assert "Deny list: <code>127.0.0.2</code>, <code>10.0.0.0/8</code>, <code>2001:db8::/32</code>" in body
    assert "(empty Referer allowed)" in body


def test_switching_a_list_off_forgets_its_entries(client, owner):
    streaming = add_streaming(owner)
    services.configure_access_control(streaming, ip_mode="deny", ip_entries=["192.0.2.1"])
    client.force_login(owner)
    client.post(URL, form_data(ip_mode="off", ip_entries="192.0.2.1"))
    assert (domain().ip_acl_mode, domain().ip_acl_entries) == ("off", [])


@pytest.mark.parametrize(
    "changes, field, words",
    [
        ({"ip_mode": "deny", "ip_entries": "10.0.0.1/8"}, "ip_entries", "did you mean 10.0.0.0/8?"),
        ({"ip_mode": "allow", "ip_entries": ""}, "ip_entries", "add at least one address or network"),
        ({"referer_mode": "deny", "referer_entries": "http://evil.example/"}, "referer_entries", "is not a host name"),
        ({"ip_mode": "sometimes"}, "ip_mode", "ip list must be one of the listed choices"),
    ],
)
def test_it_names_the_field_of_bad_input_and_saves_nothing(client, owner, changes, field, words):
    add_streaming(owner)
    client.force_login(owner)
    assert_field_error(client.post(URL, form_data(**changes)), "form", field, words)
    assert (domain().ip_acl_mode, domain().referer_acl_mode) == ("off", "off")


def test_an_ingest_domain_has_an_ip_list_only(client, owner):
    add_ingest(owner)
    client.force_login(owner)
    body = page(client.get(PUSH_URL))
    assert 'name="ip_entries"' in body
    assert 'name="referer_entries"' not in body
    r = client.post(PUSH_URL, {"ip_mode": "allow", "ip_entries": "203.0.113.7", "referer_mode": "allow"})
    assert r["Location"] == PUSH_URL
    d = domain("push.example.com")
    assert (d.ip_acl_mode, d.ip_acl_entries, d.referer_acl_mode) == ("allow", ["203.0.113.7"], "off")
