"""livecenter/media/cluster.py: heartbeats and the routing decisions of the
edge relay and the edge pull, on a fake registry and a fake clock."""

from __future__ import annotations

import dataclasses

import pytest

from livecenter.media.cluster import (
    ANY_REGION,
    CENTER,
    EDGE,
    MAX_BEAT_STREAMS,
    NODE_DOWN_SECONDS,
    BadNodeBeat,
    CenterAssignments,
    ClusterView,
    NodeBeat,
    choose_center,
    pull_source,
)

T0 = 1_800_000_000.0
FRANKFURT = "eu-central-1"
SINGAPORE = "ap-southeast-1"


def beat(node_id: str, role: str = CENTER, region: str = FRANKFURT, *, at: float = T0, **figures) -> NodeBeat:
    roles = frozenset({CENTER, EDGE}) if role == "both" else frozenset({role})
    return NodeBeat(node_id, roles, region, f"10.0.0.{len(node_id)}", 1935, 8080, 1105, at, **figures)


class FakeRegistry:
    """The store's side of the interface: the latest beat of each node."""

    def __init__(self, *beats: NodeBeat) -> None:
        self.latest = {b.node_id: b for b in beats}

    def beat(self, b: NodeBeat) -> None:
        self.latest[b.node_id] = b

    def beats(self):
        return self.latest


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def view(registry: FakeRegistry, clock: FakeClock) -> ClusterView:
    return ClusterView.read(registry, clock.now)


# --- beats -----------------------------------------------------------------------------------


def test_it_round_trips_a_beat():
    b = beat("c1", "both", ANY_REGION, streams=frozenset({"push.example.com/live/cam1"}), viewers=3,
             bitrate_in=2e6, bitrate_out=6e6, loop_lag_ms=1.5, load=0.25, started_at=T0 - 60,
             relay_errors={"push.example.com/live/cam1": "no center node of live center X is up"},
             https_port=443, rtmps_port=1936, listen_host="0.0.0.0")  # fmt: skip
    assert NodeBeat.from_json(b.to_json()) == b
    # A beat of a node that predates the field: where it listens is not known.
    older = {k: v for k, v in b.to_json().items() if k != "listen_host"}
    assert NodeBeat.from_json(older).listen_host == ""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"roles": ["relay"]}, "roles: must be a non-empty list of center, edge"),
        ({"roles": []}, "roles: must be a non-empty list of center, edge"),
        ({"node_id": ""}, "node_id: must be a string of 1 to 255 characters"),
        ({"node_id": "n" * 256}, "node_id: must be a string of 1 to 255 characters"),
        ({"rtmp_port": 0}, "rtmp_port: must be a port number, 1 to 65535"),
        ({"srt_port": 70000}, "srt_port: must be a port number, 1 to 65535"),
        ({"https_port": 0}, "https_port: must be a port number, 1 to 65535"),
        ({"rtmps_port": "1936"}, "rtmps_port: must be a port number, 1 to 65535"),
        ({"listen_host": None}, "listen_host: must be a string of 0 to 255 characters"),
        ({"at": "yesterday"}, "at: must be a finite number, 0 or more"),
        ({"load": float("nan")}, "load: must be a finite number, 0 or more"),
        ({"viewers": -1}, "viewers: must be a finite number, 0 or more"),
        ({"streams": [1]}, "streams: every key must be a string"),
        ({"relay_errors": ["d/a/s"]}, "relay_errors: must be an object of at most 10000 streams"),
        (
            {"relay_errors": {"d/a/s": "x" * 256}},
            "relay_errors: every reason must be a string of at most 255 characters",
        ),  # fmt: skip
        (
            {"streams": ["d/a/s"] * (MAX_BEAT_STREAMS + 1)},
            f"streams: must be a list of at most {MAX_BEAT_STREAMS} keys",
        ),
    ],
)
def test_it_refuses_a_malformed_beat_naming_the_field(change, message):
    data = {**beat("c1").to_json(), **change}
    with pytest.raises(BadNodeBeat) as caught:
        NodeBeat.from_json(data)
    assert str(caught.value) == message


def test_it_takes_a_beat_at_the_stream_limit():
    data = {**beat("c1").to_json(), "streams": [f"d/a/s{i}" for i in range(MAX_BEAT_STREAMS)]}
    assert len(NodeBeat.from_json(data).streams) == MAX_BEAT_STREAMS


def test_it_refuses_what_is_not_an_object():
    with pytest.raises(BadNodeBeat, match="beat: not an object"):
        NodeBeat.from_json(["c1"])


# --- the view: who is up ---------------------------------------------------------------------


