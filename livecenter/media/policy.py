"""What the engine asks and tells the rest of the product (DESIGN.md).

The engine never touches the ORM. It asks a `Policy` for a domain's
configuration and whether a stream is forbidden, decides admission itself
(`livecenter/media/admission.py`), and reports what happens to an
`EventSink`. `streams/` implements both on top of the database; tests use
in-memory ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .access import NO_ACCESS_LISTS, AccessPolicy
from .hls_crypto import DEFAULT_KEY_ROTATION_SEGMENTS
from .webhooks import AddressRule


class PolicyUnavailable(Exception):
    """The policy cannot answer now (its database is unreachable) and has no
    answer recent enough to serve instead. Admission turns it into a refusal
    the servers answer as "try again later" (HTTP 503), not as "forbidden"."""


@dataclass(frozen=True, slots=True)
class StreamKey:
    """A live stream's identity: its ingest domain, app and stream name."""

    domain: str
    app: str
    stream: str

    def __str__(self) -> str:
        return f"{self.domain}/{self.app}/{self.stream}"

    @classmethod
    def parse(cls, text: str) -> StreamKey:
        domain, app, stream = text.split("/", 2)
        return cls(domain, app, stream)


# libsrt's SRTO_LATENCY default, and a new ingest domain's (domains.models).
DEFAULT_SRT_LATENCY_MS = 120


@dataclass(frozen=True, slots=True)
class DomainConfig:
    """A snapshot of one domain, as the console configured it."""

    name: str
    kind: str  # "ingest" | "streaming"
    enabled: bool
    # None when URL signing is off for the domain. Secrets are left out of
    # the repr, so that a config in a log line or a traceback gives none away.
    signing_keys: tuple[str, ...] | None = field(repr=False)
    validity_seconds: int
    # For a streaming domain: the ingest domain whose streams it plays (its
    # own association, or its main domain's). None for ingest domains.
    ingest_domain: str | None = None
    rts_enabled: bool = False
    html5_transcode: bool = False
    # SRT ingest (ingest domains): the receiver latency offered at the
    # handshake (the larger of it and the caller's applies), and the
    # passphrase publishers must encrypt with, None when they push in clear.
    srt_latency_ms: int = DEFAULT_SRT_LATENCY_MS
    srt_passphrase: str | None = field(default=None, repr=False)
    # The live center region its streams live in (domains.models.LiveCenter):
    # where an edge relays them (edge.py). "" where the node does not care.
    live_center: str = ""
    # HTTPS (streaming domains; tls.py): whether the node serves the
    # domain's certificate, and where plain requests are sent: "" none,
    # "https" (HTTP to HTTPS) or "http" (HTTPS to HTTP), with a 301.
    https_enabled: bool = False
    https_redirect: str = ""
    # HLS encryption (streaming domains; hls_crypto.py): AES-128 with a new
    # key every `hls_key_rotation_segments` segments, for the apps named in
    # `hls_encryption_apps` (every app when empty). RTS, FLV and RTMP are
    # not changed by it.
    hls_encryption: bool = False
    hls_key_rotation_segments: int = DEFAULT_KEY_ROTATION_SEGMENTS
    hls_encryption_apps: tuple[str, ...] = ()

    def hls_key_period(self, app: str) -> int:
        """The key rotation period of `app`'s HLS on this domain; 0 in clear."""
        if not self.hls_encryption or (self.hls_encryption_apps and app not in self.hls_encryption_apps):
            return 0
        return self.hls_key_rotation_segments

    # The domain's IP and Referer lists (access.py): publishers of an
    # ingest domain, viewers of a streaming domain.
    access: AccessPolicy = NO_ACCESS_LISTS


