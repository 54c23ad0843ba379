"""How clients reach the media node where a domain has no DNS (one machine,
a lab): the node's address in the URL and `domain=` naming the domain, the
fallback the engine takes on an IP host (livecenter/media/admission.py,
domain_of) for HTTP-FLV, HLS, WHEP, WHIP and RTMP; an SRT stream ID names
its domain itself (`h=`). The signature covers the path alone, so a direct
URL carries the same `auth_key` as the DNS one.

LIVECENTER_PLAYER_MEDIA_HOST says which form the player, Go live and the
calibrator use: "auto" (the default) the DNS form where the domain resolves
on this machine and is not marked local, else the direct form; "" the DNS
form always; a host, the direct form to that host always. The URL generator
shows both forms and says which one applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

from django.conf import settings

from livecenter.media.admission import is_ip_literal

from .lib.resolve import BoundedResolver
from .models import Domain

AUTO = "auto"
# Where the node is when nothing better is known: `make run`'s embedded node.
LOOPBACK = "127.0.0.1"
# Schemes whose certificate is picked by, and checked against, the name in
# the URL: a direct form would fail its TLS check, so they keep the domain.
TLS_SCHEMES = frozenset({"https", "rtmps"})

_resolver: BoundedResolver | None = None


def resolver() -> BoundedResolver:
    """The process's resolver (its cache is shared by every page)."""
    global _resolver
    if _resolver is None:
        _resolver = BoundedResolver(
            settings.LIVECENTER_RESOLVE_TIMEOUT_SECONDS, settings.LIVECENTER_RESOLVE_CACHE_SECONDS
        )
    return _resolver


def _bare_host(host_header: str | None) -> str:
    host = (host_header or "").strip().lower()
    if host.startswith("[") and "]" in host:
        return host[1 : host.index("]")]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def node_address(request_host: str | None) -> str:
    """The media node's address for direct URLs: the address the browser
    reached the console at (its Host header: the node runs beside the
    console in `make run`), or the first address of that name; 127.0.0.1
    without one. `domain=` is honoured only on an address, so never a name."""
    host = _bare_host(request_host)
    if is_ip_literal(host):
        return host
    if not host or host == "localhost":
        return LOOPBACK
    addresses = resolver().addresses(host)
    return addresses[0] if addresses else LOOPBACK


@dataclass(frozen=True)
class Reach:
    """How clients of one domain reach the node."""

    domain: str
    direct_host: str  # the address direct URLs name
    direct: bool  # the direct form is the one to use
    reason: str  # why, for a person


def reach(domain: Domain, request_host: str | None = None) -> Reach:
    setting = settings.LIVECENTER_PLAYER_MEDIA_HOST.strip()
    name = domain.domain_name
    explicit = setting not in ("", AUTO)
    host = setting if explicit else node_address(request_host)
    if explicit:
        return Reach(name, host, True, f"LIVECENTER_PLAYER_MEDIA_HOST sends clients to {host}")
    if setting == "":
        return Reach(name, host, False, "LIVECENTER_PLAYER_MEDIA_HOST is empty: clients use the domain's name")
    if domain.local:
        return Reach(name, host, True, f"{name} is a local or test domain (no DNS)")
    if resolver().resolves(name):
        return Reach(name, host, False, f"{name} resolves on this machine")
    return Reach(name, host, True, f"{name} does not resolve on this machine (no DNS record yet)")


def media_host(domain: Domain | None, request_host: str | None = None) -> str:
    """The host clients of `domain` are sent to: "" for the domain's own name."""
    if domain is None:
        return ""
    found = reach(domain, request_host)
    return found.direct_host if found.direct else ""


def via_media_host(url: str, host: str, domain: str | None) -> str:
    """`url` sent to `host` (same scheme and port) with `domain=` naming the
    domain it was made for, as the media node accepts on an IP host; `url`
    itself when `host` is empty, and for HTTPS and RTMPS (TLS_SCHEMES). An
    SRT URL only changes host: its stream ID names the domain (`h=`) and
    takes no other parameter."""
    parts = urlsplit(url)
    if not host or not domain or parts.scheme in TLS_SCHEMES:
        return url
    netloc = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    query = parts.query
    if parts.scheme != "srt":
        query = "&".join(q for q in (parts.query, urlencode({"domain": domain})) if q)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


# The URL forms that have a direct form: not `artc://`, which names no port
# and is read by Alibaba's SDK, never sent to an address.
DIRECT_KEYS = ("rtmp", "srt", "whip", "flv", "m3u8", "whep")


def direct_urls(urls: dict, host: str, domain: str | None) -> dict:
    """The direct form of each URL in `urls` that has one and differs from it."""
    direct = {}
    for key in DIRECT_KEYS:
        if key in urls:
            url = via_media_host(urls[key], host, domain)
            if url != urls[key]:
                direct[key] = url
    return direct


def direct_forms(domains, generated, request_host: str | None = None) -> dict[str, tuple[Reach, dict]]:
    """For each side of `generated` (a services.GeneratedUrls) that has
    URLs, "ingest" and "playback": how its domain is reached, and the
    direct form of its URLs. `domains`: the operator's, holding both."""
    sides = {}
    for side, name, urls in (
        ("ingest", generated.ingest_domain, generated.ingest),
        ("playback", generated.streaming_domain, generated.playback),
    ):
        if name is None:
            continue
        found = reach(domains.get(domain_name=name), request_host)
        sides[side] = (found, direct_urls(urls, found.direct_host, name))
    return sides
