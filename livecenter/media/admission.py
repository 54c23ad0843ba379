"""Who may publish and play (DESIGN.md, URL signing; issue 3).

Pure decisions over a Policy: the domain from the request's host, the domain's
switches, its access lists (access.py), the Type A signature, and forbidden
streams. The servers call these at session start and turn a refusal into
their protocol's answer.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from .policy import DomainConfig, Policy, PolicyUnavailable, StreamKey
from .signing import verify

# The longest app or stream name a publisher may use, over RTMP and SRT
# alike: the console keeps both in 255-character columns (monitoring's
# samples, sessions and refusals), and HTTP play paths and the URL
# generator take 1-255 characters.
MAX_NAME_CHARS = 255


class Refusal(StrEnum):
    UNKNOWN_DOMAIN = "non-existent domain"
    DOMAIN_DISABLED = "domain is disabled"
    NOT_INGEST = "not an ingest domain"
    NOT_STREAMING = "not a streaming domain"
    NOT_ASSOCIATED = "streaming domain has no ingest domain"
    FORBIDDEN = "stream is forbidden"
    NAME_TOO_LONG = f"app or stream name longer than {MAX_NAME_CHARS} characters"
    # The policy's database is unreachable and the domain (or the stream's
    # block) is not in its cache: a passing fault, not a verdict.
    POLICY_UNAVAILABLE = "policy unavailable"


@dataclass(frozen=True, slots=True)
class Client:
    """Who asks, as the domain's access lists see it (access.py)."""

    address: str  # the peer's IP address, from the socket
    referer: str | None = None  # the Referer header's value; None without one
    has_referer: bool = False  # the request is HTTP, which has the header: the Referer list applies


def _access_refusal(domain: DomainConfig, client: Client | None) -> str | None:
    if client is None:
        return None
    return domain.access.refusal(client.address, client.referer, client.has_referer)


@dataclass(frozen=True, slots=True)
class Admission:
    key: StreamKey | None = None
    refusal: str | None = None  # a Refusal or a signing failure, in words
    domain: DomainConfig | None = None

    @property
    def ok(self) -> bool:
        return self.refusal is None


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def domain_of(host: str, query: dict[str, str]) -> str:
    """The domain a request names: its host, or on a bare IP address (or
    localhost) the `domain=` query parameter, as SRS does with `vhost=`."""
    host = (host or "").strip().lower()
    if host.startswith("[") and "]" in host:
        host = host[1 : host.index("]")]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    host = host.rstrip(".")
    if (is_ip_literal(host) or host == "localhost" or not host) and query.get("domain"):
        return query["domain"].strip().lower().rstrip(".")
    return host


def _signature_refusal(domain: DomainConfig, uri: str, auth_key: str | None, now: float) -> str | None:
    if domain.signing_keys is None:
        return None
    result = verify(uri, auth_key, domain.signing_keys, domain.validity_seconds, now)
    return None if result.ok else result.failure.value


async def admit_publish(
    policy: Policy,
    host: str,
    app: str,
    stream: str,
    auth_key: str | None,
    now: float,
    relayed: bool = False,
    client: Client | None = None,
) -> Admission:
    """`relayed`: another node of the cluster sends the stream with a good
    node token (edge.py), having checked the publisher's signature and
    address itself; the domain's switches and the forbidden list still
    apply. `client`: the publisher, for the domain's access lists; None
    for a peer they do not apply to (a relay, the node's media workers)."""
    try:
        return await _admit_publish(policy, host, app, stream, auth_key, now, relayed, client)
    except PolicyUnavailable:
        return Admission(refusal=Refusal.POLICY_UNAVAILABLE)


async def _ingest_domain(policy: Policy, host: str) -> DomainConfig | Admission:
    """The enabled ingest domain `host` names, or the refusal."""
    domain = await policy.domain_config(host)
    if domain is None:
        return Admission(refusal=Refusal.UNKNOWN_DOMAIN)
    if domain.kind != "ingest":
        return Admission(refusal=Refusal.NOT_INGEST, domain=domain)
    if not domain.enabled:
        return Admission(refusal=Refusal.DOMAIN_DISABLED, domain=domain)
    return domain


async def _admit_publish(
    policy: Policy,
    host: str,
    app: str,
    stream: str,
    auth_key: str | None,
    now: float,
    relayed: bool,
    client: Client | None,
) -> Admission:
    if len(app) > MAX_NAME_CHARS or len(stream) > MAX_NAME_CHARS:
        return Admission(refusal=Refusal.NAME_TOO_LONG)
    domain = await _ingest_domain(policy, host)
    if isinstance(domain, Admission):
        return domain
    # The lists before the signature: a refused address learns nothing of its URL.
    refusal = None
    if not relayed:
        refusal = _access_refusal(domain, client) or _signature_refusal(domain, f"/{app}/{stream}", auth_key, now)
    if refusal:
        return Admission(refusal=refusal, domain=domain)
    key = StreamKey(domain.name, app, stream)
    if await policy.is_forbidden(key, now):
        return Admission(key=key, refusal=Refusal.FORBIDDEN, domain=domain)
    return Admission(key=key, domain=domain)


async def admit_play(
    policy: Policy,
    host: str,
    app: str,
    stream: str,
    uri: str,
    auth_key: str | None,
    now: float,
    client: Client | None = None,
) -> Admission:
    """`uri` is what the signature covers: `/{app}/{stream}` for RTMP,
    `/{app}/{stream}.flv` for HTTP-FLV. `client`: the viewer, for the
    domain's access lists; None for the node's media workers."""
    try:
        return await _admit_play(policy, host, app, stream, uri, auth_key, now, client)
    except PolicyUnavailable:
        return Admission(refusal=Refusal.POLICY_UNAVAILABLE)


async def _admit_play(
    policy: Policy,
    host: str,
    app: str,
    stream: str,
    uri: str,
    auth_key: str | None,
    now: float,
    client: Client | None,
) -> Admission:
    domain = await policy.domain_config(host)
    if domain is None:
        return Admission(refusal=Refusal.UNKNOWN_DOMAIN)
    if domain.kind != "streaming":
        return Admission(refusal=Refusal.NOT_STREAMING, domain=domain)
    if not domain.enabled:
        return Admission(refusal=Refusal.DOMAIN_DISABLED, domain=domain)
    if not domain.ingest_domain:
        return Admission(refusal=Refusal.NOT_ASSOCIATED, domain=domain)
    refusal = _access_refusal(domain, client) or _signature_refusal(domain, uri, auth_key, now)
    if refusal:
        return Admission(refusal=refusal, domain=domain)
    return Admission(key=StreamKey(domain.ingest_domain, app, stream), domain=domain)


async def admit_relayed_play(policy: Policy, host: str, app: str, stream: str) -> Admission:
    """Another node of the cluster pulls a stream by its ingest domain's
    key, with a good node token (edge.py): its own viewers were admitted
    by their streaming domain there."""
    try:
        domain = await _ingest_domain(policy, host)
    except PolicyUnavailable:
        return Admission(refusal=Refusal.POLICY_UNAVAILABLE)
    if isinstance(domain, Admission):
        return domain
    return Admission(key=StreamKey(domain.name, app, stream), domain=domain)