@dataclass(frozen=True, slots=True)
class TlsCertificate:
    """A domain's certificate as the node serves it (tls.py): the chain in
    PEM, leaf first, and its private key, which the node holds in memory
    only; it is left out of the repr so that no log line or traceback shows
    it."""

    domain: str
    chain_pem: str = field(repr=False)
    key_pem: str = field(repr=False)
    fingerprint_sha256: str  # of the leaf, "AB:CD:..." as the console shows it
    not_after: float  # Unix seconds; past it the certificate is not served


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What is known of a live stream's media, from its headers and a window
    of recent frames."""

    video_codec: str = ""  # "H264", ""
    audio_codec: str = ""  # "AAC", "MP3", ""
    width: int = 0
    height: int = 0
    frame_rate: float = 0.0  # frames per second, measured
    video_bitrate: float = 0.0  # bits per second, measured
    audio_bitrate: float = 0.0  # bits per second, measured
    video_profile: str = ""
    audio_sample_rate: int = 0
    audio_channels: int = 0
    has_bframes: bool = False  # a B slice was seen (browsers' WebRTC plays none)


# A publish session's type (DescribeLiveStreamsOnlineList's PublishType).
EDGE_PUBLISH = "edge"
CENTER_PUBLISH = "center"


@dataclass(frozen=True, slots=True)
class StreamPublished:
    key: StreamKey
    session_id: str  # unique per publish session
    protocol: str  # "rtmp"
    client_addr: str  # "ip:port"
    publish_url: str  # the URL as the publisher gave it, without auth_key
    started_at: float  # Unix seconds
    node_id: str
    # In a cluster (edge.py): EDGE_PUBLISH when the publisher is on an edge,
    # which relays the stream to a center; CENTER_PUBLISH when it published
    # on the node carrying the stream at the center (a node alone's too).
    publish_type: str = CENTER_PUBLISH
    # The center node carrying the stream, when known: this node unless it
    # is an edge, whose relay may not have reached one yet ("").
    center: str = ""
    # On a center, the edge whose relay this publish is: the session id and
    # client address are then the edge's publisher's (from the relay's
    # query, under the edge's node token), and the publish session is the
    # edge's, which this event only tells where the stream is at the center.
    relayed_from: str = ""


@dataclass(frozen=True, slots=True)
class StreamUpdated:
    key: StreamKey
    session_id: str
    info: StreamInfo
    viewers: int = 0  # subscribers now (an HLS-packaged stream counts one while it is requested)


# StreamUnpublished.reason in the words more than one part of the engine
# uses. "" only when the publisher ended its stream (RTMP's FCUnpublish,
# deleteStream, closeStream); a connection that closed or broke under a live
# publication is an encoder killed or its network gone; monitoring/alarms.py
# counts both of those and a node stopping under it as interruptions.
PUBLISHER_ENDED = ""
CONNECTION_LOST = "connection lost"
NODE_STOPPED = "media node stopped"


@dataclass(frozen=True, slots=True)
class StreamUnpublished:
    key: StreamKey
    session_id: str
    stopped_at: float  # Unix seconds
    reason: str = PUBLISHER_ENDED  # else why it ended
    node_id: str = ""
    # On a center, the edge whose relay ended (StreamPublished.relayed_from):
    # the stream left this center, which does not end the edge's session.
    relayed_from: str = ""
    # Media bytes (audio, video, metadata bodies) the publication brought in.
    bytes_received: int = 0


@dataclass(frozen=True, slots=True)
class SrtSessionStats:
    """An SRT publish session's link, as its connection counts it
    (srt_server.SrtServer.session_stats). Totals run from the session's
    start; in a StreamSample the `*_per_second` figures cover the sample's
    interval (stats.py fills them; a bare reading has them 0)."""

    socket_id: int
    peer: str  # "ip:port"
    encrypted: bool
    latency_ms: int  # the negotiated receiver (TSBPD) latency
    rtt_ms: float  # smoothed round-trip time (ACK/ACKACK)
    rtt_var_ms: float
    receive_buffer_packets: int  # held for their TSBPD release time, or waiting for a gap to fill
    receive_buffer_ms: int  # the sender time those packets span
    packets_received: int  # total, retransmissions included
    packets_lost: int  # total seen missing (a gap), whether a retransmission filled it or not
    packets_retransmitted: int  # total that came as retransmissions
    packets_dropped: int  # total never delivered: too late to play, given up by the sender, undecryptable
    packets_received_per_second: float = 0.0
    packets_lost_per_second: float = 0.0
    packets_retransmitted_per_second: float = 0.0
    packets_dropped_per_second: float = 0.0

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class WhipSessionStats:
    """A WHIP publish session's WebRTC link, as the node's receiver counts
    it (rts/ingest.py, WhipIngest.session_stats). Totals run from the
    session's start; in a StreamSample the `*_per_second` figures cover the
    sample's interval (stats.py fills them; a bare reading has them 0)."""

    session_id: str
    peer: str  # "ip:port" of the HTTP POST
    video_codec: str  # as the publisher sends it: "H264", "VP8" ("" without video)
    audio_codec: str  # "opus" ("" without audio)
    connection_state: str  # the peer connection's: "new", "connecting", "connected", ...
    rtt_ms: float  # the last STUN round trip on the selected ICE pair; 0 until measured
    jitter_ms: float  # the video's interarrival jitter (RFC 3550 A.8)
    packets_received: int  # total, audio and video, retransmissions included
    packets_lost: int  # total never received (RFC 3550 A.3: expected less received)
    nacks_sent: int  # total packets asked for again (RTCP NACK, RFC 4585 6.2.1)
    keyframe_requests: int  # total PLIs the node sent (viewers, losses, the keyframe interval)
    frames_lost: int  # total frames given up on: a gap not repaired in time
    packets_received_per_second: float = 0.0
    packets_lost_per_second: float = 0.0
    nacks_sent_per_second: float = 0.0

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class StreamSample:
    """One second of a live stream, measured by the node (livecenter/media/stats.py).
    Rates cover the `interval_seconds` before `at`; bit rates are bits per second."""

    key: StreamKey
    session_id: str
    at: float  # Unix seconds
    interval_seconds: float
    video_frame_rate: float
    audio_frame_rate: float
    video_bitrate: float
    audio_bitrate: float
    keyframe_interval_ms: int  # between the last two keyframes; 0 until there are two
    bframes: bool  # the stream has B-frames (the hub reads slice headers)
    timestamp_jumps: int  # in the interval, either track
    video_codec: str = ""
    video_profile: str = ""
    width: int = 0
    height: int = 0
    audio_codec: str = ""
    audio_sample_rate: int = 0
    audio_channels: int = 0
    viewers: dict[str, int] = field(default_factory=dict)  # by protocol: "rtmp", "flv", "hls", ...
    bitrate_out: dict[str, float] = field(default_factory=dict)  # bits per second, by protocol
    srt: SrtSessionStats | None = None  # the publisher's SRT link, when it came in over SRT
    whip: WhipSessionStats | None = None  # the publisher's WebRTC link, when it came in over WHIP
    # The node this one receives the stream from (a center: the edge that
    # relays it; an edge: the center it pulls it from); "" where the
    # publisher itself is. A domain's ingest is counted where it is "".
    upstream_node: str = ""
    # Bits per second sent to other nodes (stats.NODE_LINK_PROTOCOL: an
    # edge's relay, a center's stream pulled by an edge): not in `viewers`
    # nor `bitrate_out`, which are the node's viewers'.
    relay_bitrate_out: float = 0.0
    # Who watched (stats.viewer_identity: a salted hash of a viewer's address
    # and agent, never the address): each viewer once per UTC minute it
    # watches in, at most stats.MAX_VIEWER_IDS_PER_SAMPLE, so that the usage
    # rollups count unique viewers (monitoring/usage.py).
    viewer_ids: tuple[str, ...] = ()

    @property
    def bitrate(self) -> float:
        """Bits per second in, audio and video."""
        return self.video_bitrate + self.audio_bitrate


