"""HLS and low-latency HLS over HTTP, packaged by the node itself (issue 4).

A stream is packaged from the first playlist request on (the hub hands the
packager the cached GOP, so the first segment is ready within a GOP) until
nobody has asked for it for HLS_IDLE_SECONDS. Every playlist carries the
low-latency tags (EXT-X-PART, EXT-X-PRELOAD-HINT, EXT-X-SERVER-CONTROL with
CAN-BLOCK-RELOAD): a client in low-latency mode uses them, and any other
client ignores them as RFC 8216 4.1 requires, so one URL serves both.

The playlist is signed (Type A, checked on every request); the segment and
part URIs it hands out carry a token (HMAC with this node's secret, naming
the stream) that the server checks, so media cannot be fetched without a
valid playlist.

On a streaming domain with HLS encryption on (DomainConfig.hls_key_period)
the stream is packaged encrypted (hls_crypto.py), apart from its packaging
in clear for any other domain that plays it, and its keys are served at
`/{app}/{stream}/key_{id}.key` under the same token as its segments: a key
cannot be had without a valid signed playlist either. The token of an
encrypted packaging opens neither the clear one nor another period's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from .hls import HlsPackager, Readiness, parse_key_uri, parse_media_uri
from .mpegts import TsMuxError
from .play import REFUSAL_NOT_LIVE
from .policy import StreamKey
from .renditions import split_rendition_name
from .signing import check_segment_token, make_segment_token

log = logging.getLogger(__name__)

# Packaging stops for a stream nobody has requested for this long.
HLS_IDLE_SECONDS = 30.0
# Segment tokens are minted for this step and live two steps, so the URIs in
# consecutive playlists stay the same and a token outlives the window.
TOKEN_STEP_SECONDS = 60
# How long a first playlist request waits for the first segment.
FIRST_SEGMENT_WAIT_SECONDS = 6.0
# LL-HLS parts of a fifth of a second, and PART-HOLD-BACK of three of them
# (RFC 8216bis 4.4.3.8's SHOULD): a part that comes up to 400 ms late (a
# loaded machine, a congested link) is then not a stall. hls.js plays that
# far behind the edge plus what its start-up took and, below a second of
# buffer, never speeds up to catch up; the web player closes that gap itself
# (static/js/player.js, catchUpToLiveEdge) so LL-HLS stays under DESIGN.md's
# p50 of 1.0 s.
PART_DURATION_SECONDS = 0.2
PART_HOLD_BACK_PARTS = 3
# A player joining (a playlist request without _HLS_msn) within this long of
# the open segment's end is answered once that segment is complete. hls.js
# loads the parts before its start position in a burst; when the playlist
# that completes their segment arrives during that burst, it counts the
# segment as wholly buffered, never loads its last part and stalls for
# seconds (hls.js 1.7: level-helper updateFragPTSDTS shortens the fragment to
# the parts parsed, then fragment-tracker detectPartialFragments sees it
# whole). Joining just after a segment boundary keeps the burst clear of the
# next one.
JOIN_SEGMENT_END_MARGIN_MS = 400


# A packaged stream: its key and its key rotation period (0: in clear).
Packaging = tuple[StreamKey, int]


def _source_name(stream: str) -> str:
    """The stream a rendition `{stream}_{template}` is made from; a source is its own."""
    split = split_rendition_name(stream)
    return split[0] if split is not None else stream


class HlsStream:
    """One stream being packaged: a hub subscription feeding a packager."""

    def __init__(self, service: HlsService, key: StreamKey, key_rotation_segments: int = 0) -> None:
        self.service = service
        self.key = key
        self.key_rotation_segments = key_rotation_segments
        # What its tokens are minted for: an encrypted packaging's open no other.
        self.name = f"{key} aes-128/{key_rotation_segments}" if key_rotation_segments else str(key)
        self.packager = HlsPackager(
            target_duration_s=1,
            part_duration_s=PART_DURATION_SECONDS,
            part_hold_back_parts=PART_HOLD_BACK_PARTS,
            uri_prefix=f"{key.stream}/",
            key_rotation_segments=key_rotation_segments,
        )
        self.last_request = time.monotonic()
        # The streaming domains its playlists were served through: whose
        # access lists its segments and parts are held to (http_server.py).
        self.domains: set[str] = set()
        self._changed = asyncio.Event()
        self._publication = None
        self.subscription = service.node.hub.subscribe(key, protocol="hls-packager", on_ready=self._on_ready)
        self._on_ready(self.subscription)

    def _on_ready(self, subscription) -> None:
        stream = self.service.node.hub.stream(self.key)
        publication = stream.publication if stream is not None else None
        changed = False
        for frame in subscription.drain():
            if publication is not None and publication is not self._publication:
                if self._publication is not None:
                    self.packager.discontinuity()
                self._publication = publication
            try:
                events = self.packager.push(
                    frame.kind, frame.timestamp, frame.body, frame.keyframe, frame.sequence_header, time.time()
                )
            except TsMuxError as exc:
                log.info("hls %s: frame dropped: %s", self.key, exc)
                continue
            changed |= bool(events)
        if changed or subscription.ended:
            self._changed.set()
            self._changed = asyncio.Event()

    async def changed(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.subscription.close()
        self._changed.set()


class HlsService:
    def __init__(self, node) -> None:
        self.node = node
        self.secret = os.urandom(32)
        self.streams: dict[Packaging, HlsStream] = {}
        # The same, by (app, source name): a source and its renditions, every
        # domain. Each playlist and media request looks here, not at all streams.
        self._families: dict[tuple[str, str], dict[Packaging, HlsStream]] = {}
        self._reaper: asyncio.Task | None = None

    def start(self) -> None:
        self._reaper = asyncio.get_running_loop().create_task(self._reap(), name="hls-reaper")

    def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for stream in self.streams.values():
            stream.close()
        self.streams.clear()
        self._families.clear()

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(HLS_IDLE_SECONDS / 3)
            now = time.monotonic()
            for packaging, stream in list(self.streams.items()):
                if now - stream.last_request > HLS_IDLE_SECONDS or stream.subscription.ended:
                    stream.close()
                    del self.streams[packaging]
                    key = packaging[0]
                    family = self._family(key)
                    del family[packaging]
                    if not family:
                        del self._families[(key.app, _source_name(key.stream))]

    def _family(self, key: StreamKey) -> dict[Packaging, HlsStream]:
        return self._families.setdefault((key.app, _source_name(key.stream)), {})

    def token(self, stream: HlsStream, now: float) -> str:
        expires = (int(now) // TOKEN_STEP_SECONDS + 2) * TOKEN_STEP_SECONDS
        return make_segment_token(self.secret, stream.name, expires)

    async def playlist(
        self, key: StreamKey, msn: str | None, part: str | None, key_rotation_segments: int = 0, domain: str = ""
    ) -> tuple[int, str]:
        """(status, body): 200 with the playlist, 400 for a bad blocking
        request, 404 when the stream is not live, 503 when it does not
        advance in time. `key_rotation_segments`: encrypted, with a new key
        every that many segments; 0: in clear. `domain`: the streaming
        domain it is served through."""
        packaging = (key, key_rotation_segments)
        stream = self.streams.get(packaging)
        if stream is None or stream.subscription.ended:
            stream = HlsStream(self, key, key_rotation_segments)
            self.streams[packaging] = self._family(key)[packaging] = stream
        stream.last_request = time.monotonic()
        if domain:
            stream.domains.add(domain)
        deadline = time.monotonic() + max(FIRST_SEGMENT_WAIT_SECONDS, stream.packager.blocking_timeout_s)
        while not stream.packager.has_segments:
            if stream.subscription.ended or not await stream.changed(deadline - time.monotonic()):
                return 404, REFUSAL_NOT_LIVE
        if msn is None and stream.packager.segment_ends_within(JOIN_SEGMENT_END_MARGIN_MS):
            closing = stream.packager.building_part[0]
            while stream.packager.building_part[0] == closing and not stream.subscription.ended:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not await stream.changed(remaining):
                    break  # answer with what there is
        while True:
            decision = stream.packager.reload_decision(msn, part)
            if decision.readiness is Readiness.BAD_REQUEST:
                return 400, decision.reason
            if decision.readiness is Readiness.READY:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0 or stream.subscription.ended or not await stream.changed(remaining):
                return 503, "the playlist did not advance in time"
        return 200, stream.packager.playlist(
            low_latency=True, token=self.token(stream, time.time()), rendition_reports=self.rendition_reports(stream)
        )

    def rendition_reports(self, stream: HlsStream) -> list[tuple[str, int, int]]:
        """EXT-X-RENDITION-REPORT of the stream's other renditions this node
        packages (RFC 8216bis 4.4.5.4): the source `{s}` and its
        `{s}_{template}`, by URI relative to this playlist. hls.js reads the
        report of the rendition it switches to for the part to ask for (it
        matches the URI without the query)."""
        reports = []
        for (key, period), other in self._family(stream.key).items():
            if other is stream or key.domain != stream.key.domain or other.subscription.ended:
                continue
            if period != stream.key_rotation_segments:
                continue  # a packaging the viewer's domain does not serve
            last = other.packager.last_msn_part()
            if last is not None:
                reports.append((f"{key.stream}.m3u8", *last))
        return sorted(reports)

    def served_domains(self, app: str, stream_name: str) -> set[str]:
        """The streaming domains through which playlists of `app/stream_name` were served."""
        domains = set()
        for (key, _), stream in self._families.get((app, _source_name(stream_name)), {}).items():
            if key.stream == stream_name:
                domains |= stream.domains
        return domains

    def find(self, app: str, stream_name: str, token: str, now: float) -> tuple[HlsStream | None, str]:
        """The packaged stream a media URI's token was minted for."""
        failure = ""
        for (key, _), stream in self._families.get((app, _source_name(stream_name)), {}).items():
            if key.stream != stream_name:
                continue
            failure = check_segment_token(self.secret, stream.name, token, now) or ""
            if not failure:
                return stream, ""
        return None, failure or "stream is not being packaged"

    def key(self, app: str, stream_name: str, file_name: str, token: str) -> tuple[int, bytes | str]:
        """An encrypted packaging's key (hls_crypto.py): 200 with its 16
        bytes, 403 for a token that is missing, wrong or expired, 404 for a
        key destroyed or never made."""
        key_id = parse_key_uri(file_name)
        if key_id is None:
            return 404, "not found"
        stream, failure = self.find(app, stream_name, token, time.time())
        if stream is None:
            return (404 if failure == "stream is not being packaged" else 403), failure
        if not stream.key_rotation_segments:
            return 403, "invalid token"  # a playlist in clear hands out no key: its token opens none
        stream.last_request = time.monotonic()
        key = stream.packager.key(key_id)
        return (200, key) if key is not None else (404, "key is gone or not yet made")

    async def media(self, app: str, stream_name: str, file_name: str, token: str) -> tuple[int, bytes | str]:
        ref = parse_media_uri(file_name)
        if ref is None:
            return 404, "not found"
        stream, failure = self.find(app, stream_name, token, time.time())
        if stream is None:
            return (404 if failure == "stream is not being packaged" else 403), failure
        stream.last_request = time.monotonic()
        packager = stream.packager
        if ref.part is None:
            data = packager.segment(ref.msn)
            if data is None:
                return 404, "segment is gone or not complete"
            self.node.stats.served(stream.key, "hls", len(data))
            return 200, data
        deadline = time.monotonic() + packager.blocking_timeout_s
        while True:
            status = packager.part_status(ref.msn, ref.part)
            if status is Readiness.READY:
                data = packager.part(ref.msn, ref.part)
                self.node.stats.served(stream.key, "hls", len(data))
                return 200, data
            if status is not Readiness.WAIT:
                return 404, "part is gone or not yet announced"
            # The preload hint: hold the request until the part is complete.
            remaining = deadline - time.monotonic()
            if remaining <= 0 or stream.subscription.ended or not await stream.changed(remaining):
                return 503, "the part was not completed in time"
