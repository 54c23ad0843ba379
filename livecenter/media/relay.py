"""Moving a live stream between nodes: `push` (an edge relays what its
publisher sends to the live center) over RTMP, `push_srt` the same over
SRT, and `pull` (an edge fetches a center's stream for its own viewers)
over RTMP.

The RTMP ones are thin asyncio adapters around
`rtmp.client.RtmpClientConnection`; `push_srt` sends the MPEG-TS that SRT
playback sends (srt_server.SrtTsSender) through an SRT call (srt_call.py),
whose latency the edge chooses for the link. Frames go out as they come,
with no merge delay (the relay is one connection per stream, and its
latency is every remote viewer's). What
decides where to push or pull from, and what to do when a link fails, is
the caller's: these return when the stream ends and raise `RelayError`
(naming the reason) when the link does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from .flv import FrameKind
from .hub import AlreadyPublishing, MediaFrame, StreamHub
from .liveurl import SrtStreamId
from .policy import StreamKey
from .rtmp import AudioReceived, MetadataReceived, PeerClosed, RtmpProtocolError, VideoReceived
from .rtmp.client import PlayStarted, PublishStarted, Refused, RtmpClientConnection, StreamEnded
from .srt.errors import SrtUsageError
from .srt_call import SrtCall, SrtCallFailed
from .srt_server import (
    REJECT_CONFLICT,
    REJECT_FORBIDDEN,
    REJECT_NOT_FOUND,
    REJECT_UNAUTHORIZED,
    REJECT_UNAVAILABLE,
    SrtTooSlow,
    SrtTsSender,
)
from .stats import NODE_LINK_PROTOCOL

log = logging.getLogger("livecenter.media.relay")

# How long a link may take from the TCP connect to Publish.Start / Play.Start.
RELAY_START_TIMEOUT_SECONDS = 10.0
# What the socket may buffer before we wait for it to drain: about a second
# of a 2 Mbit/s stream, so a slow link shows as backpressure on the hub's
# bounded queue (which skips to the next keyframe) rather than as memory.
RELAY_WRITE_HIGH_WATER_BYTES = 256 * 1024
_READ_BYTES = 64 * 1024


class RelayError(Exception):
    """The link failed: `reason` says how, fit for a log line and the console.
    `refusal` is the other node's own words when it refused the stream (its
    description: "stream is forbidden" …), empty when the link broke."""

    def __init__(self, reason: str, refusal: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.refusal = refusal


@dataclass(frozen=True, slots=True)
class RelayTarget:
    """Where a stream goes (push) or comes from (pull): a node's RTMP (or,
    for push_srt, SRT) address, the app and stream name, and the query that
    admits us there (an internal token, or the domain's `auth_key` and
    `domain=`)."""

    host: str
    port: int
    app: str
    stream: str
    query: tuple[tuple[str, str], ...] = ()
    protocol: str = "rtmp"  # or "srt"

    @property
    def tc_url(self) -> str:
        return f"rtmp://{self.host}:{self.port}/{self.app}"

    @property
    def name(self) -> str:
        """The stream name with its query, as `publish`/`play` carry it."""
        return f"{self.stream}?{urlencode(self.query)}" if self.query else self.stream

    @property
    def srt_stream_id(self) -> str:
        """What publishes to this target over SRT: DESIGN.md's stream ID,
        the domain as `h=` and the rest of the query on the resource."""
        query = dict(self.query)
        domain = query.pop("domain", self.host)
        auth_key = query.pop("auth_key", None)
        return str(SrtStreamId(domain, self.app, self.stream, auth_key, "publish", tuple(query.items())))

    def __str__(self) -> str:  # never the query: it holds credentials
        return f"{self.protocol}://{self.host}:{self.port}/{self.app}/{self.stream}"


class _Link:
    """One RTMP client connection on a socket."""

    def __init__(self, target: RelayTarget, publish: bool) -> None:
        self.target = target
        self.conn = RtmpClientConnection(target.app, target.tc_url, target.name, publish=publish)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self, timeout: float) -> list:
        """Connect and run the exchange up to Publish.Start or Play.Start;
        return the events that came with it (a player's first media)."""
        try:
            async with asyncio.timeout(timeout):
                self.reader, self.writer = await asyncio.open_connection(self.target.host, self.target.port)
                self.flush()
                while True:
                    events = await self.read()
                    for i, event in enumerate(events):
                        if isinstance(event, Refused):
                            reason = f"{self.target} refused: {event.code} {event.description}".rstrip()
                            raise RelayError(reason, event.description or event.code)
                        if isinstance(event, (PublishStarted, PlayStarted)):
                            return events[i + 1 :]
        except TimeoutError:
            raise RelayError(f"{self.target}: no answer within {timeout:g} s") from None
        except OSError as exc:
            raise RelayError(f"{self.target}: {exc.strerror or exc}") from None

    async def read(self) -> list:
        data = await self.reader.read(_READ_BYTES)
        try:
            events = self.conn.receive_data(data)
        except RtmpProtocolError as exc:
            raise RelayError(f"{self.target} sent bad RTMP: {exc.reason}") from None
        self.flush()  # pongs, acknowledgements
        if any(isinstance(e, PeerClosed) for e in events):
            raise RelayError(f"{self.target} closed the connection")
        return events

    def flush(self) -> int:
        """Write what the connection has to send; return how many bytes."""
        data = self.conn.data_to_send()
        if data and self.writer is not None and not self.writer.is_closing():
            self.writer.write(data)
        return len(data)

    async def close(self) -> None:
        if self.writer is None:
            return
        with contextlib.suppress(Exception):
            self.conn.close_stream()
            self.flush()
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)


