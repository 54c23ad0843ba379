"""SRT settings of an ingest domain in the domain API (/api/v1/domains/{name}/)."""

import logging

import pytest

from domains import services
from domains.models import Domain
from tests.apisupport import add_ingest, add_streaming, client_for, domain_url

pytestmark = pytest.mark.django_db

URL = domain_url("push.example.com")
PASSPHRASE = "correct horse battery"


@pytest.fixture
def domain(owner):
    return add_ingest(owner)


def stored(name: str = "push.example.com") -> Domain:
    return Domain.objects.get(domain_name=name)


def test_it_shows_the_defaults_of_an_ingest_domain(owner, domain):
    body = client_for(owner).get(URL).json()
    assert body["srt_latency_ms"] == 120
    assert body["srt_passphrase_set"] is False
    assert body["srt_passphrase_set_at"] is None
    assert "srt_passphrase" not in body


def test_it_shows_no_srt_settings_for_a_streaming_domain(owner):
    add_streaming(owner)
    body = client_for(owner).get(domain_url("play.example.com")).json()
    assert (body["srt_latency_ms"], body["srt_passphrase_set"], body["srt_passphrase_set_at"]) == (None, None, None)


def test_it_sets_the_latency_and_passphrase_and_never_returns_the_passphrase(owner, domain):
    response = client_for(owner).patch(URL, {"srt_latency_ms": 400, "srt_passphrase": PASSPHRASE}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["srt_latency_ms"] == 400
    assert body["srt_passphrase_set"] is True
    assert body["srt_passphrase_set_at"] == stored().srt_passphrase_set_at.isoformat().replace("+00:00", "Z")
    assert PASSPHRASE not in response.content.decode()
    assert (stored().srt_latency_ms, stored().srt_passphrase) == (400, PASSPHRASE)
    for listing in (client_for(owner).get(URL), client_for(owner).get("/api/v1/domains/")):
        assert PASSPHRASE not in listing.content.decode()


def test_it_keeps_the_passphrase_when_it_is_left_out(owner, domain):
    services.configure_srt(domain, srt_passphrase=PASSPHRASE)
    response = client_for(owner).patch(URL, {"srt_latency_ms": 250}, format="json")
    assert response.json()["srt_passphrase_set"] is True
    assert (stored().srt_latency_ms, stored().srt_passphrase) == (250, PASSPHRASE)


@pytest.mark.parametrize("clear", ["", None])
def test_it_removes_the_passphrase_when_it_is_blank_or_null(owner, domain, clear):
    services.configure_srt(domain, srt_passphrase=PASSPHRASE)
    response = client_for(owner).patch(URL, {"srt_passphrase": clear}, format="json")
    assert response.status_code == 200
    assert response.json()["srt_passphrase_set"] is False
    assert response.json()["srt_passphrase_set_at"] is None
    assert stored().srt_passphrase == ""


def test_it_sets_srt_beside_the_enabled_switch(owner, domain):
    response = client_for(owner).patch(URL, {"enabled": False, "srt_latency_ms": 1000}, format="json")
    assert response.status_code == 200
    assert (stored().enabled, stored().srt_latency_ms) == (False, 1000)


@pytest.mark.parametrize(
    "body, field, message",
    [
        ({"srt_latency_ms": 19}, "srt_latency_ms", "SRT latency must be between 20 and 8000 milliseconds"),
        ({"srt_latency_ms": 8001}, "srt_latency_ms", "SRT latency must be between 20 and 8000 milliseconds"),
        ({"srt_latency_ms": "soon"}, "srt_latency_ms", "SRT latency must be a whole number of milliseconds"),
        ({"srt_latency_ms": 1.5}, "srt_latency_ms", "SRT latency must be a whole number of milliseconds"),
        ({"srt_passphrase": "x" * 9}, "srt_passphrase", "SRT passphrase must be 10-79 printable ASCII characters"),
        ({"srt_passphrase": "x" * 80}, "srt_passphrase", "SRT passphrase must be 10-79 printable ASCII characters"),
        ({"srt_passphrase": "tab\tpassphrase"}, "srt_passphrase", "SRT passphrase must be 10-79 printable ASCII"),
        ({"srt_passphrase": "passphrase12 "}, "srt_passphrase", "must not begin or end with a space"),
        ({"srt_passphrase": ["correct horse battery"]}, "srt_passphrase", "Not a valid string."),
        ({"srt_passphrase_set": False}, "srt_passphrase_set", "srt passphrase set cannot be changed"),
        ({"srt_passphrase_set_at": None}, "srt_passphrase_set_at", "srt passphrase set at cannot be changed"),
        ({"srt_pbkeylen": 16}, "srt_pbkeylen", "unknown field"),
    ],
)
def test_it_rejects_bad_input_naming_the_field_and_saves_nothing(owner, domain, body, field, message):
    services.configure_srt(domain, srt_passphrase=PASSPHRASE)
    # A good value beside the bad one is not saved either.
    response = client_for(owner).patch(URL, {"enabled": False, "srt_latency_ms": 300, **body}, format="json")
    assert response.status_code == 400
    assert message in response.json()[field][0]
    text = response.content.decode()
    assert PASSPHRASE not in text
    if isinstance(body.get("srt_passphrase"), str):
        assert body["srt_passphrase"] not in text
    after = stored()
    assert (after.srt_latency_ms, after.srt_passphrase, after.enabled) == (120, PASSPHRASE, True)


@pytest.mark.parametrize("body", [{"srt_latency_ms": 500}, {"srt_passphrase": PASSPHRASE}, {"srt_passphrase": ""}])
def test_it_refuses_srt_settings_on_a_streaming_domain(owner, body):
    add_streaming(owner)
    response = client_for(owner).patch(domain_url("play.example.com"), {"enabled": False, **body}, format="json")
    assert response.status_code == 400
    [field] = body
    assert response.json() == {
        field: [
            f"{field} applies only to ingest domains: SRT publishers push to an ingest domain,"
            " and its settings apply to the streaming domains that play it"
        ]
    }
    after = stored("play.example.com")
    assert (after.srt_latency_ms, after.srt_passphrase, after.enabled) == (120, "", True)


def test_it_hides_the_owners_domain_from_an_outsider(owner, outsider, domain):
    client = client_for(outsider)
    assert client.get(URL).status_code == 404
    response = client.patch(URL, {"srt_latency_ms": 500, "srt_passphrase": PASSPHRASE}, format="json")
    assert response.status_code == 404
    assert (stored().srt_latency_ms, stored().srt_passphrase) == (120, "")


def test_it_refuses_anonymous(owner, domain):
    response = client_for().patch(URL, {"srt_passphrase": PASSPHRASE}, format="json")
    assert response.status_code in (401, 403)
    assert stored().srt_passphrase == ""


def test_it_never_logs_the_passphrase(owner, domain, caplog):
    caplog.set_level(logging.DEBUG)
    client_for(owner).patch(URL, {"srt_passphrase": PASSPHRASE}, format="json")
    client_for(owner).patch(URL, {"srt_passphrase": "x" * 9}, format="json")
    assert "passphrase set" in caplog.text
    assert "horse" not in caplog.text and "xxxxxxxxx" not in caplog.text


def test_the_url_generator_notes_what_an_srt_publisher_adds(owner, domain):
    services.configure_srt(domain, srt_passphrase=PASSPHRASE)
    response = client_for(owner).post(
        "/api/v1/urls/", {"domain": "push.example.com", "app": "live", "stream": "cam1"}, format="json"
    )
    body = response.json()
    assert any("&passphrase={your SRT passphrase, percent-encoded}" in note for note in body["notes"])
    assert any("&pbkeylen=16, 24 or 32" in note for note in body["notes"])
    assert "passphrase" not in body["ingest"]["srt"]
    assert PASSPHRASE not in response.content.decode()
