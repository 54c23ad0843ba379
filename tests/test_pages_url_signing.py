import pytest

from domains import services
from domains.models import Domain
from tests.pagesupport import add_ingest, assert_field_error, assert_login_redirect, page

pytestmark = pytest.mark.django_db

URL = "/domains/push.example.com/url-signing/"


def form_data(**changes):
    return {"enabled": "on", "primary_key": "", "secondary_key": "", "validity_minutes": "1440", **changes}


def domain():
    return Domain.objects.get(domain_name="push.example.com")


def test_it_requires_login(client, owner):
    add_ingest(owner)
    assert_login_redirect(client.get(URL), URL)
    assert_login_redirect(client.post(URL, form_data(primary_key="NewKey123")), URL)
    assert domain().auth_primary_key != "NewKey123"


def test_it_is_a_404_for_an_outsider(client, owner, outsider):
    add_ingest(owner)
    client.force_login(outsider)
    assert client.get(URL).status_code == 404
    assert client.post(URL, form_data(primary_key="NewKey123")).status_code == 404
    assert domain().auth_primary_key != "NewKey123"


def test_it_shows_the_keys_masked_and_the_inputs_empty(client, owner):
    d = add_ingest(owner)
    services.configure_url_signing(d, secondary_key="Secondary42")
    client.force_login(owner)
    r = client.get(URL)
    assert r.status_code == 200
    body = page(r)
    assert d.auth_primary_key not in body
    assert "Secondary42" not in body
    assert f'id="primary-key-masked">{services.mask_secret(d.auth_primary_key)}<' in body
    assert f'id="secondary-key-masked">{services.mask_secret("Secondary42")}<' in body
    assert '<input type="text" name="primary_key"' in body
    for name in ("primary_key", "secondary_key"):
        tag = body.split(f'name="{name}"')[1].split(">")[0]
        assert "value=" not in tag
    assert 'name="validity_minutes" value="1440"' in body
    assert 'name="remove_secondary_key"' in body
    assert "random primary key was generated" in body


def test_it_sets_new_keys_and_validity(client, owner):
    add_ingest(owner)
    client.force_login(owner)
    r = client.post(URL, form_data(primary_key="Primary123", secondary_key="Second456", validity_minutes="30"))
    assert r["Location"] == URL
    d = domain()
    assert (d.auth_primary_key, d.auth_secondary_key, d.auth_validity_minutes) == ("Primary123", "Second456", 30)
    body = page(client.get(URL))
    assert (
        "Primary key replaced, secondary key replaced and validity period set to 30 minutes for push.example.com."
    ) in body
    assert "Primary123" not in body and "Second456" not in body
    # Masked with no character of the key, and dated so keys can be told apart.
    assert 'id="primary-key-masked">********<' in body
    assert 'id="primary-key-set-at">set ' in body and 'id="secondary-key-set-at">set ' in body
    assert "Pr*" not in body


def test_it_keeps_the_keys_when_the_inputs_are_empty(client, owner):
    d = add_ingest(owner)
    services.configure_url_signing(d, secondary_key="Secondary42")
    client.force_login(owner)
    client.post(URL, form_data(validity_minutes="60"))
    after = domain()
    assert after.auth_primary_key == d.auth_primary_key
    assert after.auth_secondary_key == "Secondary42"
    assert after.auth_validity_minutes == 60


def test_it_removes_the_secondary_key(client, owner):
    d = add_ingest(owner)
    services.configure_url_signing(d, secondary_key="Secondary42")
    client.force_login(owner)
    client.post(URL, form_data(remove_secondary_key="on"))
    assert domain().auth_secondary_key == ""
    assert domain().auth_primary_key == d.auth_primary_key


def test_it_disables_signing(client, owner):
    add_ingest(owner)
    client.force_login(owner)
    data = form_data()
    del data["enabled"]
    client.post(URL, data)
    assert not domain().auth_enabled


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"validity_minutes": "0"}, "validity_minutes", "validity period must be at least 1 minute"),
        ({"validity_minutes": "soon"}, "validity_minutes", "validity period must be a whole number"),
        ({"validity_minutes": ""}, "validity_minutes", "validity period is required"),
        ({"primary_key": "short"}, "primary_key", "primary key must be 6-32 letters or digits"),
        ({"primary_key": "has space 123"}, "primary_key", "primary key must be 6-32 letters or digits"),
        ({"secondary_key": "x" * 33}, "secondary_key", "secondary key must be 6-32 letters or digits"),
        (
            {"secondary_key": "Second456", "remove_secondary_key": "on"},
            "secondary_key",
            "enter a new key or tick “Remove the secondary key”, not both",
        ),
    ],
)
def test_it_names_the_field_of_bad_input_and_saves_nothing(client, owner, changes, field, words):
    d = add_ingest(owner)
    services.configure_url_signing(d, secondary_key="Secondary42")
    client.force_login(owner)
    # A good key beside the bad input must not be saved either.
    data = {"primary_key": "Primary123", **changes} if field != "primary_key" else changes
    r = client.post(URL, form_data(**data))
    assert_field_error(r, "form", field, words)
    after = domain()
    assert after.auth_primary_key == d.auth_primary_key
    assert after.auth_secondary_key == "Secondary42"
    assert after.auth_validity_minutes == 1440
    assert after.auth_enabled
    # What was typed into a key input is not echoed back.
    body = page(r)
    assert "Primary123" not in body and d.auth_primary_key not in body and "Secondary42" not in body
