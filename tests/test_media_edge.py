"""Edges and centers on loopback (edge.py): a stream published on an edge
is relayed to a center and moves to another center when its center stops,
with the publisher still connected; a viewer on an edge gets a stream the
center carries through one shared pull, dropped when no one watches; node
tokens admit nodes and nothing else. The routes come from a fixed router
here (the node registry gives them in a cluster)."""

from __future__ import annotations

import json
import subprocess
import time

from livecenter.media.edge import (
    CLIENT_PARAM,
    MAX_CLIENT_ADDR_CHARS,
    MAX_SESSION_ID_CHARS,
    NODE_PARAM,
    RELAY_TOKEN_PARAM,
    SESSION_PARAM,
    RelayFacts,
    Route,
    is_edge_only,
    node_token,
    relay_facts,
    relayed_by,
)
from livecenter.media.policy import (
    StreamKey,
    StreamPublished,
    StreamSample,
    StreamsSampled,
    StreamUnpublished,
    StreamUpdated,
)
from livecenter.media.stats import NODE_LINK_PROTOCOL
from tests.mediasupport import INGEST, NodeThread, probe_packets, start_publisher

CLUSTER_KEY = b"cluster-key-for-tests"
KEY = StreamKey(INGEST, "live", "cam1")


class FixedRouter:
    """Centers in order of preference; the pull source is whichever of
    them carries the stream."""

    def __init__(self, *centers: NodeThread) -> None:
        self.centers = list(centers)
        self.asked: list[tuple[StreamKey, frozenset]] = []
        self.claims: dict[StreamKey, str] = {}  # the registry's one publisher per stream

    def _route(self, node: NodeThread) -> Route:
        return Route(node.node.config.node_id, "127.0.0.1", node.node.rtmp_port)

    async def relay_route(self, key, avoid):
        self.asked.append((key, frozenset(avoid)))
        for center in self.centers:
            if center.node.config.node_id not in avoid and center.node.rtmp_port is not None:
                return self._route(center)
        return "no center node of region eu-central is up"

    async def claim(self, key, node_id):
        holder = self.claims.setdefault(key, node_id)
        return None if holder == node_id else f"stream is already being published on {holder}"

    async def pull_route(self, key):
        for center in self.centers:
            if center.node.rtmp_port is not None and center.node.hub.is_live(key):
                return self._route(center)
        return None


def center(node_id: str) -> NodeThread:
    return NodeThread(node_id=node_id, roles=frozenset({"center"}), cluster_key=CLUSTER_KEY).start()


def edge(router, node_id: str = "edge-a", **config) -> NodeThread:
    return NodeThread(
        router=router, node_id=node_id, roles=frozenset({"edge"}), cluster_key=CLUSTER_KEY, **config
    ).start()


def relay_state(e: NodeThread, center_id: str) -> dict:
    """The edge's relay state of KEY once it names `center_id`: the center
    has the stream (is live) a moment before the edge hears its publish
    answered and records the route, a moment a loaded machine widens."""

    def relay():
        return e.node.relays.states.get(KEY)

    e.wait_for(lambda: relay() is not None and relay().center == center_id)
    return e.run_sync(lambda: relay().as_dict() if relay() is not None else None)


def _continuous(packets: list[dict]) -> None:
    assert len(packets) > 30, f"only {len(packets)} video packets"
    times = [float(p["dts_time"]) for p in packets]
    steps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(steps) > 0 and max(steps) < 0.1, f"timestamps jump: {min(steps)}..{max(steps)}"


# --- node tokens, pure -------------------------------------------------------------


def test_a_node_token_names_its_node_and_uri_and_expires():
    now = 1_800_000_000
    token = node_token(CLUSTER_KEY, "/live/cam1", "edge-a", now)
    query = {NODE_PARAM: "edge-a", RELAY_TOKEN_PARAM: token}
    assert relayed_by(CLUSTER_KEY, "/live/cam1", query, now) == "edge-a"
    assert relayed_by(CLUSTER_KEY, "/live/cam2", query, now) is None  # another stream
    assert relayed_by(CLUSTER_KEY, "/live/cam1", {**query, NODE_PARAM: "edge-b"}, now) is None
    assert relayed_by(b"another-key", "/live/cam1", query, now) is None
    assert relayed_by(b"", "/live/cam1", query, now) is None  # no key: no node is trusted
    assert relayed_by(CLUSTER_KEY, "/live/cam1", query, now + 301) is None  # expired
    assert relayed_by(CLUSTER_KEY, "/live/cam1", {NODE_PARAM: "edge-a"}, now) is None


