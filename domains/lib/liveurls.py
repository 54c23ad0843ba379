"""Ingest and playback URLs in the formats of DESIGN.md ("Addresses"), signed
with Type A. Pure: the caller passes the domains' keys and the expiry time."""

from __future__ import annotations

import re
from dataclasses import dataclass

from livecenter.media.signing import sign

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
TEMPLATE_RE = re.compile(r"^[A-Za-z0-9-]{1,32}$")


@dataclass(frozen=True)
class SignedHost:
    """A domain as the URL builder needs it."""

    host: str
    key: str | None  # None when URL signing is off for the domain
    validity_seconds: int


@dataclass(frozen=True)
class Ports:
    rtmp: int = 1935
    http: int = 8080
    srt: int = 1105


def _auth_query(target: SignedHost, uri: str, expires_at: int, rand: str) -> str:
    if target.key is None:
        return ""
    # The URL stays valid until timestamp + validity, so the timestamp that
    # makes it expire at `expires_at` is expires_at - validity.
    timestamp = max(0, expires_at - target.validity_seconds)
    return "auth_key=" + sign(uri, target.key, timestamp, rand=rand)


def _with_query(url: str, query: str) -> str:
    return f"{url}?{query}" if query else url


def ingest_urls(target: SignedHost, app: str, stream: str, expires_at: int, ports: Ports, rand: str = "0") -> dict:
    path = f"/{app}/{stream}"
    auth = _auth_query(target, path, expires_at, rand)
    h = target.host
    # SRT carries the resource and its token inside streamid; `m=publish` is
    # not part of what is signed (reference/aliyun_spec.md 2).
    srt_resource = _with_query(path, auth)
    return {
        "rtmp": _with_query(f"rtmp://{h}:{ports.rtmp}{path}", auth),
        "srt": f"srt://{h}:{ports.srt}?streamid=#!::h={h},r={srt_resource},m=publish",
        "rts": _with_query(f"artc://{h}{path}", auth),
    }


def playback_urls(
    target: SignedHost,
    app: str,
    stream: str,
    template: str | None,
    expires_at: int,
    ports: Ports,
    rand: str = "0",
) -> dict:
    name = f"{stream}_{template}" if template else stream
    path = f"/{app}/{name}"
    h = target.host
    base = f"http://{h}:{ports.http}{path}"
    # RTS is signed over the bare path, so the WHEP URL carries the same
    # token as the artc:// form (DESIGN.md, URL signing).
    rts_auth = _auth_query(target, path, expires_at, rand)
    return {
        "rtmp": _with_query(f"rtmp://{h}:{ports.rtmp}{path}", rts_auth),
        "flv": _with_query(f"{base}.flv", _auth_query(target, f"{path}.flv", expires_at, rand)),
        "m3u8": _with_query(f"{base}.m3u8", _auth_query(target, f"{path}.m3u8", expires_at, rand)),
        "rts": _with_query(f"artc://{h}{path}", rts_auth),
        "whep": _with_query(f"{base}.whep", rts_auth),
    }
