"""`POST /{app}/{stream}.beacon?auth_key=…` on a streaming domain: a
player's telemetry (beacon.py; the format is in the README, "Viewer
telemetry beacons").

A beacon is admitted as a play of the same stream is: the domain from the
Host header (or `domain=`), its switches and access lists, and the
auth_key of one of the stream's playback URLs (`/{app}/{stream}` of RTS
and RTMP, `.flv`, `.m3u8`), so a beacon cannot be sent for another
domain's or another stream's viewers without their URL. The answers:
204 taken; 400 a body that is not a beacon (the reason names the field);
403 (or 503) as a play is refused; 413 a body over MAX_BEACON_BYTES;
429 past a client's or a stream's rate (with Retry-After); 503 when the
node holds as many unreported rows as it may.
"""

from __future__ import annotations

import logging
import time

from .access import address_of
from .admission import Admission, Client, Refusal, admit_play, domain_of
from .beacon import MAX_BEACON_BYTES, BeaconError, parse_beacon

log = logging.getLogger(__name__)

BEACON_SUFFIX = ".beacon"
# What a signed playback URL of the stream covers (DESIGN.md, URL signing).
_PLAYBACK_URI_SUFFIXES = ("", ".flv", ".m3u8")
# A refused client may try again this much later.
BEACON_RETRY_AFTER_SECONDS = 10


async def admit_beacon(node, domain: str, app: str, stream: str, auth_key: str | None, client: Client) -> Admission:
    """The admission of the first playback URI the auth_key is good for;
    else the refusal for the first (a missing or expired key is refused
    the same for all)."""
    first = None
    for suffix in _PLAYBACK_URI_SUFFIXES:
        uri = f"/{app}/{stream}{suffix}"
        admission = await admit_play(node.policy, domain, app, stream, uri, auth_key, time.time(), client)
        if admission.ok or admission.domain is None or admission.domain.signing_keys is None:
            return admission
        first = first or admission
    return first


async def serve_beacon(session, app: str, stream: str, query: dict[str, str]) -> None:
    """Answer one beacon request on `session` (an http_server.MediaHttpSession)."""
    from .http_server import RequestBodyError, refusal_headers

    node, peer = session.node, session.peer
    address = address_of(peer)
    now = time.monotonic()
    retry = [(b"Retry-After", str(BEACON_RETRY_AFTER_SECONDS).encode())]
    if node.config.beacon_flush_seconds <= 0:
        session.send_simple(404, "beacons are off on this node\n")
        return
    if not node.beacon_limiter.client_allows(address, now):
        log.info("beacon %s refused: client rate", peer)
        session.send_simple(429, "too many beacons from this address\n", retry)
        return
    host = session.request_headers.get(b"host", b"").decode("latin-1")
    client = Client(address, session.referer(), has_referer=True)
    admission = await admit_beacon(node, domain_of(host, query), app, stream, query.get("auth_key"), client)
    if not admission.ok:
        log.info("beacon %s refused: stream=%s/%s reason=%s", peer, app, stream, admission.refusal)
        status = 503 if admission.refusal == Refusal.POLICY_UNAVAILABLE else 403
        session.send_simple(status, f"{admission.refusal}\n", refusal_headers(str(admission.refusal)))
        return
    key = admission.key
    if not node.beacon_limiter.stream_allows(key, now):
        log.info("beacon %s refused: stream=%s reason=stream rate", peer, key)
        session.send_simple(429, "too many beacons for this stream\n", retry)
        return
    try:
        body = await session.read_body(MAX_BEACON_BYTES)
        beacon = parse_beacon(body)
    except RequestBodyError as exc:
        log.info("beacon %s refused: stream=%s reason=%s", peer, key, exc.reason)
        session.send_simple(exc.status, f"{exc.reason}\n", refusal_headers(exc.reason))
        return
    except BeaconError as exc:
        log.info("beacon %s refused: stream=%s reason=%s", peer, key, exc)
        session.send_simple(400, f"{exc}\n", refusal_headers(str(exc)))
        return
    region = node.config.viewer_regions.lookup(address)
    if not node.playback.add(key, admission.domain.name, region, beacon, time.time()):
        log.info("beacon %s refused: stream=%s reason=telemetry table full", peer, key)
        session.send_simple(503, "the node's telemetry table is full\n", retry)
        return
    session.send_response(204, [])