@dataclass(frozen=True, slots=True)
class StreamsSampled:
    """The samples of every live stream of a node at one tick."""

    node_id: str
    at: float  # Unix seconds
    samples: tuple[StreamSample, ...]


@dataclass(frozen=True, slots=True)
class PublishRefused:
    """A publisher the node turned away, for the troubleshooting tool: the
    same facts as the node's INFO line. The stream is as the publisher
    named it (empty where it named none, or nothing readable)."""

    domain: str
    app: str
    stream: str
    protocol: str  # "rtmp", "srt", "whip"
    client_addr: str  # "ip:port"
    reason: str  # in words, as logged: "wrong passphrase", "invalid md5hash", ...
    code: int  # the protocol's own code (an SRT rejection reason, WHIP's HTTP status), 0 if it has none (RTMP)
    at: float  # Unix seconds
    node_id: str


@dataclass(frozen=True, slots=True)
class PlaybackRow:
    """Viewers' playback of a stream in one minute, on one streaming domain,
    protocol and viewer region, summed from the players' beacons a node
    received since its last report (beacon.py). Histogram counts are per
    bucket of beacon.TTFF_BUCKETS_MS / LATENCY_BUCKETS_MS, one more for
    what is above the last bound."""

    minute: int  # Unix seconds of the minute's start
    key: StreamKey  # the stream, by its ingest domain
    streaming_domain: str
    protocol: str  # "rts", "flv", "llhls", "hls", "native-hls"
    region: str
    sessions: int  # player sessions that started the stream over the protocol ("start" events, once a session)
    ttff_counts: tuple[int, ...]
    stalls: int
    stall_ms: int
    watch_ms: int  # playing or stalled, after the first frame
    bitrate_switches: int
    fallbacks: dict[str, int]  # "rts>flv" -> count
    errors: dict[str, int]  # kind -> count
    latency_counts: tuple[int, ...]  # one per beacon window that measured glass-to-glass latency


@dataclass(frozen=True, slots=True)
class PlaybackReported:
    """A node's PlaybackRows since its last report (every beacon_flush_seconds)."""

    node_id: str
    at: float  # Unix seconds
    rows: tuple[PlaybackRow, ...]