def test_a_relay_token_signs_its_publishers_facts():
    now = 1_800_000_000.0
    facts = {SESSION_PARAM: "5e55", CLIENT_PARAM: "198.51.100.7:50001"}
    token = node_token(CLUSTER_KEY, "/live/cam1", "edge-a", now, facts)
    query = {NODE_PARAM: "edge-a", RELAY_TOKEN_PARAM: token, **facts}
    assert relayed_by(CLUSTER_KEY, "/live/cam1", query, now) == "edge-a"
    assert relay_facts(query) == RelayFacts("5e55", "198.51.100.7:50001")
    assert relayed_by(CLUSTER_KEY, "/live/cam1", {**query, SESSION_PARAM: "other"}, now) is None
    assert relayed_by(CLUSTER_KEY, "/live/cam1", {**query, CLIENT_PARAM: "203.0.113.1:1"}, now) is None
    no_facts = {NODE_PARAM: "edge-a", RELAY_TOKEN_PARAM: node_token(CLUSTER_KEY, "/live/cam1", "edge-a", now)}
    assert relayed_by(CLUSTER_KEY, "/live/cam1", {**no_facts, **facts}, now) is None  # facts added to a pull's token
    # Bounded, though signed: a session id or address past the columns' size is no fact.
    assert relay_facts({**facts, SESSION_PARAM: "x" * (MAX_SESSION_ID_CHARS + 1)}) is None
    assert relay_facts({**facts, CLIENT_PARAM: "x" * (MAX_CLIENT_ADDR_CHARS + 1)}) is None
    assert relay_facts({**facts, SESSION_PARAM: "x" * MAX_SESSION_ID_CHARS}) is not None
    assert relay_facts({NODE_PARAM: "edge-a"}) is None


def test_only_a_node_that_is_an_edge_alone_relays_and_pulls():
    assert is_edge_only({"edge"})
    assert not is_edge_only({"center", "edge"})  # make run's node carries every stream itself
    assert not is_edge_only({"center"})


# --- on loopback -------------------------------------------------------------------


def test_an_edge_relays_its_publisher_to_a_center_and_its_viewers_play_either():
    c = center("center-1")
    e = edge(FixedRouter(c))
    publisher = start_publisher(e.publish_url(), seconds=10)
    try:
        assert c.wait_for(lambda: c.node.hub.is_live(KEY)), publisher.stop()
        assert relay_state(e, "center-1")["center"] == "center-1"
        _continuous(probe_packets(c.flv_url(), seconds=3))
        _continuous(probe_packets(e.flv_url(), seconds=3))
        # The center took it as the edge's relay: one publisher, admitted by
        # token, and the same publish as the edge's (its session, its publisher).
        [on_edge] = [event for event in e.sink.events if isinstance(event, StreamPublished)]
        [at_center] = [event for event in c.sink.events if isinstance(event, StreamPublished)]
        assert (on_edge.publish_type, on_edge.center, on_edge.relayed_from) == ("edge", "", "")
        assert (at_center.publish_type, at_center.center, at_center.relayed_from) == ("edge", "center-1", "edge-a")
        assert (at_center.key, at_center.session_id, at_center.client_addr) == (
            KEY, on_edge.session_id, on_edge.client_addr
        )  # fmt: skip
        assert "lc_" not in at_center.publish_url  # the node's token is nobody's to see
        # Each node samples the stream: the edge as the publisher's node, the
        # center as the edge's relay; the relay between them is no viewer.
        edge_sample = sample_of(e, lambda s: s.relay_bitrate_out > 0)
        assert edge_sample.upstream_node == "" and NODE_LINK_PROTOCOL not in edge_sample.viewers
        assert NODE_LINK_PROTOCOL not in edge_sample.bitrate_out
        center_sample = sample_of(c, lambda s: True)
        assert center_sample.upstream_node == "edge-a" and center_sample.session_id == on_edge.session_id
        # The center reports no media info of its own: the edge does.
        assert not any(isinstance(event, StreamUpdated) for event in c.sink.events)
    finally:
        publisher.stop()
        e.stop()
        c.stop()
    ended = [event for event in c.sink.events if isinstance(event, StreamUnpublished)]
    assert [(u.session_id, u.node_id, u.relayed_from) for u in ended] == [(on_edge.session_id, "center-1", "edge-a")]


