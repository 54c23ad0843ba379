"""An edge relaying over SRT (NodeConfig.relay_protocol = "srt"): the edge
calls the center's SRT port with a node token in the stream ID, the
ingest domain's passphrase and its own latency; the center admits it by
the token like an RTMP relay, and plays it on. Across an impaired link
(tests/netimpair.py: the issue's cross-border link, 150 ms each way and
1 % loss) the relayed stream stays continuous at the default latency."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import time

import pytest

from livecenter.media import edge as edge_module
from livecenter.media.edge import Route, node_token
from livecenter.media.policy import EDGE_PUBLISH, StreamKey, StreamPublished
from livecenter.media.signing import sign
from livecenter.media.srt.events import SrtCallAccepted
from livecenter.media.srt_call import SrtCall, SrtCallFailed
from tests.mediasupport import INGEST, PLAY, PLAY_KEY, NodeThread, default_policy, probe_packets, start_publisher
from tests.netimpair import Impairment, ThreadedImpairmentRelay
from tests.test_media_edge import CLUSTER_KEY, KEY, FixedRouter, _continuous, relay_state

pytestmark = pytest.mark.media

PASSPHRASE = "domain passphrase 1"


class SrtRouter(FixedRouter):
    """The centers with their SRT ports, or the port of a relay in front of one."""

    def __init__(self, *centers: NodeThread, srt_ports: dict[str, int] | None = None) -> None:
        super().__init__(*centers)
        self.srt_ports = srt_ports or {}

    def _route(self, node: NodeThread) -> Route:
        node_id = node.node.config.node_id
        return Route(node_id, "127.0.0.1", node.node.rtmp_port, self.srt_ports.get(node_id, node.node.srt_port))


def secured_policy():
    policy = default_policy()
    policy.domains[INGEST] = dataclasses.replace(policy.domains[INGEST], srt_passphrase=PASSPHRASE)
    return policy


def center(node_id: str = "center-1", policy=None) -> NodeThread:
    return NodeThread(
        policy=policy, node_id=node_id, roles=frozenset({"center"}), cluster_key=CLUSTER_KEY, srt_port=0
    ).start()


def edge(router, policy=None, **config) -> NodeThread:
    return NodeThread(
        policy=policy, router=router, node_id="edge-a", roles=frozenset({"edge"}), cluster_key=CLUSTER_KEY,
        relay_protocol="srt", **config,
    ).start()  # fmt: skip


def center_session(c: NodeThread):
    """The center's SRT connection carrying the relay."""

    def read():
        [publisher] = c.node.srt.publishers.values()
        return publisher, c.node.srt.listener.connections[publisher.socket_id]

    return c.run_sync(read)


def test_an_edge_relays_over_srt_encrypted_with_the_domains_passphrase_and_its_latency():
    c = center(policy=secured_policy())
    e = edge(SrtRouter(c), policy=secured_policy(), relay_srt_latency_ms=300)
    publisher = start_publisher(e.publish_url(), seconds=15)
    try:
        assert c.wait_for(lambda: c.node.hub.is_live(KEY)), publisher.stop()
        assert relay_state(e, "center-1")["center"] == "center-1"
        session, connection = center_session(c)
        assert session.key == KEY
        assert connection.crypto is not None  # the link is encrypted
        assert connection.latency_us == 300_000  # the edge's, larger than the domain's 120 ms
        _continuous(probe_packets(c.flv_url(), seconds=3))
        published = [event for event in c.sink.events if isinstance(event, StreamPublished)]
        assert [(p.key, p.protocol) for p in published] == [(KEY, "srt")]
    finally:
        publisher.stop()
        e.stop()
        c.stop()


def test_a_relay_over_srt_stays_continuous_across_a_cross_border_link():
    c = center()
    link = Impairment(delay_ms=150, loss=0.01)
    relay = ThreadedImpairmentRelay(("127.0.0.1", 0), ("127.0.0.1", c.node.srt_port), up=link, down=link, seed=14)
    relay.start()
    e = edge(SrtRouter(c, srt_ports={"center-1": relay.address[1]}))  # the default latency, 1000 ms
    publisher = start_publisher(e.publish_url(), seconds=30, size="640x360")
    try:
        assert c.wait_for(lambda: c.node.hub.is_live(KEY), timeout=20), publisher.stop()
        _continuous(probe_packets(c.flv_url(), seconds=10, timeout=60))
        _, connection = center_session(c)
        stats = connection.stats
        counters = relay.snapshot()
        assert counters["up"]["dropped"] > 0, counters  # the link lost some
        assert stats.packets_retransmitted > 0 and stats.packets_dropped == 0, stats
        assert connection.latency_us == 1_000_000
    finally:
        publisher.stop()
        e.stop()
        relay.stop()
        c.stop()