@dataclass(frozen=True, slots=True)
class PublishHook:
    """An ingest domain's publish authorisation callback (issue 16;
    publish_hook.py): asked before a publish is accepted, after the signed
    URL. The secret is left out of the repr."""

    url: str
    secret: str = field(repr=False)
    timeout_seconds: float = 2.0
    allow_when_unreachable: bool = False
    # Where callbacks may go, as the console's settings say.
    rule: AddressRule = field(default_factory=AddressRule)


@dataclass(frozen=True, slots=True)
class RenditionRequested:
    """A viewer asked for `{source}_{template}` while it was not live and its
    source was (renditions.py): the sink may start a transcode."""

    source: StreamKey
    template_id: str
    node_id: str
    # The center node carrying the source when this node relays it there
    # (an edge): the transcode reads it there, as every media job does;
    # empty: this node.
    center: str = ""


@dataclass(frozen=True, slots=True)
class RenditionGroup:
    """An ABR template group (hls_master.py): its renditions, lowest first."""

    group_id: str
    renditions: tuple  # of renditions.RenditionSpec


class Policy(Protocol):
    """Any method may raise PolicyUnavailable when it cannot answer."""

    async def domain_config(self, host: str) -> DomainConfig | None:
        """The domain named `host` (lower-case ASCII), or None if unknown."""

    async def is_forbidden(self, key: StreamKey, now: float) -> bool:
        """Whether publishing `key` is blocked at `now`."""

    async def rendition_group(self, domain: str, app: str, group_id: str) -> RenditionGroup | None:
        """The ABR group `group_id` of an ingest domain's app, or None.
        Optional: a policy without it has no groups."""

    async def certificate(self, host: str) -> TlsCertificate | None:
        """The certificate to serve to a TLS client that asks for `host`:
        its domain's, while the domain is enabled and has HTTPS on; else
        None. Optional: a policy without it serves no domain over TLS."""

    async def publish_hook(self, domain: str) -> PublishHook | None:
        """The ingest domain's publish authorisation callback, or None.
        Optional: a policy without it asks no one."""


class EventSink(Protocol):
    async def published(self, event: StreamPublished) -> None: ...

    async def updated(self, event: StreamUpdated) -> None: ...

    async def unpublished(self, event: StreamUnpublished) -> None: ...

    async def sampled(self, event: StreamsSampled) -> None: ...

    async def rendition_requested(self, event: RenditionRequested) -> None:
        """Optional: a sink without it starts no transcodes on demand."""

    async def playback_reported(self, event: PlaybackReported) -> None:
        """Optional: a sink without it keeps no viewer telemetry."""

    async def publish_refused(self, event: PublishRefused) -> None:
        """Optional: a sink without it keeps no record of refusals (the log has them)."""


@dataclass
class MemoryPolicy:
    """A Policy from plain data, for tests and for running without a console."""

    domains: dict[str, DomainConfig] = field(default_factory=dict)
    forbidden: set[StreamKey] = field(default_factory=set)
    # (ingest domain, app, group id) -> RenditionGroup
    groups: dict[tuple[str, str, str], RenditionGroup] = field(default_factory=dict)
    # host -> the certificate served for it
    certificates: dict[str, TlsCertificate] = field(default_factory=dict)
    # ingest domain -> its publish authorisation callback
    hooks: dict[str, PublishHook] = field(default_factory=dict)

    async def domain_config(self, host: str) -> DomainConfig | None:
        return self.domains.get(host)

    async def is_forbidden(self, key: StreamKey, now: float) -> bool:
        return key in self.forbidden

    async def rendition_group(self, domain: str, app: str, group_id: str) -> RenditionGroup | None:
        return self.groups.get((domain, app, group_id))

    async def certificate(self, host: str) -> TlsCertificate | None:
        return self.certificates.get(host)

    async def publish_hook(self, domain: str) -> PublishHook | None:
        return self.hooks.get(domain)


@dataclass
class MemorySink:
    """An EventSink that keeps what it is told, for tests."""

    events: list = field(default_factory=list)

    async def published(self, event: StreamPublished) -> None:
        self.events.append(event)

    async def updated(self, event: StreamUpdated) -> None:
        self.events.append(event)

    async def unpublished(self, event: StreamUnpublished) -> None:
        self.events.append(event)

    async def sampled(self, event: StreamsSampled) -> None:
        self.events.append(event)

    async def rendition_requested(self, event: RenditionRequested) -> None:
        self.events.append(event)

    async def publish_refused(self, event: PublishRefused) -> None:
        self.events.append(event)

    async def playback_reported(self, event: PlaybackReported) -> None:
        self.events.append(event)
