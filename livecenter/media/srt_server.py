"""SRT ingest: asyncio around the sans-IO SRT listener (livecenter.media.srt)
and the MPEG-TS demuxer (mpegts_demux.py).

One UDP socket carries every SRT conversation of the node. The adapter only
feeds datagrams and the clock in, sends what comes out, and runs the
listener's timers when they are due. A caller whose handshake completes is
asked about like an RTMP publisher (admission.admit_publish with the stream
ID's domain, path and auth_key; the forbidden list; one publisher per
stream), then accepted with its ingest domain's latency and passphrase, or
refused with an SRT rejection reason in the access-control range (1400s,
the codes libsrt's callers print) and one INFO line. What it sends is
demuxed and pushed to the hub like RTMP media, so every protocol, job and
sample works on it unchanged.

SRT playback (`m=request`, DESIGN.md: `h={streaming-domain}`, signed over
`/{app}/{stream}` with the streaming domain's key) is admitted like an
HTTP-FLV viewer (play.py: the signature, the node's capacity, the stream
being live), all while the caller waits for the answer to its handshake.
A stream that is not live is waited for only SRT_PLAY_WAIT_SECONDS, inside
libsrt's 3 s connect timeout (on an edge whose pull of it from a center is
under way, the caller is accepted then and the stream follows, within the
node's play wait), and then refused with 1404: a player refused
at the handshake fails at once and says so (libsrt logs "REJECT reported
from HS processing: Application-defined rejection reason", ffplay ends
with an I/O error, VLC shows its error), whereas one accepted onto a
stream that is not there gets keepalives and no data, and sits on its read
with nothing to tell its user. The wait covers a player started together
with its publisher. Once accepted,
an `SrtViewer` muxes the hub's frames to MPEG-TS (mpegts.py, PAT/PMT first,
before every video keyframe and at least every PSI_INTERVAL_MS) and sends
them 7 TS packets per SRT payload as they come (the hub paces them).

Playback is in clear: a streaming domain has no SRT passphrase (the console
sets one on ingest domains only), so a caller that brings one is refused
with UNSECURE by the listener. Should a streaming domain's config ever
carry a passphrase, it is required the way an ingest domain's is.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from .access import is_access_refusal
from .admission import Client, Refusal, admit_publish, domain_of
from .dolby import DolbyAudioTrack
from .flv import FrameKind
from .listener import peer_name
from .liveurl import LiveUrlError, SrtStreamId, parse_srt_streamid
from .mpegts import TS_PACKET_BYTES, TsMuxer, TsMuxError
from .mpegts_demux import (
    FrameReceived,
    PassthroughAudioReceived,
    ProgramReceived,
    StreamRefused,
    TsDemuxer,
    TsDemuxError,
)
from .play import PlayRefusal, PlayRequest, admit_viewer, wait_live
from .policy import CENTER_PUBLISH, EDGE_PUBLISH, PublishRefused, SrtSessionStats, StreamKey, StreamPublished
from .srt.connection import SEND_DROP_MARGIN_US
from .srt.events import (
    SrtConnectionClosed,
    SrtConnectionRejected,
    SrtConnectionRequested,
    SrtDataReceived,
    SrtPacketsDropped,
)
from .srt.listener import SrtListener

log = logging.getLogger(__name__)

# The listener's timers (ACKs every 10 ms, NAKs, TSBPD release, keepalives,
# idle timeouts) run when the earliest is due, but never sooner than this
# after they are scheduled: a payload is released at most this late after
# its TSBPD time (a 5 ms tick made it 2.5 ms on average, 5 at worst), and
# the wake-ups stay under 1,000 a second however many connections there are.
SRT_TIMER_MIN_SECONDS = 0.001

# SRT access-control rejection reasons (libsrt's access_control.h, the
# codes `srt-live-transmit` and ffmpeg print as "Rejection reason: ...").
REJECT_BAD_REQUEST = 1400
REJECT_UNAUTHORIZED = 1401
REJECT_OVERLOADED = 1402
REJECT_FORBIDDEN = 1403
REJECT_NOT_FOUND = 1404
REJECT_BAD_MODE = 1405
REJECT_CONFLICT = 1409
REJECT_UNSUPPORTED_MEDIA = 1415
REJECT_UNAVAILABLE = 1503

# Playback. How long a play request waits, inside its handshake, for the
# stream to go live: the caller's CONCLUSION stays unanswered meanwhile,
# and libsrt's caller gives up connecting after 3 s (SRTO_CONNTIMEO), as
# the listener forgets the request then (PENDING_HANDSHAKE_TIMEOUT_US);
# 2 s leaves the policy's answer and the round trip the rest.
SRT_PLAY_WAIT_SECONDS = 2.0
# 7 TS packets per SRT payload, 1316 bytes: what libsrt's live mode and
# ffmpeg send (SRT_LIVE_DEF_PLSIZE), the most 188-byte packets that fit
# the 1456-byte payload of a 1500-byte MTU.
TS_PACKETS_PER_SRT_PAYLOAD = 7
SRT_TS_PAYLOAD_BYTES = TS_PACKETS_PER_SRT_PAYLOAD * TS_PACKET_BYTES
# PAT and PMT go first, before every video keyframe, and at least this often
# in stream time (audio-only streams, long GOPs), so a player that lost
# them (a too-late drop) finds them again soon.
PSI_INTERVAL_MS = 1000
# A viewer whose packets the connection gives up on (not acknowledged
# within its latency plus 1 s: the link is too slow or the caller stopped
# reading) skips to the next keyframe each time it happens; still losing
# packets this long after it first did, it is disconnected (the hub cuts
# other viewers after 20 s of lag, SUBSCRIBER_MAX_LAG_MS).
SRT_VIEWER_MAX_DROPPING_SECONDS = 10.0
# What asyncio may buffer for the node's one UDP socket once the kernel's
# buffer is full; past it viewers skip media rather than queue more there.
SRT_SEND_HIGH_WATER_BYTES = 1024 * 1024

_REFUSAL_CODES = {
    Refusal.UNKNOWN_DOMAIN: REJECT_NOT_FOUND,
    Refusal.NOT_INGEST: REJECT_NOT_FOUND,
    Refusal.NOT_STREAMING: REJECT_NOT_FOUND,
    Refusal.NOT_ASSOCIATED: REJECT_NOT_FOUND,
    Refusal.DOMAIN_DISABLED: REJECT_FORBIDDEN,
    Refusal.FORBIDDEN: REJECT_FORBIDDEN,
    Refusal.NAME_TOO_LONG: REJECT_BAD_REQUEST,
    Refusal.POLICY_UNAVAILABLE: REJECT_UNAVAILABLE,
}


def refusal_code(refusal: str) -> int:
    """The SRT rejection reason for an admission refusal: an access list's
    is forbidden; a signature that fails (missing, expired, wrong) is unauthorized."""
    if is_access_refusal(refusal):
        return REJECT_FORBIDDEN
    return _REFUSAL_CODES.get(refusal, REJECT_UNAUTHORIZED)


def play_refusal_code(refusal: PlayRefusal, reason: str) -> int:
    """The SRT rejection reason for a refused play (play.py)."""
    if refusal is PlayRefusal.AT_CAPACITY:
        return REJECT_OVERLOADED
    if refusal is PlayRefusal.NOT_LIVE:
        return REJECT_NOT_FOUND
    return refusal_code(reason)


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
    items = parse_qsl(inner, keep_blank_values=True)
    query = dict(items)
    if not query.get("domain"):
        raise LiveUrlError("a short SRT stream ID names its domain: {app}/{stream}?auth_key=…&domain={domain}")
    mode = query.get("m", "publish")
    params = tuple((key, value) for key, value in items if key not in ("auth_key", "domain", "m"))
    return SrtStreamId(query["domain"].lower(), parts[0], parts[1], query.get("auth_key"), mode, params)


@dataclass(eq=False)
class SrtPublisher:
    """One SRT caller publishing to the hub."""

    socket_id: int
    peer: str
    key: StreamKey
    session_id: str
    publication: object
    demuxer: TsDemuxer = field(default_factory=TsDemuxer)
    dolby: DolbyAudioTrack = field(default_factory=DolbyAudioTrack)
    kick_watch: asyncio.Task | None = None
    packets_dropped: int = 0


# Datagrams read off the SRT socket per readiness callback, and the most one
# may hold (libsrt's payloads are 1456 bytes at most; a larger datagram is
# cut, and the core drops it as undecodable).
MAX_DATAGRAMS_PER_READ = 1024
RECV_BYTES = 2048


class SrtTimer:
    """Calls `on_due` when a sans-IO SRT core's earliest timer is due (its
    `next_timer()`, in time.monotonic()), but never sooner than
    SRT_TIMER_MIN_SECONDS after it is set: one loop timer however many
    connections the core holds."""

    def __init__(self, on_due) -> None:
        self._on_due = on_due
        self._handle: asyncio.TimerHandle | None = None
        self._at = 0.0  # when _handle runs

    def set(self, due: float | None) -> None:
        if due is None:
            self.cancel()
            return
        now = time.monotonic()
        due = max(due, now + SRT_TIMER_MIN_SECONDS)
        if self._handle is not None:
            if self._at <= due:
                return
            self._handle.cancel()
        self._at = due
        self._handle = asyncio.get_running_loop().call_later(due - now, self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        self._on_due()


class UdpEndpoint:
    """The node's SRT socket on the loop. asyncio's datagram transport reads
    one datagram per turn of the loop: with hundreds of viewers a turn takes
    tens of milliseconds, SRT's datagrams (hundreds a second) queued in the
    kernel faster than they were read, and every ACK, NAK and packet waited
    seconds behind them (bench/soak: round trips of 20-50 s, packets given
    up). This one reads until the socket is empty (at most
    MAX_DATAGRAMS_PER_READ per turn) and hands the batch over at once. It
    sends without a buffer of its own: a full kernel buffer drops the
    datagram, as UDP may, and SRT retransmits."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol) -> None:
        self.loop = loop
        self.sock = sock
        self.protocol = protocol
        self.send_dropped = 0
        self.receive_errors = 0
        self._closed = False

    def start(self) -> None:
        self.sock.setblocking(False)
        self.protocol.connection_made(self)
        self.loop.add_reader(self.sock.fileno(), self._read_ready)

    def _read_ready(self) -> None:
        batch = []
        recvfrom = self.sock.recvfrom
        for _ in range(MAX_DATAGRAMS_PER_READ):
            try:
                batch.append(recvfrom(RECV_BYTES))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # an ICMP error for a datagram we sent: its caller is gone
                self.receive_errors += 1
                self.protocol.error_received(exc)
        if batch:
            self.protocol.datagrams_received(batch)

    def sendto(self, data: bytes, addr) -> None:
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.send_dropped += 1
        except OSError as exc:
            self.protocol.error_received(exc)

    def get_write_buffer_size(self) -> int:
        return 0  # nothing is held here: see sendto

    def is_closing(self) -> bool:
        return self._closed

    def get_extra_info(self, name: str, default=None):
        if name == "socket":
            return self.sock
        if name == "sockname":
            return self.sock.getsockname()
        return default

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        self.protocol.connection_lost(None)


