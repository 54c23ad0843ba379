"""Viewer-side telemetry (issue 19): the player's beacons, the viewer's
region, the node's rate limits and its per-minute aggregation.

A player POSTs `/{app}/{stream}.beacon?auth_key=…` on the streaming domain
with the auth_key of any of the stream's playback URLs (http_server.py
checks it as it checks a play) and a JSON body (the format is in the
README, "Viewer telemetry beacons"):

    {"v": 1, "session": "k3x9…", "events": [{"type": "first_frame", "protocol": "flv", "ttff_ms": 240}, …]}

Pure: `parse_beacon` validates a body and names the offending field;
`RegionTable` maps a viewer's address to a region by longest prefix;
`BeaconRateLimiter` holds token buckets per client and per stream;
`PlaybackAggregator` sums events into rows per minute, stream, streaming
domain, protocol and region, which the node hands its sink every
`beacon_flush_seconds` (policy.PlaybackReported) and monitoring adds up.
The clock is passed in. Every table a peer grows has a named bound.
"""

from __future__ import annotations

import ipaddress
import json
import re
from bisect import bisect_left
from collections import OrderedDict
from dataclasses import dataclass, field

from .access import _address
from .policy import PlaybackRow, StreamKey

# A beacon body: ten seconds of a player's events are a few hundred bytes;
# 16 KiB holds a full batch of MAX_BEACON_EVENTS with room to spare.
MAX_BEACON_BYTES = 16 * 1024
MAX_BEACON_EVENTS = 50
BEACON_VERSION = 1
# A player session id: 8-64 characters of a random token (the player uses 22).
_SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
# What a player plays (player.js's rungs); "native-hls" is the browser's own HLS.
PROTOCOLS = ("rts", "flv", "llhls", "hls", "native-hls")
ERROR_KINDS = ("network", "decode", "denied", "not_live", "timeout", "unsupported", "other")
# Upper bounds (ms) of the histogram buckets; one more bucket counts what is above the last.
TTFF_BUCKETS_MS = (100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 8000)
LATENCY_BUCKETS_MS = (50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000)
# What a single event may claim: a first frame within ten minutes, a stall
# or a stretch of watching of at most an hour (a beacon goes every 10 s),
# a glass-to-glass latency of at most ten minutes, a bitrate up to 1 Gbit/s.
MAX_TTFF_MS = 600_000
MAX_DURATION_MS = 3_600_000
MAX_LATENCY_MS = 600_000
MAX_KBPS = 1_000_000

# The fields each event type carries besides "type" and "protocol": name -> (low, high) for
# integers, or the tuple of allowed strings.
_EVENT_FIELDS: dict[str, dict[str, tuple]] = {
    "start": {},
    "first_frame": {"ttff_ms": (0, MAX_TTFF_MS)},
    "stall": {"duration_ms": (0, MAX_DURATION_MS)},
    "watch": {"duration_ms": (0, MAX_DURATION_MS)},
    "bitrate_switch": {"to_kbps": (0, MAX_KBPS)},
    "fallback": {"to": PROTOCOLS},
    "latency": {"latency_ms": (0, MAX_LATENCY_MS)},
    "error": {"kind": ERROR_KINDS},
}
EVENT_TYPES = tuple(_EVENT_FIELDS)