def test_it_marks_a_node_down_once_its_beat_is_older_than_the_limit():
    registry, clock = FakeRegistry(beat("c1"), beat("e1", EDGE)), FakeClock()
    assert [b.node_id for b in view(registry, clock).live_nodes()] == ["c1", "e1"]
    clock.advance(NODE_DOWN_SECONDS)
    registry.beat(beat("e1", EDGE, at=clock.now))  # e1 beats on, c1 has stopped
    assert view(registry, clock).is_up("c1")  # at the limit: still up
    clock.advance(0.5)
    current = view(registry, clock)
    assert current.is_down("c1") and current.is_up("e1")
    assert current.age("c1") == NODE_DOWN_SECONDS + 0.5
    assert [b.node_id for b in current.live_nodes()] == ["e1"]
    assert current.is_down("never-seen") and current.age("never-seen") is None


def test_it_lists_the_nodes_of_a_role_in_a_region():
    registry = FakeRegistry(
        beat("c-fra", CENTER, FRANKFURT),
        beat("c-sin", CENTER, SINGAPORE),
        beat("e-fra", EDGE, FRANKFURT),
        beat("alone", "both", ANY_REGION),
    )
    current = view(registry, FakeClock())
    assert [b.node_id for b in current.nodes(CENTER, FRANKFURT)] == ["alone", "c-fra"]
    assert [b.node_id for b in current.nodes(EDGE, SINGAPORE)] == ["alone"]
    assert [b.node_id for b in current.nodes(EDGE)] == ["alone", "e-fra"]


# --- which center ----------------------------------------------------------------------------


def test_it_relays_a_new_stream_to_the_least_loaded_center_of_the_region():
    registry = FakeRegistry(
        beat("c1", load=0.6),
        beat("c2", load=0.2),
        beat("c3", load=0.05, region=SINGAPORE),  # least loaded, but another region
        beat("e1", EDGE, load=0.0),
    )
    route = choose_center(view(registry, FakeClock()), "push.example.com/live/cam1", FRANKFURT)
    assert route.node.node_id == "c2" and route.moved_from is None and route


def test_it_prefers_fewer_streams_among_equally_loaded_centers():
    registry = FakeRegistry(beat("c1", load=0.21, streams=frozenset({"d/a/1", "d/a/2"})), beat("c2", load=0.24))
    assert choose_center(view(registry, FakeClock()), "d/a/3", FRANKFURT).node.node_id == "c2"


def test_it_spreads_streams_over_equal_centers():
    registry = FakeRegistry(*(beat(f"c{i}") for i in range(4)))
    current = view(registry, FakeClock())
    chosen = {choose_center(current, f"d/live/cam{i}", FRANKFURT).node.node_id for i in range(40)}
    assert len(chosen) >= 3
    # and the same stream is sent to the same node every time it asks
    assert len({choose_center(current, "d/live/cam7", FRANKFURT).node.node_id for _ in range(5)}) == 1


def test_it_keeps_a_streams_center_while_it_beats_however_loaded():
    registry, clock = FakeRegistry(beat("c1", load=0.1), beat("c2", load=0.5)), FakeClock()
    assignments = CenterAssignments()
    assert assignments.route(view(registry, clock), "d/a/s", FRANKFURT).node.node_id == "c1"
    clock.advance(1)
    registry.beat(beat("c1", load=0.9, at=clock.now))
    registry.beat(beat("c2", load=0.1, at=clock.now))
    route = assignments.route(view(registry, clock), "d/a/s", FRANKFURT)
    assert route.node.node_id == "c1" and route.moved_from is None
    # a new stream goes to the less loaded one
    assert assignments.route(view(registry, clock), "d/a/other", FRANKFURT).node.node_id == "c2"


def test_it_moves_a_stream_to_another_center_when_its_center_stops_beating():
    registry, clock = FakeRegistry(beat("c1", load=0.1), beat("c2", load=0.5), beat("c3", load=0.7)), FakeClock()
    assignments = CenterAssignments()
    assert assignments.route(view(registry, clock), "d/a/s", FRANKFURT).node.node_id == "c1"
    clock.advance(NODE_DOWN_SECONDS + 1)  # c1 was killed; the others beat on
    registry.beat(beat("c2", load=0.5, at=clock.now))
    registry.beat(beat("c3", load=0.7, at=clock.now))
    route = assignments.route(view(registry, clock), "d/a/s", FRANKFURT)
    assert (route.node.node_id, route.moved_from) == ("c2", "c1")
    # and stays there when c1 comes back
    clock.advance(1)
    for node_id in ("c1", "c2", "c3"):
        registry.beat(beat(node_id, load=0.1 if node_id == "c1" else 0.5, at=clock.now))
    route = assignments.route(view(registry, clock), "d/a/s", FRANKFURT)
    assert (route.node.node_id, route.moved_from) == ("c2", None)


