import pytest

from domains import services
from domains.models import Domain
from tests.apisupport import add_streaming, client_for, domain_url

pytestmark = pytest.mark.django_db

URL = domain_url("play.example.com", "url-signing")


@pytest.fixture
def domain(owner):
    return add_streaming(owner)


def stored() -> Domain:
    return Domain.objects.get(domain_name="play.example.com")


def test_it_shows_signing_with_the_key_masked(owner, domain):
    response = client_for(owner).get(URL)
    assert response.status_code == 200
    assert response.json() == {
        "auth_type": "type_a",
        "enabled": True,
        "validity_minutes": 1440,
        "primary_key": "********",
        "primary_key_set_at": domain.auth_primary_key_set_at.isoformat().replace("+00:00", "Z"),
        "secondary_key": "",
        "secondary_key_set_at": None,
    }
    assert domain.auth_primary_key not in response.content.decode()


@pytest.mark.parametrize("method", ["patch", "put"])
def test_it_sets_keys_and_validity_and_never_echoes_the_keys(owner, domain, method):
    body = {"primary_key": "primaryKey42", "secondary_key": "secondKey42", "validity_minutes": 30}
    response = getattr(client_for(owner), method)(URL, body, format="json")
    assert response.status_code == 200
    assert response.json() == {
        "auth_type": "type_a",
        "enabled": True,
        "validity_minutes": 30,
        "primary_key": "********",
        "primary_key_set_at": stored().auth_primary_key_set_at.isoformat().replace("+00:00", "Z"),
        "secondary_key": "********",
        "secondary_key_set_at": stored().auth_secondary_key_set_at.isoformat().replace("+00:00", "Z"),
    }
    text = response.content.decode()
    assert "primaryKey42" not in text and "secondKey42" not in text
    assert stored().signing_keys() == ["primaryKey42", "secondKey42"]
    assert stored().auth_validity_minutes == 30


def test_it_keeps_a_key_that_is_left_out(owner, domain):
    services.configure_url_signing(domain, secondary_key="secondKey42")
    response = client_for(owner).patch(URL, {"validity_minutes": 5}, format="json")
    assert response.status_code == 200
    assert stored().signing_keys() == [domain.auth_primary_key, "secondKey42"]


def test_it_removes_the_secondary_key_when_it_is_blank(owner, domain):
    services.configure_url_signing(domain, secondary_key="secondKey42")
    response = client_for(owner).patch(URL, {"secondary_key": ""}, format="json")
    assert response.status_code == 200
    assert response.json()["secondary_key"] == ""
    assert stored().auth_secondary_key == ""


def test_it_disables_signing(owner, domain):
    response = client_for(owner).patch(URL, {"enabled": False}, format="json")
    assert response.json()["enabled"] is False
    assert stored().auth_enabled is False
    assert client_for(owner).get(domain_url("play.example.com")).json()["url_signing"]["enabled"] is False


@pytest.mark.parametrize(
    "body, field, message",
    [
        ({"primary_key": "short"}, "primary_key", "primary key must be 6-32 letters or digits"),
        ({"primary_key": ""}, "primary_key", "primary key must be 6-32 letters or digits"),
        ({"primary_key": " spaced42 "}, "primary_key", "primary key must be 6-32 letters or digits"),
        ({"secondary_key": "has-dash-1"}, "secondary_key", "secondary key must be 6-32 letters or digits"),
        ({"validity_minutes": 0}, "validity_minutes", "validity period must be at least 1 minute"),
        ({"validity_minutes": 10**9}, "validity_minutes", "validity period must be at most"),
        ({"validity_minutes": "soon"}, "validity_minutes", "A valid integer is required."),
        ({"validity_minutes": 1.5}, "validity_minutes", "A valid integer is required."),
        ({"enabled": "perhaps"}, "enabled", "Must be a valid boolean."),
        ({"auth_type": "type_b"}, "auth_type", "auth type cannot be changed"),
        ({"key": "primaryKey42"}, "key", "unknown field"),
    ],
)
def test_it_rejects_bad_input_naming_the_field_and_saves_nothing(owner, domain, body, field, message):
    before = (domain.auth_primary_key, domain.auth_validity_minutes, domain.auth_enabled)
    response = client_for(owner).patch(URL, {"validity_minutes": 7, **body}, format="json")
    assert response.status_code == 400
    assert message in response.json()[field][0]
    after = stored()
    assert (after.auth_primary_key, after.auth_validity_minutes, after.auth_enabled) == before


@pytest.mark.parametrize("method", ["get", "patch", "put"])
def test_it_hides_the_owners_domain_from_an_outsider(owner, outsider, domain, method):
    response = getattr(client_for(outsider), method)(URL, {"primary_key": "stolenKey1"}, format="json")
    assert response.status_code == 404
    assert "stolenKey1" not in stored().signing_keys()
    assert domain.auth_primary_key not in response.content.decode()


@pytest.mark.parametrize("method", ["get", "patch", "put"])
def test_it_refuses_anonymous(owner, domain, method):
    response = getattr(client_for(), method)(URL, {"primary_key": "stolenKey1"}, format="json")
    assert response.status_code in (401, 403)
    assert "stolenKey1" not in stored().signing_keys()


def test_it_names_every_bad_field_at_once(owner, domain):
    body = {"primary_key": "bad!", "secondary_key": "x", "validity_minutes": 0}
    response = client_for(owner).patch(URL, body, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"primary_key", "secondary_key", "validity_minutes"}, response.json()
    assert stored().auth_validity_minutes == 1440
