"""What a peer may hold of a media node without a signature, and how many
connections the node takes (issue 11, item 2), with real sockets against a
node: the RTMP handshake and session-start deadlines, the budgets of
incomplete-message bytes per connection and per node, the connection caps
per node and per source address, and accept errors at the descriptor limit
(in a process of its own) logged once with a count while the rest of the
process keeps answering. A canary stream plays through the attacks."""

from __future__ import annotations

import re
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from livecenter.media import amf0
from livecenter.media.listener import ConnectionGate
from livecenter.media.policy import StreamKey
from livecenter.media.rtmp import RtmpChunkWriter
from livecenter.media.signing import sign

from .mediasupport import INGEST, INGEST_KEY, NodeThread, probe_packets, start_publisher

C0C1 = b"\x03" + bytes(1536)
C2 = bytes(1536)
CANARY = StreamKey(INGEST, "live", "canary")


# --- a raw RTMP peer ----------------------------------------------------------------------


def dial(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def dial_or_refused(port: int, source: str = "127.0.0.1") -> socket.socket | None:
    """A connection, or None if the node reset it before connect() returned
    (a refusal arrives that fast on loopback)."""
    try:
        return dial(port, source)
    except ConnectionResetError:
        return None


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    """Whether the node closes `sock` within `within` seconds (what it sends
    meanwhile is read and dropped)."""
    deadline = time.monotonic() + within
    while True:
        ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


def handshake(sock: socket.socket) -> None:
    sock.sendall(C0C1)
    got = b""
    while len(got) < 3073:
        data = sock.recv(3073 - len(got))
        assert data, "the node closed the connection during the handshake"
        got += data
    sock.sendall(C2)


class RawPeer:
    """Handshake, connect and, if asked, a signed publish, from our own chunk
    writer; then whatever bytes a test wants to send."""

    def __init__(self, node: NodeThread, source: str = "127.0.0.1", chunk_size: int = 65536) -> None:
        self.sock = dial(node.node.rtmp_port, source)
        self.writer = RtmpChunkWriter()
        handshake(self.sock)
        set_chunk_size = self.writer.write(2, 1, 0, 0, chunk_size.to_bytes(4, "big"))
        self.writer.chunk_size = chunk_size
        connect = {"app": "live", "tcUrl": f"rtmp://{INGEST}/live", "flashVer": "FMLE/3.0"}
        self.sock.sendall(set_chunk_size + self.command("connect", 1, connect))

    def command(self, name: str, transaction_id: float, *values, stream_id: int = 0) -> bytes:
        payload = amf0.encode(name, float(transaction_id), *values)
        return self.writer.write(3 if stream_id == 0 else 8, 20, stream_id, 0, payload)

    def publish(self, stream: str) -> None:
        token = sign(f"/live/{stream}", INGEST_KEY, int(time.time()))
        name = f"{stream}?auth_key={token}&domain={INGEST}"
        self.sock.sendall(
            self.command("createStream", 2, None) + self.command("publish", 3, None, name, "live", stream_id=1)
        )

    def frame(self, message_bytes: int = 4 * 1024 * 1024) -> bytes:
        """A large video message on stream 1, to send a part of."""
        return self.writer.write(6, 9, 1, 0, bytes(message_bytes))

    def offset(self, payload_bytes: int) -> int:
        """Where in `frame()` the first `payload_bytes` of payload end: a
        12-byte first header, then a 1-byte header before each later chunk."""
        chunks = -(-payload_bytes // self.writer.chunk_size)
        return 12 + payload_bytes + max(chunks - 1, 0)

    def frame_head(self, payload_bytes: int) -> bytes:
        return self.frame()[: self.offset(payload_bytes)]

    def close(self) -> None:
        self.sock.close()


# --- nodes --------------------------------------------------------------------------------


def live(node: NodeThread, key: StreamKey) -> bool:
    return node.wait_for(lambda: node.node.hub.is_live(key), timeout=30)


@pytest.fixture
def make_node():
    nodes: list[NodeThread] = []

    def make(**config) -> NodeThread:
        node = NodeThread(**config).start()
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.stop()


@pytest.fixture
def canary():
    """Starts an ffmpeg publisher of `canary` on a node; stopped at the end."""
    publishers = []

    def start(node: NodeThread):
        publisher = start_publisher(node.publish_url(stream="canary"), seconds=120, size="320x240", rate=15)
        publishers.append(publisher)
        assert live(node, CANARY), publisher.stop()
        return publisher

    yield start
    for publisher in publishers:
        publisher.stop()


def still_playing(node: NodeThread, publisher) -> None:
    assert publisher.process.poll() is None, publisher.stop()
    assert node.run_sync(node.node.hub.is_live, CANARY)
    packets = probe_packets(node.flv_url(stream="canary"), seconds=1)
    assert len(packets) >= 5


# --- deadlines ----------------------------------------------------------------------------


def test_it_closes_a_handshake_that_dribbles_past_its_whole_deadline(make_node, canary, caplog):
    node = make_node(handshake_timeout_seconds=1.0)
    publisher = canary(node)
    sock = dial(node.node.rtmp_port)
    sent = 0
    # One byte each 0.2 s: every read comes well within the deadline, the
    # handshake as a whole does not.
    with sock:
        closed = False
        deadline = time.monotonic() + 30
        while not closed and time.monotonic() < deadline and sent < len(C0C1):
            try:
                sock.sendall(C0C1[sent : sent + 1])
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            sent += 1
            closed = closed_by_peer(sock, 0.2)
    assert closed
    assert sent < 200  # about 5 of them; far from a whole C0 + C1
    assert "handshake not complete in time, closing" in caplog.text
    still_playing(node, publisher)


def test_it_closes_a_connection_that_connects_then_idles(make_node, canary, caplog):
    node = make_node(session_start_timeout_seconds=1.0)
    publisher = canary(node)  # published in time, so not closed since
    peer = RawPeer(node)
    with peer.sock:
        assert closed_by_peer(peer.sock, 30)
    assert "no publish or play in time, closing" in caplog.text
    still_playing(node, publisher)


def test_it_lets_a_publisher_that_is_quick_enough_stay_past_the_deadlines(make_node):
    node = make_node(handshake_timeout_seconds=2.0, session_start_timeout_seconds=2.0)
    peer = RawPeer(node)
    peer.publish("quick")
    assert live(node, StreamKey(INGEST, "live", "quick"))
    # Keep sending (publish_idle_seconds applies to a publisher, not the start deadline).
    for n in range(30):
        peer.sock.sendall(peer.writer.write(4, 8, 1, n * 100, b"\xaf\x01" + bytes(50)))
        assert not closed_by_peer(peer.sock, 0.1)
    peer.close()


# --- budgets of incomplete messages ------------------------------------------------------------


def test_it_closes_a_peer_that_holds_too_much_before_asking_to_publish(make_node, canary, caplog):
    node = make_node()
    publisher = canary(node)
    peer = RawPeer(node)
    with peer.sock:
        peer.sock.sendall(peer.writer.write(3, 20, 0, 0, amf0.encode("createStream", 2.0, None)))
        peer.sock.sendall(peer.frame_head(16 * 1024 + 1))
        assert closed_by_peer(peer.sock, 30)
    assert "more than 16384 bytes of incomplete messages before a publish request" in caplog.text
    still_playing(node, publisher)


def test_it_closes_a_publisher_that_holds_more_than_its_own_budget(make_node, caplog):
    node = make_node(rtmp_buffered_bytes=512 * 1024)
    peer = RawPeer(node)
    with peer.sock:
        peer.publish("big")
        assert live(node, StreamKey(INGEST, "live", "big"))
        frame, limit = peer.frame(), peer.offset(512 * 1024)
        peer.sock.sendall(frame[:limit])  # the limit, to the byte
        assert node.wait_for(lambda: node.node.rtmp_budget.used_bytes == 512 * 1024)
        assert not closed_by_peer(peer.sock, 0.5)
        peer.sock.sendall(frame[limit : peer.offset(512 * 1024 + 1)])  # and one byte more
        assert closed_by_peer(peer.sock, 30)
    assert "more than 524288 bytes of incomplete messages" in caplog.text
    assert node.wait_for(lambda: node.node.rtmp_budget.used_bytes == 0)


def test_it_closes_the_publisher_that_would_overrun_the_node_budget_and_no_other(make_node, canary, caplog):
    node = make_node(rtmp_node_buffered_bytes=2 * 1024 * 1024)
    publisher = canary(node)
    budget = node.node.rtmp_budget
    hog = RawPeer(node)
    hog.publish("hog")
    assert live(node, StreamKey(INGEST, "live", "hog"))
    hog.sock.sendall(hog.frame_head(2 * 1024 * 1024 - 192 * 1024))
    assert node.wait_for(lambda: budget.used_bytes >= 2 * 1024 * 1024 - 192 * 1024)
    second = RawPeer(node)
    second.publish("second")
    assert live(node, StreamKey(INGEST, "live", "second"))
    second.sock.sendall(second.frame_head(256 * 1024))
    assert closed_by_peer(second.sock, 30)
    assert "the node's 2097152 bytes for incomplete messages are in use" in caplog.text
    assert not closed_by_peer(hog.sock, 0.5)
    still_playing(node, publisher)
    hog.close()
    second.close()
    # What they held is given back when they go.
    assert node.wait_for(lambda: budget.used_bytes < 256 * 1024)


# --- connection caps ----------------------------------------------------------------------


def admitted(port: int, source: str = "127.0.0.1") -> socket.socket | None:
    """An RTMP connection the node answers (S0 S1 S2), or None if it closed it."""
    sock = dial_or_refused(port, source)
    if sock is None:
        return None
    try:
        handshake(sock)
    except (AssertionError, ConnectionResetError, BrokenPipeError):
        sock.close()
        return None
    return sock


def http_get(port: int, path: str = "/nothing", source: str = "127.0.0.1") -> bytes:
    sock = dial_or_refused(port, source)
    if sock is None:
        return b""
    data = b""
    with sock:
        try:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            while chunk := sock.recv(65536):
                data += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass  # a refusal's reset can come before the request is sent, or while it is read
    return data


def test_it_refuses_connections_past_the_limit_per_address(make_node, caplog):
    node = make_node(max_connections_per_address=3)
    port = node.node.rtmp_port
    held = [admitted(port) for _ in range(3)]
    assert all(held)
    assert admitted(port) is None
    assert http_get(node.node.http_port) == b""  # RTMP and HTTP count together
    other = admitted(port, source="127.0.0.2")  # another address has its own
    assert other is not None
    held[0].close()
    assert node.wait_for(lambda: node.node.gate.count("127.0.0.1") == 2)
    again = admitted(port)
    assert again is not None
    assert "connection limit per address (3)" in caplog.text
    for sock in [*held[1:], other, again]:
        sock.close()


def test_it_refuses_connections_past_the_node_limit(make_node, caplog):
    node = make_node(max_connections=4)
    port = node.node.rtmp_port
    held = [admitted(port, source=f"127.0.0.{n}") for n in range(1, 5)]
    assert all(held)
    assert admitted(port, source="127.0.0.9") is None
    held.pop().close()
    assert node.wait_for(lambda: node.node.gate.open == 3)
    assert http_get(node.node.http_port).startswith(b"HTTP/1.1 404")
    assert "node connection limit (4)" in caplog.text
    for sock in held:
        sock.close()


def test_the_gate_counts_per_address_and_in_all():
    gate = ConnectionGate(max_connections=3, max_per_address=2)
    assert gate.admit("a") is None and gate.admit("a") is None
    assert gate.admit("a") == "connection limit per address (2)"
    assert gate.admit("b") is None
    assert gate.admit("c") == "node connection limit (3)"
    gate.release("a")
    assert gate.count("a") == 1 and gate.open == 2
    assert gate.admit("c") is None


# --- the descriptor limit ---------------------------------------------------------------------


class LimitedNode:
    """tests/limits_node.py in a process of its own."""

    def __init__(self, nofile: int, reserve: int) -> None:
        script = Path(__file__).with_name("limits_node.py")
        self.process = subprocess.Popen(
            [sys.executable, str(script), "--nofile", str(nofile), "--reserve", str(reserve), "--summary-seconds", "3"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        words = self.expect("READY")
        self.rtmp_port, self.http_port, self.console_port = map(int, words[1:])

    def expect(self, word: str) -> list[str]:
        line = self.process.stdout.readline()
        if not line.startswith(word):
            self.process.kill()
            raise AssertionError(f"expected {word}, got {line!r}: {self.process.communicate()[1][-3000:]}")
        return line.split()

    def command(self, text: str, answer: str) -> list[str]:
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()
        return self.expect(answer)

    def stop(self) -> str:
        if self.process.poll() is None:
            try:
                self.command("quit", "STOPPED")
            except (AssertionError, BrokenPipeError):
                pass
        try:
            return self.process.communicate(timeout=30)[1]
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.communicate()[1]


def console_answers(port: int) -> bool:
    return http_get(port, "/").startswith(b"HTTP/1.1 200")


def wait_until(predicate, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_it_keeps_the_process_answering_at_the_descriptor_limit_and_logs_accept_errors_once(tmp_path):
    node = LimitedNode(nofile=256, reserve=64)  # so at most 192 connections
    flood: list[socket.socket] = []
    try:
        # Many more connections than descriptors: the node takes up to its
        # cap and closes the rest at once; the console keeps answering.
        dialled = [dial_or_refused(node.rtmp_port) for _ in range(300)]
        flood = [sock for sock in dialled if sock is not None]
        refused: set[int] = set()

        def count_refused() -> int:
            refused.update(n for n, sock in enumerate(flood) if n not in refused and closed_by_peer(sock, 0))
            return len(refused) + len(dialled) - len(flood)

        assert wait_until(lambda: count_refused() >= 300 - 192)
        assert console_answers(node.console_port)
        time.sleep(0.5)
        assert count_refused() == 300 - 192  # and the node holds the rest
        for sock in flood:
            sock.close()
        flood = []
        assert wait_until(lambda: http_get(node.http_port).startswith(b"HTTP/1.1 404"))

        # Descriptors taken by something else in the process: accept fails
        # with EMFILE; the node sheds what waits, backs off, and logs it
        # once with a count, not once per failure.
        node.command("fill 4", "FILLED")
        flood = [sock for _ in range(200) if (sock := dial_or_refused(node.rtmp_port))]
        time.sleep(4)  # one summary interval (3 s) and more
        for sock in flood:
            sock.close()
        flood = []
        node.command("free", "FREED")
        assert wait_until(lambda: console_answers(node.console_port))
        assert wait_until(lambda: http_get(node.http_port).startswith(b"HTTP/1.1 404"))
    finally:
        for sock in flood:
            sock.close()
        log = node.stop()
    (tmp_path / "node.log").write_text(log)
    assert "Traceback" not in log
    assert "rtmp: connection refused: node connection limit (192) from 127.0.0.1" in log
    assert re.search(r"rtmp: connection refused: \d+ more in the last 3s \(node connection limit \(192\): \d+\)", log)
    first_lines = re.findall(r"rtmp: accept failed: Too many open files \(more are counted", log)
    assert len(first_lines) == 1, log[-3000:]
    counts = [int(n) for n in re.findall(r"rtmp: accept failed: (\d+) more", log)]
    assert counts and sum(counts) >= 1, log[-3000:]


def test_it_names_peers_with_ipv6_hosts_in_brackets():
    from livecenter.media.listener import peer_name

    assert peer_name(("127.0.0.1", 1935)) == "127.0.0.1:1935"
    assert peer_name(("::1", 5000, 0, 0)) == "[::1]:5000"
    assert peer_name(None) == "?:0"
