"""Per-second samples of every live stream (issue 6).

Counting is split from sampling so that the media path stays cheap:

- `StreamCounters` lives on each `LiveStream` (a new one per publication).
  The hub calls `video()` / `audio()` once per ingested frame: integer adds,
  a comparison of timestamps, and for H.264 one look at the composition time.
  A viewer's server calls `Subscription.count_sent(n)` once per socket write
  (the pump writes merged frames), never per frame; HLS calls
  `StatsSampler.served()` per playlist, segment or part. A new protocol (RTS)
  does the same under its own name.
- `StatsSampler` runs once a second on the node's loop: it reads every live
  stream's counters, takes the difference from its last reading and turns it
  into a `StreamSample` (policy.py), which the node hands to its EventSink.
  A publisher's link (SRT, WHIP) is read by its server as totals since the
  session's start; the sampler makes the per-second figures the same way.

Rates are measured in stream time where the stream has it: the frames that
arrived since the last sample cover the stretch of timestamps from the last
frame then to the last frame now, so 30 frames stamped 1/30 s apart read
30 fps whether the network delivered them in one burst or evenly. A
stretch that makes no sense (a timestamp jump, none at all) falls back to
the wall-clock time between samples.

Unique viewers: a server names each viewer with `viewer_identity`, a
keyed hash of its address and user agent (the address never leaves the
node), on its subscription (`hub.subscribe(viewer=...)`; a shared RTS
subscription keeps the set of its viewers'), and HLS by the client it
counts requests of. Each sample carries the identities not yet reported in
its UTC minute, at most MAX_VIEWER_IDS_PER_SAMPLE, so every viewer appears
once in every minute it watched in (past the cap the rest follow in the
next seconds of the minute) and the usage rollups count unique viewers of
any period by merging minutes (monitoring/usage.py).

Protocols are open strings: "rtmp", "flv", "hls", and whatever a server
adds ("rts"); internal subscribers (the HLS packager) are not viewers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping

from .flv import TIMESTAMP_JUMP_MS
from .policy import SrtSessionStats, StreamKey, StreamSample, WhipSessionStats

# A subscription that carries the stream to another node of a cluster (an
# edge's relay to its center, a center's stream pulled by an edge, edge.py):
# not a viewer; its bytes are a sample's `relay_bitrate_out`, apart from the
# viewers' egress, so that a domain's egress is counted where its viewers are.
NODE_LINK_PROTOCOL = "relay"
# A client of a request-per-file protocol (HLS) counts as a viewer for this
# long after its last request: hls.js reloads the playlist every target
# duration (1 s here), plain players at most every few seconds.
REQUEST_VIEWER_WINDOW_SECONDS = 10.0
# Distinct request clients remembered per stream; past it the oldest go.
MAX_REQUEST_CLIENTS = 100_000
# Viewer identities one sample carries at most: 16 hex digits each, so a
# sample's list stays under 10 KiB; 500 a second reports 30,000 viewers of a
# stream on one node within every minute.
MAX_VIEWER_IDS_PER_SAMPLE = 500
VIEWER_ID_BYTES = 8  # 64 bits: the usage rollups' HyperLogLog takes them as its hash


def viewer_identity(salt: bytes, address: str, agent: str = "") -> str:
    """A viewer's name in the samples: a keyed hash (BLAKE2b, key `salt`) of
    its address and user agent, as hex. The same viewer gets the same name on
    every node that shares the salt, and nobody without it can tell the address."""
    data = f"{address}\n{agent}".encode(errors="replace")
    return hashlib.blake2b(data, digest_size=VIEWER_ID_BYTES, key=salt[:64]).hexdigest()


class StreamCounters:
    """What one publication of a stream has carried so far, in and out."""

    __slots__ = (
        "video_frames",
        "audio_frames",
        "video_bytes",
        "audio_bytes",
        "video_last_ts",
        "audio_last_ts",
        "last_keyframe_ts",
        "keyframe_interval_ms",
        "timestamp_jumps",
        "bytes_out",
        "clients",
    )

    def __init__(self) -> None:
        self.video_frames = 0
        self.audio_frames = 0
        self.video_bytes = 0
        self.audio_bytes = 0
        self.video_last_ts: int | None = None
        self.audio_last_ts: int | None = None
        self.last_keyframe_ts: int | None = None
        self.keyframe_interval_ms = 0  # between the last two keyframes
        self.timestamp_jumps = 0
        self.bytes_out: Counter[str] = Counter()  # by protocol
        # (protocol, client) -> when it last asked (monotonic), for HLS.
        self.clients: dict[tuple[str, str], float] = {}

    def video(self, timestamp: int, size: int, keyframe: bool) -> None:
        self.video_frames += 1
        self.video_bytes += size
        last = self.video_last_ts
        if last is not None and (timestamp < last or timestamp - last > TIMESTAMP_JUMP_MS):
            self.timestamp_jumps += 1
        self.video_last_ts = timestamp
        if keyframe:
            previous = self.last_keyframe_ts
            if previous is not None and timestamp > previous:
                self.keyframe_interval_ms = timestamp - previous
            self.last_keyframe_ts = timestamp

    def audio(self, timestamp: int, size: int) -> None:
        self.audio_frames += 1
        self.audio_bytes += size
        last = self.audio_last_ts
        if last is not None and (timestamp < last or timestamp - last > TIMESTAMP_JUMP_MS):
            self.timestamp_jumps += 1
        self.audio_last_ts = timestamp

    def sent(self, protocol: str, nbytes: int) -> None:
        self.bytes_out[protocol] += nbytes

    def served(self, protocol: str, nbytes: int, client: str | None, now: float) -> None:
        """A request-per-file protocol answered `client` with `nbytes`."""
        self.bytes_out[protocol] += nbytes
        if client is not None:
            clients = self.clients
            clients.pop((protocol, client), None)  # re-insert: oldest first
            clients[protocol, client] = now
            if len(clients) > MAX_REQUEST_CLIENTS:
                del clients[next(iter(clients))]

    def request_viewers(self, now: float, into: dict[str, int] | None = None) -> dict[str, int]:
        """Clients of request-per-file protocols seen within the window, added
        to `into`; forgets older ones."""
        viewers = {} if into is None else into
        clients, horizon = self.clients, now - REQUEST_VIEWER_WINDOW_SECONDS
        while clients:
            first = next(iter(clients))
            if clients[first] >= horizon:
                break
            del clients[first]
        for protocol, _ in clients:
            viewers[protocol] = viewers.get(protocol, 0) + 1
        return viewers


class _Reading:
    """The counters as the sampler last read them."""

    __slots__ = ("counters", "at", "video_frames", "audio_frames", "video_bytes", "audio_bytes", "video_ts",
                 "audio_ts", "jumps", "bytes_out", "srt", "whip")  # fmt: skip

    def __init__(
        self,
        counters: StreamCounters,
        at: float,
        srt: SrtSessionStats | None = None,
        whip: WhipSessionStats | None = None,
    ) -> None:
        self.counters = counters
        self.at = at
        self.srt = srt
        self.whip = whip
        self.video_frames = counters.video_frames
        self.audio_frames = counters.audio_frames
        self.video_bytes = counters.video_bytes
        self.audio_bytes = counters.audio_bytes
        self.video_ts = counters.video_last_ts
        self.audio_ts = counters.audio_last_ts
        self.jumps = counters.timestamp_jumps
        self.bytes_out = dict(counters.bytes_out)


def _rates(frames: int, nbytes: int, first_ts: int | None, last_ts: int | None, wall_seconds: float):
    """(frames per second, bits per second) of what arrived since the last reading."""
    if frames <= 0 or wall_seconds <= 0:
        return 0.0, 0.0
    seconds = wall_seconds
    if first_ts is not None and last_ts is not None:
        span = (last_ts - first_ts) / 1000
        # A stretch of stream time that the wall clock cannot have seen is a
        # jump; then (or with no stretch at all) the wall clock it is.
        if 0 < span <= 3 * wall_seconds + 1:
            seconds = span
    return frames / seconds, nbytes * 8 / seconds


# A link reading's totals that a sample gives per second too (`{total}_per_second`),
# and the field that tells one publish session's readings from another's.
SRT_RATE_TOTALS = ("packets_received", "packets_lost", "packets_retransmitted", "packets_dropped")
WHIP_RATE_TOTALS = ("packets_received", "packets_lost", "nacks_sent")


def _link_rates(now, before, seconds: float, session_field: str, totals: tuple[str, ...]):
    """`now` (a link reading: SrtSessionStats, WhipSessionStats) with its
    per-second figures since `before` (the session's start if None)."""
    if before is not None and getattr(before, session_field) != getattr(now, session_field):
        before = None  # another session of the stream: count from its start

    def rate(name: str) -> float:
        delta = getattr(now, name) - (getattr(before, name) if before is not None else 0)
        return max(0, delta) / seconds if seconds > 0 else 0.0

    return dataclasses.replace(now, **{f"{name}_per_second": rate(name) for name in totals})


def _srt_rates(now: SrtSessionStats, before: SrtSessionStats | None, seconds: float) -> SrtSessionStats:
    return _link_rates(now, before, seconds, "socket_id", SRT_RATE_TOTALS)


def _whip_rates(now: WhipSessionStats, before: WhipSessionStats | None, seconds: float) -> WhipSessionStats:
    return _link_rates(now, before, seconds, "session_id", WHIP_RATE_TOTALS)


class StatsSampler:
    """Turns the hub's counters into one StreamSample per live stream per call."""

    def __init__(
        self,
        hub,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        salt: bytes = b"",
    ):
        self.hub = hub
        self._monotonic = monotonic
        self._wall = wall
        self._readings: dict[StreamKey, _Reading] = {}
        # Without a salt shared by the cluster (NodeConfig.viewer_id_salt), one
        # of this process's own: names stay unique, not comparable across nodes.
        self.salt = salt or os.urandom(16)
        # Per stream: (UTC minute, identities reported in it).
        self._reported: dict[StreamKey, tuple[int, set[str]]] = {}

    def viewer(self, address: str, agent: str = "") -> str:
        """The identity a server passes for a viewer (`viewer_identity`)."""
        return viewer_identity(self.salt, address, agent)

    def served(self, key: StreamKey, protocol: str, nbytes: int, client: str | None = None) -> None:
        """Count a response of a request-per-file protocol (HLS) to `client`."""
        stream = self.hub.stream(key)
        if stream is not None:
            stream.counters.served(protocol, nbytes, client, self._monotonic())

    def sample(
        self,
        live: Mapping[StreamKey, str],
        srt: Mapping[StreamKey, SrtSessionStats] | None = None,
        upstream: Mapping[StreamKey, str] | None = None,
        whip: Mapping[StreamKey, WhipSessionStats] | None = None,
    ) -> list[StreamSample]:
        """One sample of each stream in `live` (key -> publish session id);
        `srt` has the link readings of the streams published over SRT
        (srt_server.SrtServer.session_stats), `whip` those of the streams
        published over WHIP (rts.ingest.WhipIngest.session_stats),
        `upstream` the node each stream received from another node comes from."""
        now, wall = self._monotonic(), self._wall()
        samples = []
        readings: dict[StreamKey, _Reading] = {}
        for key, session_id in live.items():
            stream = self.hub.stream(key)
            if stream is None or stream.publication is None:
                continue
            counters = stream.counters
            previous = self._readings.get(key)
            if previous is None or previous.counters is not counters:
                # A new publication: measure from its start.
                started = stream.publication.started_at
                previous = _Reading(StreamCounters(), now - max(0.0, wall - started))
            link = (srt.get(key) if srt else None), (whip.get(key) if whip else None)
            reading = readings[key] = _Reading(counters, now, *link)
            sample = self._sample(key, session_id, stream, previous, reading, wall)
            if upstream and key in upstream:
                sample = dataclasses.replace(sample, upstream_node=upstream[key])
            samples.append(sample)
        self._readings = readings
        self._reported = {key: reported for key, reported in self._reported.items() if key in readings}
        return samples

    def _viewer_ids(self, key: StreamKey, stream, wall: float) -> tuple[str, ...]:
        """The identities watching `key` not yet reported in this UTC minute,
        at most MAX_VIEWER_IDS_PER_SAMPLE."""
        minute = int(wall // 60)
        reported_minute, reported = self._reported.get(key, (None, None))
        if reported_minute != minute or reported is None:
            reported = set()
            self._reported[key] = (minute, reported)
        found: list[str] = []
        room = MAX_VIEWER_IDS_PER_SAMPLE
        request_clients = (client for _, client in stream.counters.clients)
        subscribers = (i for sub in stream.subscribers if sub.protocol != NODE_LINK_PROTOCOL for i in sub.identities)
        for identity in itertools.chain(subscribers, request_clients):
            if identity not in reported:
                reported.add(identity)
                found.append(identity)
                room -= 1
                if not room:
                    break
        return tuple(found)

    def _sample(self, key, session_id, stream, before: _Reading, now: _Reading, wall: float) -> StreamSample:
        seconds = now.at - before.at
        video_fps, video_bps = _rates(
            now.video_frames - before.video_frames, now.video_bytes - before.video_bytes,
            before.video_ts, now.video_ts, seconds,
        )  # fmt: skip
        audio_fps, audio_bps = _rates(
            now.audio_frames - before.audio_frames, now.audio_bytes - before.audio_bytes,
            before.audio_ts, now.audio_ts, seconds,
        )  # fmt: skip
        counters = now.counters
        viewers = stream.viewers()
        viewers.pop(NODE_LINK_PROTOCOL, None)
        counters.request_viewers(now.at, viewers)
        bitrate_out = {
            protocol: (nbytes - before.bytes_out.get(protocol, 0)) * 8 / seconds if seconds > 0 else 0.0
            for protocol, nbytes in now.bytes_out.items()
        }
        relay_bitrate_out = bitrate_out.pop(NODE_LINK_PROTOCOL, 0.0)
        info = stream.info()
        return StreamSample(
            key=key,
            session_id=session_id,
            at=wall,
            interval_seconds=seconds,
            video_frame_rate=video_fps,
            audio_frame_rate=audio_fps,
            video_bitrate=video_bps,
            audio_bitrate=audio_bps,
            keyframe_interval_ms=counters.keyframe_interval_ms,
            bframes=info.has_bframes,  # the hub reads slice headers (rts/h264.py)
            timestamp_jumps=now.jumps - before.jumps,
            video_codec=info.video_codec,
            video_profile=info.video_profile,
            width=info.width,
            height=info.height,
            audio_codec=info.audio_codec,
            audio_sample_rate=info.audio_sample_rate,
            audio_channels=info.audio_channels,
            viewers=viewers,
            bitrate_out=bitrate_out,
            srt=_srt_rates(now.srt, before.srt, seconds) if now.srt is not None else None,
            whip=_whip_rates(now.whip, before.whip, seconds) if now.whip is not None else None,
            relay_bitrate_out=relay_bitrate_out,
            viewer_ids=self._viewer_ids(key, stream, wall),
        )
