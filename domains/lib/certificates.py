"""Check an uploaded PEM certificate and private key for a domain.

Framework-free: takes PEM text and `now`, returns what the console shows or
raises CertificateError naming the field (`certificate` or `private_key`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

MAX_PEM_BYTES = 64 * 1024  # a leaf plus a long chain fits well inside this
_SUPPORTED_KEYS = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)


class CertificateError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class CertificateInfo:
    certificate_pem: str  # the leaf first, then any chain, as uploaded
    private_key_pem: str  # normalised to unencrypted PKCS#8
    subject: str
    issuer: str
    sans: list[str]
    not_before: dt.datetime
    not_after: dt.datetime
    fingerprint_sha256: str


def _load_certificates(pem: str) -> list[x509.Certificate]:
    if not pem or not pem.strip():
        raise CertificateError("certificate", "paste the certificate in PEM format (-----BEGIN CERTIFICATE-----)")
    if len(pem.encode()) > MAX_PEM_BYTES:
        raise CertificateError("certificate", f"certificate must be at most {MAX_PEM_BYTES // 1024} KiB")
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise CertificateError(
            "certificate", "certificate is not a valid PEM certificate (-----BEGIN CERTIFICATE-----)"
        ) from None
    return certs


def _load_private_key(pem: str):
    if not pem or not pem.strip():
        raise CertificateError("private_key", "paste the private key in PEM format (-----BEGIN PRIVATE KEY-----)")
    if len(pem.encode()) > MAX_PEM_BYTES:
        raise CertificateError("private_key", f"private key must be at most {MAX_PEM_BYTES // 1024} KiB")
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except TypeError:
        raise CertificateError(
            "private_key", "private key is protected by a passphrase; upload it unencrypted"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise CertificateError("private_key", "private key is not a valid PEM private key") from None
    if not isinstance(key, _SUPPORTED_KEYS):
        raise CertificateError("private_key", "private key must be RSA, ECDSA, Ed25519 or Ed448")
    return key


def _public_bytes(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def certificate_names(cert: x509.Certificate) -> list[str]:
    """DNS names the certificate covers: its SANs, else its common name."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        return [n.lower() for n in san.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        return [a.value.lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def name_matches(pattern: str, hostname: str) -> bool:
    """RFC 6125 6.4.3: a wildcard stands for exactly one left-most label."""
    pattern, hostname = pattern.rstrip(".").lower(), hostname.rstrip(".").lower()
    if pattern.startswith("*."):
        suffix = pattern[1:]
        head, dot, _ = hostname.partition(".")
        return bool(head) and bool(dot) and hostname[len(head) :] == suffix
    return pattern == hostname


def check_pair(certificate_pem: str, private_key_pem: str) -> CertificateInfo:
    """A certificate chain and its key, loaded and matched; no check of
    names or dates (check_certificate adds those)."""
    certs = _load_certificates(certificate_pem)
    key = _load_private_key(private_key_pem)
    leaf = certs[0]
    if _public_bytes(leaf.public_key()) != _public_bytes(key.public_key()):
        raise CertificateError("private_key", "private key does not match the certificate")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return CertificateInfo(
        certificate_pem="".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs),
        private_key_pem=key_pem,
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        sans=certificate_names(leaf),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        fingerprint_sha256=leaf.fingerprint(hashes.SHA256()).hex(":").upper(),
    )


def check_certificate(
    domain_name: str, certificate_pem: str, private_key_pem: str, now: dt.datetime
) -> CertificateInfo:
    info = check_pair(certificate_pem, private_key_pem)
    leaf = x509.load_pem_x509_certificate(info.certificate_pem.encode())
    if leaf.not_valid_after_utc < now:
        raise CertificateError(
            "certificate", f"certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; upload a current one"
        )
    if leaf.not_valid_before_utc > now:
        raise CertificateError(
            "certificate", f"certificate is not valid until {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )
    names = info.sans
    if not any(name_matches(n, domain_name) for n in names):
        covered = ", ".join(names) or "no names"
        raise CertificateError("certificate", f"certificate does not cover {domain_name} (it covers {covered})")
    return info
