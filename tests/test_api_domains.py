import pytest

from domains import services
from domains.api import DomainListView
from domains.models import Domain
from tests.apisupport import add_ingest, add_streaming, client_for, domain_url

pytestmark = pytest.mark.django_db

LIST_URL = "/api/v1/domains/"
NEW_DOMAIN = {
    "domain_name": "live.example.com",
    "domain_type": "streaming",
    "region": "overseas",
    "live_center": "ap-southeast-1",
}


# --- List ---------------------------------------------------------------------


def test_it_lists_only_the_operators_own_domains(owner, outsider):
    add_ingest(owner)
    add_streaming(owner)
    add_ingest(outsider, "theirs.example.com")
    response = client_for(owner).get(LIST_URL)
    assert response.status_code == 200
    assert response.json()["count"] == 2
    names = {d["domain_name"] for d in response.json()["results"]}
    assert names == {"push.example.com", "play.example.com"}


def test_it_shows_an_outsider_none_of_the_owners_domains(owner, outsider):
    add_ingest(owner)
    response = client_for(outsider).get(LIST_URL)
    assert response.status_code == 200
    assert response.json()["count"] == 0


def test_it_refuses_the_list_to_anonymous(owner):
    add_ingest(owner)
    assert client_for().get(LIST_URL).status_code in (401, 403)


def test_it_filters_by_type_and_status(owner):
    add_ingest(owner)
    streaming = add_streaming(owner)
    services.set_switches(streaming, enabled=False)
    client = client_for(owner)
    by_type = client.get(LIST_URL, {"domain_type": "ingest"}).json()
    assert [d["domain_name"] for d in by_type["results"]] == ["push.example.com"]
    offline = client.get(LIST_URL, {"status": "offline"}).json()
    assert [d["domain_name"] for d in offline["results"]] == ["play.example.com"]
    configuring = client.get(LIST_URL, {"status": "configuring", "domain_type": "streaming"}).json()
    assert configuring["count"] == 0


@pytest.mark.parametrize("field", ["domain_type", "status"])
def test_it_rejects_an_unknown_filter_value_naming_it(owner, field):
    response = client_for(owner).get(LIST_URL, {field: "sideways"})
    assert response.status_code == 400
    assert field in response.json()


def test_it_paginates_the_list(owner, monkeypatch):
    monkeypatch.setattr(DomainListView.pagination_class, "page_size", 2)
    for i in range(3):
        add_ingest(owner, f"push{i}.example.com")
    client = client_for(owner)
    first = client.get(LIST_URL).json()
    assert first["count"] == 3 and len(first["results"]) == 2 and first["next"]
    second = client.get(LIST_URL, {"page": 2}).json()
    assert len(second["results"]) == 1


# --- Create -------------------------------------------------------------------


