"""Domain-name rules for accelerated domains: no wildcards, a valid hostname,
IDNA (RFC 5891) for names outside ASCII. Framework-free."""

from __future__ import annotations

import re

import idna

MAX_DOMAIN_NAME_CHARS = 253  # RFC 1035 2.3.4, without the trailing dot
MAX_LABEL_CHARS = 63
_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# Top-level names reserved for tests and loopback (RFC 2606 2, RFC 6761 6):
# no public DNS ever answers for a name under them, so a domain there is
# local from the start (domains.services.add_domain).
TEST_ZONES = ("test", "localhost", "invalid", "example")


class HostnameError(ValueError):
    """The name is not one we can accelerate; the message says why."""


def normalize_domain_name(raw: str) -> str:
    """Return the name in lower-case ASCII (A-labels), or raise HostnameError."""
    name = (raw or "").strip().rstrip(".")
    if not name:
        raise HostnameError("enter a domain name, for example live.example.com")
    if "*" in name:
        raise HostnameError("domain name must not be a wildcard; add each subdomain by itself")
    if "://" in name or "/" in name or ":" in name:
        raise HostnameError("enter the domain name alone, without scheme, port or path")
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise HostnameError(f"domain name is not a valid internationalised name ({exc})") from None
    name = name.lower()
    if len(name) > MAX_DOMAIN_NAME_CHARS:
        raise HostnameError(f"domain name must be at most {MAX_DOMAIN_NAME_CHARS} characters")
    labels = name.split(".")
    if len(labels) < 2:
        raise HostnameError("domain name needs at least two labels, for example live.example.com")
    for label in labels:
        if not _LABEL_RE.match(label):
            raise HostnameError(
                f"domain name label {label!r} must be 1-{MAX_LABEL_CHARS} letters, digits or hyphens,"
                " not starting or ending with a hyphen"
            )
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except idna.IDNAError:
                raise HostnameError(f"domain name label {label!r} is not valid punycode") from None
    if labels[-1].isdigit():
        raise HostnameError("domain name must not be an IP address")
    return name


def in_test_zone(ascii_name: str) -> bool:
    """Whether the name is under one of TEST_ZONES (`play.lab.test`)."""
    return ascii_name.rstrip(".").rsplit(".", 1)[-1] in TEST_ZONES


def display_name(ascii_name: str) -> str:
    """The name as a person reads it (U-labels), falling back to ASCII."""
    try:
        return idna.decode(ascii_name)
    except idna.IDNAError:
        return ascii_name
