"""Centers and an edge on loopback, routed by the node registry (registry.py,
router.py) rather than a fixed router: a stream published on the edge is
relayed to a center of its domain's live center, and moves to the other
center when its center stops, the publisher still connected; with no center
left the edge keeps the publisher and the console says why; a viewer on
another edge plays through a pull; a second publisher is refused."""

from __future__ import annotations

import threading
import uuid

import pytest
from channels.layers import channel_layers

from domains import services
from livecenter.media.cluster import CENTER
from livecenter.media.policy import StreamKey
from mediajobs import services as media_services
from monitoring.models import PublishRefusal, StreamSample
from nodes import control
from streams.models import PublishSession
from tests.apisupport import client_for
from tests.mediasupport import probe_packets, start_publisher
from tests.test_hls_integration import fetch
from tests.test_media_edge import _continuous as continuous
from tests.workersupport import MediaNodeThread, Workers, probe, wait_until

pytestmark = [pytest.mark.media, pytest.mark.django_db(transaction=True), pytest.mark.backends]

CLUSTER_KEY = b"cluster-key-for-tests"
REGION = "eu-central-1"


def node(role: str, name: str, region: str = REGION, play_wait_seconds: float = 5) -> MediaNodeThread:
    return MediaNodeThread(node_id=f"{name}-{uuid.uuid4().hex[:6]}", roles=frozenset({role}), region=region,
                           cluster_key=CLUSTER_KEY, play_wait_seconds=play_wait_seconds)  # fmt: skip


def stream_of(owner, name: str) -> tuple[StreamKey, object]:
    """A stream on a new ingest domain `push.{name}` of the live center
    REGION, played on `play.{name}`, and its signed URLs."""
    push = services.add_domain(owner, f"push.{name}", "ingest", "overseas", REGION)
    play = services.add_domain(owner, f"play.{name}", "streaming", "overseas", REGION)
    services.associate_ingest(play, push.domain_name)
    key = StreamKey(push.domain_name, "live", f"cam-{uuid.uuid4().hex[:6]}")
    return key, services.generate_urls(owner, push.domain_name, key.app, key.stream)


def test_an_edge_relays_to_a_center_of_the_domains_region_and_fails_over_to_the_other(owner):
    key, urls = stream_of(owner, "cluster.test")
    with (
        node("center", "far", region="ap-southeast-1") as far,  # another region's: never chosen
        node("center", "center-1") as c1,
        node("center", "center-2") as c2,
        node("edge", "edge") as edge,
    ):
        publisher = start_publisher(edge.local(urls.ingest["rtmp"]), seconds=40)
        try:
            first = wait_until(lambda: next((c for c in (c1, c2) if c.node.hub.is_live(key)), None), timeout=30)
            assert first is not None, publisher.stop()
            other = c2 if first is c1 else c1
            assert not far.node.hub.is_live(key)
            continuous(probe_packets(first.local(urls.playback["flv"]), seconds=3))

            first.__exit__(None, None, None)  # its beat is withdrawn: the edge's registry sees it gone
            assert wait_until(lambda: other.node.hub.is_live(key), timeout=30), "no failover"
            assert publisher.process.poll() is None  # still publishing to the edge

            # The center is live a moment before the edge hears its publish answered.
            def relayed():
                state = edge.node.relays.states.get(key)
                return state if state is not None and state.center == other.node.config.node_id else None

            state = wait_until(relayed, timeout=10)
            assert state is not None and state.failovers == 1, edge.node.relays.states.get(key)
            continuous(probe_packets(other.local(urls.playback["flv"]), seconds=3))
        finally:
            publisher.stop()


def test_a_viewer_on_another_edge_plays_through_a_pull_from_the_center_carrying_the_stream(owner):
    """Over LL-HLS (the first viewer, whose playlist waits for the pull),
    HLS, RTMP and HTTP-FLV; RTS and SRT: tests/test_cluster_netns.py."""
    key, urls = stream_of(owner, "pull.test")
    with node("center", "center") as center, node("edge", "edge-a") as edge_a, node("edge", "edge-b") as edge_b:
        publisher = start_publisher(edge_a.local(urls.ingest["rtmp"]), seconds=30)
        try:
            assert wait_until(lambda: center.node.hub.is_live(key), timeout=30), publisher.stop()
            # edge-b learns from the center's beat that it carries the stream (a beat a second)
            assert wait_until(lambda: edge_b.node.router.view().carriers(str(key), CENTER), timeout=10)
            # The first viewer asks for LL-HLS: its playlist waits for the pull it starts.
            status, _, body = fetch(edge_b.local(urls.playback["m3u8"]), timeout=30)
            assert status == 200, body
            for tag in ("#EXT-X-PART-INF:PART-TARGET=", "#EXT-X-PART:", "#EXT-X-PRELOAD-HINT:TYPE=PART"):
                assert tag in body.decode(), tag
            assert edge_b.node.pulls.sources[key] == center.node.config.node_id  # pulled, kept for the idle grace
            for protocol in ("m3u8", "rtmp", "flv"):
                continuous(probe_packets(edge_b.local(urls.playback[protocol]), seconds=3))
            assert edge_b.node.pulls.sources[key] == center.node.config.node_id
            assert not edge_a.node.pulls.sources  # the publisher's edge has it already
        finally:
            publisher.stop()