def test_it_says_why_when_no_center_of_the_region_is_left():
    registry, clock = FakeRegistry(beat("c1"), beat("c-sin", region=SINGAPORE)), FakeClock()
    assignments = CenterAssignments()
    assignments.route(view(registry, clock), "d/a/s", FRANKFURT)
    clock.advance(12)
    registry.beat(beat("c-sin", region=SINGAPORE, at=clock.now))
    route = assignments.route(view(registry, clock), "d/a/s", FRANKFURT)
    assert not route and route.node is None and route.moved_from == "c1"
    assert route.reason == "no center node of live center eu-central-1 is up; c1 last beat 12 s ago"
    assert assignments.centers == {"d/a/s": "c1"}  # kept: it is the one to go back to
    fresh = choose_center(view(registry, clock), "d/a/new", FRANKFURT)
    assert fresh.reason == "no center node of live center eu-central-1 is up"


def test_it_moves_a_stream_off_a_center_the_relay_just_failed_on_though_it_beats():
    registry, clock = FakeRegistry(beat("c1", load=0.1), beat("c2", load=0.5)), FakeClock()
    assignments = CenterAssignments()
    assert assignments.route(view(registry, clock), "d/a/s", FRANKFURT).node.node_id == "c1"
    route = assignments.route(view(registry, clock), "d/a/s", FRANKFURT, avoid={"c1"})
    assert (route.node.node_id, route.moved_from) == ("c2", "c1")
    route = assignments.route(view(registry, clock), "d/a/s", FRANKFURT, avoid={"c1", "c2"})
    assert not route
    assert route.reason == "no center node of live center eu-central-1 is up but c1, c2, which failed"


def test_it_forgets_a_stream_whose_publisher_left():
    registry = FakeRegistry(beat("c1"))
    assignments = CenterAssignments()
    assignments.route(view(registry, FakeClock()), "d/a/s", FRANKFURT)
    assignments.release("d/a/s")
    assert assignments.centers == {}


def test_a_node_alone_is_the_center_of_every_region():
    registry = FakeRegistry(beat("alone", "both", ANY_REGION))
    assert choose_center(view(registry, FakeClock()), "d/a/s", SINGAPORE).node.node_id == "alone"


def test_a_sticky_center_that_lost_its_center_role_is_left():
    registry = FakeRegistry(dataclasses.replace(beat("n1"), roles=frozenset({EDGE})), beat("c2"))
    route = choose_center(view(registry, FakeClock()), "d/a/s", FRANKFURT, current="n1")
    assert (route.node.node_id, route.moved_from) == ("c2", "n1")


# --- which node an edge pulls from -----------------------------------------------------------


def test_an_edge_pulls_from_the_center_carrying_the_stream():
    key = "push.example.com/live/cam1"
    registry = FakeRegistry(
        beat("c1"),
        beat("c2", streams=frozenset({key})),
        beat("e1", EDGE, streams=frozenset({key})),  # the edge it was published on
    )
    route = pull_source(view(registry, FakeClock()), key, FRANKFURT, exclude="e2")
    assert route.node.node_id == "c2"


def test_an_edge_pulls_from_the_fresher_carrier_and_its_region_first():
    key = "d/a/s"
    clock = FakeClock(T0 + 2)
    registry = FakeRegistry(
        beat("old", streams=frozenset({key}), at=T0),
        beat("new", streams=frozenset({key}), at=T0 + 1),
        beat("far", region=SINGAPORE, streams=frozenset({key}), at=T0 + 2),
    )
    assert pull_source(view(registry, clock), key, FRANKFURT).node.node_id == "new"
    assert pull_source(view(registry, clock), key, SINGAPORE).node.node_id == "far"


def test_an_edge_finds_nothing_to_pull_when_the_carrier_is_down():
    key = "d/a/s"
    registry, clock = FakeRegistry(beat("c1", streams=frozenset({key})), beat("c2")), FakeClock()
    clock.advance(NODE_DOWN_SECONDS + 1)
    registry.beat(beat("c2", at=clock.now))
    route = pull_source(view(registry, clock), key, FRANKFURT)
    assert route.node is None and route.reason == "d/a/s is not live on any center node that is up"


def test_an_edge_does_not_pull_from_itself():
    key = "d/a/s"
    registry = FakeRegistry(beat("alone", "both", ANY_REGION, streams=frozenset({key})))
    assert not pull_source(view(registry, FakeClock()), key, FRANKFURT, exclude="alone")
