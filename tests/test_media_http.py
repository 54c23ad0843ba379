"""HTTP on the media port with real sockets (issue 12): the request head's
size limit and deadline at the limit and one past, persistent connections
(several requests on one, pipelined requests, the idle timeout, the cap on
requests), error responses that keep the connection when the request was
read whole, and HTTP-FLV closing after its stream."""

from __future__ import annotations

import dataclasses
import re
import select
import socket
import time
from urllib.parse import urljoin, urlsplit

import pytest

from livecenter.media import http_server
from livecenter.media.http_server import MAX_REQUEST_HEAD_BYTES
from livecenter.media.signing import sign

from .mediasupport import PLAY, PLAY_KEY, NodeThread, default_policy, start_publisher


class HttpClient:
    """One raw connection: send requests, read responses one at a time."""

    def __init__(self, node: NodeThread, timeout: float = 30) -> None:
        self.sock = socket.create_connection(("127.0.0.1", node.node.http_port), timeout=timeout)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def get(self, target: str, method: str = "GET", extra: str = "") -> None:
        self.send(f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode())

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def response(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        """The next response: status, headers (lower-case names), body."""
        while b"\r\n\r\n" not in self.buffer:
            assert self._fill(), f"closed before a response: {self.buffer!r}"
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if head_only or status in (204, 304) else int(headers.get("content-length", 0))
        while len(self.buffer) < length:
            assert self._fill(), "closed in the middle of a body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def closed_within(self, seconds: float) -> bool:
        """Whether the node closes the connection within `seconds` (without sending more)."""
        deadline = time.monotonic() + seconds
        while True:
            ready, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return False
            try:
                if not self._fill():
                    return True
            except ConnectionResetError:
                return True

    def close(self) -> None:
        self.sock.close()


def rts_policy():
    """The default domains, with RTS on for the streaming one."""
    policy = default_policy()
    policy.domains[PLAY] = dataclasses.replace(policy.domains[PLAY], rts_enabled=True)
    return policy


@pytest.fixture
def make_node():
    nodes: list[NodeThread] = []

    def make(**config) -> NodeThread:
        node = NodeThread(rts_policy(), **config).start()
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.stop()


@pytest.fixture
def node(make_node):
    return make_node(play_wait_seconds=3)


@pytest.fixture
def client(node):
    client = HttpClient(node)
    yield client
    client.close()


def target_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def signed(path: str) -> str:
    return f"{path}?auth_key={sign(path, PLAY_KEY, int(time.time()))}&domain={PLAY}"


def head_of_size(size: int) -> bytes:
    """A request head of exactly `size` bytes (a padding header fills it)."""
    start = b"GET /nothing/here HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: "
    end = b"\r\n\r\n"
    return start + b"a" * (size - len(start) - len(end)) + end


# --- the request head -----------------------------------------------------------------------


def test_it_answers_a_head_at_the_size_limit_and_keeps_the_connection(client):
    client.send(head_of_size(MAX_REQUEST_HEAD_BYTES))
    status, headers, _ = client.response()
    assert status == 404
    assert "close" not in headers.get("connection", "")
    client.get("/nothing/else")
    assert client.response()[0] == 404


def test_it_refuses_a_head_one_byte_past_the_limit_whole_or_in_pieces(node):
    for pieces in (1, 3):
        client = HttpClient(node)
        try:
            head = head_of_size(MAX_REQUEST_HEAD_BYTES + 1)
            step = -(-len(head) // pieces)
            for i in range(0, len(head), step):
                client.send(head[i : i + step])
            status, headers, body = client.response()
            assert status == 431, (pieces, body)
            assert headers["connection"] == "close"
            assert client.closed_within(10)
        finally:
            client.close()


def test_it_refuses_a_head_that_grows_past_the_limit_without_ending(client):
    client.send(b"GET / HTTP/1.1\r\nX-Pad: " + b"a" * MAX_REQUEST_HEAD_BYTES)
    status, headers, _ = client.response()
    assert status == 431
    assert client.closed_within(10)


def test_it_answers_a_head_that_arrives_within_its_deadline(node, client, monkeypatch):
    monkeypatch.setattr(http_server, "REQUEST_HEAD_TIMEOUT_SECONDS", 4)
    head = b"GET /nothing/here HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    for i in range(len(head)):  # a byte at a time, all of it well inside the 4 s
        client.send(head[i : i + 1])
        time.sleep(0.5 / len(head))
    assert client.response()[0] == 404


def test_it_cuts_a_head_dribbled_past_its_deadline(node, client, monkeypatch):
    monkeypatch.setattr(http_server, "REQUEST_HEAD_TIMEOUT_SECONDS", 2)
    began = time.monotonic()
    head = b"GET /nothing/here HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000
    for i in range(len(head)):  # a byte every 0.1 s: each read is quick, the whole is not
        client.send(head[i : i + 1])
        ready, _, _ = select.select([client.sock], [], [], 0.1)
        if ready:
            break
    status, headers, body = client.response()
    took = time.monotonic() - began
    assert status == 408, body
    assert b"the request head did not arrive within 2 s" in body
    assert headers["connection"] == "close"
    assert 1.5 < took < 20, took
    assert client.closed_within(10)


def test_it_closes_a_connection_that_sends_nothing_without_a_word(node, client, monkeypatch):
    monkeypatch.setattr(http_server, "REQUEST_HEAD_TIMEOUT_SECONDS", 1)
    assert client.closed_within(20)
    assert client.buffer == b""


def test_it_answers_a_garbled_head_with_400_and_closes(client):
    client.send(b"NOT HTTP AT ALL\r\n\r\n")
    status, headers, _ = client.response()
    assert status == 400
    assert headers["connection"] == "close"
    assert client.closed_within(10)


# --- persistent connections -----------------------------------------------------------------


def test_it_answers_pipelined_requests_in_order_on_one_connection(client):
    client.send(
        b"GET /_node/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        b"OPTIONS /live/cam1.m3u8 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        b"GET /nothing/here HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        b"HEAD /nothing/here HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    status, headers, body = client.response()
    assert status == 200 and headers["content-type"] == "application/json" and body.startswith(b"{")
    status, headers, _ = client.response()
    assert status == 204 and headers["access-control-allow-origin"] == "*"
    assert client.response()[0] == 404
    status, headers, _ = client.response(head_only=True)
    assert status == 404 and headers["content-length"] == "10"  # what the GET would have; no body follows
    client.get("/nothing/here")
    assert client.response()[0] == 404


def test_it_closes_a_connection_idle_between_requests(make_node):
    node = make_node(http_idle_seconds=1)
    client = HttpClient(node)
    try:
        client.get("/nothing/here")
        assert client.response()[0] == 404
        assert client.closed_within(20)
        assert client.buffer == b""  # closed without a word
    finally:
        client.close()


def test_it_says_connection_close_on_the_last_request_the_cap_allows(make_node):
    node = make_node(http_max_requests=3)
    client = HttpClient(node)
    try:
        for _ in range(2):
            client.get("/nothing/here")
            status, headers, _ = client.response()
            assert status == 404 and "connection" not in headers
        client.get("/nothing/here")
        client.get("/nothing/here")  # pipelined past the cap: never answered
        status, headers, _ = client.response()
        assert status == 404 and headers["connection"] == "close"
        assert client.closed_within(10)
        assert client.buffer == b""
    finally:
        client.close()


def test_it_closes_when_the_client_asks(client):
    client.get("/nothing/here", extra="Connection: close\r\n")
    status, headers, _ = client.response()
    assert status == 404 and headers["connection"] == "close"
    assert client.closed_within(10)


def test_an_error_keeps_the_connection_when_the_request_was_read_whole(node, client):
    # A body that came with the head is read and dropped.
    client.send(b"POST /live/cam1.flv HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello")
    status, headers, _ = client.response()
    assert status == 405 and "connection" not in headers
    # A WHEP offer read whole and refused (not an SDP offer).
    whep = f"/live/cam1.whep?auth_key={sign('/live/cam1', PLAY_KEY, int(time.time()))}&domain={PLAY}"
    client.send(f"POST {whep} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/sdp\r\n"
                f"Content-Length: 9\r\n\r\nnot a sdp".encode())  # fmt: skip
    status, headers, body = client.response()
    assert status == 400 and "connection" not in headers, body
    # A play refusal (no auth_key).
    client.get(f"/live/cam1.m3u8?domain={PLAY}")
    status, headers, body = client.response()
    assert status == 403 and headers["x-livecenter-error"] == "no auth_key" and "connection" not in headers
    client.get("/nothing/here")
    assert client.response()[0] == 404


def test_an_error_closes_the_connection_when_the_body_was_not_read(client):
    # Refused from the URL before its body is read (issue 11, item 4): the
    # rest of the body would be taken for the next request.
    client.send(f"POST /live/cam1.whep?domain={PLAY} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: application/sdp\r\nContent-Length: 1000\r\n\r\nv=0".encode())  # fmt: skip
    status, headers, _ = client.response()
    assert status == 403 and headers["connection"] == "close"
    assert client.closed_within(10)


@pytest.mark.media
def test_it_serves_playlist_parts_and_segments_on_one_connection_and_flv_closes_after_its_stream(node):
    publisher = start_publisher(node.publish_url(), seconds=8, size="320x240", rate=15)
    client = HttpClient(node)
    flv = HttpClient(node)
    try:
        assert node.wait_for(lambda: bool(node.node.hub.live_keys()), timeout=30), publisher.stop()
        playlist = signed("/live/cam1.m3u8")
        client.get(playlist)
        status, headers, body = client.response()
        assert status == 200, body
        assert "connection" not in headers
        text = body.decode()
        segment = re.search(r"^(cam1/seg_\d+\.ts\?token=\S+)$", text, re.M)[1]
        part = re.findall(r'#EXT-X-PART:.*URI="([^"]+)"', text)[-1]
        msn = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text)[1])
        segments = len(re.findall(r"^cam1/seg_\d+\.ts", text, re.M))
        base = f"http://127.0.0.1{playlist}"
        for uri in (part, segment):
            client.get(target_of(urljoin(base, uri)))
            status, headers, data = client.response()
            assert status == 200 and headers["content-type"] == "video/mp2t", data[:200]
            assert data[0] == 0x47 and "connection" not in headers
        # A blocking reload (RFC 8216bis 6.2.5.2) for the next segment's first part, then a pipelined pair.
        client.get(f"{playlist}&_HLS_msn={msn + segments}&_HLS_part=0")
        status, _, body = client.response()
        assert status == 200, body
        assert f"part_{msn + segments}_0.ts" in body.decode()
        client.send(
            f"GET {playlist} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            f"GET {target_of(urljoin(base, segment))} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        )
        assert client.response()[0] == 200
        assert client.response()[0] in (200, 404)  # the segment may have left the window by now

        # HTTP-FLV: a raw body after the head (no chunked framing), the connection closed at the stream's end.
        flv.get(signed("/live/cam1.flv"))
        while b"\r\n\r\n" not in flv.buffer:
            assert flv._fill()
        head, _, body = flv.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        lower = head.lower()
        assert b"transfer-encoding" not in lower and b"content-length" not in lower
        assert b"connection: close" in lower
        while len(flv.buffer) < len(head) + 4 + 3:
            assert flv._fill()
        assert flv.buffer[len(head) + 4 :].startswith(b"FLV")
        publisher.process.wait(timeout=60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if flv.closed_within(1):
                break
        else:
            pytest.fail("the FLV connection stayed open after the stream ended")
    finally:
        client.close()
        flv.close()
        publisher.stop()


def test_a_head_request_is_answered_without_a_body_and_keeps_the_connection(node, client):
    client.get(signed("/live/cam1.flv"), method="HEAD")
    status, headers, _ = client.response(head_only=True)
    assert status == 404 and headers["x-livecenter-error"] == "stream is not live"  # after play_wait_seconds
    assert int(headers["content-length"]) > 0 and "connection" not in headers
    client.get("/nothing/here")
    status, _, body = client.response()
    assert status == 404 and body == b"not found\n"


def test_it_says_continue_to_a_client_that_waits_for_it_before_its_body(client):
    whep = f"/live/cam1.whep?auth_key={sign('/live/cam1', PLAY_KEY, int(time.time()))}&domain={PLAY}"
    client.send(f"POST {whep} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/sdp\r\n"
                f"Expect: 100-continue\r\nContent-Length: 9\r\n\r\n".encode())  # fmt: skip
    assert client.response()[0] == 100
    client.send(b"not a sdp")
    status, headers, _ = client.response()
    assert status == 400 and "connection" not in headers
