"""The cluster as its nodes see it (issue 14): each media node's heartbeat,
and the routing decisions that the edge relay and the edge pull make on them.

Pure, like the protocol modules: no clock (`now` is passed in), no sockets,
no Redis, no Django. A `NodeBeat` is what a node says of itself every
HEARTBEAT_SECONDS; a store keeps the latest beat of each node (nodes/registry.py:
Redis in the scaled topology, the database in the embedded one) and answers
`NodeRegistry.beats()`; a `ClusterView` is those beats read at one instant,
and the routing functions are functions of a view:

- `choose_center`: the center node an edge relays a stream to: the one it
  has while that one beats (sticky per stream), else the least loaded of the
  live center's region; none left, a reason the console can show.
- `CenterAssignments`: the edge's memory of those choices, stream by stream.
- `pull_source`: the center node an edge pulls a stream from (the one
  carrying it).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

CENTER = "center"
EDGE = "edge"
ROLES = (CENTER, EDGE)
# The region of a node that serves them all: the embedded topology's one
# node (`make run`), center and edge of every live center.
ANY_REGION = ""

# A node beats this often...
HEARTBEAT_SECONDS = 1.0
# ...and is down when its last beat is older than this: nothing is routed to
# it. Five beats, because a loop busy for a second or two (bench/soak saw
# that under load) is not a dead node, and the console must show a dead one
# within a few seconds.
NODE_DOWN_SECONDS = 5.0
# Stream keys one beat lists. A node of this machine class carries tens of
# streams; the bound is for a beat read back from the shared store, which a
# bug or another version may have written.
MAX_BEAT_STREAMS = 10_000
MAX_NODE_ID_CHARS = 255
MAX_HOST_CHARS = 255
MAX_REASON_CHARS = 255
# Loads (fractions of capacity) closer than this are equal when choosing a
# center: a few per cent of egress is noise, and among equals the one with
# fewer streams, then the stream's own hash (rendezvous), spreads new streams
# that arrive together instead of sending them all to one node.
LOAD_STEP = 0.1


class BadNodeBeat(ValueError):
    """A beat read from the store is malformed; the message names the field."""


@dataclass(frozen=True, slots=True)
class NodeBeat:
    node_id: str
    roles: frozenset[str]
    region: str  # the live center region (domains.models.LiveCenter), or ANY_REGION
    host: str  # the address other nodes and media workers reach it on
    rtmp_port: int
    http_port: int
    srt_port: int | None
    at: float  # Unix seconds, when the node sent the beat
    started_at: float = 0.0  # Unix seconds, when this life of the node began
    streams: frozenset[str] = frozenset()  # "domain/app/stream" of each live stream on the node
    viewers: int = 0
    bitrate_in: float = 0.0  # bit/s, what its publishers send
    bitrate_out: float = 0.0  # bit/s, what its viewers get
    loop_lag_ms: float = 0.0
    # The share of its capacity in use: the larger of egress over its egress
    # limit and loop lag over its lag limit (livecenter/media/capacity.py);
    # 1.0 is where it starts refusing viewers.
    load: float = 0.0
    # An edge's streams that no center takes, and why (choose_center's
    # reason, or the relay's last failure): the console shows them.
    relay_errors: Mapping[str, str] = field(default_factory=dict)
    # Its TLS listeners (issue 15), None where it has none.
    https_port: int | None = None
    rtmps_port: int | None = None
    # The address its listeners are bound to, the ports above on it ("0.0.0.0":
    # every address of the machine); `host` is where other nodes reach it.
    listen_host: str = ""

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def to_json(self) -> dict:
        return {
            "node_id": self.node_id,
            "roles": sorted(self.roles),
            "region": self.region,
            "host": self.host,
            "rtmp_port": self.rtmp_port,
            "http_port": self.http_port,
            "srt_port": self.srt_port,
            "at": self.at,
            "started_at": self.started_at,
            "streams": sorted(self.streams),
            "viewers": self.viewers,
            "bitrate_in": self.bitrate_in,
            "bitrate_out": self.bitrate_out,
            "loop_lag_ms": self.loop_lag_ms,
            "load": self.load,
            "relay_errors": dict(self.relay_errors),
            "https_port": self.https_port,
            "rtmps_port": self.rtmps_port,
            "listen_host": self.listen_host,
        }

    @classmethod
    def from_json(cls, data: object) -> NodeBeat:
        if not isinstance(data, dict):
            raise BadNodeBeat("beat: not an object")
        roles = data.get("roles")
        if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles):
            raise BadNodeBeat(f"roles: must be a non-empty list of {', '.join(ROLES)}")
        streams = data.get("streams", [])
        if not isinstance(streams, list) or len(streams) > MAX_BEAT_STREAMS:
            raise BadNodeBeat(f"streams: must be a list of at most {MAX_BEAT_STREAMS} keys")
        if not all(isinstance(s, str) for s in streams):
            raise BadNodeBeat("streams: every key must be a string")
        relay_errors = data.get("relay_errors", {})
        if not isinstance(relay_errors, dict) or len(relay_errors) > MAX_BEAT_STREAMS:
            raise BadNodeBeat(f"relay_errors: must be an object of at most {MAX_BEAT_STREAMS} streams")
        if not all(isinstance(v, str) and len(v) <= MAX_REASON_CHARS for v in relay_errors.values()):
            raise BadNodeBeat(f"relay_errors: every reason must be a string of at most {MAX_REASON_CHARS} characters")
        srt_port, https_port, rtmps_port = data.get("srt_port"), data.get("https_port"), data.get("rtmps_port")
        return cls(
            node_id=_text(data, "node_id", MAX_NODE_ID_CHARS),
            roles=frozenset(roles),
            region=_text(data, "region", 64, empty=True),
            host=_text(data, "host", MAX_HOST_CHARS),
            rtmp_port=_port(data, "rtmp_port"),
            http_port=_port(data, "http_port"),
            srt_port=None if srt_port is None else _port(data, "srt_port"),
            at=_number(data, "at"),
            started_at=_number(data, "started_at", 0.0),
            streams=frozenset(streams),
            viewers=int(_number(data, "viewers", 0)),
            bitrate_in=_number(data, "bitrate_in", 0.0),
            bitrate_out=_number(data, "bitrate_out", 0.0),
            loop_lag_ms=_number(data, "loop_lag_ms", 0.0),
            load=_number(data, "load", 0.0),
            relay_errors=relay_errors,
            https_port=None if https_port is None else _port(data, "https_port"),
            rtmps_port=None if rtmps_port is None else _port(data, "rtmps_port"),
            listen_host=_text(data, "listen_host", MAX_HOST_CHARS, empty=True) if "listen_host" in data else "",
        )


def _text(data: dict, name: str, max_chars: int, *, empty: bool = False) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not (value or empty) or len(value) > max_chars:
        raise BadNodeBeat(f"{name}: must be a string of {0 if empty else 1} to {max_chars} characters")
    return value


def _number(data: dict, name: str, default: float | None = None) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise BadNodeBeat(f"{name}: must be a finite number, 0 or more")
    return float(value)


def _port(data: dict, name: str) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise BadNodeBeat(f"{name}: must be a port number, 1 to 65535")
    return value


class NodeRegistry(Protocol):
    """Where the beats are kept: the latest one of each node that has beaten
    (down ones included, for as long as the store keeps them)."""

    def beats(self) -> Mapping[str, NodeBeat]: ...


@dataclass(frozen=True)
class ClusterView:
    """The cluster at `now` (Unix seconds), as the registry's beats say."""

    beats: Mapping[str, NodeBeat]
    now: float
    down_after_seconds: float = NODE_DOWN_SECONDS

    @classmethod
    def read(cls, registry: NodeRegistry, now: float, down_after_seconds: float = NODE_DOWN_SECONDS) -> ClusterView:
        return cls(dict(registry.beats()), now, down_after_seconds)

    def age(self, node_id: str) -> float | None:
        """Seconds since the node's last beat; None if it never beat."""
        beat = self.beats.get(node_id)
        return None if beat is None else max(0.0, self.now - beat.at)

    def is_up(self, node_id: str) -> bool:
        age = self.age(node_id)
        return age is not None and age <= self.down_after_seconds

    def is_down(self, node_id: str) -> bool:
        return not self.is_up(node_id)

    def live_nodes(self) -> list[NodeBeat]:
        return sorted((b for b in self.beats.values() if self.is_up(b.node_id)), key=lambda b: b.node_id)

    def nodes(self, role: str | None = None, region: str | None = None) -> list[NodeBeat]:
        """The live nodes with `role` that serve `region` (each when given)."""
        return [
            b
            for b in self.live_nodes()
            if (role is None or b.has_role(role)) and (region is None or b.region in (region, ANY_REGION))
        ]

    def carriers(self, key: str, role: str | None = None) -> list[NodeBeat]:
        """The live nodes (with `role`) on which stream `key` is live."""
        return [b for b in self.nodes(role) if key in b.streams]