class BeaconError(ValueError):
    """A beacon that is refused (HTTP 400): `field` is where, as a path (`events[3].ttff_ms`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class BeaconEvent:
    type: str
    protocol: str
    value: int = 0  # ttff_ms, duration_ms, to_kbps or latency_ms, by type
    label: str = ""  # fallback: the protocol fallen back to; error: its kind


@dataclass(frozen=True, slots=True)
class PlayerBeacon:
    session: str
    events: tuple[BeaconEvent, ...]


def _integer(value, where: str, low: int, high: int) -> int:
    # bool is an int in Python; JSON true is no number.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BeaconError(where, f"must be an integer from {low} to {high}")
    return value


def _choice(value, where: str, choices: tuple[str, ...]) -> str:
    if value not in choices or not isinstance(value, str):
        raise BeaconError(where, f"must be one of {', '.join(choices)}")
    return value


def _event(raw, where: str) -> BeaconEvent:
    if not isinstance(raw, dict):
        raise BeaconError(where, "must be an object")
    kind = _choice(raw.get("type"), f"{where}.type", EVENT_TYPES)
    protocol = _choice(raw.get("protocol"), f"{where}.protocol", PROTOCOLS)
    fields = _EVENT_FIELDS[kind]
    unknown = sorted(set(raw) - {"type", "protocol", *fields})
    if unknown:
        raise BeaconError(f"{where}.{unknown[0]}", f"is not a field of a {kind} event")
    value, label = 0, ""
    for name, rule in fields.items():
        if name not in raw:
            raise BeaconError(f"{where}.{name}", "is required")
        if isinstance(rule[0], int):
            value = _integer(raw[name], f"{where}.{name}", *rule)
        else:
            label = _choice(raw[name], f"{where}.{name}", rule)
    return BeaconEvent(kind, protocol, value, label)


def parse_beacon(body: bytes) -> PlayerBeacon:
    """A beacon's body, validated; raises BeaconError naming the field."""
    if len(body) > MAX_BEACON_BYTES:
        raise BeaconError("body", f"must be at most {MAX_BEACON_BYTES} bytes")
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BeaconError("body", f"is not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise BeaconError("body", "must be a JSON object")
    unknown = sorted(set(raw) - {"v", "session", "events"})
    if unknown:
        raise BeaconError(unknown[0], "is not a field of a beacon")
    if raw.get("v") != BEACON_VERSION or isinstance(raw.get("v"), bool):
        raise BeaconError("v", f"must be {BEACON_VERSION}")
    session = raw.get("session")
    if not isinstance(session, str) or not _SESSION_RE.match(session):
        raise BeaconError("session", "must be 8 to 64 letters, digits, '-' or '_'")
    events = raw.get("events")
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_BEACON_EVENTS:
        raise BeaconError("events", f"must be a list of 1 to {MAX_BEACON_EVENTS} events")
    return PlayerBeacon(session, tuple(_event(e, f"events[{i}]") for i, e in enumerate(events)))


# --- Regions --------------------------------------------------------------------------

REGION_LOCAL = "local"
REGION_UNKNOWN = "unknown"
# Rows of a region table: a country's allocations run to some thousands.
MAX_REGION_ROWS = 200_000
_REGION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.:/-]{0,63}$")
# Loopback, private, link-local and unique-local ranges: a viewer on the
# same machine or network as the node.
DEFAULT_REGION_ROWS = (
    ("127.0.0.0/8", REGION_LOCAL),
    ("10.0.0.0/8", REGION_LOCAL),
    ("172.16.0.0/12", REGION_LOCAL),
    ("192.168.0.0/16", REGION_LOCAL),
    ("169.254.0.0/16", REGION_LOCAL),
    ("100.64.0.0/10", REGION_LOCAL),
    ("::1/128", REGION_LOCAL),
    ("fc00::/7", REGION_LOCAL),
    ("fe80::/10", REGION_LOCAL),
)


class RegionTableError(ValueError):
    pass