@pytest.mark.worker
def test_the_first_viewer_of_a_rendition_on_another_edge_plays_it_pulled_from_the_center(owner, settings, tmp_path):
    """No node carries `{stream}_lld` yet: the edge pulls it from the center
    carrying the source, whose transcode (a real worker) starts for the pull
    as for a viewer of its own; the viewer waits on the edge meanwhile."""
    key, urls = stream_of(owner, "rendition.test")
    media_services.add_template(owner, "play.rendition.test", "live", "lld")
    rendition = StreamKey(key.domain, key.app, f"{key.stream}_lld")
    lld = services.generate_urls(owner, "play.rendition.test", key.app, key.stream, template="lld").playback["flv"]
    waits = {"play_wait_seconds": 20}  # an on-demand transcode's start, on a loaded machine
    with (
        node("center", "center", **waits) as center,
        node("edge", "edge-a", **waits) as edge_a,
        node("edge", "edge-b", **waits) as edge_b,
        Workers(tmp_path, settings) as workers,
    ):
        workers.start_worker()
        publisher = start_publisher(edge_a.local(urls.ingest["rtmp"]), seconds=60, size="640x360")
        try:
            assert wait_until(lambda: center.node.hub.is_live(key), timeout=30), publisher.stop()
            assert wait_until(lambda: edge_b.node.router.view().carriers(str(key), CENTER), timeout=10)
            result = probe(edge_b.local(lld), seconds=3, entries="packet=dts_time,size,stream_index", timeout=90)
            video = next(s for s in result["streams"] if s["codec_type"] == "video")
            assert (video["width"], video["height"]) == (640, 360), result["streams"]
            continuous([p for p in result["packets"] if p.get("stream_index") == video["index"] and "size" in p])
            assert edge_b.node.pulls.sources[rendition] == center.node.config.node_id, workers.output()
            assert center.node.hub.is_live(rendition)
        finally:
            publisher.stop()


@pytest.mark.parametrize("holder", ["edge-a", "center"])
def test_a_second_publisher_of_a_stream_on_another_edge_is_refused(owner, redis_url, holder):
    # The claim is a Redis key (router.py): this test skips without Redis.
    # The first publisher is on another edge, or on the center itself.
    key, urls = stream_of(owner, f"claim-{holder}.test")
    with node("center", "center") as center, node("edge", "edge-a") as edge_a, node("edge", "edge-b") as edge_b:
        first = {"edge-a": edge_a, "center": center}[holder]
        publisher = start_publisher(first.local(urls.ingest["rtmp"]), seconds=30)
        try:
            assert wait_until(lambda: center.node.hub.is_live(key), timeout=30), publisher.stop()
            second = start_publisher(edge_b.local(urls.ingest["rtmp"]), seconds=5)
            assert second.process.wait(30) != 0
            refusals = PublishRefusal.objects.filter(stream=key.stream).values_list("reason", flat=True)
            reasons = wait_until(lambda: list(refusals.all()))
            assert reasons == [f"stream is already being published on {first.node.config.node_id}"]
            assert not edge_b.node.hub.is_live(key)
            assert publisher.process.poll() is None and center.node.hub.is_live(key)
            session = PublishSession.objects.get(stream=key.stream)
            assert (session.publish_type, session.node_id) == (
                "center" if holder == "center" else "edge", first.node.config.node_id
            )  # fmt: skip
        finally:
            publisher.stop()


def test_with_no_center_in_the_region_the_edge_keeps_the_publisher_and_the_console_says_why(owner):
    key, urls = stream_of(owner, "nocenter.test")
    api = client_for(owner)

    def edge_row(edge_id: str) -> dict:
        """The edge's row, {} until it has registered (its first beat may come after the publisher)."""
        rows = api.get("/api/v1/nodes/").json()["results"]
        return next((row for row in rows if row["node_id"] == edge_id), {})

    with node("center", "far", region="ap-southeast-1") as far, node("edge", "edge") as edge:
        publisher = start_publisher(edge.local(urls.ingest["rtmp"]), seconds=30)
        try:
            edge_id = edge.node.config.node_id
            errors = wait_until(lambda: edge_row(edge_id).get("relay_errors"), timeout=30)
            assert errors == {str(key): f"no center node of live center {REGION} is up"}, publisher.stop()
            assert edge_row(edge_id)["streams"] == [str(key)]
            assert publisher.process.poll() is None and not far.node.hub.is_live(key)
        finally:
            publisher.stop()


