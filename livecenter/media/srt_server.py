"""SRT ingest: asyncio around the sans-IO SRT listener (livecenter.media.srt)
and the MPEG-TS demuxer (mpegts_demux.py).

One UDP socket carries every SRT conversation of the node. The adapter only
feeds datagrams and the clock in, sends what comes out, and runs the
listener's timers on a short tick. A caller whose handshake completes is
asked about like an RTMP publisher (admission.admit_publish with the stream
ID's domain, path and auth_key; the forbidden list; one publisher per
stream), then accepted with its ingest domain's latency and passphrase, or
refused with an SRT rejection reason in the access-control range (1400s,
the codes libsrt's callers print) and one INFO line. What it sends is
demuxed and pushed to the hub like RTMP media, so every protocol, job and
sample works on it unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from .admission import Refusal, admit_publish, domain_of
from .liveurl import LiveUrlError, SrtStreamId, parse_srt_streamid
from .mpegts_demux import FrameReceived, StreamRefused, TsDemuxer, TsDemuxError
from .policy import PublishRefused, SrtSessionStats, StreamKey, StreamPublished
from .srt.events import (
    SrtConnectionClosed,
    SrtConnectionRejected,
    SrtConnectionRequested,
    SrtDataReceived,
    SrtPacketsDropped,
)
from .srt.listener import SrtListener

log = logging.getLogger(__name__)

# How often the listener's timers run (ACKs every 10 ms, NAKs, TSBPD
# release, keepalives, idle timeouts): a release is at most this late.
SRT_TICK_SECONDS = 0.005

# SRT access-control rejection reasons (libsrt's access_control.h, the
# codes `srt-live-transmit` and ffmpeg print as "Rejection reason: ...").
REJECT_BAD_REQUEST = 1400
REJECT_UNAUTHORIZED = 1401
REJECT_FORBIDDEN = 1403
REJECT_NOT_FOUND = 1404
REJECT_BAD_MODE = 1405
REJECT_CONFLICT = 1409
REJECT_UNSUPPORTED_MEDIA = 1415
REJECT_UNAVAILABLE = 1503

_REFUSAL_CODES = {
    Refusal.UNKNOWN_DOMAIN: REJECT_NOT_FOUND,
    Refusal.NOT_INGEST: REJECT_NOT_FOUND,
    Refusal.DOMAIN_DISABLED: REJECT_FORBIDDEN,
    Refusal.FORBIDDEN: REJECT_FORBIDDEN,
    Refusal.POLICY_UNAVAILABLE: REJECT_UNAVAILABLE,
}


def refusal_code(refusal: str) -> int:
    """The SRT rejection reason for an admission refusal: a signature that
    fails (missing, expired, wrong) is unauthorized."""
    return _REFUSAL_CODES.get(refusal, REJECT_UNAUTHORIZED)


def read_stream_id(stream_id: str | None) -> SrtStreamId:
    """The caller's stream ID: DESIGN.md's `#!::h=…,r=/{app}/{stream}?auth_key=…,m=publish`,
    or the short form peers also accept, `{app}/{stream}?auth_key=…&domain=…`
    (a publish). Raises LiveUrlError naming what is wrong."""
    if stream_id and stream_id.startswith("%23"):
        stream_id = unquote(stream_id)  # a caller that sent it URL-encoded, as typed in a URL
    if not stream_id:
        raise LiveUrlError("no stream ID: set streamid=#!::h={domain},r=/{app}/{stream}?auth_key=…,m=publish")
    if stream_id.startswith("#!::"):
        return parse_srt_streamid(stream_id)
    # ffmpeg passes a stream ID up to the URL's next "&" as it is: its users write "%26".
    path, _, inner = unquote(stream_id).partition("?")
    parts = path.strip("/").split("/")
    if len(parts) != 2 or not all(parts):
        raise LiveUrlError("a short SRT stream ID is {app}/{stream}?auth_key=…&domain={domain}")
    query = dict(parse_qsl(inner, keep_blank_values=True))
    if not query.get("domain"):
        raise LiveUrlError("a short SRT stream ID names its domain: {app}/{stream}?auth_key=…&domain={domain}")
    mode = query.get("m", "publish")
    return SrtStreamId(query["domain"].lower(), parts[0], parts[1], query.get("auth_key"), mode)


@dataclass(eq=False)
class SrtPublisher:
    """One SRT caller publishing to the hub."""

    socket_id: int
    peer: str
    key: StreamKey
    session_id: str
    publication: object
    demuxer: TsDemuxer = field(default_factory=TsDemuxer)
    kick_watch: asyncio.Task | None = None
    packets_dropped: int = 0


class SrtServer(asyncio.DatagramProtocol):
    """The node's SRT port."""

    def __init__(self, node, listener: SrtListener | None = None) -> None:
        self.node = node
        self.listener = listener or SrtListener(latency_ms=node.config.srt_latency_ms)
        self.transport: asyncio.DatagramTransport | None = None
        self.publishers: dict[int, SrtPublisher] = {}  # by socket ID
        self._tick: asyncio.TimerHandle | None = None
        self._deciding: set[asyncio.Task] = set()

    # --- asyncio ----------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.listener.receive_datagram(data, addr, time.monotonic())
        self._process()

    def error_received(self, exc: Exception) -> None:
        # An ICMP error for a datagram we sent (the caller is gone): its
        # connection times out on its own.
        log.debug("srt: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_ticking()

    def close(self) -> None:
        now = time.monotonic()
        for socket_id in list(self.publishers):
            self.listener.close(socket_id, now)
        self._process()
        for task in self._deciding:
            task.cancel()
        for publisher in list(self.publishers.values()):
            self._end(publisher, "media node stopped")
        self._stop_ticking()
        if self.transport is not None:
            self.transport.close()

    # --- the listener's output ----------------------------------------------------

    def _process(self) -> None:
        for event in self.listener.events():
            handler = self.HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event)
        if self.transport is not None and not self.transport.is_closing():
            for data, addr in self.listener.datagrams_to_send():
                self.transport.sendto(data, addr)
        self._schedule()

    def _schedule(self) -> None:
        busy = self.listener.connections or self.listener.next_timer() is not None
        if busy and self._tick is None:
            self._tick = asyncio.get_running_loop().call_later(SRT_TICK_SECONDS, self._on_tick)
        elif not busy:
            self._stop_ticking()

    def _on_tick(self) -> None:
        self._tick = None
        self.listener.handle_timer(time.monotonic())
        self._process()

    def _stop_ticking(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None

    # --- events -----------------------------------------------------------------

    def on_requested(self, event: SrtConnectionRequested) -> None:
        task = asyncio.get_running_loop().create_task(self._decide(event))
        self._deciding.add(task)
        task.add_done_callback(self._deciding.discard)

    async def _decide(self, event: SrtConnectionRequested) -> None:
        peer = _peer(event.peer)
        try:
            target = read_stream_id(event.stream_id)
        except LiveUrlError as exc:
            return self._reject(event, REJECT_BAD_REQUEST, "?", str(exc))
        name = f"{target.host}/{target.app}/{target.stream}"
        if target.mode != "publish":
            return self._reject(event, REJECT_BAD_MODE, name, "SRT playback (m=request) is not served yet")
        domain = domain_of(target.host, {})
        admission = await admit_publish(self.node.policy, domain, target.app, target.stream, target.auth_key,
                                        time.time())  # fmt: skip
        if not admission.ok:
            return self._reject(event, refusal_code(admission.refusal), name, str(admission.refusal))
        stream = self.node.hub.stream(admission.key)
        if stream is not None and stream.publication is not None:
            return self._reject(event, REJECT_CONFLICT, name, "stream is already being published")
        config = admission.domain
        connection = self.listener.accept(
            event, time.monotonic(), passphrase=config.srt_passphrase or None, latency_ms=config.srt_latency_ms
        )
        if connection is None:  # the listener refused it (its SrtConnectionRejected says why) or it gave up
            self._process()
            return
        publication = self.node.hub.publish(admission.key)
        publisher = SrtPublisher(connection.socket_id, peer, admission.key, uuid.uuid4().hex, publication)
        self.publishers[connection.socket_id] = publisher
        self.node.stream_started(
            StreamPublished(
                key=admission.key,
                session_id=publisher.session_id,
                protocol="srt",
                client_addr=peer,
                publish_url=f"srt://{domain}?streamid=#!::h={domain},r=/{target.app}/{target.stream},m=publish",
                started_at=time.time(),
                node_id=self.node.config.node_id,
            )
        )
        publisher.kick_watch = asyncio.get_running_loop().create_task(self._watch_kick(publisher))
        log.info("srt %s publishing %s (latency %d ms%s)", peer, admission.key, connection.latency_us // 1000,
                 ", encrypted" if event.encrypted else "")  # fmt: skip
        self._process()

    def _reject(self, event: SrtConnectionRequested, code: int, name: str, reason: str) -> None:
        log.info("srt %s publish refused: stream=%s reason=%s (%d)", _peer(event.peer), name, reason, code)
        self._report_refusal(event.peer, event.stream_id, code, reason)
        self.listener.reject(event, code, time.monotonic())
        self._process()

    def on_rejected(self, event: SrtConnectionRejected) -> None:
        log.info("srt %s refused: stream=%s reason=%s (%d)", _peer(event.peer), event.stream_id or "?",
                 event.detail, event.reason)  # fmt: skip
        self._report_refusal(event.peer, event.stream_id, event.reason, event.detail)

    def on_data(self, event: SrtDataReceived) -> None:
        publisher = self.publishers.get(event.socket_id)
        if publisher is not None and not self._push(publisher, event.payload):
            self._disconnect(publisher, "not an ingest stream")

    def _push(self, publisher: SrtPublisher, payload: bytes) -> bool:
        """Demux `payload` (b"": the end) into the hub; False if the stream cannot be taken."""
        try:
            events = publisher.demuxer.receive_data(payload)
        except TsDemuxError as exc:
            log.info("srt %s stream=%s: %s", publisher.peer, publisher.key, exc)
            return False
        push = publisher.publication.push
        for item in events:
            if type(item) is FrameReceived:
                push(item.kind, item.timestamp_ms, item.body)
            elif type(item) is StreamRefused:
                log.info("srt %s stream=%s: %s stream on PID %d not taken: %s", publisher.peer, publisher.key,
                         item.codec, item.pid, item.reason)  # fmt: skip
        return True

    def on_dropped(self, event: SrtPacketsDropped) -> None:
        publisher = self.publishers.get(event.socket_id)
        if publisher is not None:
            publisher.packets_dropped += event.count

    def on_closed(self, event: SrtConnectionClosed) -> None:
        publisher = self.publishers.get(event.socket_id)
        if publisher is not None:
            self._end(publisher, event.reason)

    HANDLERS = {
        SrtConnectionRequested: on_requested,
        SrtConnectionRejected: on_rejected,
        SrtDataReceived: on_data,
        SrtPacketsDropped: on_dropped,
        SrtConnectionClosed: on_closed,
    }

    # --- monitoring -------------------------------------------------------------

    def session_stats(self) -> dict[StreamKey, SrtSessionStats]:
        """Each publish session's link figures now, by stream: what the
        node's sampler (stats.py) reads once a second."""
        connections = self.listener.connections
        readings = {}
        for socket_id, publisher in self.publishers.items():
            connection = connections.get(socket_id)
            if connection is None:
                continue
            stats = connection.stats
            readings[publisher.key] = SrtSessionStats(
                socket_id=socket_id,
                peer=publisher.peer,
                encrypted=connection.crypto is not None,
                latency_ms=connection.latency_us // 1000,
                rtt_ms=stats.rtt_us / 1000,
                rtt_var_ms=stats.rttvar_us / 1000,
                receive_buffer_packets=connection.buffered_packets,
                receive_buffer_ms=connection.buffered_us // 1000,
                packets_received=stats.packets_received,
                packets_lost=stats.packets_lost,
                packets_retransmitted=stats.packets_retransmitted,
                packets_dropped=stats.packets_dropped,
            )
        return readings

    def _report_refusal(self, addr, stream_id: str | None, code: int, reason: str) -> None:
        """Tell the sink about a refused publisher (the troubleshooting tool
        explains it); a refused player is only logged."""
        try:
            target = read_stream_id(stream_id)
        except LiveUrlError:
            target = None
        if target is not None and target.mode != "publish":
            return
        domain, app, stream = (target.host, target.app, target.stream) if target else ("", "", "")
        self.node.publish_refused(
            PublishRefused(domain, app, stream, "srt", _peer(addr), reason, int(code), time.time(),
                           self.node.config.node_id)
        )  # fmt: skip

    # --- ending -----------------------------------------------------------------

    async def _watch_kick(self, publisher: SrtPublisher) -> None:
        await publisher.publication.kicked.wait()
        if self.publishers.get(publisher.socket_id) is publisher:
            log.info("srt %s stream=%s: publisher kicked (forbidden)", publisher.peer, publisher.key)
            self._disconnect(publisher, "forbidden")

    def _disconnect(self, publisher: SrtPublisher, reason: str) -> None:
        self._end(publisher, reason)
        self.listener.close(publisher.socket_id, time.monotonic())
        self._process()

    def _end(self, publisher: SrtPublisher, reason: str) -> None:
        if self.publishers.pop(publisher.socket_id, None) is None:
            return
        if publisher.kick_watch is not None and publisher.kick_watch is not asyncio.current_task():
            publisher.kick_watch.cancel()
        self._push(publisher, b"")  # the last frame, held until the next would start
        publisher.publication.close(reason)
        self.node.stream_ended(publisher.key, publisher.session_id, reason)
        log.info("srt %s stopped publishing %s%s", publisher.peer, publisher.key, f" ({reason})" if reason else "")


def _peer(addr) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
