import pytest

from domains import services
from domains.models import Domain
from tests.apisupport import add_ingest, add_streaming, client_for, domain_url

pytestmark = pytest.mark.django_db

MAPPING = domain_url("play.example.com", "mapping")


def mapping_of(name: str) -> tuple:
    domain = Domain.objects.get(domain_name=name)
    return domain.ingest_domain_id, domain.main_domain_id


@pytest.fixture
def pair(owner):
    return add_ingest(owner), add_streaming(owner)


@pytest.mark.parametrize("method", ["put", "post"])
def test_it_associates_a_streaming_domain_with_an_ingest_domain(owner, pair, method):
    ingest, streaming = pair
    response = getattr(client_for(owner), method)(MAPPING, {"ingest_domain": "push.example.com"}, format="json")
    assert response.status_code == 200
    assert response.json() == {
        "domain_name": "play.example.com",
        "domain_type": "streaming",
        "ingest_domain": "push.example.com",
        "main_domain": None,
        "streaming_domain": None,
        "sub_domains": [],
    }
    assert mapping_of("play.example.com") == (ingest.pk, None)


def test_it_shows_the_mapping(owner, pair):
    services.associate_ingest(pair[1], "push.example.com")
    client = client_for(owner)
    assert client.get(MAPPING).json()["ingest_domain"] == "push.example.com"
    ingest_side = client.get(domain_url("push.example.com", "mapping")).json()
    assert ingest_side["streaming_domain"] == "play.example.com"


def test_it_accepts_the_ingest_domain_in_unicode(owner):
    services.add_domain(owner, "bücher.example.com", "ingest", "overseas", "ap-southeast-1")
    add_streaming(owner)
    response = client_for(owner).put(MAPPING, {"ingest_domain": "Bücher.example.com"}, format="json")
    assert response.status_code == 200
    assert response.json()["ingest_domain"] == "xn--bcher-kva.example.com"


def test_it_binds_a_sub_streaming_domain(owner, pair):
    add_streaming(owner, "play2.example.com")
    client = client_for(owner)
    response = client.put(
        domain_url("play2.example.com", "mapping"), {"main_domain": "play.example.com"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["main_domain"] == "play.example.com"
    assert client.get(MAPPING).json()["sub_domains"] == ["play2.example.com"]


def test_it_refuses_an_association_across_live_centers(owner):
    add_ingest(owner, live_center="cn-beijing")
    add_streaming(owner, live_center="cn-shanghai")
    response = client_for(owner).put(MAPPING, {"ingest_domain": "push.example.com"}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "ingest_domain": [
            "push.example.com is in live center cn-beijing but play.example.com is in cn-shanghai;"
            " associated domains must share a live center"
        ]
    }
    assert mapping_of("play.example.com") == (None, None)


def test_it_refuses_a_binding_across_live_centers(owner):
    add_streaming(owner, live_center="cn-beijing")
    add_streaming(owner, "play2.example.com", live_center="cn-shanghai")
    url = domain_url("play2.example.com", "mapping")
    response = client_for(owner).put(url, {"main_domain": "play.example.com"}, format="json")
    assert response.status_code == 400
    assert "must share a live center" in response.json()["main_domain"][0]
    assert mapping_of("play2.example.com") == (None, None)


def test_it_refuses_another_operators_ingest_domain(owner, outsider):
    add_ingest(outsider)
    add_streaming(owner)
    response = client_for(owner).put(MAPPING, {"ingest_domain": "push.example.com"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"ingest_domain": ["push.example.com is not one of your domains"]}
    assert mapping_of("play.example.com") == (None, None)


def test_it_refuses_to_associate_an_ingest_domain(owner, pair):
    add_ingest(owner, "push2.example.com")
    url = domain_url("push.example.com", "mapping")
    response = client_for(owner).put(url, {"ingest_domain": "push2.example.com"}, format="json")
    assert response.status_code == 400
    assert "only a streaming domain" in response.json()["ingest_domain"][0]


@pytest.mark.parametrize(
    "body, field, message",
    [
        ({}, "ingest_domain", "give ingest_domain to associate"),
        (
            {"ingest_domain": "push.example.com", "main_domain": "play.example.com"},
            "main_domain",
            "not both",
        ),
        ({"ingest_domain": ""}, "ingest_domain", "ingest_domain is required"),
        ({"ingest_domain": 7}, "ingest_domain", "is not one of your domains"),
        ({"ingest_domain": ["push.example.com"]}, "ingest_domain", "Not a valid string."),
        ({"streaming_domain": "push.example.com"}, "streaming_domain", "streaming domain cannot be changed"),
        ({"ingest": "push.example.com"}, "ingest", "unknown field"),
    ],
)
def test_it_rejects_bad_input_naming_the_field(owner, pair, body, field, message):
    response = client_for(owner).put(MAPPING, body, format="json")
    assert response.status_code == 400
    assert message in response.json()[field][0]
    assert mapping_of("play.example.com") == (None, None)


def test_it_clears_the_mapping(owner, pair):
    services.associate_ingest(pair[1], "push.example.com")
    response = client_for(owner).delete(MAPPING)
    assert response.status_code == 204
    assert mapping_of("play.example.com") == (None, None)


@pytest.mark.parametrize("method", ["get", "put", "post", "delete"])
def test_it_hides_the_owners_domain_from_an_outsider(owner, outsider, pair, method):
    add_ingest(outsider, "push.other.example")
    services.associate_ingest(pair[1], "push.example.com")
    response = getattr(client_for(outsider), method)(MAPPING, {"ingest_domain": "push.other.example"}, format="json")
    assert response.status_code == 404
    assert mapping_of("play.example.com") == (pair[0].pk, None)


@pytest.mark.parametrize("method", ["get", "put", "post", "delete"])
def test_it_refuses_anonymous(owner, pair, method):
    response = getattr(client_for(), method)(MAPPING, {"ingest_domain": "push.example.com"}, format="json")
    assert response.status_code in (401, 403)
    assert mapping_of("play.example.com") == (None, None)