def test_a_stream_published_on_an_edge_is_one_publish_session_of_type_edge(owner):
    key, urls = stream_of(owner, "session.test")
    api = client_for(owner)
    with node("edge", "edge") as edge, node("center", "center") as center:
        edge_id, center_id = edge.node.config.node_id, center.node.config.node_id
        publisher = start_publisher(edge.local(urls.ingest["rtmp"]), seconds=30)
        try:
            assert wait_until(lambda: center.node.hub.is_live(key), timeout=30), publisher.stop()
            rows = wait_until(lambda: [r for r in api.get("/api/v1/streams/online/").json()["results"]
                                       if r["center_node"]], timeout=15)  # fmt: skip
            assert [(r["stream_name"], r["publish_type"], r["node"], r["server_ip"], r["center_node"])
                    for r in rows] == [(key.stream, "edge", edge_id, "127.0.0.1", center_id)]  # fmt: skip
            assert rows[0]["client_ip"] == "127.0.0.1" and rows[0]["protocol"] == "rtmp"
            # Both nodes sample it; the center's say they come from the edge.
            samples = StreamSample.objects.filter(stream=key.stream)
            assert wait_until(lambda: set(samples.values_list("node_id", "upstream_node"))
                              == {(edge_id, ""), (center_id, edge_id)}, timeout=15)  # fmt: skip
        finally:
            publisher.stop()
        assert wait_until(lambda: not PublishSession.objects.filter(stream=key.stream, stopped_at=None).exists())
    assert PublishSession.objects.filter(stream=key.stream).count() == 1


def test_a_forbid_through_the_api_kicks_the_publisher_on_the_edge(owner, redis_url, settings, monkeypatch):
    # The forbid reaches the media nodes over the channel layer (nodes/control.py),
    # here on Redis; no center of the region takes the stream, so only the edge can cut it.
    layer = {"hosts": [redis_url], "prefix": f"t{uuid.uuid4().hex[:8]}"}
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": layer}}
    # Each node is a process of its own, with its own layer; here they are
    # threads of one, and a layer receives on one event loop only.
    layers: dict[int, object] = {}
    monkeypatch.setattr(control, "get_channel_layer", lambda alias="default": layers.setdefault(
        threading.get_ident(), channel_layers.make_backend(alias)))  # fmt: skip
    key, urls = stream_of(owner, "forbid.test")
    with node("edge", "edge") as edge, node("center", "far", region="ap-southeast-1") as far:
        assert control._engine is far.node  # the one this process would kick directly: not the edge
        publisher = start_publisher(edge.local(urls.ingest["rtmp"]), seconds=30)
        try:
            assert wait_until(lambda: edge.node.hub.is_live(key), timeout=30), publisher.stop()
            response = client_for(owner).post("/api/v1/streams/forbid/", {"domain": key.domain, "app": key.app,
                                              "stream": key.stream, "oneshot": True}, format="json")  # fmt: skip
            assert response.status_code == 200, response.content
            publisher.process.wait(20)  # kicked, long before its 30 s are over
            assert not edge.node.hub.is_live(key)
            session = PublishSession.objects.filter(stream=key.stream)
            assert wait_until(lambda: session.filter(stop_reason="forbidden").exists())
        finally:
            publisher.stop()


def test_a_publisher_that_leaves_an_edge_may_publish_on_another_at_once(owner, redis_url):
    key, urls = stream_of(owner, "move.test")
    with node("center", "center") as center, node("edge", "edge-a") as edge_a, node("edge", "edge-b") as edge_b:
        first = start_publisher(edge_a.local(urls.ingest["rtmp"]), seconds=30)
        assert wait_until(lambda: center.node.hub.is_live(key), timeout=30), first.stop()
        first.stop()
        assert wait_until(lambda: not edge_a.node.hub.is_live(key), timeout=15)
        # Its claim is released now, not when it lapses, and its relay has
        # ended: the center's grace keeps the stream for the one that comes back.
        second = start_publisher(edge_b.local(urls.ingest["rtmp"]), seconds=30)
        try:
            rows = PublishSession.objects.filter(stream=key.stream, node_id=edge_b.node.config.node_id)
            assert wait_until(lambda: rows.exclude(center_node_id="").exists(), timeout=30), second.stop()
            assert not PublishRefusal.objects.filter(stream=key.stream).exists()
            assert second.process.poll() is None
        finally:
            second.stop()
