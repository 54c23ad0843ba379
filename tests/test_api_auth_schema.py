import hashlib
import io

import pytest
from django.core.management import call_command
from django.urls import include, path
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from accounts.models import ApiToken
from domains.models import Domain
from tests.apisupport import add_ingest, add_streaming, client_for, domain_url

pytestmark = pytest.mark.django_db

OUR_PATHS = {
    "/api/v1/domains/",
    "/api/v1/domains/{domain_name}/",
    "/api/v1/domains/{domain_name}/cname-check/",
    "/api/v1/domains/{domain_name}/mapping/",
    "/api/v1/domains/{domain_name}/certificate/",
    "/api/v1/domains/{domain_name}/url-signing/",
    "/api/v1/domains/{domain_name}/access-control/",
    "/api/v1/urls/",
}

# Every operation on the owner's domain, as the same request from anyone.
DOMAIN_OPERATIONS = [
    ("get", "", None),
    ("patch", "", {"enabled": False}),
    ("delete", "", None),
    ("get", "cname-check", None),
    ("post", "cname-check", None),
    ("get", "mapping", None),
    ("put", "mapping", {"ingest_domain": "push.example.com"}),
    ("post", "mapping", {"ingest_domain": "push.example.com"}),
    ("delete", "mapping", None),
    ("get", "certificate", None),
    ("put", "certificate", {"certificate": "x", "private_key": "y"}),
    ("post", "certificate", {"certificate": "x", "private_key": "y"}),
    ("delete", "certificate", None),
    ("get", "url-signing", None),
    ("patch", "url-signing", {"primary_key": "stolenKey1"}),
    ("put", "url-signing", {"primary_key": "stolenKey1"}),
    ("get", "access-control", None),
    ("patch", "access-control", {"ip_mode": "allow", "ip_entries": ["192.0.2.1"]}),
    ("put", "access-control", {"ip_mode": "allow", "ip_entries": ["192.0.2.1"]}),
]


@pytest.fixture
def owners_pair(owner):
    return add_ingest(owner), add_streaming(owner)


def snapshot() -> list:
    return list(Domain.objects.order_by("pk").values())


# --- Authentication -------------------------------------------------------------


def test_it_authenticates_with_a_token(owner, owners_pair):
    _, key = ApiToken.issue(owner)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = client.get("/api/v1/domains/")
    assert response.status_code == 200
    assert response.json()["count"] == 2
    response = client.post(
        "/api/v1/urls/", {"domain": "push.example.com", "app": "live", "stream": "cam1"}, format="json"
    )
    assert response.status_code == 200


def test_it_accepts_a_token_made_by_drf_create_token(owner):
    out = io.StringIO()
    call_command("drf_create_token", "owner", stdout=out)
    key = out.getvalue().split()[2]
    assert len(key) == 40
    # Shown once, stored only as its SHA-256.
    assert ApiToken.objects.get(user=owner).digest == hashlib.sha256(key.encode()).hexdigest()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/domains/").status_code == 200


def test_it_refuses_a_wrong_token(owner):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    response = client.get("/api/v1/domains/")
    assert response.status_code in (401, 403)
    assert response.json() == {"detail": "Invalid token."}


def test_it_authenticates_with_a_session(owner):
    client = APIClient()
    assert client.login(username="owner", password="owner-pass-123")
    assert client.get("/api/v1/domains/").status_code == 200


def test_it_requires_csrf_for_session_writes(owner):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(owner)
    body = {"domain_name": "a.example.com", "domain_type": "ingest", "region": "global", "live_center": "cn-beijing"}
    response = client.post("/api/v1/domains/", body, format="json")
    assert response.status_code == 403
    assert not Domain.objects.exists()


# --- Every endpoint: the owner's domain to an outsider and to anonymous --------


@pytest.mark.parametrize("method, part, body", DOMAIN_OPERATIONS)
def test_it_answers_404_to_an_outsider_and_changes_nothing(outsider, owners_pair, method, part, body):
    add_ingest(outsider, "push.other.example")
    before = snapshot()
    response = getattr(client_for(outsider), method)(domain_url("play.example.com", part), body, format="json")
    assert response.status_code == 404
    assert snapshot() == before


@pytest.mark.parametrize("method, part, body", DOMAIN_OPERATIONS)
def test_it_refuses_anonymous_and_changes_nothing(owners_pair, method, part, body):
    before = snapshot()
    response = getattr(client_for(), method)(domain_url("play.example.com", part), body, format="json")
    assert response.status_code in (401, 403)
    assert snapshot() == before


@pytest.mark.parametrize("method, part, body", DOMAIN_OPERATIONS)
def test_it_refuses_a_token_for_another_operator(outsider, owners_pair, method, part, body):
    _, key = ApiToken.issue(outsider)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    before = snapshot()
    assert getattr(client, method)(domain_url("play.example.com", part), body, format="json").status_code == 404
    assert snapshot() == before


# --- Schema and docs ----------------------------------------------------------------


def test_it_serves_a_schema_with_every_path(owner):
    response = client_for(owner).get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = response.json()
    assert OUR_PATHS <= set(schema["paths"])
    signing = schema["components"]["schemas"]["PatchedUrlSigningUpdateRequest"]["properties"]
    assert signing["primary_key"]["writeOnly"] is True
    assert signing["secondary_key"]["writeOnly"] is True
    update = schema["components"]["schemas"]["PatchedDomainUpdateRequest"]["properties"]
    assert update["srt_passphrase"]["writeOnly"] is True
    domain = schema["components"]["schemas"]["Domain"]["properties"]
    assert "srt_passphrase" not in domain and "srt_passphrase_set" in domain
    certificate = schema["components"]["schemas"]["Certificate"]["properties"]
    assert "private_key" not in certificate
    ingest = schema["components"]["schemas"]["IngestUrls"]
    assert set(ingest["properties"]) == {"rtmp", "srt", "rts", "whip"} == set(ingest["required"])


def test_it_generates_the_schema_without_warnings():
    GENERATOR_STATS.reset()
    generator = SchemaGenerator(patterns=[path("api/v1/", include("domains.api_urls"))])
    schema = generator.get_schema(request=None, public=True)
    assert not GENERATOR_STATS, "drf-spectacular warned while generating the API schema"
    validate_schema(schema)
    assert set(schema["paths"]) == OUR_PATHS


def test_it_serves_the_docs(owner):
    response = client_for(owner).get("/api/v1/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
