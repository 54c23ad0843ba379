"""How many viewers a media node takes before it refuses new ones (issue 11,
graceful overload).

Past saturation every viewer of a node slows together (bench/fanout): the
loop cannot write every viewer's frames in time, so all of them stall. A
node with a capacity refuses the viewer that would take it there instead
(HTTP 503, RTMP `NetStream.Play.Failed`), and the viewers it has keep their
frame rate.

The cost model is egress in Mbit/s: a viewer costs its stream's measured
bitrate. FLV, RTMP and HLS viewers cost that (one shared buffer written to a
socket); an RTS viewer costs RTS_COST_WEIGHT times as much, for the CPU of
its own SRTP encryption and RTP packets per frame. A node is full once its
load reaches `max_egress_mbps`; the viewer admitted just under it may take it
past by one viewer's cost.

The node's own media workers (recording, snapshots, transcoding) read the
stream like viewers but are never refused: they present a worker token, an
HMAC of the URI under a key the node and the workers share.

Pure: the clock is passed in.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping

# Measured with bench/fanout on this machine class (2 cores, loopback, one
# 2 Mbit/s stream): bench/README.md, "Graceful overload".
DEFAULT_MAX_EGRESS_MBPS = 5000.0
# An RTS (WebRTC) viewer's cost relative to an FLV viewer of the same stream:
# aiortc encrypts and packetises per viewer (bench/README.md: about 1,000 RTS
# viewers a core against tens of thousands of FLV ones).
RTS_COST_WEIGHT = 30.0
# What a viewer of a stream whose bitrate is not measured yet (it just went
# live, or is not live yet) is counted at: DESIGN.md's reference stream.
UNMEASURED_BITRATE_BPS = 2_000_000
# How long a measured load is reused, adding each viewer admitted since:
# measuring walks every subscription of every stream.
LOAD_RECHECK_SECONDS = 1.0
REFUSAL_AT_CAPACITY = "media node at capacity"
# The query parameter a media worker's URL carries its token in.
WORKER_TOKEN_PARAM = "lc_worker"


def protocol_weight(protocol: str) -> float:
    return RTS_COST_WEIGHT if protocol == "rts" else 1.0


def viewer_cost_bps(protocol: str, bitrate_bps: float) -> float:
    return (bitrate_bps if bitrate_bps > 0 else UNMEASURED_BITRATE_BPS) * protocol_weight(protocol)


def egress_bps(streams: Iterable[tuple[float, Mapping[str, int]]]) -> float:
    """The load of streams given as (bitrate in bit/s, viewers by protocol)."""
    total = 0.0
    for bitrate, viewers in streams:
        for protocol, count in viewers.items():
            total += count * viewer_cost_bps(protocol, bitrate)
    return total


class EgressGauge:
    """The node's load against its capacity, measured at most once per
    LOAD_RECHECK_SECONDS; viewers admitted in between are added to it, so
    a burst of joiners cannot all slip in under one stale reading."""

    def __init__(self, max_egress_mbps: float, recheck_seconds: float = LOAD_RECHECK_SECONDS) -> None:
        if max_egress_mbps < 0:
            raise ValueError("max_egress_mbps must be 0 (no limit) or more")
        self.max_bps = max_egress_mbps * 1e6
        self.recheck_seconds = recheck_seconds
        self.load_bps = 0.0
        self.refused = 0
        self._measured_at: float | None = None

    @property
    def limited(self) -> bool:
        return self.max_bps > 0

    def admit(self, now: float, protocol: str, bitrate_bps: float, measure: Callable[[], float]) -> bool:
        """Whether a new viewer of `protocol` on a stream of `bitrate_bps`
        may join; `measure()` is the node's load in bit/s now."""
        if not self.limited:
            return True
        if self._measured_at is None or now - self._measured_at >= self.recheck_seconds or now < self._measured_at:
            self.load_bps = measure()
            self._measured_at = now
        if self.load_bps >= self.max_bps:
            self.refused += 1
            return False
        self.load_bps += viewer_cost_bps(protocol, bitrate_bps)
        return True


def worker_token(key: bytes, uri: str, expires: int) -> str:
    """`{expires}-{mac}`: lets a media worker read `uri` past the capacity until `expires` (Unix seconds)."""
    return f"{expires}-{_mac(key, uri, expires)}"


def is_worker(key: bytes, uri: str, token: str | None, now: float) -> bool:
    if not key or not token:
        return False
    expires, _, mac = token.partition("-")
    if not expires.isdigit() or int(expires) < now:
        return False
    return hmac.compare_digest(mac, _mac(key, uri, int(expires)))


def _mac(key: bytes, uri: str, expires: int) -> str:
    return hmac.new(key, f"{uri}-{expires}".encode(), hashlib.sha256).hexdigest()[:32]
