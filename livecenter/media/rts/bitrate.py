"""Which rendition of an ABR group an RTS viewer should get (issue 18): the
decision, from what the viewer's receiver tells the node about its network.

A WHEP viewer of a stream with a template group (hls_master.py's renditions,
ordered by bitrate) starts on one rendition. Its browser reports, over RTCP,
an estimate of the bandwidth it can take (REMB, or what transport-wide
congestion control feedback works out to) and the fraction of packets it
lost (receiver reports). `RenditionController` turns those into the index of
the rendition it should get:

- **Down** when the estimate has stayed below what the current rendition
  needs (its bitrate times DOWN_MARGIN) for DOWN_HOLD_SECONDS, or loss has
  stayed above HIGH_LOSS that long: straight to the highest rendition the
  estimate carries with HEADROOM to spare (the lowest if none; one step
  when only loss says so), because a viewer that cannot keep up stalls now.
- **Up** one rendition at a time, when the estimate has carried the next one
  with UP_MARGIN to spare, and loss stayed under LOW_LOSS, for
  UP_HOLD_SECONDS: cautiously, since a wrong step up costs a stall.
- Not again within SWITCH_COOLDOWN_SECONDS of the last switch, so a viewer
  on the edge of two renditions does not flap.

The switch itself happens at the new rendition's next keyframe, with the
viewer's RTP sequence and timestamps continuing (fastpath.RtpWriter
switch_source): no new connection and no black frame.

Pure: no I/O; the clock is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# A rendition needs its bitrate times this to be kept; below it the viewer is behind.
DOWN_MARGIN = 1.0
# Going down: the highest rendition whose bitrate times this fits the estimate.
HEADROOM = 1.15
# Going up: the next rendition's bitrate times this must fit the estimate.
UP_MARGIN = 1.3
DOWN_HOLD_SECONDS = 1.0
UP_HOLD_SECONDS = 5.0
SWITCH_COOLDOWN_SECONDS = 3.0
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
    _behind_since: float | None = field(default=None, repr=False)
    _ahead_since: float | None = field(default=None, repr=False)
    _last_switch: float | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.bitrates or list(self.bitrates) != sorted(self.bitrates):
            raise ValueError("bitrates must be the renditions' bitrates, lowest first")
        if not 0 <= self.index < len(self.bitrates):
            raise ValueError(f"index must be 0-{len(self.bitrates) - 1}, not {self.index}")

    def on_estimate(self, bps: float, now: float) -> int:
        """A bandwidth estimate (REMB, congestion control); the rendition to get."""
        self.estimate_bps = bps
        return self.decide(now)

    def on_loss(self, fraction_lost: float, now: float) -> int:
        """A receiver report's fraction lost (0..1); the rendition to get."""
        self.loss = min(max(fraction_lost, 0.0), 1.0)
        return self.decide(now)

    def decide(self, now: float) -> int:
        behind = self.loss > HIGH_LOSS or (
            self.estimate_bps is not None and self.estimate_bps < self.bitrates[self.index] * DOWN_MARGIN
        )
        upper = self.index + 1
        ahead = (
            upper < len(self.bitrates)
            and self.loss < LOW_LOSS
            and self.estimate_bps is not None
            and self.estimate_bps >= self.bitrates[upper] * UP_MARGIN
        )
        self._behind_since = (self._behind_since if self._behind_since is not None else now) if behind else None
        self._ahead_since = (self._ahead_since if self._ahead_since is not None else now) if ahead else None
        if self._last_switch is not None and now - self._last_switch < SWITCH_COOLDOWN_SECONDS:
            return self.index
        if behind and self.index > 0 and now - self._behind_since >= DOWN_HOLD_SECONDS:
            self._switch(self._fitting(), now)
        elif ahead and now - self._ahead_since >= UP_HOLD_SECONDS:
            self._switch(upper, now)
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
        self._behind_since = self._ahead_since = None
