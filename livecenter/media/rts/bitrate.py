"""Which rendition of an ABR group an RTS viewer should get (issue 18): the
decision, from what the viewer's receiver tells the node about its network.

A WHEP viewer of a stream with a template group (hls_master.py's renditions,
ordered by bitrate) starts on one rendition. Its browser reports, over RTCP,
an estimate of the bandwidth it can take (REMB, or what transport-wide
congestion control feedback works out to) and the fraction of packets it
lost (receiver reports). `RenditionController` turns those into the index of
the rendition it should get:

- **Down** when the estimate has stayed below what the current rendition
  needs (its bitrate times DOWN_MARGIN) for DOWN_HOLD_SECONDS, having
  fallen there (or not risen since the first estimate or the last switch),
  or loss has stayed above HIGH_LOSS that long: straight to
  the highest rendition the estimate carries with HEADROOM to spare (the
  lowest if none; one step when only loss says so), because a viewer that
  cannot keep up stalls now. "Fallen": a receiver's estimate (GCC's AIMD,
  the REMB of Chromium and aiortc alike) only ever goes down when it saw
  queues grow (over-use, or loss), and climbs a few per cent a second
  (a REMB every half second) while the path has room, as after a switch
  up; an estimate below the rendition that is climbing says nothing yet,
  one that fell there or stays there says the path is full. A receiver
  sends the same REMB again while its estimate does not move, so an
  estimate unchanged for TREND_SECONDS has no trend any more: "stays".
  (Without that, the last change ruled for ever: a viewer whose estimate
  last fell a little, then held well above its rendition, never probed
  up again, and one whose estimate last rose, then held below its
  rendition, was never seen behind.)
- **Up** one rendition at a time, when the estimate has carried the next one
  with UP_MARGIN to spare, and loss stayed under LOW_LOSS, for
  UP_HOLD_SECONDS: cautiously, since a wrong step up costs a stall.
- **Probe up**: a receiver-side estimate never says much more than what it
  receives (aiortc caps it at 1.5 times its throughput), so on a low
  rendition it cannot show the room for a much higher one. A viewer that
  has been healthy (no fall, loss under LOW_LOSS) for its probe wait
  (PROBE_HOLD_SECONDS) tries the next rendition up; if it comes down again
  within PROBE_FAILED_SECONDS the wait doubles (up to
  PROBE_MAX_HOLD_SECONDS), and a probe that holds resets it.
- Not again within SWITCH_COOLDOWN_SECONDS of the last switch, so a viewer
  on the edge of two renditions does not flap.

`bitrates` start as the renditions' nominal bitrates; the caller may put
the measured ones in (`update_bitrates`), since an encoder seldom makes
exactly what its template asks.

The switch itself happens at the new rendition's next keyframe, with the
viewer's RTP sequence and timestamps continuing (fastpath.RtpWriter
switch_source): no new connection and no black frame.

Pure: no I/O; the clock is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# A rendition needs its bitrate times this to be kept; below it (having
# fallen there) the viewer is behind. Under 1: GCC answers a lone over-use
# (a scheduling hiccup of a loaded machine) with 0.85 times its throughput
# for a second or two; a full path takes it well below.
DOWN_MARGIN = 0.8
# Going down: the highest rendition whose bitrate times this fits the estimate.
HEADROOM = 1.15
# Going up: the next rendition's bitrate times this must fit the estimate.
UP_MARGIN = 1.3
DOWN_HOLD_SECONDS = 1.0
UP_HOLD_SECONDS = 5.0
SWITCH_COOLDOWN_SECONDS = 3.0
PROBE_HOLD_SECONDS = 8.0
PROBE_MAX_HOLD_SECONDS = 64.0
# A probe's rendition left within this is a failed probe: a full path shows
# within SWITCH_COOLDOWN_SECONDS and DOWN_HOLD_SECONDS.
PROBE_FAILED_SECONDS = 6.0
# An estimate that has not changed for this long neither climbs nor falls:
# a climbing GCC moves every REMB (about two a second).
TREND_SECONDS = 2.0
# Fractions of packets lost (RFC 3550 6.4.1's fraction lost, 0..1).
HIGH_LOSS = 0.10
LOW_LOSS = 0.02


@dataclass
class RenditionController:
    """One viewer's rendition choice. `bitrates` are the group's renditions'
    bits per second, lowest first; `index` is the one the viewer gets now."""

    bitrates: tuple[int, ...]
    index: int
    estimate_bps: float | None = None
    loss: float = 0.0
    switches: int = 0
    probes: int = 0  # switches up on a probe (not on the estimate)
    probe_hold: float = PROBE_HOLD_SECONDS
    # The estimate's last change: -1 down, +1 up, 0 none yet (a first
    # estimate below the rendition counts: nothing says it is climbing).
    _trend: int = field(default=0, repr=False)
    _changed_at: float | None = field(default=None, repr=False)  # the estimate's last change
    _behind_since: float | None = field(default=None, repr=False)
    _ahead_since: float | None = field(default=None, repr=False)
    _healthy_since: float | None = field(default=None, repr=False)
    _last_switch: float | None = field(default=None, repr=False)
    _probed_at: float | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.bitrates or list(self.bitrates) != sorted(self.bitrates):
            raise ValueError("bitrates must be the renditions' bitrates, lowest first")
        if not 0 <= self.index < len(self.bitrates):
            raise ValueError(f"index must be 0-{len(self.bitrates) - 1}, not {self.index}")

    def update_bitrates(self, bitrates: tuple[int, ...]) -> None:
        """The renditions' bitrates as measured, in the ladder's order (one
        per rendition; not necessarily sorted, the ladder's order stays)."""
        if len(bitrates) != len(self.bitrates) or min(bitrates) <= 0:
            raise ValueError(f"bitrates must be {len(self.bitrates)} positive numbers")
        self.bitrates = tuple(bitrates)

    def on_estimate(self, bps: float, now: float) -> int:
        """A bandwidth estimate (REMB, congestion control); the rendition to get."""
        if self.estimate_bps is not None and bps != self.estimate_bps:
            self._trend = -1 if bps < self.estimate_bps else 1
            self._changed_at = now
        self.estimate_bps = bps
        return self.decide(now)

    def on_loss(self, fraction_lost: float, now: float) -> int:
        """A receiver report's fraction lost (0..1); the rendition to get."""
        self.loss = min(max(fraction_lost, 0.0), 1.0)
        return self.decide(now)

    def decide(self, now: float) -> int:
        if self._trend and now - self._changed_at >= TREND_SECONDS:
            self._trend = 0  # it stays where it is
        estimate = self.estimate_bps
        behind = self.loss > HIGH_LOSS or (
            estimate is not None and self._trend <= 0 and estimate < self.bitrates[self.index] * DOWN_MARGIN
        )
        upper = self.index + 1
        healthy = not behind and self._trend >= 0 and self.loss < LOW_LOSS and upper < len(self.bitrates)
        ahead = healthy and estimate is not None and estimate >= self.bitrates[upper] * UP_MARGIN
        self._behind_since = _since(self._behind_since, behind, now)
        self._ahead_since = _since(self._ahead_since, ahead, now)
        self._healthy_since = _since(self._healthy_since, healthy, now)
        if self._probed_at is not None and now - self._probed_at >= PROBE_FAILED_SECONDS:
            self._probed_at = None  # the probe held
            self.probe_hold = PROBE_HOLD_SECONDS
        if self._last_switch is not None and now - self._last_switch < SWITCH_COOLDOWN_SECONDS:
            return self.index
        if behind and self.index > 0 and now - self._behind_since >= DOWN_HOLD_SECONDS:
            if self._probed_at is not None:  # the probe failed: wait longer for the next
                self._probed_at = None
                self.probe_hold = min(self.probe_hold * 2, PROBE_MAX_HOLD_SECONDS)
            self._switch(self._fitting(), now)
        elif ahead and now - self._ahead_since >= UP_HOLD_SECONDS:
            self._switch(upper, now)
        elif healthy and now - self._healthy_since >= self.probe_hold:
            self.probes += 1
            self._switch(upper, now)
            self._probed_at = now
        return self.index

    def _fitting(self) -> int:
        """The highest rendition below the current one that the estimate carries with headroom."""
        estimate = self.estimate_bps
        if estimate is None:
            return self.index - 1  # loss alone says nothing of how far: one step
        for index in range(self.index - 1, -1, -1):
            if self.bitrates[index] * HEADROOM <= estimate:
                return index
        return 0

    def _switch(self, index: int, now: float) -> None:
        if index == self.index:
            return
        self.index = index
        self.switches += 1
        self._last_switch = now
        self._behind_since = self._ahead_since = self._healthy_since = None
        # The estimate so far was of the other rendition's flow: whether the
        # path takes this one shows in how it moves from here.
        self._trend = 0


def _since(since: float | None, condition: bool, now: float) -> float | None:
    """When `condition` started to hold (kept while it holds), or None."""
    if not condition:
        return None
    return since if since is not None else now