def test_it_adds_a_domain(owner):
    response = client_for(owner).post(LIST_URL, NEW_DOMAIN, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["domain_name"] == "live.example.com"
    assert body["domain_type"] == "streaming"
    assert body["region"] == "overseas"
    assert body["live_center"] == "ap-southeast-1"
    assert body["live_center_name"] == "Singapore"
    assert body["cname"] == "live.example.com.cname.livecenter.example"
    assert body["status"] == "configuring"
    assert body["cname_status"] == "pending"
    assert body["enabled"] is True
    assert body["icp_filing_required"] is False
    assert body["rts_enabled"] is True and body["html5_transcode"] is True
    assert body["url_signing"] == {"enabled": True, "validity_minutes": 1440}
    assert body["certificate"] is None
    assert body["ingest_domain"] is None and body["main_domain"] is None and body["sub_domains"] == []
    assert Domain.objects.get(domain_name="live.example.com").owner == owner


def test_it_shows_no_rts_switches_and_no_keys_for_an_ingest_domain(owner):
    response = client_for(owner).post(LIST_URL, {**NEW_DOMAIN, "domain_type": "ingest"}, format="json")
    body = response.json()
    assert body["rts_enabled"] is None and body["html5_transcode"] is None
    assert body["streaming_domain"] is None
    domain = Domain.objects.get(domain_name="live.example.com")
    assert domain.auth_primary_key and domain.auth_primary_key not in response.content.decode()


def test_it_says_when_an_icp_filing_is_needed(owner):
    body = client_for(owner).post(LIST_URL, {**NEW_DOMAIN, "region": "mainland"}, format="json").json()
    assert body["icp_filing_required"] is True


def test_it_stores_an_idna_name_as_punycode(owner):
    response = client_for(owner).post(LIST_URL, {**NEW_DOMAIN, "domain_name": "Bücher.example.com"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["domain_name"] == "xn--bcher-kva.example.com"
    assert body["display_name"] == "bücher.example.com"
    assert body["cname"] == "xn--bcher-kva.example.com.cname.livecenter.example"
    assert Domain.objects.filter(domain_name="xn--bcher-kva.example.com").exists()


@pytest.mark.parametrize(
    "name, message",
    [
        ("*.example.com", "domain name must not be a wildcard; add each subdomain by itself"),
        ("bad_name.example.com", "label 'bad_name'"),
        ("localhost", "at least two labels"),
        ("http://live.example.com/", "without scheme, port or path"),
        ("", "This field may not be blank."),
    ],
)
def test_it_rejects_a_bad_domain_name_and_saves_nothing(owner, name, message):
    response = client_for(owner).post(LIST_URL, {**NEW_DOMAIN, "domain_name": name}, format="json")
    assert response.status_code == 400
    assert message in response.json()["domain_name"][0]
    assert not Domain.objects.exists()


def test_it_rejects_a_name_another_operator_has(owner, outsider):
    add_streaming(outsider, "live.example.com")
    response = client_for(owner).post(LIST_URL, {**NEW_DOMAIN, "domain_name": "LIVE.example.com."}, format="json")
    assert response.status_code == 400
    assert response.json() == {"domain_name": ["the specified domain already exists"]}
    assert not Domain.objects.filter(owner=owner).exists()


def test_it_stops_at_the_quota_naming_the_limit(owner, settings):
    settings.LIVECENTER_MAX_DOMAINS_PER_OPERATOR = 2
    add_ingest(owner, "a.example.com")
    add_ingest(owner, "b.example.com")
    response = client_for(owner).post(LIST_URL, NEW_DOMAIN, format="json")
    assert response.status_code == 400
    assert "limit of 2 domains" in response.json()["domain_name"][0]
    assert Domain.objects.filter(owner=owner).count() == 2


@pytest.mark.parametrize("field", ["domain_type", "region", "live_center"])
def test_it_rejects_a_bad_choice_naming_the_field(owner, field):
    response = client_for(owner).post(LIST_URL, {**NEW_DOMAIN, field: "elsewhere"}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert not Domain.objects.exists()


def test_it_names_every_missing_field(owner):
    response = client_for(owner).post(LIST_URL, {}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"domain_name", "domain_type", "region", "live_center"}


def test_it_rejects_a_field_it_does_not_take_when_adding(owner):
    response = client_for(owner).post(LIST_URL, {**NEW_DOMAIN, "owner": 99}, format="json")
    assert response.status_code == 400
    assert "unknown field" in response.json()["owner"][0]
    assert not Domain.objects.exists()


def test_it_rejects_a_body_that_is_not_an_object(owner):
    response = client_for(owner).post(LIST_URL, ["live.example.com"], format="json")
    assert response.status_code == 400
    assert not Domain.objects.exists()


def test_it_refuses_adding_to_anonymous():
    assert client_for().post(LIST_URL, NEW_DOMAIN, format="json").status_code in (401, 403)
    assert not Domain.objects.exists()


# --- Detail -------------------------------------------------------------------


def test_it_shows_a_domain_to_its_owner(owner):
    add_streaming(owner)
    response = client_for(owner).get(domain_url("play.example.com"))
    assert response.status_code == 200
    assert response.json()["domain_name"] == "play.example.com"


def test_it_finds_a_domain_by_its_unicode_name(owner):
    services.add_domain(owner, "bücher.example.com", "ingest", "overseas", "ap-southeast-1")
    client = client_for(owner)
    response = client.get(domain_url("bücher.example.com"))
    assert response.status_code == 200
    assert response.json()["domain_name"] == "xn--bcher-kva.example.com"
    assert client.get(domain_url("xn--bcher-kva.example.com")).status_code == 200


def test_it_hides_the_owners_domain_from_an_outsider(owner, outsider):
    add_streaming(owner)
    response = client_for(outsider).get(domain_url("play.example.com"))
    assert response.status_code == 404


def test_it_answers_404_for_a_name_that_is_not_a_hostname(owner):
    assert client_for(owner).get(domain_url("*.example.com")).status_code == 404


def test_it_refuses_a_domain_to_anonymous(owner):
    add_streaming(owner)
    assert client_for().get(domain_url("play.example.com")).status_code in (401, 403)


def test_it_shows_the_association_both_ways(owner):
    ingest = add_ingest(owner)
    streaming = add_streaming(owner)
    sub = add_streaming(owner, "play2.example.com")
    services.associate_ingest(streaming, ingest.domain_name)
    services.bind_main_domain(sub, streaming.domain_name)
    client = client_for(owner)
    assert client.get(domain_url("push.example.com")).json()["streaming_domain"] == "play.example.com"
    main = client.get(domain_url("play.example.com")).json()
    assert main["ingest_domain"] == "push.example.com"
    assert main["sub_domains"] == ["play2.example.com"]
    assert client.get(domain_url("play2.example.com")).json()["main_domain"] == "play.example.com"


# --- Update -------------------------------------------------------------------


def test_it_switches_rts_html5_and_enabled(owner):
    add_streaming(owner)
    response = client_for(owner).patch(
        domain_url("play.example.com"),
        {"rts_enabled": False, "html5_transcode": False, "enabled": False},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["rts_enabled"] is False and body["html5_transcode"] is False
    assert body["enabled"] is False and body["status"] == "offline"
    domain = Domain.objects.get(domain_name="play.example.com")
    assert (domain.rts_enabled, domain.html5_transcode, domain.enabled) == (False, False, False)


def test_it_refuses_to_change_the_domain_type(owner):
    add_streaming(owner)
    response = client_for(owner).patch(
        domain_url("play.example.com"), {"domain_type": "ingest", "enabled": False}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"domain_type": ["domain type cannot be changed"]}
    domain = Domain.objects.get(domain_name="play.example.com")
    assert domain.domain_type == "streaming" and domain.enabled is True


@pytest.mark.parametrize("field", ["domain_name", "live_center", "cname", "url_signing"])
def test_it_refuses_to_change_other_read_only_fields(owner, field):
    add_streaming(owner)
    response = client_for(owner).patch(domain_url("play.example.com"), {field: "x"}, format="json")
    assert response.status_code == 400
    assert response.json()[field] == [f"{field.replace('_', ' ')} cannot be changed"]


def test_it_rejects_an_unknown_field_in_an_update(owner):
    add_streaming(owner)
    response = client_for(owner).patch(domain_url("play.example.com"), {"rts": False}, format="json")
    assert response.status_code == 400
    assert "unknown field" in response.json()["rts"][0]
    assert Domain.objects.get(domain_name="play.example.com").rts_enabled is True


def test_it_rejects_a_switch_that_is_not_a_boolean(owner):
    add_streaming(owner)
    response = client_for(owner).patch(domain_url("play.example.com"), {"enabled": "maybe"}, format="json")
    assert response.status_code == 400
    assert "enabled" in response.json()
    assert Domain.objects.get(domain_name="play.example.com").enabled is True


def test_it_refuses_rts_on_an_ingest_domain(owner):
    add_ingest(owner)
    response = client_for(owner).patch(domain_url("push.example.com"), {"rts_enabled": True}, format="json")
    assert response.status_code == 400
    assert response.json() == {"rts_enabled": ["rts_enabled applies only to streaming domains"]}
    assert Domain.objects.get(domain_name="push.example.com").rts_enabled is False


def test_it_hides_the_owners_domain_from_an_outsiders_update(owner, outsider):
    add_streaming(owner)
    response = client_for(outsider).patch(domain_url("play.example.com"), {"enabled": False}, format="json")
    assert response.status_code == 404
    assert Domain.objects.get(domain_name="play.example.com").enabled is True


def test_it_refuses_an_update_to_anonymous(owner):
    add_streaming(owner)
    response = client_for().patch(domain_url("play.example.com"), {"enabled": False}, format="json")
    assert response.status_code in (401, 403)
    assert Domain.objects.get(domain_name="play.example.com").enabled is True


# --- Delete -------------------------------------------------------------------


def test_it_deletes_a_domain(owner):
    add_streaming(owner)
    response = client_for(owner).delete(domain_url("play.example.com"))
    assert response.status_code == 204
    assert not Domain.objects.exists()


def test_it_hides_the_owners_domain_from_an_outsiders_delete(owner, outsider):
    add_streaming(owner)
    assert client_for(outsider).delete(domain_url("play.example.com")).status_code == 404
    assert Domain.objects.filter(domain_name="play.example.com").exists()


def test_it_refuses_a_delete_to_anonymous(owner):
    add_streaming(owner)
    assert client_for().delete(domain_url("play.example.com")).status_code in (401, 403)
    assert Domain.objects.filter(domain_name="play.example.com").exists()
