import datetime as dt

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from domains.lib.certificates import CertificateError, check_certificate, name_matches
from tests.conftest import make_certificate

NOW = dt.datetime.now(dt.UTC)


def test_it_reads_a_matching_certificate():
    cert, key = make_certificate(["play.example.com", "*.cdn.example.com"])
    info = check_certificate("play.example.com", cert, key, NOW)
    assert info.sans == ["play.example.com", "*.cdn.example.com"]
    assert "CN=play.example.com" in info.subject
    assert info.not_after > NOW
    assert len(info.fingerprint_sha256.split(":")) == 32


def test_it_accepts_rsa_and_a_wildcard():
    cert, key = make_certificate(["*.example.com"], key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    assert check_certificate("play.example.com", cert, key, NOW).sans == ["*.example.com"]


def test_it_refuses_a_key_that_does_not_match():
    cert, _ = make_certificate(["play.example.com"])
    _, other_key = make_certificate(["play.example.com"])
    with pytest.raises(CertificateError) as info:
        check_certificate("play.example.com", cert, other_key, NOW)
    assert info.value.field == "private_key"
    assert info.value.message == "private key does not match the certificate"


def test_it_refuses_an_expired_certificate():
    cert, key = make_certificate(
        ["play.example.com"], not_before=NOW - dt.timedelta(days=30), not_after=NOW - dt.timedelta(days=1)
    )
    with pytest.raises(CertificateError) as info:
        check_certificate("play.example.com", cert, key, NOW)
    assert info.value.field == "certificate"
    assert info.value.message.startswith("certificate expired on")


def test_it_refuses_a_certificate_not_yet_valid():
    cert, key = make_certificate(["play.example.com"], not_before=NOW + dt.timedelta(days=2))
    with pytest.raises(CertificateError, match="not valid until"):
        check_certificate("play.example.com", cert, key, NOW)


def test_it_refuses_a_certificate_for_another_domain():
    cert, key = make_certificate(["other.example.com", "*.play.example.com"])
    with pytest.raises(CertificateError) as info:
        check_certificate("play.example.com", cert, key, NOW)
    assert info.value.field == "certificate"
    assert "does not cover play.example.com" in info.value.message
    assert "other.example.com" in info.value.message


def test_it_refuses_a_passphrase_protected_key():
    key = ec.generate_private_key(ec.SECP256R1())
    cert, _ = make_certificate(["play.example.com"], key=key)
    locked = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    ).decode()
    with pytest.raises(CertificateError, match="passphrase"):
        check_certificate("play.example.com", cert, locked, NOW)


@pytest.mark.parametrize(
    ("cert", "key", "field"),
    [("", "x", "certificate"), ("garbage", "x", "certificate"), ("x" * 70_000, "x", "certificate")],
)
def test_it_refuses_bad_certificate_text(cert, key, field):
    with pytest.raises(CertificateError) as info:
        check_certificate("play.example.com", cert, key, NOW)
    assert info.value.field == field


@pytest.mark.parametrize("key", ["", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"])
def test_it_refuses_bad_key_text(key):
    cert, _ = make_certificate(["play.example.com"])
    with pytest.raises(CertificateError) as info:
        check_certificate("play.example.com", cert, key, NOW)
    assert info.value.field == "private_key"


@pytest.mark.parametrize(
    ("pattern", "host", "ok"),
    [
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", "example.com", False),
        ("a.example.com", "A.example.com.", True),
    ],
)
def test_it_matches_names_as_rfc_6125_says(pattern, host, ok):
    assert name_matches(pattern, host) is ok