def _send(conn: RtmpClientConnection, frame: MediaFrame) -> None:
    if frame.kind is FrameKind.VIDEO:
        conn.send_video(frame.timestamp, frame.body)
    elif frame.kind is FrameKind.AUDIO:
        conn.send_audio(frame.timestamp, frame.body)
    else:
        conn.send_metadata(frame.timestamp, frame.body)


async def push(
    hub: StreamHub,
    key: StreamKey,
    target: RelayTarget,
    *,
    start_timeout: float = RELAY_START_TIMEOUT_SECONDS,
    on_started: Callable[[], None] | None = None,
) -> None:
    """Send `key`'s frames to `target` from its headers and cached GOP on,
    until the stream ends on this node (return) or the link fails
    (RelayError). Cancel it to stop early; the link says goodbye."""
    link = _Link(target, publish=True)
    subscription = None
    watcher = None
    try:
        await link.open(start_timeout)
        if on_started is not None:
            on_started()
        subscription = hub.subscribe(key, protocol=NODE_LINK_PROTOCOL)
        # The center talks back (pings, acknowledgements, a refusal when the
        # stream is forbidden there): read it beside the frames.
        watcher = asyncio.ensure_future(_watch(link))
        while (frames := await _next_frames(subscription, watcher, watcher.result)) is not None:
            for frame in frames:
                _send(link.conn, frame)
            subscription.count_sent(link.flush())
            if link.writer.transport.get_write_buffer_size() > RELAY_WRITE_HIGH_WATER_BYTES:
                try:
                    await link.writer.drain()
                except OSError as exc:
                    raise RelayError(f"{target}: {exc.strerror or exc}") from None
    finally:
        if watcher is not None:
            watcher.cancel()
        if subscription is not None:
            subscription.close()
        await link.close()


async def _next_frames(subscription, failure: asyncio.Future, fail: Callable[[], None]) -> list[MediaFrame] | None:
    """The frames queued for a node link (the next one and what came with
    it), or None once the stream has ended here; `fail` (which raises) as
    soon as `failure` is done: the link broke while it waited."""
    getter = asyncio.ensure_future(subscription.get())
    done, _ = await asyncio.wait({getter, failure}, return_when=asyncio.FIRST_COMPLETED)
    if failure in done:
        getter.cancel()
        fail()
    frame = getter.result()
    return None if frame is None else [frame, *subscription.drain()]


async def _watch(link: _Link) -> None:
    while True:
        try:
            events = await link.read()
        except OSError as exc:
            raise RelayError(f"{link.target}: {exc.strerror or exc}") from None
        for event in events:
            if isinstance(event, Refused):
                reason = f"{link.target} ended the relay: {event.code} {event.description}".rstrip()
                raise RelayError(reason, event.description or event.code)


_KIND_OF_EVENT = {VideoReceived: FrameKind.VIDEO, AudioReceived: FrameKind.AUDIO, MetadataReceived: FrameKind.META}


