"""A domain's access lists in the API (/api/v1/domains/{name}/access-control/)."""

import pytest

from domains.models import Domain
from livecenter.media.access import MAX_IP_ENTRIES
from tests.apisupport import add_ingest, add_streaming, client_for, domain_url

pytestmark = pytest.mark.django_db

PLAY_URL = domain_url("play.example.com", "access-control")
PUSH_URL = domain_url("push.example.com", "access-control")


def stored(name: str = "play.example.com") -> Domain:
    return Domain.objects.get(domain_name=name)


def lists(domain: Domain) -> tuple:
    return (domain.ip_acl_mode, domain.ip_acl_entries, domain.referer_acl_mode, domain.referer_acl_entries,
            domain.referer_acl_allow_empty)  # fmt: skip


@pytest.fixture
def streaming(owner):
    return add_streaming(owner)


def test_it_shows_the_lists_off_on_a_new_domain(owner, streaming):
    assert client_for(owner).get(PLAY_URL).json() == {
        "ip_mode": "off",
        "ip_entries": [],
        "ip_max_entries": 100,
        "referer_mode": "off",
        "referer_entries": [],
        "referer_allow_empty": False,
        "referer_max_entries": 100,
    }


def test_it_sets_both_lists_in_normal_form(owner, streaming):
    body = {
        "ip_mode": "deny",
        "ip_entries": ["127.0.0.2", "10.0.0.0/8", "2001:DB8::/32", "127.0.0.2"],
        "referer_mode": "allow",
        "referer_entries": ["Player.Example.com", "*.example.org"],
        "referer_allow_empty": True,
    }
    response = client_for(owner).patch(PLAY_URL, body, format="json")
    assert response.status_code == 200
    answer = response.json()
    assert answer["ip_entries"] == ["127.0.0.2", "10.0.0.0/8", "2001:db8::/32"]
    assert answer["referer_entries"] == ["player.example.com", "*.example.org"]
    assert lists(stored()) == (
        "deny", ["127.0.0.2", "10.0.0.0/8", "2001:db8::/32"], "allow", ["player.example.com", "*.example.org"], True
    )  # fmt: skip


def test_a_field_left_out_keeps_its_value_and_switching_off_forgets_the_entries(owner, streaming):
    client = client_for(owner)
    client.put(PLAY_URL, {"ip_mode": "allow", "ip_entries": ["192.0.2.0/24"]}, format="json")
    client.patch(PLAY_URL, {"referer_mode": "deny", "referer_entries": ["evil.example"]}, format="json")
    assert lists(stored()) == ("allow", ["192.0.2.0/24"], "deny", ["evil.example"], False)
    client.patch(PLAY_URL, {"ip_mode": "deny"}, format="json")  # the same entries, now refused
    assert lists(stored())[:2] == ("deny", ["192.0.2.0/24"])
    assert client.patch(PLAY_URL, {"ip_mode": "off"}, format="json").json()["ip_entries"] == []
    assert lists(stored()) == ("off", [], "deny", ["evil.example"], False)


def test_an_ingest_domain_has_an_ip_list(owner):
    add_ingest(owner)
    response = client_for(owner).patch(PUSH_URL, {"ip_mode": "allow", "ip_entries": ["203.0.113.7"]}, format="json")
    assert response.status_code == 200
    assert lists(stored("push.example.com"))[:2] == ("allow", ["203.0.113.7"])


@pytest.mark.parametrize(
    "body, field, message",
    [
        ({"ip_mode": "deny", "ip_entries": ["10.0.0.1/8"]}, "ip_entries",
         "IP list: '10.0.0.1/8' has bits set past its prefix length: did you mean 10.0.0.0/8?"),
        ({"ip_mode": "allow", "ip_entries": ["192.0.2.1", "evil"]}, "ip_entries",
         "IP list: 'evil' is not an IP address or network"),
        ({"ip_mode": "allow", "ip_entries": [f"10.0.0.{i}" for i in range(MAX_IP_ENTRIES)] + ["10.0.1.0"]},
         "ip_entries", "IP list: at most 100 addresses or networks, not 101"),
        ({"ip_mode": "allow", "ip_entries": ["", " "]}, "ip_entries",
         "IP list: add at least one address or network, or switch the list off"),
        ({"ip_mode": "deny", "ip_entries": []}, "ip_entries", "add at least one address or network"),
        ({"ip_mode": "off", "ip_entries": ["192.0.2.1"]}, "ip_entries",
         "IP list: the list is off; choose allow or deny to use entries"),
        ({"ip_mode": "both", "ip_entries": ["192.0.2.1"]}, "ip_mode", "IP list mode must be one of: off, allow, deny"),
        ({"referer_mode": "allow", "referer_entries": ["https://player.example.com/"]}, "referer_entries",
         "Referer list: 'https://player.example.com/' is not a host name"),
        ({"referer_mode": "deny", "referer_entries": ["*.com"]}, "referer_entries",
         "a wildcard is `*.` and a domain name"),
        ({"referer_mode": "deny", "referer_entries": ["evil.example"], "referer_allow_empty": True},
         "referer_allow_empty", "allowing an empty Referer applies to an allow list only"),
        ({"ip_entries": "192.0.2.1"}, "ip_entries", 'Expected a list of items but got type "str".'),
        ({"ip_max_entries": 5}, "ip_max_entries", "ip max entries cannot be changed"),
        ({"geo_block": ["CN"]}, "geo_block", "unknown field"),
    ],
)  # fmt: skip
def test_it_rejects_bad_input_naming_the_field_and_saves_nothing(owner, streaming, body, field, message):
    client = client_for(owner)
    client.patch(PLAY_URL, {"ip_mode": "deny", "ip_entries": ["198.51.100.1"]}, format="json")
    before = lists(stored())
    response = client.patch(PLAY_URL, {"referer_mode": "off", **body}, format="json")
    assert response.status_code == 400
    assert message in response.json()[field][0]
    assert lists(stored()) == before


def test_it_refuses_a_referer_list_on_an_ingest_domain(owner):
    add_ingest(owner)
    response = client_for(owner).patch(
        PUSH_URL, {"referer_mode": "allow", "referer_entries": ["player.example.com"]}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "referer_mode": ["the Referer list applies only to streaming domains: RTMP and SRT publishers send no Referer"]
    }
    assert lists(stored("push.example.com")) == ("off", [], "off", [], False)


def test_it_hides_the_owners_domain_from_an_outsider(owner, outsider, streaming):
    client = client_for(outsider)
    assert client.get(PLAY_URL).status_code == 404
    response = client.patch(PLAY_URL, {"ip_mode": "allow", "ip_entries": ["192.0.2.1"]}, format="json")
    assert response.status_code == 404
    assert lists(stored()) == ("off", [], "off", [], False)


def test_it_refuses_anonymous(owner, streaming):
    response = client_for().patch(PLAY_URL, {"ip_mode": "allow", "ip_entries": ["192.0.2.1"]}, format="json")
    assert response.status_code in (401, 403)
    assert lists(stored()) == ("off", [], "off", [], False)
