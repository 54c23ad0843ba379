"""A media node: the stream hub and the servers around it (DESIGN.md).

It runs inside any asyncio loop: embedded in the console's process by
`manage.py runall`, or alone by `manage.py medianode`. It asks a Policy who
may publish and play, and reports to an EventSink through one queue, so a
slow database never stalls the media path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from . import allocator
from .beacon import BeaconLimits, BeaconRateLimiter, PlaybackAggregator, RegionTable
from .capacity import (
    DEFAULT_MAX_EGRESS_MBPS,
    DEFAULT_MAX_LOOP_LAG_MS,
    LAG_PROBE_SECONDS,
    WORKER_TOKEN_PARAM,
    EgressGauge,
    LoopLagGauge,
    egress_bps,
    is_worker,
)
from .cluster import ANY_REGION, ROLES
from .collector import CollectorPauses, collect_all, schedule_full_collections, unschedule_full_collections
from .edge import PULL_IDLE_SECONDS, EdgePulls, EdgeRelays, RelayFacts, is_edge_only, relayed_by
from .hls_server import HlsService
from .hub import LiveStream, StreamHub
from .listener import ConnectionGate, MediaListener, effective_max_connections, listen, raise_descriptor_limit
from .policy import (
    EDGE_PUBLISH,
    NODE_STOPPED,
    EventSink,
    PlaybackReported,
    Policy,
    PublishRefused,
    RenditionRequested,
    StreamKey,
    StreamPublished,
    StreamSample,
    StreamsSampled,
    StreamUnpublished,
    StreamUpdated,
    TlsCertificate,
)
from .publish_hook import PublishHooks
from .renditions import split_rendition_name
from .rtmp import (
    MAX_BUFFERED_BYTES,
    MAX_BUFFERED_BYTES_BEFORE_PUBLISH,
    MAX_NODE_BUFFERED_BYTES,
    RtmpBufferBudget,
)
from .srt.listener import MAX_LATENCY_MS
from .stats import StatsSampler
from .tls import (
    ALPN_HTTP,
    MAX_PENDING_TLS_HANDSHAKES,
    MAX_TLS_HANDSHAKES_PER_SECOND,
    TLS_HANDSHAKE_TIMEOUT_SECONDS,
    TlsCertificates,
    TlsLimits,
    TlsListener,
)

log = logging.getLogger(__name__)

# Events waiting for the sink; past this, periodic updates are dropped (the
# next one carries the same information) but publish/unpublish are kept.
MAX_PENDING_EVENTS = 10_000


# The sink's methods a sink may leave out (policy.EventSink): the node then
# drops the event. A sink written before samples existed (a test's, another
# node's) does without `sampled`.
OPTIONAL_SINK_EVENTS = {
    StreamsSampled: "sampled",
    PublishRefused: "publish_refused",
    PlaybackReported: "playback_reported",
    RenditionRequested: "rendition_requested",
}


@dataclass(frozen=True)
class _Updates:
    """One tick's StreamUpdated of every live stream, delivered as one: at
    most one waits in the queue, so a sink slower than the tick (a busy
    loop makes each database round trip long) drops stale updates instead
    of queueing them in front of samples and publishes (bench/soak)."""

    events: tuple[StreamUpdated, ...]


# Refused publishers reported to the sink per second (the SRT port is open
# to the internet: a caller retrying a bad URL, or many, must not flood the
# database); past it they are only logged.
MAX_REFUSALS_PER_SECOND = 10
# Per-second samples waiting for the sink (stats.py); past this a slow sink
# loses ticks rather than queueing stale ones.
MAX_PENDING_SAMPLE_BATCHES = 10
# How long stop() waits for connection handlers to finish after aborting them.
STOP_HANDLERS_SECONDS = 5.0


@dataclass
class NodeConfig:
    host: str = "0.0.0.0"
    rtmp_port: int = 1935  # 0 picks a free port (tests)
    http_port: int = 8080
    # SRT ingest (UDP); None: no SRT listener (0 picks a free port).
    srt_port: int | None = None
    # TLS listeners (tls.py), None for none (0 picks a free port): HTTPS
    # serves what the HTTP port does (FLV, HLS, WHEP), RTMPS what the RTMP
    # port does, each with the certificate of the domain the client names
    # (SNI). Production: 443 and 1936 (443 is HTTPS's).
    https_port: int | None = None
    rtmps_port: int | None = None
    # Served to a client that names no domain with a certificate (or no
    # name at all); None: such a handshake is refused (unrecognized_name).
    tls_default_certificate: TlsCertificate | None = None
    tls_handshake_timeout_seconds: float = TLS_HANDSHAKE_TIMEOUT_SECONDS
    max_pending_tls_handshakes: int = MAX_PENDING_TLS_HANDSHAKES
    max_tls_handshakes_per_second: float = MAX_TLS_HANDSHAKES_PER_SECOND
    # The receiver latency SRT callers get when their ingest domain sets none
    # (the larger of it and the caller's own wins, as in libsrt).
    srt_latency_ms: int = 120
    node_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}")
    # Its place in the cluster (cluster.py): center, edge or both (a node
    # alone, as `make run`'s is), of one live center region or of all.
    roles: frozenset[str] = frozenset(ROLES)
    region: str = ANY_REGION
    # The address other nodes and media workers reach it on; empty: the
    # caller's choice (nodes/medianode.py: loopback when it listens on all).
    advertise_host: str = ""
    # How long a viewer of a stream that is not live yet waits for it.
    play_wait_seconds: float = 5.0
    # How long a publish authorisation callback's answer holds for a stream
    # and client address (publish_hook.py).
    publish_hook_cache_seconds: float = 30.0
    # How often a live stream's measured media info goes to the sink.
    update_interval_seconds: float = 5.0
    # How often every live stream is sampled for monitoring (stats.py); 0 turns it off.
    sample_interval_seconds: float = 1.0
    # The key of viewers' identities in the samples (stats.viewer_identity):
    # the same on every node of a cluster, so a viewer counts once; empty:
    # one of the process's own.
    viewer_id_salt: bytes = b""
    # A publisher that sends nothing for this long is dropped (the seed: 10 s).
    publish_idle_seconds: float = 10.0
    # Limits on what a peer may hold before it has shown a signature
    # (issue 11): an RTMP connection that has not finished its handshake
    # this long after it was accepted is closed (the whole handshake, not
    # each read), and one that has not started publishing or playing this
    # long after it was accepted, or after its last publication or play
    # ended, is closed too.
    handshake_timeout_seconds: float = 10.0
    session_start_timeout_seconds: float = 20.0
    # Bytes of incomplete RTMP messages one connection may hold before it
    # asks to publish, after, and all connections together
    # (rtmp/chunk.py says why these defaults).
    rtmp_buffered_bytes_before_publish: int = MAX_BUFFERED_BYTES_BEFORE_PUBLISH
    rtmp_buffered_bytes: int = MAX_BUFFERED_BYTES
    rtmp_node_buffered_bytes: int = MAX_NODE_BUFFERED_BYTES
    # Connections (RTMP and HTTP together) the node holds, in all and from
    # one source address; past either a new one is closed at once. The node
    # cap is lowered to the descriptor limit less `reserve_descriptors`,
    # left for the rest of the process (console, database, RTS sockets).
    max_connections: int = 20_000
    max_connections_per_address: int = 1_000
    reserve_descriptors: int = 256
    # HTTP connections are persistent (http_server.py): one is closed when
    # it idles this long between requests (a player reloads a playlist every
    # target duration or part, at most a few seconds apart; nginx's
    # keepalive_timeout is 75 s, but an idle connection holds a descriptor
    # that the per-address cap counts), and after this many requests
    # (nginx's keepalive_requests: 1000), so that no client holds one for ever.
    http_idle_seconds: float = 15.0
    http_max_requests: int = 1000
    # Addresses RTS (WebRTC) offers as ICE host candidates. Empty: the host
    # when it is a loopback address (one machine, tests, bench), else every
    # interface but loopback (aioice's choice).
    rts_ice_addresses: tuple[str, ...] = ()
    # A WHIP publisher (rts/ingest.py: a browser's encoder makes a keyframe
    # only when asked) is asked for one when it has sent none for this
    # long, so HLS segments and a joiner's GOP are no longer; 0: only when
    # a frame is lost or a viewer needs one.
    whip_keyframe_interval_seconds: float = 2.0
    # Whether the browser keeps RTS audio and video in sync (one stream id).
    # Off: video is shown as soon as it is decoded, not held back to the
    # audio's jitter buffer; 58 ms instead of 235 ms p50 (bench/README.md),
    # with the sound that much behind the picture.
    rts_lip_sync: bool = False
    # RTS viewers' media sent by the node's fast path (issue 18: one loop
    # per frame over all viewers, libsrtp, the ICE socket) rather than one
    # aiortc sender task per viewer and track; bench/README.md has both.
    rts_fast_path: bool = True
    # The Opus frames (RTP packets) RTS viewers get of AAC and Dolby audio:
    # 20 ms, or 40 or 60 for fewer packets to send per viewer (rts/threads.py).
    rts_opus_frame_ms: int = 20
    # Full garbage collections every this many seconds on the node's timer
    # rather than when CPython's counts call for one, with the startup's
    # objects frozen out of them (collector.py); 0: CPython's own schedule.
    gc_full_seconds: float = 0.0
    # Egress past which new viewers are refused (capacity.py); 0: no limit.
    max_egress_mbps: float = DEFAULT_MAX_EGRESS_MBPS
    # The event loop's median lateness (ms) past which new viewers are
    # refused too (capacity.LoopLagGauge); 0: not watched.
    max_loop_lag_ms: float = DEFAULT_MAX_LOOP_LAG_MS
    # The key media workers' tokens are made with (capacity.worker_token):
    # their reads are never refused at capacity. Empty: no worker is exempt.
    worker_key: bytes = b""
    # Between nodes (edge.py): the key nodes' tokens are made with (empty:
    # no other node is trusted), and how long an edge keeps a pulled stream
    # no viewer watches.
    cluster_key: bytes = b""
    pull_idle_seconds: float = PULL_IDLE_SECONDS
    # How an edge relays its publishers' streams to a center: "rtmp" (TCP:
    # no added latency, but a lost segment holds everything behind it for a
    # retransmission timeout) or "srt" (to the center's SRT port; a center
    # without one gets RTMP). Over SRT the stream plays at the center
    # `relay_srt_latency_ms` after it was sent (the center may ask for
    # more), time for lost packets to be sent again: libsrt's advice is 3
    # to 4 round trips; 1000 ms is 4 of a 250 ms cross-border round trip
    # (Frankfurt to Tokyo is about 230 ms) and still above 3 of the
    # issue's test link (150 ms each way), so a lost retransmission is
    # sent a second time before the packet is due. Lower it for a short link.
    relay_protocol: str = "rtmp"
    relay_srt_latency_ms: int = 1000
    # The C allocator (allocator.py; glibc only). Blocks of this many bytes or
    # more (segments, a lagging viewer's backlog) are mapped and unmapped on
    # their own, not carved from the heap (0: glibc's own threshold, which
    # rises with every large block freed); and every `malloc_trim_seconds`
    # the heaps' free pages go back to the system (0: never). Without them
    # the node's RSS kept each burst's high-water mark under viewers' churn
    # (bench/README.md, "Try 5" and after).
    malloc_mmap_threshold_bytes: int = 256 * 1024
    malloc_trim_seconds: float = 60.0
    # Viewer telemetry (beacon.py): the table giving a viewer's region from
    # its address, the beacons' rate limits, and how often what they said
    # goes to the sink (one PlaybackReported; 0: beacons are refused).
    viewer_regions: RegionTable = field(default_factory=RegionTable)
    beacon_limits: BeaconLimits = BeaconLimits()
    beacon_flush_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.relay_protocol not in ("rtmp", "srt"):
            raise ValueError(f"relay_protocol must be rtmp or srt, not {self.relay_protocol!r}")
        if not 0 <= self.relay_srt_latency_ms <= MAX_LATENCY_MS:
            raise ValueError(f"relay_srt_latency_ms must be 0-{MAX_LATENCY_MS}, not {self.relay_srt_latency_ms}")


# The SRT socket's kernel buffers: every publisher's datagrams wait there
# while the loop is busy (20 publishers at 2 Mbit/s are 5 MB a second; the
# kernel's default of about 200 KB is 40 ms of that). libsrt asks for more
# still (SRTO_UDP_RCVBUF, 8 MB by default in 1.5).
SRT_SOCKET_BUFFER_BYTES = 8 * 1024 * 1024


def size_udp_buffers(sock, size: int) -> None:
    """Ask for `size`-byte receive and send buffers; as root past the
    system's cap (net.core.rmem_max), else up to it."""
    if sock is None:
        return
    for force, plain in ((getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF),
                         (getattr(socket, "SO_SNDBUFFORCE", None), socket.SO_SNDBUF)):  # fmt: skip
        try:
            sock.setsockopt(socket.SOL_SOCKET, force if force is not None else plain, size)
        except OSError:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, plain, size)


