import pytest
from django.db import connection

from domains import services
from domains.lib import secretbox


@pytest.mark.django_db
def test_it_stores_signing_keys_and_private_keys_encrypted(owner, certificate_factory):
    domain = services.add_domain(owner, "play.example.com", "streaming", "overseas", "ap-southeast-1")
    services.configure_url_signing(domain, primary_key="primaryKey42", secondary_key="secondKey42")
    cert, key = certificate_factory(["play.example.com"])
    services.upload_certificate(domain, cert, key)
    with connection.cursor() as cursor:
        cursor.execute("SELECT auth_primary_key, auth_secondary_key FROM domains_domain")
        primary, secondary = cursor.fetchone()
        cursor.execute("SELECT private_key FROM domains_domaincertificate")
        (stored_key,) = cursor.fetchone()
    assert "primaryKey42" not in primary and "secondKey42" not in secondary
    assert "PRIVATE KEY" not in stored_key
    domain.refresh_from_db()
    assert domain.signing_keys() == ["primaryKey42", "secondKey42"]
    assert domain.certificate.private_key.startswith("-----BEGIN PRIVATE KEY-----")


def test_it_refuses_a_token_made_under_another_secret():
    token = secretbox.encrypt("secret-one", "value")
    assert secretbox.decrypt("secret-one", token) == "value"
    with pytest.raises(secretbox.InvalidToken):
        secretbox.decrypt("secret-two", token)


@pytest.mark.django_db
def test_it_never_logs_keys(owner, caplog):
    caplog.set_level("DEBUG")
    domain = services.add_domain(owner, "push.example.com", "ingest", "overseas", "ap-southeast-1")
    services.configure_url_signing(domain, primary_key="loggedKey99", secondary_key="loggedKey98")
    assert "loggedKey9" not in caplog.text
    assert domain.auth_primary_key not in caplog.text