@dataclass(frozen=True, slots=True)
class Route:
    """A routing decision: the node, or None and why (for the console)."""

    node: NodeBeat | None
    reason: str = ""
    # The center a failover moved the stream away from.
    moved_from: str | None = None

    def __bool__(self) -> bool:
        return self.node is not None


def _rendezvous(key: str, node_id: str) -> bytes:
    return hashlib.blake2b(f"{key}\0{node_id}".encode(), digest_size=8).digest()


def least_loaded(candidates: Iterable[NodeBeat], key: str) -> NodeBeat | None:
    """The node with the least load (in LOAD_STEPs), then the fewest streams,
    then the lowest rendezvous hash of (key, node): deterministic for a
    given view, and spread over equals."""
    return min(
        candidates,
        # (+1e-9: 0.3 / 0.1 is 2.999..., and 0.3 belongs in step 3)
        key=lambda b: (math.floor(b.load / LOAD_STEP + 1e-9), len(b.streams), _rendezvous(key, b.node_id)),
        default=None,
    )


def choose_center(
    view: ClusterView, key: str, region: str, current: str | None = None, avoid: Collection[str] = ()
) -> Route:
    """The center node of `region` that an edge relays stream `key` to.

    `current` is the center the stream has now (None for a new publication):
    it keeps it while it beats (sticky: a relay moved on every change of load
    would cut the stream at the center each time). When it stops beating, or
    is one to `avoid` (the relay to it failed just now: edge.Router), the
    least loaded other center of the region takes over (`moved_from` says
    which one it replaces); when none is left, no node and a reason."""
    if current is not None and current not in avoid and view.is_up(current):
        beat = view.beats[current]
        if beat.has_role(CENTER) and beat.region in (region, ANY_REGION):
            return Route(beat)
    chosen = least_loaded(
        (b for b in view.nodes(CENTER, region) if b.node_id != current and b.node_id not in avoid), key
    )
    if chosen is not None:
        return Route(chosen, moved_from=current)
    reason = f"no center node of live center {region} is up"
    if avoid:
        reason += f" but {', '.join(sorted(avoid))}, which failed"
    if current is not None and current not in avoid:
        age = view.age(current)
        reason += f"; {current} last beat {age:.0f} s ago" if age is not None else f"; {current} is unknown"
    return Route(None, reason, current)


@dataclass
class CenterAssignments:
    """An edge's centers, stream by stream: `route` asks `choose_center`
    with the stream's current center and remembers the answer; `release`
    forgets a stream whose publisher left. A stream with no center left
    keeps its last one, so that it goes back to it if it beats again."""

    centers: dict[str, str] = field(default_factory=dict)

    def route(self, view: ClusterView, key: str, region: str, avoid: Collection[str] = ()) -> Route:
        route = choose_center(view, key, region, self.centers.get(key), avoid)
        if route.node is not None:
            self.centers[key] = route.node.node_id
        return route

    def release(self, key: str) -> None:
        self.centers.pop(key, None)


def pull_source(view: ClusterView, key: str, region: str | None = None, exclude: str | None = None) -> Route:
    """The center node an edge pulls stream `key` from: a live center that
    carries it, one of `region` (the domain's live center) first; the edge
    asking is `exclude`d. Two carriers (a failover under way) are told apart
    by the fresher beat."""
    carriers = [b for b in view.carriers(key, CENTER) if b.node_id != exclude]
    if not carriers:
        return Route(None, f"{key} is not live on any center node that is up")
    return Route(min(carriers, key=lambda b: (b.region != region, -b.at, b.node_id)))