def sample_of(node: NodeThread, matches) -> StreamSample:
    """The first sample of KEY from `node` that `matches`."""

    def find():
        samples = [s for event in list(node.sink.events) if isinstance(event, StreamsSampled) for s in event.samples]
        return next((s for s in samples if s.key == KEY and matches(s)), None)

    sample = node.wait_for(find)
    assert sample is not None
    return find()


def test_a_relay_moves_to_another_center_when_its_center_stops_and_the_publisher_stays():
    c1, c2 = center("center-1"), center("center-2")
    router = FixedRouter(c1, c2)
    e = edge(router)
    publisher = start_publisher(e.publish_url(), seconds=20)
    try:
        assert c1.wait_for(lambda: c1.node.hub.is_live(KEY)), publisher.stop()
        c1.stop()
        c1.node.rtmp_port = None  # the router's view: center-1 has stopped beating
        assert c2.wait_for(lambda: c2.node.hub.is_live(KEY), timeout=20)
        state = relay_state(e, "center-2")
        assert state["center"] == "center-2" and state["failovers"] == 1, state
        assert publisher.process.poll() is None  # still publishing to the edge
        _continuous(probe_packets(c2.flv_url(), seconds=3))
    finally:
        publisher.stop()
        e.stop()
        c2.stop()


def test_with_no_center_left_the_edge_keeps_the_publisher_and_says_why():
    c = center("center-1")
    router = FixedRouter(c)
    c.stop()
    c.node.rtmp_port = None
    e = edge(router)
    publisher = start_publisher(e.publish_url(), seconds=10)
    try:
        assert e.wait_for(lambda: e.node.relays.states.get(KEY) is not None and e.node.relays.states[KEY].error)
        state = e.run_sync(lambda: e.node.relays.states[KEY].as_dict())
        assert state["center"] == "" and state["error"] == "no center node of region eu-central is up"
        _continuous(probe_packets(e.flv_url(), seconds=3))  # its own viewers still play it
        assert publisher.process.poll() is None
    finally:
        publisher.stop()
        e.stop()


