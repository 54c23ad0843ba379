"""API tokens stored hashed (issue 11, item 8): only the SHA-256 of a key is
kept; the key is shown once; DRF's plain tokens are migrated by hashing."""

from __future__ import annotations

import hashlib
import importlib
import io
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import ApiToken

pytestmark = pytest.mark.django_db

TOKEN = "/api/v1/auth/token/"


def api(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def stored_text() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT digest, user_id FROM accounts_apitoken")
        return repr(cursor.fetchall())


def test_it_stores_only_the_hash_and_authenticates_with_the_key(owner):
    r = APIClient().post(TOKEN, {"username": "owner", "password": "owner-pass-123"}, format="json")
    assert r.status_code == 201
    key = r.json()["token"]
    assert len(key) == 40
    assert key not in stored_text()
    assert hashlib.sha256(key.encode()).hexdigest() in stored_text()
    assert api(key).get("/api/v1/domains/").status_code == 200


def test_it_replaces_the_key_when_a_new_one_is_made(owner):
    _, old = ApiToken.issue(owner)
    _, new = ApiToken.issue(owner)
    assert api(old).get("/api/v1/domains/").json() == {"detail": "Invalid token."}
    assert api(new).get("/api/v1/domains/").status_code == 200


def test_it_refuses_the_digest_as_a_key(owner):
    token, _ = ApiToken.issue(owner)
    assert api(token.digest).get("/api/v1/domains/").status_code in (401, 403)


def test_it_refuses_the_key_of_an_inactive_user(owner):
    _, key = ApiToken.issue(owner)
    owner.is_active = False
    owner.save()
    assert api(key).get("/api/v1/domains/").status_code in (401, 403)


def test_drf_create_token_shows_the_key_once_and_needs_r_to_replace_it(owner):
    out = io.StringIO()
    call_command("drf_create_token", "owner", stdout=out)
    key = out.getvalue().split()[2]
    with pytest.raises(CommandError, match="already has an API token.*-r"):
        call_command("drf_create_token", "owner", stdout=io.StringIO())
    assert api(key).get("/api/v1/domains/").status_code == 200
    out = io.StringIO()
    call_command("drf_create_token", "owner", "-r", stdout=out)
    new = out.getvalue().split()[2]
    assert new != key
    assert api(key).get("/api/v1/domains/").status_code in (401, 403)
    assert api(new).get("/api/v1/domains/").status_code == 200


def test_it_names_the_missing_fields_on_the_token_endpoint():
    r = APIClient().post(TOKEN, {}, format="json")
    assert r.status_code == 400
    assert r.json() == {"username": ["enter your user name"], "password": ["enter your password"]}


def test_it_migrates_plain_drf_tokens_by_hashing_them(owner, outsider):
    """A database from before: DRF's authtoken table with plain keys. The
    migration keeps each key working and leaves no plain key behind."""
    plain = "0123456789abcdef0123456789abcdef01234567"
    with connection.cursor() as cursor:
        cursor.execute(
            'CREATE TABLE authtoken_token ("key" varchar(40) PRIMARY KEY, created timestamp NOT NULL, user_id integer)'
        )
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, %s, %s)", [plain, "2026-01-02 03:04:05", owner.pk])
    try:
        migration = importlib.import_module("accounts.migrations.0002_hash_plain_drf_tokens")
        from django.apps import apps

        # The migration reads only the editor's connection.
        migration.hash_plain_drf_tokens(apps, SimpleNamespace(connection=connection))
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM authtoken_token")
            assert cursor.fetchone() == (0,)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE authtoken_token")
    assert plain not in stored_text()
    assert ApiToken.objects.get(user=owner).digest == hashlib.sha256(plain.encode()).hexdigest()
    r = api(plain).get("/api/v1/domains/")
    assert r.status_code == 200


def test_the_admin_lists_tokens_without_keys_and_cannot_add_one(client, django_user_model, owner):
    admin = django_user_model.objects.create_superuser("root", password="root-pass-123")
    token, key = ApiToken.issue(owner)
    client.force_login(admin)
    r = client.get("/admin/accounts/apitoken/")
    assert r.status_code == 200 and "owner" in r.content.decode()
    assert key not in client.get(f"/admin/accounts/apitoken/{token.pk}/change/").content.decode()
    assert client.get("/admin/accounts/apitoken/add/").status_code == 403
    assert client.get("/admin/accounts/loginthrottle/").status_code == 200
