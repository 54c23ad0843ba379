"""`GET /_node/status` on the media HTTP port: JSON to loopback, nothing to others."""

from __future__ import annotations

import json
import socket
import time
import urllib.request

import pytest

from livecenter.media.node_status import NodeCarriage, carriage, is_loopback_peer
from tests.mediasupport import NodeThread, start_publisher


def non_loopback_address() -> str | None:
    """An address of this machine other than loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route's source address
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if is_loopback_peer(address) else address


def get(address: str, port: int, path: str, source: str | None = None) -> bytes:
    """The raw HTTP response, from `source` when given."""
    with socket.create_connection((address, port), timeout=10, source_address=(source, 0) if source else None) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def node():
    media = NodeThread(host="0.0.0.0").start()
    yield media
    media.stop()


def test_it_answers_loopback_with_the_process_figures(node):
    with urllib.request.urlopen(f"http://127.0.0.1:{node.node.http_port}/_node/status", timeout=10) as response:
        assert response.headers["Content-Type"] == "application/json"
        status = json.loads(response.read())
    assert status["node_id"] == "test-node"
    assert status["tasks"] > 0 and status["fds"] > 0 and status["threads"] > 0 and status["rss_bytes"] > 0
    # This request is the one HTTP connection the node has open.
    assert status["connections"]["http"] == 1
    assert status["streams"] == 0 and status["viewers"] == {}
    # The collector's figures by generation (collector.py).
    assert len(status["gc"]["collections"]) == 3 and len(status["gc"]["total_ms"]) == 3
    assert "loop_lag_worst_ms" in status


def status_of(node) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{node.node.http_port}/_node/status", timeout=10) as response:
        return json.loads(response.read())


def carriage_of(node) -> NodeCarriage:
    async def read() -> NodeCarriage:
        return carriage(node.node, time.monotonic())

    return node.call(read())


async def hub_keys(node) -> list:
    return node.node.hub.live_keys()


def test_it_counts_a_live_stream_and_its_viewer(node):
    publisher = start_publisher(node.publish_url(), seconds=60, size="320x240", rate=15)
    try:
        assert node.wait_for(lambda: node.node.hub.live_keys(), timeout=30), publisher.stop()
        with urllib.request.urlopen(node.flv_url(), timeout=10) as viewer:
            assert viewer.read(13).startswith(b"FLV")
            status = status_of(node)
            # What its heartbeat says (nodes/registry.py): the same, and what
            # goes in and out once a sample tick has measured the viewer.
            assert node.wait_for(lambda: carriage(node.node, time.monotonic()).bitrate_out > 0), carriage_of(node)
            carried = carriage_of(node)
        assert status["streams"] == 1
        assert status["viewers"] == {"flv": 1}
        # The publisher, the viewer and this request.
        assert status["connections"] == {"rtmp": 1, "http": 2, "rts": 0}
        assert carried.streams == tuple(node.call(hub_keys(node)))
        assert len(carried.streams) == 1 and carried.viewers == {"flv": 1}
        assert carried.bitrate_in > 0 and carried.load >= 0
    finally:
        publisher.stop()


def test_it_refuses_a_peer_that_is_not_loopback(node):
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no address but loopback")
    response = get(address, node.node.http_port, "/_node/status", source=address)
    assert response.startswith(b"HTTP/1.1 404 ")
    assert b"tasks" not in response


@pytest.mark.parametrize(
    ("address", "loopback"),
    [("127.0.0.1", True), ("127.8.0.3", True), ("::1", True), ("::ffff:127.0.0.1", True),
     ("192.0.2.2", False), ("::ffff:10.0.0.1", False), ("fe80::1%eth0", False), ("?", False)],
)  # fmt: skip
def test_it_tells_loopback_peers(address, loopback):
    assert is_loopback_peer(address) is loopback
