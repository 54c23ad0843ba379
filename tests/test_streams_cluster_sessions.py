"""nodes.bridge in a cluster: one publish session per publish, whichever of
the edge holding the publisher and the center its relay reaches reports
first, and the media jobs read the stream at the center."""

from __future__ import annotations

import datetime as dt

import pytest
from asgiref.sync import async_to_sync

from livecenter.media.policy import (
    EDGE_PUBLISH,
    RenditionRequested,
    StreamKey,
    StreamPublished,
    StreamUnpublished,
)
from mediajobs import services as media_services
from mediajobs.jobs import NodeAddress
from mediajobs.models import MediaJob
from nodes.bridge import DatabaseEventSink
from nodes.models import Node
from streams.models import PublishSession
from tests.streamsupport import add_pair, publish

pytestmark = pytest.mark.django_db

KEY = StreamKey("push.example.com", "live", "cam1")
T0 = dt.datetime(2026, 5, 1, 10, 0, tzinfo=dt.UTC).timestamp()
EDGE = NodeAddress("10.0.0.1", 1935, 8080)
CENTER = NodeAddress("10.0.1.1", 1935, 8080)
OTHER_CENTER = NodeAddress("10.0.1.2", 1935, 8080)
PUBLISHER = "198.51.100.7:50001"


def sink(address: NodeAddress) -> DatabaseEventSink:
    sink = DatabaseEventSink()
    sink.node_address = address
    return sink


def register(node_id: str, address: NodeAddress, role: str) -> None:
    Node.objects.create(
        node_id=node_id,
        role=role,
        region="eu-central-1",
        host=address.host,
        rtmp_port=address.rtmp_port,
        http_port=address.http_port,
        started_at=dt.datetime.now(dt.UTC),
    )


def edge_published(session_id: str = "s1") -> None:
    """What the edge holding the publisher reports (MediaNode.stream_started on an edge)."""
    event = StreamPublished(KEY, session_id, "srt", PUBLISHER, "srt://push.example.com?streamid=...", T0, "edge-a",
                            publish_type=EDGE_PUBLISH)  # fmt: skip
    async_to_sync(sink(EDGE).published)(event)


def center_published(center: str = "center-1", address: NodeAddress = CENTER, session_id: str = "s1") -> None:
    """What a center reports of the relay from edge-a (rtmp_server's relayed publish)."""
    event = StreamPublished(KEY, session_id, "rtmp", PUBLISHER, "rtmp://push.example.com/live/cam1", T0 + 0.5, center,
                            publish_type=EDGE_PUBLISH, center=center, relayed_from="edge-a")  # fmt: skip
    async_to_sync(sink(address).published)(event)


def unpublished(node_id: str, relayed_from: str = "", session_id: str = "s1") -> None:
    event = StreamUnpublished(KEY, session_id, T0 + 60, "", node_id, relayed_from)
    async_to_sync(sink(EDGE).unpublished)(event)


@pytest.fixture
def cluster(owner):
    add_pair(owner)
    register("edge-a", EDGE, "edge")
    register("center-1", CENTER, "center")
    register("center-2", OTHER_CENTER, "center")
    media_services.set_record_config(owner, "push.example.com", "live")


def the_session() -> PublishSession:
    [session] = PublishSession.objects.all()
    return session


@pytest.mark.parametrize("order", ["edge first", "center first"])
def test_it_records_one_edge_session_per_publish_in_either_order(cluster, order):
    reports = [edge_published, center_published]
    for report in reports if order == "edge first" else reversed(reports):
        report()
    session = the_session()
    assert (session.session_id, session.publish_type, session.node_id, session.server_ip) == (
        "s1", "edge", "edge-a", "10.0.0.1"
    )  # fmt: skip
    assert (session.client_addr, session.client_ip, session.protocol) == (PUBLISHER, "198.51.100.7", "srt")
    assert session.started_at.timestamp() == T0  # the edge's, whichever came first
    assert session.center_node_id == "center-1" and session.is_live


def test_it_starts_the_media_jobs_at_the_center_only(cluster):
    edge_published()
    assert not MediaJob.objects.exists()  # the edge leaves them to the center
    center_published()
    [job] = MediaJob.objects.all()
    assert (job.kind, job.node_host) == ("record", CENTER.host)


def test_it_moves_the_media_jobs_and_keeps_the_session_when_the_relay_moves_to_another_center(cluster):
    edge_published()
    center_published()
    center_published("center-2", OTHER_CENTER)  # the failover's relay reaches center-2 ...
    unpublished("center-1", relayed_from="edge-a")  # ... before center-1 says its relay ended
    session = the_session()
    assert session.is_live and session.center_node_id == "center-2"
    assert MediaJob.objects.get().node_host == OTHER_CENTER.host


def test_it_ends_the_session_when_the_edge_says_the_publisher_left(cluster):
    edge_published()
    center_published()
    unpublished("center-1", relayed_from="edge-a")
    assert the_session().is_live and not the_session().center_node_id
    unpublished("edge-a")
    assert not the_session().is_live


def test_it_ignores_a_repeated_relay_event(cluster):
    edge_published()
    center_published()
    center_published()
    assert the_session().center_node_id == "center-1" and MediaJob.objects.count() == 1


def test_it_records_a_center_publish_as_today(cluster):
    publish("push.example.com", "live", "cam1", "s1", node_id="center-1")
    session = the_session()
    assert (session.publish_type, session.node_id, session.center_node_id) == ("center", "center-1", "center-1")


def test_it_reads_an_edges_rendition_at_the_center(owner, cluster):
    media_services.add_template(owner, "push.example.com", "live", "lld", lazy=True)
    async_to_sync(sink(EDGE).rendition_requested)(RenditionRequested(KEY, "lld", "edge-a", center="center-1"))
    job = MediaJob.objects.get(kind="transcode")
    assert (job.node_host, job.node_rtmp_port) == (CENTER.host, CENTER.rtmp_port)