def test_a_stream_forbidden_at_the_center_ends_its_publisher_on_an_srt_edge():
    c = center()
    e = edge(SrtRouter(c), relay_srt_latency_ms=120)
    publisher = start_publisher(e.publish_url(), seconds=30)
    try:
        assert c.wait_for(lambda: c.node.hub.is_live(KEY)), publisher.stop()
        c.policy.forbidden.add(KEY)
        c.run_sync(c.node.kick, KEY)
        # The edge calls again, the center refuses with 1403: a verdict.
        publisher.process.wait(30)
        assert not e.run_sync(lambda: e.node.hub.is_live(KEY))
        refused = [event for event in c.sink.events if type(event).__name__ == "PublishRefused"]
        assert {(r.protocol, r.code) for r in refused} == {("srt", 1403)}
    finally:
        publisher.stop()
        e.stop()
        c.stop()


def test_an_srt_publish_with_a_forged_node_token_is_refused_as_unauthorized():
    c = center()
    try:
        uri, expires = "/live/cam1", int(time.time()) + 60
        forged = f"#!::h={INGEST},r={uri}?lc_node=edge-a&lc_relay={expires}-00,m=publish"
        token = node_token(CLUSTER_KEY, uri, "edge-a", time.time())
        good = f"#!::h={INGEST},r={uri}?lc_node=edge-a&lc_relay={token},m=publish"

        async def call(stream_id):
            srt = SrtCall("127.0.0.1", c.node.srt_port, stream_id=stream_id)
            try:
                return await srt.connect()
            except SrtCallFailed as exc:
                return exc
            finally:
                srt.close()

        refused = c.call(call(forged))
        assert isinstance(refused, SrtCallFailed) and refused.reason == 1401, refused
        assert isinstance(c.call(call(good)), SrtCallAccepted)  # the same, signed by a node of the cluster
    finally:
        c.stop()


def test_an_srt_relay_moves_to_another_center_when_its_center_stops_and_the_publisher_stays():
    c1, c2 = center("center-1"), center("center-2")
    router = SrtRouter(c1, c2)
    e = edge(router, relay_srt_latency_ms=120)
    publisher = start_publisher(e.publish_url(), seconds=25)
    try:
        assert c1.wait_for(lambda: c1.node.hub.is_live(KEY)), publisher.stop()
        c1.stop()
        c1.node.rtmp_port = None  # the router's view: center-1 has stopped beating
        assert c2.wait_for(lambda: c2.node.hub.is_live(KEY), timeout=20)
        state = relay_state(e, "center-2")
        assert state["center"] == "center-2" and state["failovers"] == 1, state
        assert publisher.process.poll() is None  # still publishing to the edge
        assert c2.run_sync(lambda: len(c2.node.srt.publishers)) == 1
        _continuous(probe_packets(c2.flv_url(), seconds=3))
    finally:
        publisher.stop()
        e.stop()
        c2.stop()


# --- SRT viewers of an edge: a pull that takes longer than a caller's handshake


def srt_play_url(node: NodeThread) -> str:
    token = sign("/live/cam1", PLAY_KEY, int(time.time()))
    return f"srt://127.0.0.1:{node.node.srt_port}?streamid=#!::h={PLAY},r=/live/cam1?auth_key={token},m=request"


def slow_pulls(monkeypatch, seconds: float) -> None:
    """The edge's pulls connect `seconds` late, as over a long link (a
    cross-border RTT times the TCP, RTMP and play round trips)."""
    real_pull = edge_module.pull

    async def slow_pull(*args, **kwargs):
        await asyncio.sleep(seconds)
        return await real_pull(*args, **kwargs)

    monkeypatch.setattr(edge_module, "pull", slow_pull)


def pulling_edge(c: NodeThread, play_wait_seconds: float) -> NodeThread:
    return NodeThread(router=FixedRouter(c), node_id="edge-b", roles=frozenset({"edge"}), cluster_key=CLUSTER_KEY,
                      srt_port=0, play_wait_seconds=play_wait_seconds).start()  # fmt: skip


