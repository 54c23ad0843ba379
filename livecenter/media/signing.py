"""Type A URL signing (DESIGN.md, "URL signing").

    auth_key = "{timestamp}-{rand}-{uid}-{md5hash}"
    md5hash  = md5("{uri}-{timestamp}-{rand}-{uid}-{key}"), lower-case hex

`uri` is the request path alone. A URL is valid until `timestamp` plus the
domain's validity period, and a hash made with any of the domain's keys
(primary or secondary) is accepted. This is the one implementation: the URL
generator signs with it and the media node verifies with it. It is pure: the
caller passes `now`, and nothing here reads the clock or touches I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

# `rand` and `uid` are separated by "-", so neither may contain one.
_FIELD_RE = re.compile(r"^[A-Za-z0-9_.~]{1,64}$")
_HASH_RE = re.compile(r"^[0-9a-f]{32}$")
_TIMESTAMP_RE = re.compile(r"^[0-9]{1,12}$")
MAX_AUTH_KEY_CHARS = 200


class AuthFailure(StrEnum):
    """Why a signed URL was refused; the values are the words DESIGN.md's
    403 header carries (`X-Tengine-Error: denied by req auth: <value>`)."""

    MISSING = "no auth_key"
    MALFORMED = "invalid auth_key"
    EXPIRED = "expired timestamp"
    BAD_HASH = "invalid md5hash"


@dataclass(frozen=True, slots=True)
class AuthKey:
    timestamp: int
    rand: str
    uid: str
    md5hash: str

    def __str__(self) -> str:
        return f"{self.timestamp}-{self.rand}-{self.uid}-{self.md5hash}"


@dataclass(frozen=True, slots=True)
class AuthResult:
    ok: bool
    failure: AuthFailure | None = None
    expires_at: int | None = None

    @property
    def header_value(self) -> str:
        """The value of the refusal header; never names which key was tried."""
        if self.failure is None:
            return ""
        return f"denied by req auth: {self.failure.value}"


def md5hash(uri: str, timestamp: int, rand: str, uid: str, key: str) -> str:
    return hashlib.md5(f"{uri}-{timestamp}-{rand}-{uid}-{key}".encode()).hexdigest()


def sign(uri: str, key: str, timestamp: int, rand: str = "0", uid: str = "0") -> str:
    """Return the `auth_key` value for `uri` signed with `key` at `timestamp`."""
    if not uri.startswith("/"):
        raise ValueError("uri must be a path starting with '/'")
    if not key:
        raise ValueError("key must not be empty")
    if timestamp < 0:
        raise ValueError("timestamp must not be negative")
    for name, value in (("rand", rand), ("uid", uid)):
        if not _FIELD_RE.match(value):
            raise ValueError(f"{name} must be 1-64 letters or digits without '-'")
    return str(AuthKey(timestamp, rand, uid, md5hash(uri, timestamp, rand, uid, key)))


def parse_auth_key(value: str) -> AuthKey | None:
    """Split an `auth_key` value into its four fields, or None if it is not one."""
    if len(value) > MAX_AUTH_KEY_CHARS:
        return None
    parts = value.split("-")
    if len(parts) != 4:
        return None
    timestamp, rand, uid, digest = parts
    if not (_TIMESTAMP_RE.match(timestamp) and _FIELD_RE.match(rand) and _FIELD_RE.match(uid)):
        return None
    if not _HASH_RE.match(digest):
        return None
    return AuthKey(int(timestamp), rand, uid, digest)


def verify(
    uri: str,
    auth_key: str | None,
    keys: Iterable[str],
    validity_seconds: int,
    now: float,
) -> AuthResult:
    """Check `auth_key` for `uri` against every key in `keys`.

    The order of checks follows the CDN's: a missing token, then a token that
    cannot be read, then expiry (`timestamp + validity < now`), then the hash.
    """
    if not auth_key:
        return AuthResult(False, AuthFailure.MISSING)
    parsed = parse_auth_key(auth_key)
    if parsed is None:
        return AuthResult(False, AuthFailure.MALFORMED)
    expires_at = parsed.timestamp + validity_seconds
    if expires_at < now:
        return AuthResult(False, AuthFailure.EXPIRED, expires_at)
    matched = False
    for key in keys:
        if not key:
            continue
        expected = md5hash(uri, parsed.timestamp, parsed.rand, parsed.uid, key)
        # Compare every key in constant time, so the timing tells nothing
        # about which key (if any) was close.
        matched |= hmac.compare_digest(expected, parsed.md5hash)
    if not matched:
        return AuthResult(False, AuthFailure.BAD_HASH, expires_at)
    return AuthResult(True, None, expires_at)


# --- HLS segment tokens ------------------------------------------------------------
# The segment and part URIs of a playlist carry a token instead of the viewer's
# auth_key: HMAC-SHA256 with the node's secret over the stream and an expiry,
# handed out only in a playlist whose signed URL was checked, so a segment
# cannot be fetched without one and a token for one stream opens no other.

_TOKEN_CONTEXT = b"livecenter hls segment token\n"
_TOKEN_MAC_HEX_CHARS = 32  # 128 bits of HMAC-SHA256
_TOKEN = re.compile(rf"([0-9]{{1,18}})-([0-9a-f]{{{_TOKEN_MAC_HEX_CHARS}}})", re.ASCII)


def make_segment_token(secret: bytes, stream: str, expires: int) -> str:
    """A token for the segment and part URIs of one stream, valid until
    `expires` (Unix seconds): `{expires}-{HMAC-SHA256 in hex, 128 bits}`.
    `stream` is whatever names the stream to the server (e.g. domain, app and
    stream); a token for one stream opens no other."""
    if expires < 0:
        raise ValueError("expires must not be negative")
    return f"{expires}-{_token_mac(secret, stream, expires)}"


def check_segment_token(secret: bytes, stream: str, token: str | None, now: float) -> str | None:
    """None when the token is valid for this stream at `now`, else the
    reason to refuse it: "no token", "malformed token", "expired token" or
    "invalid token". The MAC is compared in constant time."""
    if not token:
        return "no token"
    match = _TOKEN.fullmatch(token)
    if match is None:
        return "malformed token"
    expires = int(match[1])
    # Check the MAC first, so a forged expiry learns nothing from the answer.
    if not hmac.compare_digest(match[2], _token_mac(secret, stream, expires)):
        return "invalid token"
    if now > expires:
        return "expired token"
    return None


def _token_mac(secret: bytes, stream: str, expires: int) -> str:
    message = _TOKEN_CONTEXT + f"{stream}\n{expires}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:_TOKEN_MAC_HEX_CHARS]
