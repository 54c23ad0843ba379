"""The node's own certificate from its settings (medianode.default_certificate)."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from nodes.medianode import default_certificate
from tests.tlssupport import TestCa


@pytest.fixture
def files(tmp_path):
    ca = TestCa(tmp_path)
    leaf = ca.issue(["node.example.com"])
    cert, key = tmp_path / "node.pem", tmp_path / "node.key"
    cert.write_text(leaf.chain_pem)
    key.write_text(leaf.key_pem)
    return leaf, str(cert), str(key), ca


def test_it_has_none_unless_configured():
    assert default_certificate("", "") is None


def test_it_reads_the_chain_and_key(files):
    leaf, cert, key, _ = files
    got = default_certificate(cert, key)
    assert got.fingerprint_sha256 == leaf.fingerprint_sha256
    assert got.not_after == leaf.not_after.replace(microsecond=0).timestamp()
    assert "PRIVATE KEY" not in repr(got)


def test_it_wants_both_files(files):
    _, cert, _, _ = files
    with pytest.raises(ImproperlyConfigured, match="set both LIVECENTER_MEDIA_TLS_CERT_FILE and"):
        default_certificate(cert, "")


def test_it_names_the_setting_of_a_key_that_does_not_match(files):
    _, cert, _, ca = files
    other = ca.issue(["other.example.com"])
    with open(cert + ".other", "w") as f:
        f.write(other.key_pem)
    with pytest.raises(ImproperlyConfigured, match="LIVECENTER_MEDIA_TLS_KEY_FILE: private key does not match"):
        default_certificate(cert, cert + ".other")


def test_it_says_a_file_cannot_be_read(files):
    _, cert, _, _ = files
    with pytest.raises(ImproperlyConfigured, match="cannot be read"):
        default_certificate(cert, "/nonexistent/node.key")