def test_a_cold_srt_viewer_on_an_edge_is_accepted_while_the_pull_comes_up(monkeypatch):
    """The caller gives up its handshake after 3 s, the node waits 2 s of
    them for the stream: past that, an edge whose pull of the stream from a
    center is under way accepts the caller, and the stream follows."""
    slow_pulls(monkeypatch, 3.0)
    c = center()
    e = pulling_edge(c, play_wait_seconds=10)
    publisher = start_publisher(c.publish_url(), seconds=30)
    try:
        assert c.wait_for(lambda: c.node.hub.is_live(KEY)), publisher.stop()
        _continuous(probe_packets(srt_play_url(e), seconds=3, timeout=60))
        assert e.run_sync(lambda: e.node.pulls.sources) == {KEY: "center-1"}
    finally:
        publisher.stop()
        e.stop()
        c.stop()


def test_a_cold_srt_viewer_whose_pull_does_not_come_up_within_the_play_wait_is_closed(monkeypatch):
    slow_pulls(monkeypatch, 60.0)
    c = center()
    e = pulling_edge(c, play_wait_seconds=4)
    publisher = start_publisher(c.publish_url(), seconds=30)
    try:
        assert c.wait_for(lambda: c.node.hub.is_live(KEY)), publisher.stop()
        began = time.monotonic()
        viewer = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "packet=pts_time", "-of", "csv",
                                 srt_play_url(e)], capture_output=True, text=True, timeout=60)  # fmt: skip
        assert viewer.returncode != 0 and not viewer.stdout.strip(), viewer
        assert time.monotonic() - began < 30  # closed by the node at its play wait, not by a timeout
        assert e.run_sync(lambda: len(e.node.srt.viewers)) == 0
    finally:
        publisher.stop()
        e.stop()
        c.stop()


def test_an_srt_relay_carries_its_publishers_session_and_address_and_claims_nothing_at_the_center():
    """As an RTMP relay: the center's publish is the edge's publisher's
    session (one session across the link, and across a failover), with the
    publisher's address, of type edge; the claim is the edge's, so a center
    whose router keeps the one-publisher rule takes the relay."""
    router = SrtRouter()  # the cluster's: its claims are the center's and the edge's
    c = NodeThread(router=router, node_id="center-1", roles=frozenset({"center"}), cluster_key=CLUSTER_KEY,
                   srt_port=0).start()  # fmt: skip
    router.centers.append(c)
    e = edge(router, relay_srt_latency_ms=120)
    publisher = start_publisher(e.publish_url(), seconds=20)
    try:
        assert c.wait_for(lambda: c.node.hub.is_live(KEY)), publisher.stop()
        [at_edge] = [ev for ev in e.sink.events if isinstance(ev, StreamPublished)]
        [at_center] = [ev for ev in c.sink.events if isinstance(ev, StreamPublished)]
        assert at_edge.publish_type == EDGE_PUBLISH and at_edge.client_addr.startswith("127.0.0.1:")
        assert (at_center.protocol, at_center.session_id, at_center.client_addr) == (
            "srt", at_edge.session_id, at_edge.client_addr
        )  # fmt: skip
        assert (at_center.publish_type, at_center.relayed_from) == (EDGE_PUBLISH, "edge-a")
        assert router.claims == {KEY: "edge-a"}
        assert c.run_sync(lambda: c.node.published_here()) == []  # the center renews no claim of it
        assert publisher.process.poll() is None
    finally:
        publisher.stop()
        e.stop()
        c.stop()


def test_a_stream_whose_relay_stream_id_would_pass_srts_512_bytes_is_relayed_over_rtmp(monkeypatch):
    # A 253-character domain and a 255-character name would pass 512 bytes
    # with the node token and the facts; the policy here has short domains,
    # so the limit is made smaller instead (a 200-character name's relay
    # stream ID is some 390 bytes).
    monkeypatch.setattr(edge_module, "MAX_STREAM_ID_BYTES", 300)
    stream = "c" * 200
    key = StreamKey(INGEST, "live", stream)
    c = center()
    e = edge(SrtRouter(c), relay_srt_latency_ms=120)
    publisher = start_publisher(e.publish_url(stream=stream), seconds=15)
    try:
        assert c.wait_for(lambda: c.node.hub.is_live(key)), publisher.stop()
        [at_center] = [ev for ev in c.sink.events if isinstance(ev, StreamPublished)]
        assert (at_center.protocol, at_center.relayed_from) == ("rtmp", "edge-a")
        assert e.run_sync(lambda: e.node.relays.states[key].center) == "center-1"
    finally:
        publisher.stop()
        e.stop()
        c.stop()
