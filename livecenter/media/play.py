"""Admitting a viewer, once for every protocol that plays (HTTP-FLV, HLS,
RTMP, RTS over WHEP, SRT).

Each play goes through the same steps, with the same refusals:

1. admission (admission.admit_play: the domain, its switches, its access
   lists, the signature) and any switch of the protocol's own (RTS) -> DENIED, or
   UNAVAILABLE when the policy could not answer (a passing fault: try
   again, not forbidden);
2. room on the node for a new viewer (MediaNode.admits_viewer,
   capacity.py) -> AT_CAPACITY;
3. the stream going live within `play_wait_seconds` (the hub's
   wait_live) -> NOT_LIVE.

A server may do work of its own between 2 and 3 (WHEP reads its offer, HLS
answers an ABR group's master playlist). Every refusal is logged here, in
one form (protocol, peer, stream, reason); the server turns it into its
protocol's answer (an HTTP status with a header naming the reason, an RTMP
onStatus).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from .access import address_of
from .admission import Admission, Client, Refusal, admit_play, admit_relayed_play
from .capacity import REFUSAL_AT_CAPACITY
from .policy import DomainConfig, PolicyUnavailable, StreamKey

log = logging.getLogger(__name__)

REFUSAL_NOT_LIVE = "stream is not live"
# The protocols that play over HTTP, whose requests carry a Referer: a
# domain's Referer list applies to them (access.py), not to RTMP or SRT.
HTTP_PROTOCOLS = frozenset({"flv", "hls", "rts"})


class PlayRefusal(Enum):
    DENIED = "denied"
    UNAVAILABLE = "policy unavailable"
    AT_CAPACITY = "at capacity"
    NOT_LIVE = "not live"


@dataclass(frozen=True, slots=True)
class PlayRequest:
    """A viewer's request to play, as every protocol names it."""

    protocol: str  # "flv", "hls", "rtmp", "rts", "srt": what capacity and the log count it as
    peer: str  # host:port, for the log
    domain: str  # the domain the request names (admission.domain_of)
    app: str
    stream: str
    uri: str  # what the signature covers: `/{app}/{stream}` (RTMP), `/{app}/{stream}.flv` ...
    query: Mapping[str, str]
    client: str | None = None  # HLS: the viewer's address (one viewer across its requests)
    referer: str | None = None  # HTTP: the Referer header's value, None without one
    # The protocol's code for a refusal, put in the log line (SRT: its
    # rejection reason, which is all the caller is told).
    refusal_code: Callable[[PlayRefusal, str], int] | None = None


@dataclass(frozen=True, slots=True)
class PlayDecision:
    admission: Admission
    refusal: PlayRefusal | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.refusal is None

    @property
    def key(self) -> StreamKey | None:
        return self.admission.key


def log_refusal(request: PlayRequest, stream: object, reason: str, code: int | None = None) -> None:
    suffix = f" ({code})" if code is not None else ""
    log.info("%s %s play refused: stream=%s reason=%s%s", request.protocol, request.peer, stream, reason, suffix)


def _refused(request: PlayRequest, admission: Admission, refusal: PlayRefusal, reason: str) -> PlayDecision:
    stream = admission.key or f"{request.domain}/{request.app}/{request.stream}"
    code = request.refusal_code(refusal, reason) if request.refusal_code is not None else None
    log_refusal(request, stream, reason, code)
    return PlayDecision(admission, refusal, reason)


async def admit_viewer(
    node, request: PlayRequest, domain_refusal: Callable[[DomainConfig], str | None] | None = None
) -> PlayDecision:
    """Steps 1 and 2. `domain_refusal` is the protocol's own switch: the
    reason the admitted domain does not allow it, or None. Another node
    of the cluster pulling a stream (`MediaNode.relayed_by`) names its
    ingest domain and is admitted by its node token."""
    if node.relayed_by(f"/{request.app}/{request.stream}", request.query):
        # By its ingest domain: no streaming domain's lists apply, its own
        # viewers met them where they play (the node that pulls).
        admission = await admit_relayed_play(node.policy, request.domain, request.app, request.stream)
    else:
        # The node's media workers read streams like viewers, from whatever
        # machine runs them: a domain's lists are about its viewers, and
        # the worker token (an HMAC only nodes and workers can make) says
        # it is none. Refusing a recording because of a viewer list would
        # lose what the operator asked to keep.
        client = None
        if not node.is_media_worker(request.uri, request.query):
            client = Client(address_of(request.peer), request.referer, request.protocol in HTTP_PROTOCOLS)
        admission = await admit_play(
            node.policy, request.domain, request.app, request.stream, request.uri, request.query.get("auth_key"),
            time.time(), client,
        )  # fmt: skip
    if admission.ok and domain_refusal is not None:
        reason = domain_refusal(admission.domain)
        if reason:
            admission = Admission(refusal=reason, domain=admission.domain)
    if admission.refusal == Refusal.POLICY_UNAVAILABLE:
        return _refused(request, admission, PlayRefusal.UNAVAILABLE, str(admission.refusal))
    if not admission.ok:
        return _refused(request, admission, PlayRefusal.DENIED, str(admission.refusal))
    if not node.admits_viewer(admission.key, request.protocol, request.uri, request.query, request.client):
        return _refused(request, admission, PlayRefusal.AT_CAPACITY, REFUSAL_AT_CAPACITY)
    return PlayDecision(admission)


async def wait_live(
    node, request: PlayRequest, decision: PlayDecision, max_wait_seconds: float | None = None
) -> PlayDecision:
    """Step 3, for an admitted viewer: the same decision once the stream is
    live, a NOT_LIVE refusal if it is not within `play_wait_seconds` (or
    `max_wait_seconds`, if shorter: a protocol whose caller waits less)."""
    timeout = node.config.play_wait_seconds
    if max_wait_seconds is not None:
        timeout = min(timeout, max_wait_seconds)
    if not node.hub.is_live(decision.key) and await _forbidden(node, decision.key):
        # Forbidding cut its publisher and refuses the next: it will not go
        # live in the wait, and the viewer is told why at once (403), not
        # "not live" (404) after the wait. Asked only of a stream that is
        # not live, so a playing viewer's requests cost no lookup.
        return _refused(request, decision.admission, PlayRefusal.DENIED, str(Refusal.FORBIDDEN))
    if not await node.hub.wait_live(decision.key, timeout):
        return _refused(request, decision.admission, PlayRefusal.NOT_LIVE, REFUSAL_NOT_LIVE)
    return decision


async def _forbidden(node, key: StreamKey) -> bool:
    try:
        return await node.policy.is_forbidden(key, time.time())
    except PolicyUnavailable:
        return False  # as publishing does (nodes.bridge): unknown is not forbidden


async def admit_and_wait(
    node, request: PlayRequest, domain_refusal: Callable[[DomainConfig], str | None] | None = None
) -> PlayDecision:
    """All three steps, for a protocol with nothing to do between them."""
    decision = await admit_viewer(node, request, domain_refusal)
    if not decision.ok:
        return decision
    return await wait_live(node, request, decision)