class RegionTable:
    """IP networks to region names, matched by longest prefix: one dict
    lookup per prefix length present, longest first (at most 33 for IPv4,
    129 for IPv6), whatever the table's size."""

    def __init__(self, rows=DEFAULT_REGION_ROWS) -> None:
        # version -> prefix length -> network address as an int -> region
        self._tables: dict[int, dict[int, dict[int, str]]] = {4: {}, 6: {}}
        for count, (cidr, region) in enumerate(rows, 1):
            if count > MAX_REGION_ROWS:
                raise RegionTableError(f"at most {MAX_REGION_ROWS} rows")
            network = ipaddress.ip_network(cidr, strict=False)
            self._tables[network.version].setdefault(network.prefixlen, {})[int(network.network_address)] = region
        self._lengths = {v: sorted(t, reverse=True) for v, t in self._tables.items()}

    @classmethod
    def parse(cls, text: str, source: str = "the region table") -> RegionTable:
        """`CIDR,region` lines; blank lines and `#` comments are skipped.
        An error names the line."""
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            cidr, _, region = (part.strip() for part in line.partition(","))
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise RegionTableError(f"{source} line {number}: {cidr!r} is not an IP network (CIDR)") from None
            if not _REGION_RE.match(region):
                raise RegionTableError(
                    f"{source} line {number}: the region must be 1-64 letters, digits, spaces or _.:/- "
                    "after the network and a comma"
                )
            rows.append((cidr, region))
        return cls(rows)

    def lookup(self, address: str) -> str:
        ip = _address(address)
        if ip is None:
            return REGION_UNKNOWN
        bits = ip.max_prefixlen
        value = int(ip)
        tables = self._tables[ip.version]
        for length in self._lengths[ip.version]:
            region = tables[length].get(value >> (bits - length) << (bits - length))
            if region is not None:
                return region
        return REGION_UNKNOWN


# --- Rate limits ----------------------------------------------------------------------

# Clients and streams whose buckets are kept; past this the least recently
# seen is forgotten (a forgotten client starts again with a full bucket).
MAX_TRACKED_CLIENTS = 10_000
MAX_TRACKED_STREAMS = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """A token bucket per key, `rate` a second up to `burst`, for at most `max_keys` keys."""

    def __init__(self, rate: float, burst: float, max_keys: int) -> None:
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._buckets: OrderedDict[object, _Bucket] = OrderedDict()

    def take(self, key, now: float) -> bool:
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            while len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        self._buckets[key] = bucket
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass(frozen=True, slots=True)
class BeaconLimits:
    # A player sends one beacon every 10 s and one as its page hides; a
    # client (an address: a household, an office behind NAT) may send a
    # burst of 20 and one a second after that.
    client_per_second: float = 1.0
    client_burst: int = 20
    # A stream's viewers together: a thousand viewers' beacons every 10 s.
    stream_per_second: float = 100.0
    stream_burst: int = 500


class BeaconRateLimiter:
    def __init__(self, limits: BeaconLimits = BeaconLimits()) -> None:
        self.clients = TokenBuckets(limits.client_per_second, limits.client_burst, MAX_TRACKED_CLIENTS)
        self.streams = TokenBuckets(limits.stream_per_second, limits.stream_burst, MAX_TRACKED_STREAMS)

    def client_allows(self, address: str, now: float) -> bool:
        return self.clients.take(address, now)

    def stream_allows(self, key: StreamKey, now: float) -> bool:
        return self.streams.take(key, now)


# --- Aggregation ----------------------------------------------------------------------

# Rows (minute, stream, streaming domain, protocol, region) held between
# flushes; a beacon that would open one more is refused (503).
MAX_OPEN_ROWS = 5_000
# Player sessions remembered so that a session counts once per stream and
# protocol however often it starts it again (a player retrying a stream that
# is not live yet): ten thousand viewers each trying a few protocols, about
# 200 bytes each. Past it the least recently seen is forgotten.
MAX_TRACKED_SESSIONS = 50_000
MINUTE_SECONDS = 60


def bucket_index(bounds: tuple[int, ...], value: int) -> int:
    """The histogram bucket of `value`: the first whose upper bound is at least it."""
    return bisect_left(bounds, value)


