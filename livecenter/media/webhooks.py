"""Signed callbacks to an operator's URL (issue 16): the signature, and which
addresses a callback may reach. Pure: the HTTP client is webhook_client.py,
the Celery delivery callbacks/, the publish hook publish_hook.py.

A request carries

    X-LiveCenter-Event: stream.published
    X-LiveCenter-Delivery: 3f0c…            (unique per event; a resend keeps it)
    X-LiveCenter-Timestamp: 1767225600      (Unix seconds, when this attempt was signed)
    X-LiveCenter-Signature: sha256=<hex HMAC-SHA256 of "{timestamp}.{body}" under the secret>

so a receiver recomputes the HMAC over the raw body, compares in constant
time, refuses a timestamp older than a few minutes (a replay) and drops a
delivery id it has seen (a retry of what it already took). Stripe's and
GitHub's webhooks are signed the same way; ApsaraVideo Live's
ALI-LIVE-SIGNATURE is an MD5 of the domain, timestamp and key, which does not
cover the body.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

EVENT_HEADER = "X-LiveCenter-Event"
DELIVERY_HEADER = "X-LiveCenter-Delivery"
TIMESTAMP_HEADER = "X-LiveCenter-Timestamp"
SIGNATURE_HEADER = "X-LiveCenter-Signature"
SIGNATURE_PREFIX = "sha256="

# What a receiver's answer may be: the status line and headers, and the body
# (the publish hook's refusal reason); more is not read.
MAX_RESPONSE_HEADER_BYTES = 16 * 1024
MAX_RESPONSE_BODY_BYTES = 64 * 1024
# The refusal reason a publisher is told (the rest of a long body is dropped).
MAX_REASON_CHARS = 200
MAX_URL_CHARS = 2000


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The X-LiveCenter-Signature value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def signed_headers(secret: str, timestamp: int, body: bytes, event: str, delivery_id: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        EVENT_HEADER: event,
        DELIVERY_HEADER: delivery_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }


def verify(secret: str, headers: dict[str, str], body: bytes, now: float, tolerance_seconds: float = 300) -> bool:
    """A receiver's check (the documented snippet does the same): the
    signature matches and the timestamp is within `tolerance_seconds` of `now`."""
    try:
        timestamp = int(headers.get(TIMESTAMP_HEADER, ""))
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance_seconds:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), headers.get(SIGNATURE_HEADER, ""))


class CallbackUrlError(ValueError):
    """A callback URL the product will not call; the message names the fix."""


@dataclass(frozen=True, slots=True)
class AddressRule:
    """Where callbacks may go. Never: link-local addresses (169.254.0.0/16 is
    the cloud metadata service; fe80::/10), unspecified, multicast or
    reserved ones, nor the product's own ports (console, media node) on a
    loopback address or on one of `own_hosts`. Loopback and private
    addresses only with `allow_private` (LIVECENTER_CALLBACKS_ALLOW_PRIVATE:
    receivers on the same machine or network, and the tests)."""

    allow_private: bool = False
    own_ports: frozenset[int] = field(default_factory=frozenset)
    own_hosts: frozenset[str] = field(default_factory=frozenset)  # IP addresses, as text

    def refusal(self, address: str, port: int) -> str | None:
        """Why a callback may not connect to `address`:`port`, or None."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return f"{address} is not an IP address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.is_link_local:
            return f"it resolves to {ip}, a link-local address (the cloud metadata range), which is never called"
        if ip.is_unspecified or ip.is_multicast or (ip.is_reserved and not ip.is_private):
            return f"it resolves to {ip}, which is not a host address"
        own = ip.is_loopback or str(ip) in self.own_hosts
        if own and port in self.own_ports:
            return f"it points at this product's own port {port} on {ip}"
        if (ip.is_loopback or ip.is_private or not ip.is_global) and not self.allow_private:
            return (
                f"it resolves to {ip}, a loopback or private address"
                " (allowed only with LIVECENTER_CALLBACKS_ALLOW_PRIVATE)"
            )
        return None

    def first_refusal(self, addresses: list[str], port: int) -> str | None:
        """Why a name with these addresses may not be called (every one must
        pass, so a second address cannot slip past), or None."""
        for address in addresses:
            refusal = self.refusal(address, port)
            if refusal:
                return refusal
        return None


@dataclass(frozen=True, slots=True)
class CallbackTarget:
    scheme: str  # "http" | "https"
    host: str  # a name or an IP literal, without brackets
    port: int
    target: str  # path and query, as sent in the request line

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_callback_url(url: str) -> CallbackTarget:
    """The parts of a callback URL, or CallbackUrlError. Addresses are
    checked after resolution (AddressRule), when the URL is saved and again
    at every call: a name may resolve elsewhere later."""
    if len(url) > MAX_URL_CHARS:
        raise CallbackUrlError(f"must be at most {MAX_URL_CHARS} characters")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise CallbackUrlError("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CallbackUrlError(f"is not a URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise CallbackUrlError("must start with http:// or https://")
    if not parts.hostname:
        raise CallbackUrlError("must name a host")
    if parts.username is not None or parts.password is not None:
        raise CallbackUrlError("must not carry a user name or password (the secret signs the requests)")
    if parts.fragment:
        raise CallbackUrlError("must not have a #fragment")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return CallbackTarget(scheme, parts.hostname.rstrip("."), port or (443 if scheme == "https" else 80), target)


def reason_text(body: bytes) -> str:
    """A receiver's body as a refusal reason a publisher is shown: printable,
    one line, at most MAX_REASON_CHARS."""
    text = body[: MAX_REASON_CHARS * 4].decode("utf-8", "replace")
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text[:MAX_REASON_CHARS]
