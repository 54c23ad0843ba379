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

Egress alone does not see every cost: at a few hundred kbit/s a viewer
costs the loop per frame and per request more than per bit, and RTS costs
it an Opus encoder per stream (bench/README.md, "bench/soak"). So the node
also watches its event loop: `LoopLagGauge` is fed how late a short timer
fires (LAG_PROBE_SECONDS); while the median lateness over the last
LAG_WINDOW_SECONDS is past `max_loop_lag_ms` the loop is behind on the
viewers it has, and new ones are refused the same way. A median, not the
worst sample: one garbage collection or one slow disk write is not overload.
Once behind, the loop counts as caught up only when the median is back under
LAG_RESUME_FRACTION of the limit, so admission does not flap while the lag
hovers at the limit (each flip letting in a burst of joiners that takes it
past again).

The node's own media workers (recording, snapshots, transcoding) read the
stream like viewers but are never refused: they present a worker token, an
HMAC of the URI under a key the node and the workers share.

Pure: the clock is passed in.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import deque
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


# How often the node measures its loop's lateness, and over how long the
# median is taken.
LAG_PROBE_SECONDS = 0.1
LAG_WINDOW_SECONDS = 3.0
# The default limit: a loop this late on every timer cannot keep LL-HLS's
# 200 ms parts (hls_server.py) on time, let alone RTS.
DEFAULT_MAX_LOOP_LAG_MS = 250.0
# A loop that fell behind is caught up again under this fraction of the
# limit (hysteresis). The soak's joins and leaves move the median by tens of
# ms from one window to the next (bench/README.md, "bench/soak"): a fifth of
# the 250 ms default is past that.
LAG_RESUME_FRACTION = 0.8


class LoopLagGauge:
    """The event loop's lateness: the median of the probes of the last
    `window_seconds`, against `max_loop_lag_ms` (0: not watched). `behind`
    turns on past the limit and off again under `resume_fraction` of it."""

    def __init__(
        self,
        max_loop_lag_ms: float,
        window_seconds: float = LAG_WINDOW_SECONDS,
        resume_fraction: float = LAG_RESUME_FRACTION,
    ) -> None:
        if max_loop_lag_ms < 0:
            raise ValueError("max_loop_lag_ms must be 0 (not watched) or more")
        if not 0 < resume_fraction <= 1:
            raise ValueError("resume_fraction must be more than 0 and at most 1")
        self.max_lag_s = max_loop_lag_ms / 1000
        self.resume_lag_s = self.max_lag_s * resume_fraction
        self.window_seconds = window_seconds
        self.refused = 0
        self.behind = False
        self._samples: deque[tuple[float, float]] = deque()

    @property
    def limited(self) -> bool:
        return self.max_lag_s > 0

    def observe(self, now: float, lag_s: float) -> None:
        """A probe that was due at `now - lag_s` ran at `now`."""
        samples = self._samples
        samples.append((now, max(lag_s, 0.0)))
        while samples and (now - samples[0][0] > self.window_seconds or now < samples[0][0]):
            samples.popleft()
        self._update(now)

    def lag_s(self, now: float) -> float:
        """The median lateness of the window ending at `now` (0 without probes in it)."""
        recent = sorted(lag for at, lag in self._samples if 0 <= now - at <= self.window_seconds)
        return recent[len(recent) // 2] if recent else 0.0

    def worst_s(self, now: float) -> float:
        """The latest probe of the window ending at `now` (0 without probes
        in it): the longest the loop kept a ready timer waiting, where the
        median says how late it usually is."""
        return max((lag for at, lag in self._samples if 0 <= now - at <= self.window_seconds), default=0.0)

    def admit(self, now: float) -> bool:
        if self.limited and self._update(now):
            self.refused += 1
            return False
        return True

    def _update(self, now: float) -> bool:
        """`behind` as of `now`."""
        if self.limited:
            lag = self.lag_s(now)
            self.behind = lag >= self.resume_lag_s if self.behind else lag > self.max_lag_s
        return self.behind


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