async def pull(
    hub: StreamHub,
    key: StreamKey,
    source: RelayTarget,
    *,
    start_timeout: float = RELAY_START_TIMEOUT_SECONDS,
) -> None:
    """Play `source` into this node's hub as `key`'s publication, until the
    source's stream ends (return) or the link fails (RelayError). Cancel it
    when the last viewer has gone."""
    link = _Link(source, publish=False)
    publication = None
    reason = ""
    try:
        events = await link.open(start_timeout)
        try:
            publication = hub.publish(key)
        except AlreadyPublishing:
            raise RelayError(f"{key} is already live on this node") from None
        while True:
            for event in events:
                kind = _KIND_OF_EVENT.get(type(event))
                if kind is not None:
                    publication.push(kind, event.timestamp, event.payload)
                elif isinstance(event, (StreamEnded, Refused)):
                    reason = "the source's stream ended"
                    return
            if publication.closed:  # kicked on this node
                reason = "kicked"
                return
            try:
                events = await link.read()
            except OSError as exc:
                raise RelayError(f"{source}: {exc.strerror or exc}") from None
    except RelayError as exc:
        reason = exc.reason
        raise
    finally:
        if publication is not None:
            publication.close(reason or "pull stopped")
        await link.close()


# A center's SRT rejections that are its verdict on the stream, in the
# words its RTMP refusal would use (srt_server's codes), so the edge acts
# on them alike (edge.PASSING_REFUSALS). Any other access-control code is
# a verdict too; a protocol-level one (a timeout, a passphrase mismatch, a
# full listener) is the link's fault and another center may do.
SRT_REFUSALS = {
    REJECT_UNAVAILABLE: "policy unavailable",
    REJECT_FORBIDDEN: "stream is forbidden",
    REJECT_CONFLICT: "stream is already being published",
    REJECT_NOT_FOUND: "non-existent domain",
    REJECT_UNAUTHORIZED: "unauthorized",
}
# SRT's access-control range (libsrt's SRT_REJC_PREDEFINED and user codes).
_ACCESS_CONTROL_CODES = range(1000, 3000)
# A relay that keeps losing packets (the link is slower than the stream)
# this long is given up, and the edge tries the link again.
RELAY_SRT_MAX_DROPPING_SECONDS = 10.0


def _srt_refusal(reason: int) -> str:
    if reason not in _ACCESS_CONTROL_CODES:
        return ""
    return SRT_REFUSALS.get(reason, f"rejected with SRT code {reason}")


async def push_srt(
    hub: StreamHub,
    key: StreamKey,
    target: RelayTarget,
    *,
    latency_ms: int,
    passphrase: str | None = None,
    start_timeout: float = RELAY_START_TIMEOUT_SECONDS,
    on_started: Callable[[], None] | None = None,
) -> None:
    """`push` over SRT: `key`'s frames as MPEG-TS to the SRT listener at
    `target` (publishing with `target.srt_stream_id`), asking for
    `latency_ms` (the center takes the larger of it and its own) and
    encrypted with `passphrase` if given (the ingest domain's: the center
    asks for it as from any publisher). Returns when the stream ends here,
    raises RelayError when the call is refused or the link fails."""
    call = SrtCall(target.host, target.port, stream_id=target.srt_stream_id, latency_ms=latency_ms,
                   passphrase=passphrase, connect_timeout_seconds=start_timeout)  # fmt: skip
    subscription = None
    try:
        try:
            accepted = await call.connect()
        except SrtCallFailed as exc:
            raise RelayError(f"{target} refused: {exc.detail}", _srt_refusal(exc.reason)) from None
        except (OSError, SrtUsageError) as exc:
            raise RelayError(f"{target}: {getattr(exc, 'strerror', None) or exc}") from None
        if on_started is not None:
            on_started()
        subscription = hub.subscribe(key, protocol=NODE_LINK_PROTOCOL)
        ts = SrtTsSender(accepted.send_latency_ms * 1000, RELAY_SRT_MAX_DROPPING_SECONDS)

        def closed() -> None:
            raise RelayError(f"{target}: {call.closed.result()}")

        while (frames := await _next_frames(subscription, call.closed, closed)) is not None:
            try:
                payloads = ts.payloads(frames, subscription, time.monotonic(), call.packets_send_dropped)
            except SrtTooSlow:
                raise RelayError(f"{target}: packets given up for {RELAY_SRT_MAX_DROPPING_SECONDS:g} s") from None
            for payload in payloads:
                call.send(payload)
            call.flush()
    finally:
        if subscription is not None:
            subscription.close()
        call.close()