def test_an_edge_pulls_a_stream_once_for_its_viewers_and_drops_it_when_they_leave():
    c = center("center-1")
    e = edge(FixedRouter(c), pull_idle_seconds=1.0)
    publisher = start_publisher(c.publish_url(), seconds=15)
    try:
        assert c.wait_for(lambda: c.node.hub.is_live(KEY)), publisher.stop()
        viewers = [
            subprocess.Popen(["ffprobe", "-v", "error", "-read_intervals", "%+4", "-show_entries",
                              "packet=pts_time", "-of", "csv", e.flv_url()],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(3)
        ]  # fmt: skip
        _continuous(probe_packets(e.flv_url(), seconds=3))
        # One pull for all of them: the center has one subscriber, the edge's link (not a viewer).
        assert c.run_sync(lambda: c.node.hub.stream(KEY).viewers()) == {NODE_LINK_PROTOCOL: 1}
        assert e.run_sync(lambda: e.node.pulls.sources) == {KEY: "center-1"}
        for viewer in viewers:
            viewer.wait(30)
        assert e.wait_for(lambda: not e.node.hub.is_live(KEY), timeout=15)
        assert c.wait_for(lambda: not c.node.hub.stream(KEY).viewers())
    finally:
        publisher.stop()
        e.stop()
        c.stop()


class LaggingRouter(FixedRouter):
    """A router whose view of the cluster lags: the first pull route is none."""

    def __init__(self, *centers: NodeThread) -> None:
        super().__init__(*centers)
        self.pull_routes_asked = 0

    async def pull_route(self, key):
        self.pull_routes_asked += 1
        return None if self.pull_routes_asked == 1 else await super().pull_route(key)


def test_a_first_viewer_on_an_edge_waits_for_the_router_to_learn_where_the_stream_is():
    c = center("center-1")
    router = LaggingRouter(c)
    e = edge(router, play_wait_seconds=10)
    publisher = start_publisher(c.publish_url(), seconds=15)
    try:
        assert c.wait_for(lambda: c.node.hub.is_live(KEY)), publisher.stop()
        _continuous(probe_packets(e.flv_url(), seconds=3))
        assert router.pull_routes_asked == 2
    finally:
        publisher.stop()
        e.stop()
        c.stop()


def test_an_edges_viewers_resume_through_a_pull_from_the_next_center_when_theirs_stops():
    c1, c2 = center("center-1"), center("center-2")
    router = FixedRouter(c1, c2)
    a, b = edge(router, "edge-a"), edge(router, "edge-b")
    publisher = start_publisher(a.publish_url(), seconds=40)
    viewer = None
    try:
        assert c1.wait_for(lambda: c1.node.hub.is_live(KEY)), publisher.stop()
        viewer = subprocess.Popen(
            ["ffprobe", "-v", "error", "-select_streams", "v:0", "-read_intervals", "%+12",
             "-show_entries", "packet=dts_time", "-of", "json", b.flv_url()],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert b.wait_for(lambda: b.node.pulls.sources.get(KEY) == "center-1"), viewer.kill()
        time.sleep(2)  # the viewer plays a while from center-1
        c1.stop()
        c1.node.rtmp_port = None  # the router's view: center-1 has stopped beating
        assert c2.wait_for(lambda: c2.node.hub.is_live(KEY), timeout=20)
        # edge-b's pull ended with center-1; its viewer waits, and it pulls again from center-2.
        assert b.wait_for(lambda: b.node.pulls.sources.get(KEY) == "center-2", timeout=20), viewer.kill()
        out, err = viewer.communicate(timeout=60)
        assert viewer.returncode == 0, err
        packets = json.loads(out)["packets"]
        _continuous(packets)
        # All 12 s of it: the viewer did not end with center-1's stream.
        assert float(packets[-1]["dts_time"]) - float(packets[0]["dts_time"]) > 11
    finally:
        if viewer is not None and viewer.poll() is None:
            viewer.kill()
        publisher.stop()
        for node in (a, b, c2):
            node.stop()


def test_a_second_publisher_on_another_edge_is_refused():
    c = center("center-1")
    router = FixedRouter(c)
    a, b = edge(router, "edge-a"), edge(router, "edge-b")
    publisher = start_publisher(a.publish_url(), seconds=10)
    try:
        assert c.wait_for(lambda: c.node.hub.is_live(KEY)), publisher.stop()
        second = start_publisher(b.publish_url(), seconds=3)
        second.process.wait(30)
        refused = [event for event in b.sink.events if type(event).__name__ == "PublishRefused"]
        assert [r.reason for r in refused] == ["stream is already being published on edge-a"]
        assert publisher.process.poll() is None
    finally:
        publisher.stop()
        for node in (a, b, c):
            node.stop()


def test_a_stream_forbidden_at_the_center_ends_its_publisher_on_the_edge():
    c = center("center-1")
    e = edge(FixedRouter(c))
    publisher = start_publisher(e.publish_url(), seconds=30)
    try:
        assert c.wait_for(lambda: c.node.hub.is_live(KEY)), publisher.stop()
        c.policy.forbidden.add(KEY)
        c.run_sync(c.node.kick, KEY)  # the console's forbid reaches the node carrying the relay
        publisher.process.wait(30)  # the edge kicked its publisher: every center would refuse it
        assert not e.run_sync(lambda: e.node.hub.is_live(KEY))
        assert not c.run_sync(lambda: c.node.hub.is_live(KEY))
    finally:
        publisher.stop()
        e.stop()
        c.stop()


def test_a_publish_with_a_forged_node_token_is_refused():
    c = center("center-1")
    try:
        forged = f"&{NODE_PARAM}=edge-a&{RELAY_TOKEN_PARAM}={int(time.time()) + 60}-00"
        publisher = start_publisher(c.publish_url(key="wrongKey999") + forged, seconds=3)
        publisher.process.wait(30)
        refused = [event for event in c.sink.events if type(event).__name__ == "PublishRefused"]
        assert [(r.stream, r.reason) for r in refused] == [("cam1", "invalid md5hash")]
        assert not c.run_sync(lambda: c.node.hub.is_live(KEY))
    finally:
        c.stop()
