"""What the console shows of the media nodes (the Nodes page and
/api/v1/nodes/): each registered node with its health and load, read from
the registry (registry.py) at `registry.clock()`.

Nodes are the platform's, shared by every operator: each sees every node
and its totals, but the streams a node carries only on the operator's own
domains (staff see them all)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings

from domains.models import Domain
from livecenter.media.cluster import NODE_DOWN_SECONDS, ClusterView, NodeBeat
from monitoring.troubleshoot import EdgeRelay

from . import registry
from .models import Node

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeState:
    node: Node
    up: bool
    # Seconds since its last beat; None if it never beat (or the store forgot it).
    last_beat_age: float | None
    # Its last beat while it is up; None when it is down.
    beat: NodeBeat | None
    # The live streams it carries that the operator may see, sorted.
    visible_streams: tuple[str, ...]
    # Of those, the ones an edge relays to no center, and why.
    relay_errors: dict[str, str]

    @property
    def health(self) -> str:
        return "up" if self.up else "down"

    # For the page, which has no arithmetic.
    @property
    def load_percent(self) -> float | None:
        return self.beat.load * 100 if self.beat is not None else None

    @property
    def mbps_in(self) -> float | None:
        return self.beat.bitrate_in / 1e6 if self.beat is not None else None

    @property
    def mbps_out(self) -> float | None:
        return self.beat.bitrate_out / 1e6 if self.beat is not None else None


@dataclass(frozen=True)
class NodeList:
    nodes: list[NodeState]
    # Why health is unknown (the beat store is unreachable), or "".
    problem: str = ""
    down_after_seconds: float = NODE_DOWN_SECONDS


def _visible(streams: frozenset[str], own: set[str] | None) -> tuple[str, ...]:
    """The keys of `streams` on the `own` domains (None: all of them)."""
    return tuple(sorted(key for key in streams if own is None or key.split("/", 1)[0] in own))


def edge_relay(node_id: str, key: str) -> EdgeRelay | None:
    """The relay of stream `key` on edge `node_id` as its heartbeat tells
    it (for the troubleshooting tool); None while the beats cannot be read."""
    try:
        view = ClusterView(registry.registry().beats([node_id]), registry.clock())
    except registry.STORE_UNREACHABLE as exc:
        log.warning("node heartbeats unreachable: %s", exc)
        return None
    if not view.is_up(node_id):
        return EdgeRelay(False, "")
    return EdgeRelay(True, view.beats[node_id].relay_errors.get(key, ""))


def _gone(row: Node, up: bool, age: float | None, now: float, forget_seconds: float) -> bool:
    """Down for longer than `forget_seconds`: since its last beat, or since
    it started when no beat of it is known."""
    if up:
        return False
    silent = age if age is not None else now - row.started_at.timestamp()
    return silent > forget_seconds


def list_nodes(user) -> NodeList:
    """Every registered node and its state; the ones gone for good
    (LIVECENTER_NODE_FORGET_SECONDS) are forgotten on the way."""
    rows = list(Node.objects.all())
    ids = [row.node_id for row in rows]
    store = registry.registry()
    problem = ""
    try:
        beats = store.beats(ids)
        last = store.last_beats([node_id for node_id in ids if node_id not in beats])
    except registry.STORE_UNREACHABLE as exc:
        log.warning("node heartbeats unreachable: %s", exc)
        beats, last = {}, {}
        problem = f"the node heartbeats cannot be read ({exc}): every node is shown down"
    view = ClusterView(beats, registry.clock())
    own = None if user.is_staff else set(Domain.objects.filter(owner=user).values_list("domain_name", flat=True))
    states = []
    gone = []
    for row in rows:
        up = view.is_up(row.node_id)
        beat = view.beats.get(row.node_id) if up else None
        age = view.age(row.node_id)
        if age is None and row.node_id in last:
            age = max(0.0, view.now - last[row.node_id])
        # Not while the store is unreachable: then every node only looks down.
        if not problem and _gone(row, up, age, view.now, settings.LIVECENTER_NODE_FORGET_SECONDS):
            gone.append(row)
            continue
        visible = _visible(beat.streams, own) if beat else ()
        errors = {key: beat.relay_errors[key] for key in visible if key in beat.relay_errors} if beat else {}
        states.append(NodeState(row, up, age, beat, visible, errors))
    if gone:
        forget_nodes(store, gone)
    return NodeList(states, problem)


def forget_nodes(store, rows: list[Node]) -> None:
    """Remove nodes gone for good from the list (their rows, and what the
    beat store keeps of them)."""
    node_ids = [row.node_id for row in rows]
    for row in rows:
        # Unless it came back meanwhile: it registered again, with its new start.
        Node.objects.filter(pk=row.pk, started_at=row.started_at).delete()
    try:
        store.forget(node_ids)
    except registry.STORE_UNREACHABLE as exc:
        log.warning("could not forget nodes %s in the beat store: %s", ", ".join(node_ids), exc)
    log.info("forgot nodes down for more than %.0f s: %s", settings.LIVECENTER_NODE_FORGET_SECONDS, ", ".join(node_ids))


def tls_reach_notes(ingest: Domain | None, streaming: Domain | None) -> list[str]:
    """What the media nodes' heartbeats say against the https:// and
    rtmps:// URLs of these domains (issue 15): that no node up serves them
    (none advertises the port), or that the nodes serve them on other ports
    than the URLs name (right only behind a balancer that maps them).
    Nothing while no node is up or the beats cannot be read. It stands in
    for domains.services.tls_reach_notes (apps.py)."""

    wanted = []  # (what, the URLs' port, the beat's field, the node setting)
    if streaming is not None and streaming.https_enabled:
        wanted.append(("HTTPS", settings.LIVECENTER_HTTPS_PORT, "https_port", "LIVECENTER_MEDIA_HTTPS_PORT"))
    if (ingest is not None and ingest.https_enabled) or (streaming is not None and streaming.https_enabled):
        wanted.append(("RTMPS", settings.LIVECENTER_RTMPS_PORT, "rtmps_port", "LIVECENTER_MEDIA_RTMPS_PORT"))
    if not wanted:
        return []
    try:
        beats = registry.cluster_view().live_nodes()
    except registry.STORE_UNREACHABLE:
        return []
    notes = []
    for what, port, field, setting in wanted if beats else ():
        served = sorted({getattr(beat, field) for beat in beats} - {None})
        if not served:
            notes.append(f"No media node that is up serves {what} (none advertises a port for it), so the "
                         f"{what.lower()}:// URLs will not connect until one does ({setting}).")  # fmt: skip
        elif served != [port]:
            ports = ", ".join(str(p) for p in served)
            notes.append(f"The media nodes serve {what} on port {ports}; the URLs name {port}: right only behind "
                         f"a load balancer that maps it, else set LIVECENTER_{what}_PORT.")  # fmt: skip
    return notes