class MediaNode:
    def __init__(
        self, config: NodeConfig, policy: Policy, sink: EventSink, hub: StreamHub | None = None, router=None
    ) -> None:
        self.config = config
        self.policy = policy
        self.sink = sink
        self.publish_hooks = PublishHooks(policy, config.node_id, config.publish_hook_cache_seconds)
        self.hub = hub or StreamHub()
        self.rtmp_port: int | None = None
        self.http_port: int | None = None
        self.srt_port: int | None = None
        self.https_port: int | None = None
        self.rtmps_port: int | None = None
        self.srt = None  # SrtServer, from start() when srt_port is set
        self._servers: list[MediaListener] = []
        self.gate: ConnectionGate | None = None  # from start()
        # Incomplete messages held by all of the node's RTMP connections.
        self.rtmp_budget = RtmpBufferBudget(config.rtmp_node_buffered_bytes)
        self._events: asyncio.Queue = asyncio.Queue()
        # The renditions asked of the sink and not yet delivered: every viewer
        # waiting for one would otherwise queue a request of its own (bench/soak).
        self._renditions_asked: set[tuple[StreamKey, str]] = set()
        self._tasks: list[asyncio.Task] = []
        self._live: dict[StreamKey, str] = {}  # key -> session id, for updates
        # session id -> its stream in the hub, whose bytes in the unpublish
        # event tells (the hub forgets a stream nobody watches as it ends).
        self._published: dict[str, LiveStream | None] = {}
        # The publishes here that another node relays (a center's, from
        # edges): session id -> that node. Their samples say so; their
        # publish session and media info are the edge's to report.
        self._relayed: dict[str, str] = {}
        self._releasing: set[asyncio.Task] = set()
        # Every open client connection: its handler and the task running it.
        self.connections: dict[object, asyncio.Task] = {}
        # Set while stop() closes them: a publication they end ended with the node.
        self.stopping = False
        self.hls = HlsService(self)
        self.rts = None  # RtsService, from start(): aiortc is slow to import
        self.stats = StatsSampler(self.hub, salt=config.viewer_id_salt)
        # The last tick's samples, for the node's heartbeat (node_status.carriage).
        self.last_samples: tuple[StreamSample, ...] = ()
        self.egress = EgressGauge(config.max_egress_mbps)
        self.loop_lag = LoopLagGauge(config.max_loop_lag_ms)
        self.collector = CollectorPauses()
        self.malloc_trim_ms: float | None = None  # how long the last malloc_trim took (/_node/status)
        self._pending_samples = 0
        self._updates_queued = False
        self.sample_batches_dropped = 0
        self._refusals_second = 0
        self._refusals_in_second = 0
        # Viewers' beacons (beacon_http.py), summed until the next report.
        self.playback = PlaybackAggregator()
        self.beacon_limiter = BeaconRateLimiter(config.beacon_limits)
        self.hub.on_wait = self._stream_wanted
        # An edge relays its publishers' streams to centers and pulls what
        # its viewers want from them, where the router (the node registry) says.
        self.router = router
        edge = router is not None and is_edge_only(config.roles)
        self.relays = EdgeRelays(self, router) if edge else None
        self.pulls = EdgePulls(self, router, config.pull_idle_seconds) if edge else None

    # --- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        from .http_server import MediaHttpServer
        from .rtmp_server import RtmpServer
        from .rts.session import RtsService, use_ice_addresses
        from .rts.threads import use_opus_frame_ms

        loopback = (self.config.host,) if self.config.host in ("127.0.0.1", "::1") else ()
        use_ice_addresses(self.config.rts_ice_addresses or loopback)
        use_opus_frame_ms(self.config.rts_opus_frame_ms)
        self.rts = RtsService(self)

        raise_descriptor_limit()
        max_connections = effective_max_connections(self.config.max_connections, self.config.reserve_descriptors)
        if max_connections < self.config.max_connections:
            log.info("media node: at most %d connections (the descriptor limit less %d in reserve)",
                        max_connections, self.config.reserve_descriptors)  # fmt: skip
        self.gate = ConnectionGate(max_connections, self.config.max_connections_per_address)
        rtmp = await listen("rtmp", RtmpServer(self).handle, self.gate, self.config.host, self.config.rtmp_port)
        http = await listen("http", MediaHttpServer(self).handle, self.gate, self.config.host, self.config.http_port)
        self._servers = [rtmp, http]
        self.rtmp_port = rtmp.port
        self.http_port = http.port
        config = self.config
        if config.https_port is not None:
            handler = MediaHttpServer(self, scheme="https").handle
            self.https_port = await self._listen_tls("https", config.https_port, handler, ALPN_HTTP)
        if config.rtmps_port is not None:
            self.rtmps_port = await self._listen_tls("rtmps", config.rtmps_port, RtmpServer(self).handle, ())
        if self.config.srt_port is not None:
            from .srt_server import SrtServer, UdpEndpoint

            family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.bind((self.config.host, self.config.srt_port))
            size_udp_buffers(sock, SRT_SOCKET_BUFFER_BYTES)
            self.srt = SrtServer(self)
            UdpEndpoint(asyncio.get_running_loop(), sock, self.srt).start()
            self.srt_port = sock.getsockname()[1]
        self.hls.start()
        self._tasks = [
            asyncio.create_task(self._pump_events(), name="media-events"),
            asyncio.create_task(self._report_updates(), name="media-updates"),
        ]
        if self.config.sample_interval_seconds > 0:
            self._tasks.append(asyncio.create_task(self._report_samples(), name="media-samples"))
        if self.config.beacon_flush_seconds > 0:
            self._tasks.append(asyncio.create_task(self._report_playback(), name="media-playback"))
        # Probed even when no limit is set: /_node/status reports the lag (bench/soak).
        self._tasks.append(asyncio.create_task(self._probe_loop_lag(), name="media-loop-lag"))
        self.collector.install()
        if self.config.gc_full_seconds > 0:
            schedule_full_collections()
            self._tasks.append(asyncio.create_task(self._collect_garbage(), name="media-gc"))
        if allocator.tune(self.config.malloc_mmap_threshold_bytes):
            log.debug("malloc: blocks of %d bytes or more mapped apart", self.config.malloc_mmap_threshold_bytes)
        if self.config.malloc_trim_seconds > 0 and allocator.available():
            self._tasks.append(asyncio.create_task(self._trim_allocator(), name="media-malloc-trim"))
        log.info(
            "media node %s: RTMP on %s:%s, HTTP (FLV, HLS, WHEP, WHIP) on %s:%s%s%s%s",
            self.config.node_id,
            self.config.host,
            self.rtmp_port,
            self.config.host,
            self.http_port,
            f", HTTPS on {self.config.host}:{self.https_port}" if self.https_port is not None else "",
            f", RTMPS on {self.config.host}:{self.rtmps_port}" if self.rtmps_port is not None else "",
            f", SRT on {self.config.host}:{self.srt_port} (UDP)" if self.srt is not None else "",
        )

    async def _listen_tls(self, name: str, port: int, handler, alpn: tuple[str, ...]) -> int:
        """A TLS listener (tls.py) running `handler` on `port`; the port it bound."""
        config = self.config
        limits = TlsLimits(config.tls_handshake_timeout_seconds, config.max_pending_tls_handshakes,
                           config.max_tls_handshakes_per_second)  # fmt: skip
        certificates = TlsCertificates(self.policy, alpn, config.tls_default_certificate)
        listener = TlsListener(name, handler, self.gate, certificates, limits)
        await listener.start(config.host, port)
        self._servers.append(listener)
        return listener.port

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        if self.srt is not None:
            self.srt.close()
        self.hls.stop()
        if self.rts is not None:
            await self.rts.stop()
        for part in (self.relays, self.pulls):
            if part is not None:
                await part.stop()
        handlers = list(self.connections.items())
        self.stopping = True
        for handler, _ in handlers:
            handler.abort()
        # Let each handler finish its own cleanup (end publications, close
        # sockets) rather than be cancelled by the loop's shutdown.
        if handlers:
            await asyncio.wait([task for _, task in handlers], timeout=STOP_HANDLERS_SECONDS)
        for server in self._servers:
            await server.wait_closed()
        # Let the sink hear how every live stream ended before it stops.
        for key, session_id in list(self._live.items()):
            self.stream_ended(key, session_id, NODE_STOPPED)
        self.report_playback()
        await self._drain_events()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._servers, self._tasks = [], []
        self.collector.uninstall()
        if self.config.gc_full_seconds > 0:
            unschedule_full_collections()

    async def claim_publish(self, key: StreamKey) -> str | None:
        """Why `key` may not be published here although admitted: a node of
        a cluster (its router's `claim`, when it has one) asks whether another
        node has its publisher. A relay from an edge claims nothing: the
        edge has."""
        claim = getattr(self.router, "claim", None)
        return None if claim is None else await claim(key, self.config.node_id)

    def published_here(self) -> list[StreamKey]:
        """The streams whose publisher is on this node (the claims it holds)."""
        return [key for key, session_id in self._live.items() if session_id not in self._relayed]

    def upstream_nodes(self) -> dict[StreamKey, str]:
        """The live streams this node receives from another node, and that
        node: a center's relays from edges, an edge's pulls from centers."""
        upstream = {key: self._relayed[sid] for key, sid in self._live.items() if sid in self._relayed}
        if self.pulls is not None:
            upstream.update(self.pulls.sources)
        return upstream

    def _release_claim(self, key: StreamKey) -> None:
        release = getattr(self.router, "release", None)
        if release is None:
            return
        task = asyncio.get_running_loop().create_task(release(key, self.config.node_id), name=f"release {key}")
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    def relayed_by(self, uri: str, query: Mapping[str, str]) -> str | None:
        """The node a publish or play of `uri` comes from, if it carries a
        good node token (edge.py)."""
        return relayed_by(self.config.cluster_key, uri, query, time.time())

    def is_media_worker(self, uri: str, query: Mapping[str, str]) -> bool:
        """Whether a play request carries a media worker's token (capacity.py)."""
        return is_worker(self.config.worker_key, uri, query.get(WORKER_TOKEN_PARAM), time.time())

    def admits_viewer(
        self, key: StreamKey, protocol: str, uri: str, query: dict[str, str], client: str | None = None
    ) -> bool:
        """Whether the node has room for a new viewer of `key` (capacity.py).
        A media worker with its token always has; an HLS `client` the stream
        already serves is not new."""
        if not self.egress.limited and not self.loop_lag.limited:
            return True
        if self.is_media_worker(uri, query) or self.relayed_by(f"/{key.app}/{key.stream}", query):
            return True
        stream = self.hub.stream(key)
        if client is not None and stream is not None and (protocol, client) in stream.counters.clients:
            return True
        now = time.monotonic()
        if not self.loop_lag.admit(now):
            return False
        return self.egress.admit(now, protocol, stream.bitrate if stream is not None else 0.0, self.egress_load_bps)

    async def _trim_allocator(self) -> None:
        """Give the allocator's free pages back every `malloc_trim_seconds`
        (a few ms for a heap of 100 MiB, on the loop: malloc_trim holds the
        heaps' locks, so a thread would stall the loop's allocations anyway)."""
        while True:
            await asyncio.sleep(self.config.malloc_trim_seconds)
            self.malloc_trim_ms = round(allocator.timed_trim() * 1000, 2)

    async def _collect_garbage(self) -> None:
        """A full collection every `gc_full_seconds` (collector.py)."""
        while True:
            await asyncio.sleep(self.config.gc_full_seconds)
            collect_all()

    async def _probe_loop_lag(self) -> None:
        """Feed the loop-lag gauge: how late a LAG_PROBE_SECONDS sleep wakes."""
        gauge = self.loop_lag
        behind = False  # as this probe last saw it (admit() may turn it between probes)
        while True:
            due = time.monotonic() + LAG_PROBE_SECONDS
            await asyncio.sleep(LAG_PROBE_SECONDS)
            now = time.monotonic()
            gauge.observe(now, now - due)
            if gauge.behind != behind:
                behind = gauge.behind
                lag_ms = gauge.lag_s(now) * 1e3
                if gauge.behind:
                    log.warning("media node is behind (its loop runs %.0f ms late): refusing new viewers", lag_ms)
                else:
                    log.warning("media node has caught up (%.0f ms late): new viewers are admitted again", lag_ms)

    def egress_load_bps(self) -> float:
        """What the node's viewers cost now, in bit/s (capacity.py)."""
        now = time.monotonic()
        streams = []
        for key in self.hub.live_keys():
            stream = self.hub.stream(key)
            streams.append((stream.bitrate, stream.counters.request_viewers(now, stream.viewers())))
        return egress_bps(streams)

    def kick(self, key: StreamKey) -> bool:
        """End the current publisher of `key` (forbid)."""
        kicked = self.hub.kick(key)
        if kicked:
            log.info("stream %s: publisher kicked", key)
        return kicked

    # --- events to the sink -----------------------------------------------------

    def stream_started(self, event: StreamPublished) -> None:
        self._live[event.key] = event.session_id
        self._published[event.session_id] = self.hub.stream(event.key)
        if event.relayed_from:
            self._relayed[event.session_id] = event.relayed_from
        if self.relays is not None:
            self.relays.start(event.key, RelayFacts(event.session_id, event.client_addr))
            event = replace(event, publish_type=EDGE_PUBLISH, center="")
        else:
            event = replace(event, center=self.config.node_id)
        self._events.put_nowait(event)
        # Viewers that came for a rendition before its source went live.
        for waiting in self.hub.waiting_keys():
            split = split_rendition_name(waiting.stream)
            if split is not None and StreamKey(waiting.domain, waiting.app, split[0]) == event.key:
                self.request_rendition(event.key, split[1])

    def stream_ended(self, key: StreamKey, session_id: str, reason: str = "") -> None:
        relayed_from = self._relayed.pop(session_id, "")
        stream = self._published.pop(session_id, None)
        received = stream.bytes_in if stream is not None else 0
        if self._live.get(key) == session_id:
            del self._live[key]
            if self.relays is not None:
                self.relays.ended(key)
            if not relayed_from:
                self._release_claim(key)
        self._events.put_nowait(
            StreamUnpublished(key, session_id, time.time(), reason, self.config.node_id, relayed_from, received)
        )

    def publish_refused(self, event: PublishRefused) -> None:
        """Report a refused publisher, at most MAX_REFUSALS_PER_SECOND."""
        second = int(time.monotonic())
        if second != self._refusals_second:
            self._refusals_second, self._refusals_in_second = second, 0
        if self._refusals_in_second >= MAX_REFUSALS_PER_SECOND or self._events.qsize() >= MAX_PENDING_EVENTS:
            return
        self._refusals_in_second += 1
        self._events.put_nowait(event)

    def _stream_wanted(self, key: StreamKey) -> None:
        """A viewer waits for `key`: if it names a rendition of a live
        stream, ask the sink for its transcode (the viewer keeps waiting
        `play_wait_seconds` for it to go live)."""
        split = split_rendition_name(key.stream)
        if split is not None:
            source = StreamKey(key.domain, key.app, split[0])
            if self.hub.is_live(source):
                self.request_rendition(source, split[1])
        if self.pulls is not None:
            self.pulls.wanted(key)

    def request_rendition(self, source: StreamKey, template_id: str) -> None:
        if self._events.qsize() >= MAX_PENDING_EVENTS:
            return  # the viewer's wait ends in a 404, as for a stream that is not live
        center = ""  # this node
        if self.relays is not None:
            # An edge: the transcode reads the source at its center, once the relay has one.
            state = self.relays.states.get(source)
            if state is None or not state.center:
                return
            center = state.center
        if (source, template_id) in self._renditions_asked:
            return  # one request is on its way: the sink would be asked the same
        self._renditions_asked.add((source, template_id))
        self._events.put_nowait(RenditionRequested(source, template_id, self.config.node_id, center))

    async def _pump_events(self) -> None:
        while True:
            event = await self._events.get()
            try:
                await self._deliver(event)
            finally:
                self._events.task_done()

    async def _deliver(self, event) -> None:
        try:
            if isinstance(event, StreamPublished):
                await self.sink.published(event)
            elif isinstance(event, _Updates):
                self._updates_queued = False
                # One round trip for all when the sink can (nodes.bridge); else one each.
                many = getattr(self.sink, "updated_many", None)
                if many is not None:
                    await many(event.events)
                else:
                    for each in event.events:
                        await self.sink.updated(each)
            elif isinstance(event, StreamUpdated):
                await self.sink.updated(event)
            elif type(event) in OPTIONAL_SINK_EVENTS:
                if isinstance(event, StreamsSampled):
                    self._pending_samples -= 1
                elif isinstance(event, RenditionRequested):
                    self._renditions_asked.discard((event.source, event.template_id))
                handler = getattr(self.sink, OPTIONAL_SINK_EVENTS[type(event)], None)
                if handler is not None:
                    await handler(event)
            else:
                await self.sink.unpublished(event)
        except Exception:
            log.exception("event sink failed on %s", type(event).__name__)

    async def _drain_events(self) -> None:
        while not self._events.empty():
            event = self._events.get_nowait()
            await self._deliver(event)
            self._events.task_done()

    async def _report_updates(self) -> None:
        while True:
            await asyncio.sleep(self.config.update_interval_seconds)
            if self._updates_queued or self._events.qsize() >= MAX_PENDING_EVENTS:
                continue  # the sink has not taken the last tick's yet: this one would say the same, later
            updates = []
            for key, session_id in list(self._live.items()):
                if session_id in self._relayed:
                    continue  # the edge that holds its publisher reports it
                stream = self.hub.stream(key)
                if stream is not None:
                    updates.append(StreamUpdated(key, session_id, stream.info(), stream.viewer_count))
            if updates:
                self._updates_queued = True
                self._events.put_nowait(_Updates(tuple(updates)))

    def report_playback(self) -> None:
        """Hand the sink what viewers' beacons said since the last report."""
        if not len(self.playback) or self._events.qsize() >= MAX_PENDING_EVENTS:
            return  # a sink this far behind loses the telemetry, not the publishes
        self._events.put_nowait(PlaybackReported(self.config.node_id, time.time(), self.playback.flush()))

    async def _report_playback(self) -> None:
        while True:
            await asyncio.sleep(self.config.beacon_flush_seconds)
            self.report_playback()

    async def _report_samples(self) -> None:
        # Ticks on the loop's clock, so a slow tick does not shift the rest.
        loop, interval = asyncio.get_running_loop(), self.config.sample_interval_seconds
        tick = loop.time()
        while True:
            tick += interval
            delay = tick - loop.time()
            if delay < 0:  # the loop was busy for more than a tick: skip the missed ones
                tick += -delay // interval * interval + interval
                delay = tick - loop.time()
            await asyncio.sleep(delay)
            # An edge's pulled streams have viewers here but no publish session.
            live = {key: "" for key in self.pulls.sources} if self.pulls is not None else {}
            live.update(self._live)
            if not live:
                self.last_samples = ()
                continue
            srt = self.srt.session_stats() if self.srt is not None else None
            whip = await self.rts.whip.session_stats() if self.rts is not None else None
            samples = self.stats.sample(live, srt, self.upstream_nodes(), whip)
            self.last_samples = tuple(samples)
            if not samples:
                continue
            if self._pending_samples >= MAX_PENDING_SAMPLE_BATCHES:
                self.sample_batches_dropped += 1
                if self.sample_batches_dropped % 60 == 1:
                    log.warning("event sink is slow: %d sample ticks dropped", self.sample_batches_dropped)
                continue
            self._pending_samples += 1
            self._events.put_nowait(StreamsSampled(self.config.node_id, samples[0].at, tuple(samples)))
