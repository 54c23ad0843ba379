"""Adaptive bitrate for RTS (issue 18): a WHEP viewer of a template group.

**How a viewer asks for it**: the way HLS does (hls_master.py), by naming
the ABR template group where the stream goes: `POST
/{app}/{stream}_{group}.whep?auth_key=…`, signed like any RTS URL over the
path without the suffix, `/{app}/{stream}_{group}`. Its ladder is the
group's renditions (`{stream}_{template}`), lowest bitrate first, with the
stream itself on top, as the master playlist lists them. A plain
`/{app}/{stream}.whep` plays the stream alone, as before.

**Where it starts**: on the top, the stream itself. It is live (the play
waited for it) and its GOP is cached, so the first picture comes at once
and is the best there is; a viewer whose path cannot carry it comes down
within seconds (bitrate.py). The renditions that are not live are asked
for then (node.request_rendition), as the master playlist does, so that
they are there by the time a viewer needs one.

**What it reacts to**: its receiver's REMB estimate and the fraction lost
of its receiver reports (aiortc_compat.on_receiver_feedback), fed to a
`bitrate.RenditionController` whose bitrates are the renditions' measured
ones. On a decision the viewer's video waits for the target rendition's
next keyframe (one is asked for: RtsSource.keyframe_requested), then comes
from that rendition's packet history with its sequence numbers and
timestamps continuing (media.RtsViewer.switched); until then it keeps the
rendition it has, so the picture never stops. Audio stays the stream's.
Only a fast-path viewer switches (its writer is what keeps the RTP
continuous); one on aiortc's sender stays where it started.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass

from ..policy import StreamKey
from ..renditions import rendition_name, split_rendition_name
from .bitrate import RenditionController

log = logging.getLogger(__name__)

# The ladder's measured bitrates are read again at most this often: the
# hub's window (STATS_WINDOW_MS) moves little faster, and RTCP comes about
# once a second per viewer.
MEASURE_INTERVAL_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class AbrLadder:
    """A template group's renditions of one stream, lowest first, the stream
    itself last; `template_ids` are the renditions' (one fewer); `group` is
    the key the viewer's URL named (`{stream}_{group}`)."""

    group: StreamKey
    keys: tuple[StreamKey, ...]
    template_ids: tuple[str, ...]
    nominal_bps: tuple[int, ...]

    @property
    def source(self) -> StreamKey:
        return self.keys[-1]


async def abr_ladder(policy, key: StreamKey) -> AbrLadder | None:
    """The ladder `key` names (`{stream}_{group}` with `group` a template
    group of its ingest domain's app), or None: an ordinary stream."""
    split = split_rendition_name(key.stream)
    lookup = getattr(policy, "rendition_group", None)
    if split is None or lookup is None:
        return None
    source_name, group_id = split
    group = await lookup(key.domain, key.app, group_id)
    if group is None or not group.renditions:
        return None
    specs = sorted(group.renditions, key=lambda spec: spec.video_bitrate_kbps)
    nominal = [spec.video_bitrate_kbps * 1000 for spec in specs]
    # The stream's own bitrate is measured (RtsAbr); until then it is
    # taken as just over the top rendition's.
    nominal.append(nominal[-1] + 1)
    keys = [dataclasses.replace(key, stream=rendition_name(source_name, spec.template_id)) for spec in specs]
    keys.append(dataclasses.replace(key, stream=source_name))
    return AbrLadder(key, tuple(keys), tuple(spec.template_id for spec in specs), tuple(nominal))


def request_renditions(node, ladder: AbrLadder) -> None:
    """Ask for the ladder's renditions that are not live (a transcode each)."""
    for key, template_id in zip(ladder.keys, ladder.template_ids, strict=False):
        if not node.hub.is_live(key):
            node.request_rendition(ladder.source, template_id)


def live_step(target: int, current: int, live: set[int]) -> int:
    """Where a viewer on rendition `current` goes when the controller wants
    `target` and only the renditions in `live` can be sent: the target if
    live, else the live one nearest it on the way from `current`, else
    `current`. Never past the target, and never the other way: a viewer
    sent down because it cannot keep up must not end on a higher rendition
    (the nearest live one can be the top), nor one sent up on a lower."""
    if target in live:
        return target
    if target < current:
        on_the_way = [i for i in live if i <= target]
    else:
        on_the_way = [i for i in live if current < i <= target]
    return max(on_the_way, default=current)


class RtsAbr:
    """One WHEP viewer's adaptive bitrate: its controller and its switches."""

    def __init__(self, service, viewer, ladder: AbrLadder) -> None:
        self.service = service
        self.viewer = viewer
        self.ladder = ladder
        self.controller = RenditionController(ladder.nominal_bps, len(ladder.keys) - 1)
        self._loop = asyncio.get_running_loop()
        self._measured_at: float | None = None

    @property
    def rendition(self) -> StreamKey:
        """The rendition the viewer gets now."""
        return self.viewer.video_source.key

    def on_estimate(self, bps: int) -> None:
        now = self._measure()
        self._apply(self.controller.on_estimate(bps, now))

    def on_loss(self, fraction_lost: float) -> None:
        now = self._measure()
        self._apply(self.controller.on_loss(fraction_lost, now))

    def _measure(self) -> float:
        now = self._loop.time()
        if self._measured_at is None or now - self._measured_at >= MEASURE_INTERVAL_SECONDS:
            self._measured_at = now
            hub = self.service.node.hub
            measured = []
            for key, nominal in zip(self.ladder.keys, self.ladder.nominal_bps, strict=True):
                stream = hub.stream(key)
                bps = stream.video_bitrate if stream is not None else 0.0
                measured.append(round(bps) if bps > 0 else nominal)
            self.controller.update_bitrates(tuple(measured))
        return now

    def _apply(self, index: int) -> None:
        viewer = self.viewer
        if viewer.video.fast is None or viewer.source.closed:
            return
        keys = self.ladder.keys
        node = self.service.node
        if not node.hub.is_live(keys[index]):
            # Not live (an on-demand rendition stopped, or not started yet):
            # asked for again, and meanwhile a live one on the way there.
            if index < len(self.ladder.template_ids):
                node.request_rendition(self.ladder.source, self.ladder.template_ids[index])
            live = {i for i, key in enumerate(keys) if node.hub.is_live(key)}
            current = keys.index(viewer.video_source.key) if viewer.video_source.key in keys else len(keys) - 1
            index = self.controller.index = live_step(index, current, live)
        key = keys[index]
        pending = viewer.switching_to
        if pending is not None and pending.key == key:
            return
        if viewer.video_source.key == key:
            target = viewer.video_source
        elif key == viewer.source.key:
            target = viewer.source
        else:
            target = self.service.source(key)
        if target is not viewer.video_source:
            controller = self.controller
            log.info("rts %s: viewer on %s switching to %s (estimate %s bit/s, %.0f %% lost, %d probes)",
                     viewer.source.key, viewer.video_source.key.stream, key.stream, round(controller.estimate_bps or 0),
                     controller.loss * 100, controller.probes)  # fmt: skip
        viewer.switch_video(target)