class SrtServer:
    """The node's SRT port: the protocol of its UdpEndpoint."""

    def __init__(self, node, listener: SrtListener | None = None) -> None:
        self.node = node
        self.listener = listener or SrtListener(latency_ms=node.config.srt_latency_ms)
        self.transport: UdpEndpoint | None = None
        self.publishers: dict[int, SrtPublisher] = {}  # by socket ID
        self.viewers: dict[int, SrtViewer] = {}  # by socket ID
        self.viewer_max_dropping_seconds = SRT_VIEWER_MAX_DROPPING_SECONDS
        self._timer = SrtTimer(self._on_tick)
        self._deciding: set[asyncio.Task] = set()

    # --- asyncio ----------------------------------------------------------------

    def connection_made(self, transport: UdpEndpoint) -> None:
        self.transport = transport

    def datagrams_received(self, datagrams: list[tuple[bytes, object]]) -> None:
        """A batch read off the socket at once (UdpEndpoint): fed in, then
        what they caused is handled and sent once."""
        now = time.monotonic()
        receive = self.listener.receive_datagram
        for data, addr in datagrams:
            receive(data, addr, now)
        self._process()

    def error_received(self, exc: Exception) -> None:
        # An ICMP error for a datagram we sent (the caller is gone): its
        # connection times out on its own.
        log.debug("srt: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()

    def close(self) -> None:
        now = time.monotonic()
        for socket_id in list(self.publishers):
            self.listener.close(socket_id, now)
        self._close_viewers("media node stopped")
        self._process()
        for task in self._deciding:
            task.cancel()
        for publisher in list(self.publishers.values()):
            self._end(publisher, "media node stopped")
        self._timer.cancel()
        if self.transport is not None:
            self.transport.close()

    # --- the listener's output ----------------------------------------------------

    def _process(self) -> None:
        for event in self.listener.events():
            handler = self.HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event)
        self._send_listener_datagrams()
        self._schedule()

    def _send_listener_datagrams(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            for data, addr in self.listener.datagrams_to_send():
                self.transport.sendto(data, addr)

    def _schedule(self) -> None:
        """Run the listener's timers when the earliest is due."""
        self._timer.set(self.listener.next_timer())

    def _on_tick(self) -> None:
        self.listener.handle_timer(time.monotonic())
        self._process()

    # --- events -----------------------------------------------------------------

    def on_requested(self, event: SrtConnectionRequested) -> None:
        task = asyncio.get_running_loop().create_task(self._decide(event))
        self._deciding.add(task)
        task.add_done_callback(self._deciding.discard)

    async def _decide(self, event: SrtConnectionRequested) -> None:
        peer = peer_name(event.peer)
        try:
            target = read_stream_id(event.stream_id)
        except LiveUrlError as exc:
            return self._reject(event, REJECT_BAD_REQUEST, "?", str(exc))
        name = f"{target.host}/{target.app}/{target.stream}"
        if target.mode == "request":
            return await self._decide_play(event, target)
        if target.mode != "publish":
            return self._reject(event, REJECT_BAD_MODE, name, f"mode {target.mode!r} is not served")
        domain = domain_of(target.host, {})
        # Another node of the cluster relaying a stream it admitted (edge.py):
        # its node token stands for the publisher's signature, as over RTMP.
        relayed_from = self.node.relayed_by(target.signed_uri, target.query)
        relayed = relayed_from is not None
        # The caller's address is the UDP peer's: SRT's handshake (a cookie
        # echoed back, SRT 4.3.1.1) has proved it can receive there.
        admission = await admit_publish(self.node.policy, domain, target.app, target.stream, target.auth_key,
                                        time.time(), relayed, Client(event.peer[0]))  # fmt: skip
        if not admission.ok:
            return self._reject(event, refusal_code(admission.refusal), name, str(admission.refusal))
        if not relayed and (denied := await self.node.publish_hooks.refusal(admission.key, "srt", peer)):
            return self._reject(event, REJECT_FORBIDDEN, name, denied)
        stream = self.node.hub.stream(admission.key)
        if stream is not None and stream.publication is not None:
            return self._reject(event, REJECT_CONFLICT, name, "stream is already being published")
        # An edge's relay: the publish session is its publisher's (the
        # stream ID carries it, under the node token), which the edge has claimed.
        from .edge import relay_facts  # edge -> relay -> srt_call -> this module: imported here, not at the top

        facts = relay_facts(target.query) if relayed else None
        if not relayed and (taken := await self.node.claim_publish(admission.key)) is not None:
            return self._reject(event, REJECT_CONFLICT, name, taken)
        config = admission.domain
        connection = self.listener.accept(
            event, time.monotonic(), passphrase=config.srt_passphrase or None, latency_ms=config.srt_latency_ms
        )
        if connection is None:  # the listener refused it (its SrtConnectionRejected says why) or it gave up
            self._process()
            return
        publication = self.node.hub.publish(admission.key)
        session_id = facts.session_id if facts is not None else uuid.uuid4().hex
        publisher = SrtPublisher(connection.socket_id, peer, admission.key, session_id, publication)
        self.publishers[connection.socket_id] = publisher
        self.node.stream_started(
            StreamPublished(
                key=admission.key,
                session_id=publisher.session_id,
                protocol="srt",
                client_addr=facts.client_addr if facts is not None else peer,
                publish_url=f"srt://{domain}?streamid=#!::h={domain},r=/{target.app}/{target.stream},m=publish",
                started_at=time.time(),
                node_id=self.node.config.node_id,
                publish_type=EDGE_PUBLISH if facts is not None else CENTER_PUBLISH,
                relayed_from=relayed_from if facts is not None else "",
            )
        )
        publisher.kick_watch = asyncio.get_running_loop().create_task(self._watch_kick(publisher))
        log.info("srt %s publishing %s (latency %d ms%s)", peer, admission.key, connection.latency_us // 1000,
                 ", encrypted" if event.encrypted else "")  # fmt: skip
        self._process()

    def _reject(self, event: SrtConnectionRequested, code: int, name: str, reason: str) -> None:
        log.info("srt %s publish refused: stream=%s reason=%s (%d)", peer_name(event.peer), name, reason, code)
        self._report_refusal(event.peer, event.stream_id, code, reason)
        self.listener.reject(event, code, time.monotonic())
        self._process()

    def on_rejected(self, event: SrtConnectionRejected) -> None:
        log.info("srt %s refused: stream=%s reason=%s (%d)", peer_name(event.peer), event.stream_id or "?",
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
            elif type(item) is PassthroughAudioReceived:  # AC-3, E-AC-3: dolby.py
                for body in publisher.dolby.bodies(item.codec, item.data):
                    push(FrameKind.AUDIO, item.timestamp_ms, body)
            elif type(item) is ProgramReceived:
                publisher.dolby.on_program(item)
                if publisher.dolby.refusal:
                    log.info("srt %s stream=%s: Dolby audio not taken: %s", publisher.peer, publisher.key,
                             publisher.dolby.refusal)  # fmt: skip
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
        viewer = self.viewers.get(event.socket_id)
        if viewer is not None:
            self._end_viewer(viewer, event.reason)

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
            PublishRefused(domain, app, stream, "srt", peer_name(addr), reason, int(code), time.time(),
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

    # --- playback -----------------------------------------------------------------

    async def _decide_play(self, event: SrtConnectionRequested, target: SrtStreamId) -> None:
        """A caller asking to play (m=request): play.py's admission, then
        accept or one rejection (module docstring)."""
        peer = peer_name(event.peer)
        request = PlayRequest(
            protocol="srt",
            peer=peer,
            domain=domain_of(target.host, {}),
            app=target.app,
            stream=target.stream,
            uri=target.signed_uri,
            query={"auth_key": target.auth_key} if target.auth_key else {},
            refusal_code=play_refusal_code,
        )
        decision = await admit_viewer(self.node, request)
        coming = False
        if decision.ok:
            wait = min(self.node.config.play_wait_seconds, SRT_PLAY_WAIT_SECONDS)
            if not await self.node.hub.wait_live(decision.key, wait):
                # An edge pulling the stream from the center carrying it:
                # accepted now, sent the stream once the pull is up (a
                # cross-border link's connect takes longer than a caller
                # waits for its handshake); ended if it is not by the play wait.
                coming = self.node.pulls is not None and self.node.pulls.under_way(decision.key)
                if not coming:
                    decision = await wait_live(self.node, request, decision, 0)  # the refusal, logged
        if not decision.ok:  # play.py logged it, with the code
            self.listener.reject(event, play_refusal_code(decision.refusal, decision.reason), time.monotonic())
            self._process()
            return
        config = decision.admission.domain
        connection = self.listener.accept(
            event, time.monotonic(), passphrase=config.srt_passphrase or None, latency_ms=config.srt_latency_ms
        )
        if connection is None:  # refused by the listener (its event says why), or the caller gave up
            self._process()
            return
        viewer = SrtViewer(self, connection.socket_id, connection.send_latency_us, peer, decision.key)
        self.viewers[connection.socket_id] = viewer
        log.info("srt %s playing %s (latency %d ms)", peer, decision.key, connection.send_latency_us // 1000)
        self._process()  # the handshake answer first, then the media
        identity = self.node.stats.viewer(peer.rpartition(":")[0])
        viewer.attach(self.node.hub.subscribe(decision.key, protocol="srt", on_ready=viewer.on_ready, viewer=identity))
        if coming:
            late = max(0.0, self.node.config.play_wait_seconds - SRT_PLAY_WAIT_SECONDS)
            if not await self.node.hub.wait_live(decision.key, late) and viewer.socket_id in self.viewers:
                log.info("srt %s play of %s: the pull did not come up within the play wait", peer, decision.key)
                self._end_viewer(viewer, "not live", tell_peer=True)

    def _end_viewer(self, viewer: SrtViewer, reason: str, *, tell_peer: bool = False) -> None:
        if self.viewers.pop(viewer.socket_id, None) is None:
            return
        viewer.close()
        if tell_peer:
            self.listener.close(viewer.socket_id, time.monotonic())
            self._send_listener_datagrams()
        log.info("srt %s play of %s ended (%s): %d frames sent, %d skipped in %d skips", viewer.peer, viewer.key,
                 reason, viewer.ts.frames_sent, viewer.ts.frames_skipped, viewer.ts.skips)  # fmt: skip

    def _close_viewers(self, reason: str) -> None:
        for viewer in list(self.viewers.values()):
            self._end_viewer(viewer, reason, tell_peer=True)


class SrtTooSlow(Exception):
    """The peer has been missing packets for too long (SrtTsSender)."""


class SrtTsSender:
    """The hub's frames as MPEG-TS in SRT payloads of 7 TS packets, for one
    connection that sends a stream: a viewer here (SrtViewer) or an edge's
    relay to its center (relay.push_srt).

    It muxes for itself (its own continuity counters and PSI), since each
    connection's TS starts where it joined and skips where it fell behind:
    PAT and PMT first, before every video keyframe, and at least every
    PSI_INTERVAL_MS. What bounds its memory: the hub's queue (bounded,
    shared frames), and the connection's send buffer, which gives up on
    packets the peer has not acknowledged within its latency plus 1 s
    (SEND_DROP_MARGIN_US). Each such give-up makes it skip to the next
    keyframe (the frames in between could not be decoded anyway), as does a
    backed-up socket; still losing packets `max_dropping_seconds` after it
    started, it raises SrtTooSlow."""

    def __init__(self, send_latency_us: int, max_dropping_seconds: float = SRT_VIEWER_MAX_DROPPING_SECONDS) -> None:
        self.max_dropping_seconds = max_dropping_seconds
        self.muxer = TsMuxer()
        self.frames_sent = 0
        self.frames_skipped = 0
        self.skips = 0
        self.mux_errors = 0
        self._need_keyframe = False
        self._last_psi_ms: int | None = None
        self._drops_seen = 0
        self._last_drop_at = 0.0
        self._dropping_since: float | None = None
        # Packets sent this long before are acknowledged or dropped by now.
        self._settle_seconds = (send_latency_us + SEND_DROP_MARGIN_US) / 1_000_000

    def payloads(self, frames: list, subscription, now: float, dropped: int, backed_up: bool = False) -> list[bytes]:
        """What `frames` (drained from `subscription`) become, payload by
        payload. `dropped` is the connection's count of packets it gave up
        (packets_send_dropped); `backed_up`: the socket holds too much."""
        if self._congested(now, dropped) or backed_up:
            if self._dropping_since is not None and now - self._dropping_since >= self.max_dropping_seconds:
                raise SrtTooSlow
            if not self._need_keyframe:
                self._need_keyframe = True
                self.skips += 1
        muxer = self.muxer
        out = bytearray()
        for frame in frames:
            if self._need_keyframe and not frame.is_header:
                if not frame.keyframe:
                    self.frames_skipped += 1
                    subscription.dropped += 1
                    continue
                self._need_keyframe = False
            try:
                data = muxer.mux(frame.kind, frame.timestamp, frame.body)
            except TsMuxError as exc:
                self.mux_errors += 1
                if self.mux_errors == 1:  # the same reason frame after frame, most likely
                    log.info("srt: frame of %s dropped: %s", subscription.key, exc)
                continue
            if not data:
                continue
            last_psi = self._last_psi_ms
            if (
                last_psi is None
                or (frame.keyframe and frame.kind is FrameKind.VIDEO)
                or not 0 <= frame.timestamp - last_psi < PSI_INTERVAL_MS
            ):
                out += muxer.psi()
                self._last_psi_ms = frame.timestamp
            out += data
            self.frames_sent += 1
        if not out:
            return []
        subscription.count_sent(len(out))
        view = memoryview(out)
        return [bytes(view[pos : pos + SRT_TS_PAYLOAD_BYTES]) for pos in range(0, len(view), SRT_TS_PAYLOAD_BYTES)]

    def _congested(self, now: float, dropped: int) -> bool:
        """Whether the connection gave packets up since the last look."""
        if dropped > self._drops_seen:
            self._drops_seen = dropped
            self._last_drop_at = now
            if self._dropping_since is None:
                self._dropping_since = now
            return True
        if self._dropping_since is not None and now - self._last_drop_at > self._settle_seconds:
            self._dropping_since = None  # everything sent since the last drop went through
        return False


class SrtViewer:
    """One SRT caller playing a stream: the hub's frames muxed to MPEG-TS
    (SrtTsSender) and sent as they come, through the listener
    (SrtListener.send) by socket ID; it only reads its connection's
    counters. A viewer still losing packets `viewer_max_dropping_seconds`
    after it started is disconnected."""

    def __init__(self, server: SrtServer, socket_id: int, send_latency_us: int, peer: str, key: StreamKey) -> None:
        self.server = server
        self.socket_id = socket_id
        self.peer = peer
        self.key = key
        self.ts = SrtTsSender(send_latency_us, server.viewer_max_dropping_seconds)
        self.subscription = None
        self.closed = False

    def attach(self, subscription) -> None:
        """Start sending; what the hub queued at once (headers, GOP) goes now."""
        self.subscription = subscription
        self.on_ready(subscription)

    def on_ready(self, subscription) -> None:
        if self.closed or self.subscription is None:
            return
        if subscription.lagging_disconnect:
            self.server._end_viewer(self, "too slow, disconnected", tell_peer=True)
            return
        if self.socket_id not in self.server.listener.connections:
            return  # closed: its SrtConnectionClosed is on its way
        frames = subscription.drain()
        if frames:
            self._send(frames, time.monotonic())
        if subscription.ended and not self.closed:
            self.server._end_viewer(self, "stream ended", tell_peer=True)

    def close(self) -> None:
        self.closed = True
        if self.subscription is not None:
            self.subscription.close()

    def _send(self, frames: list, now: float) -> None:
        server = self.server
        dropped = server.listener.connections[self.socket_id].stats.packets_send_dropped
        transport = server.transport
        backed_up = transport is not None and transport.get_write_buffer_size() > SRT_SEND_HIGH_WATER_BYTES
        try:
            payloads = self.ts.payloads(frames, self.subscription, now, dropped, backed_up)
        except SrtTooSlow:
            server._end_viewer(self, "too slow, disconnected", tell_peer=True)
            return
        if not payloads:
            return
        send, socket_id = server.listener.send, self.socket_id
        for payload in payloads:
            send(socket_id, payload, now)
        server._send_listener_datagrams()