def histogram_percentile(bounds: tuple[int, ...], counts, q: float) -> int | None:
    """The upper bound of the bucket holding the `q` quantile (0-1); for the
    bucket above the last bound, that bound; None for an empty histogram."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    running = 0
    for index, count in enumerate(counts):
        running += count
        if count and running >= rank:
            return bounds[min(index, len(bounds) - 1)]
    return bounds[-1]


@dataclass(slots=True)
class _Row:
    sessions: int = 0
    ttff_counts: list[int] = field(default_factory=lambda: [0] * (len(TTFF_BUCKETS_MS) + 1))
    stalls: int = 0
    stall_ms: int = 0
    watch_ms: int = 0
    bitrate_switches: int = 0
    fallbacks: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))

    def add(self, event: BeaconEvent) -> None:
        kind = event.type
        if kind == "start":  # a session's first of a stream and protocol (PlaybackAggregator)
            self.sessions += 1
        elif kind == "first_frame":
            self.ttff_counts[bucket_index(TTFF_BUCKETS_MS, event.value)] += 1
        elif kind == "stall":
            self.stalls += 1
            self.stall_ms += event.value
        elif kind == "watch":
            self.watch_ms += event.value
        elif kind == "bitrate_switch":
            self.bitrate_switches += 1
        elif kind == "fallback":
            path = f"{event.protocol}>{event.label}"
            self.fallbacks[path] = self.fallbacks.get(path, 0) + 1
        elif kind == "latency":
            self.latency_counts[bucket_index(LATENCY_BUCKETS_MS, event.value)] += 1
        elif kind == "error":
            self.errors[event.label] = self.errors.get(event.label, 0) + 1


class PlaybackAggregator:
    """Sums beacons' events into PlaybackRows until the next `flush`."""

    def __init__(self, max_rows: int = MAX_OPEN_ROWS, max_sessions: int = MAX_TRACKED_SESSIONS) -> None:
        self.max_rows = max_rows
        self.max_sessions = max_sessions
        self._rows: dict[tuple, _Row] = {}
        # (session, stream, protocol) that have counted, least recently seen first; kept across flushes.
        self._sessions: OrderedDict[tuple, None] = OrderedDict()

    def _new_session(self, session: str, key: StreamKey, protocol: str) -> bool:
        """Whether `session` starts `key` over `protocol` for the first time (as far as remembered)."""
        seen = (session, key, protocol)
        if seen in self._sessions:
            self._sessions.move_to_end(seen)
            return False
        while len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)
        self._sessions[seen] = None
        return True

    def add(self, key: StreamKey, streaming_domain: str, region: str, beacon: PlayerBeacon, now: float) -> bool:
        """Add a beacon's events, received at `now` (Unix seconds); False,
        adding nothing, when they would open more rows than the bound."""
        minute = int(now // MINUTE_SECONDS * MINUTE_SECONDS)
        keys = {(minute, key, streaming_domain, event.protocol, region) for event in beacon.events}
        if len(self._rows) + len(keys - self._rows.keys()) > self.max_rows:
            return False
        for event in beacon.events:
            row_key = (minute, key, streaming_domain, event.protocol, region)
            row = self._rows.get(row_key)
            if row is None:
                row = self._rows[row_key] = _Row()
            if event.type == "start" and not self._new_session(beacon.session, key, event.protocol):
                continue
            row.add(event)
        return True

    def flush(self) -> tuple[PlaybackRow, ...]:
        rows = tuple(
            PlaybackRow(
                minute=minute,
                key=key,
                streaming_domain=streaming_domain,
                protocol=protocol,
                region=region,
                sessions=r.sessions,
                ttff_counts=tuple(r.ttff_counts),
                stalls=r.stalls,
                stall_ms=r.stall_ms,
                watch_ms=r.watch_ms,
                bitrate_switches=r.bitrate_switches,
                fallbacks=dict(r.fallbacks),
                errors=dict(r.errors),
                latency_counts=tuple(r.latency_counts),
            )  # fmt: skip
            for (minute, key, streaming_domain, protocol, region), r in self._rows.items()
        )
        self._rows = {}
        return rows

    def __len__(self) -> int:
        return len(self._rows)
