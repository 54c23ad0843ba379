"""Network namespaces for the cross-network tests (tests/netns.py): hosts that
reach each other and the root namespace, a relay between them in the root
namespace or a host of its own, tbf rate limits, and nothing left behind, on
success, on failure, or by a run that died."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from tests.netimpair import UP, Impairment, ThreadedImpairmentRelay, parse_address
from tests.netns import REGISTRY_DIR, NetnsUnavailable, Network, _ip, _links, _namespaces, cleanup_stale
from tests.test_runall import ROOT

pytestmark = pytest.mark.netns


def leftovers(run_id: str) -> list[str]:
    names = _namespaces() + [link.split("@", 1)[0] for link in _links()]
    found = [name for name in names if name.startswith(f"lc-{run_id}")]
    if (REGISTRY_DIR / run_id).exists():
        found.append(str(REGISTRY_DIR / run_id))
    return found


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(net: Network, host: str, address: str, timeout: float = 5.0) -> bool:
    """One ICMP echo from `host` (a raw socket: this machine has no ping)."""
    with net.enter(host):
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    with sock:
        ident = os.getpid() & 0xFFFF
        header = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
        body = b"livecenter"
        sock.sendto(struct.pack("!BBHHH", 8, 0, checksum(header + body), ident, 1) + body, (address, 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                packet, (source, _) = sock.recvfrom(2048)
            except TimeoutError:
                return False
            ihl = (packet[0] & 0x0F) * 4
            kind, _, _, reply_ident, _ = struct.unpack_from("!BBHHH", packet, ihl)
            if kind == 0 and reply_ident == ident and source == address:
                return True
        return False


class UdpEcho:
    """A UDP echo socket made inside `host`, served from a thread."""

    def __init__(self, net: Network, host: str) -> None:
        with net.enter(host):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((net.address(host), 0))
        self.sock.settimeout(0.1)
        self.address = self.sock.getsockname()
        self.sources: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            self.sources.add(addr[0])
            self.sock.sendto(data, addr)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def udp_round_trip(net: Network, host: str, to: tuple[str, int], payload: bytes = b"hello") -> float:
    with net.enter(host):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.settimeout(10)
        started = time.monotonic()
        sock.sendto(payload, to)
        assert sock.recvfrom(2048)[0] == payload
        return time.monotonic() - started


def test_it_connects_the_hosts_and_the_root_namespace_and_leaves_nothing(netns):
    net = netns("a", "b")
    assert ping(net, "a", net.address("b"))
    assert ping(net, "b", net.address("a"))
    echo = UdpEcho(net, "b")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as root:
            root.settimeout(10)
            root.sendto(b"from the root namespace", echo.address)
            assert root.recvfrom(100)[0] == b"from the root namespace"
        assert echo.sources == {net.gateway}
        # Each host has its own loopback, up.
        assert "127.0.0.1" in net.run("a", ["ip", "-4", "addr", "show", "lo"]).stdout
    finally:
        echo.close()
    assert leftovers(net.id)
    net.close()
    assert leftovers(net.id) == []


def test_two_networks_at_once_get_their_own_names_and_subnets(netns):
    first, second = netns("a"), netns("a")
    assert first.id != second.id
    assert not first.subnet.overlaps(second.subnet)
    assert first.netns("a") != second.netns("a")


def test_it_removes_everything_and_stops_its_processes_when_the_test_fails():
    with pytest.raises(RuntimeError, match="the test failed"):
        with Network(["a", "b"]) as net:
            sleeper = net.popen("a", ["sleep", "600"])
            raise RuntimeError("the test failed")
    assert sleeper.wait(5) == -signal.SIGTERM
    assert leftovers(net.id) == []


@pytest.mark.parametrize("relay_host", [None, "relay"], ids=["root", "own-host"])
def test_a_relay_thread_delays_udp_between_two_hosts(netns, relay_host):
    net = netns("a", "b", "relay")
    echo = UdpEcho(net, "b")
    listen = net.gateway if relay_host is None else net.address(relay_host)
    delayed = Impairment(delay_ms=50)
    relay = ThreadedImpairmentRelay(
        (listen, 0),
        echo.address,
        up=delayed,
        down=delayed,
        netns=None if relay_host is None else net.netns(relay_host),
    )
    try:
        with relay:
            assert udp_round_trip(net, "a", relay.address) >= 0.100
            assert echo.sources == {listen}  # b sees the relay, not a
            assert relay.snapshot()[UP]["delayed"] == 1
    finally:
        echo.close()


def test_the_relay_command_runs_in_a_host_of_its_own(netns):
    net = netns("a", "b", "relay")
    echo = UdpEcho(net, "b")
    host, port = echo.address
    argv = [sys.executable, "-m", "tests.netimpair", "--listen", f"{net.address('relay')}:0", "--to", f"{host}:{port}"]
    try:
        proc = net.popen("relay", [*argv, "--delay-ms", "40"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        assert line.startswith(f"listening on {net.address('relay')}:"), line
        assert udp_round_trip(net, "a", parse_address(line.split()[-1])) >= 0.080
        assert echo.sources == {net.address("relay")}
    finally:
        echo.close()


def tcp_send_seconds(net: Network, payload: bytes) -> float:
    """Seconds from a's connect to b having read all of `payload`."""
    with net.enter("b"):
        listener = socket.socket()
    listener.bind((net.address("b"), 0))
    listener.listen(1)
    listener.settimeout(20)
    with net.enter("a"):
        client = socket.socket()
    started = time.monotonic()
    client.connect(listener.getsockname())
    sender = threading.Thread(target=client.sendall, args=(payload,), daemon=True)
    sender.start()
    conn, _ = listener.accept()
    received = 0
    with conn, client, listener:
        conn.settimeout(20)
        while received < len(payload):
            chunk = conn.recv(65536)
            assert chunk, "connection closed early"
            received += len(chunk)
    sender.join(5)
    return time.monotonic() - started


@pytest.mark.parametrize("direction", ["egress", "ingress"])
def test_a_tbf_rate_limit_slows_the_link(netns, direction):
    net = netns("a", "b")
    # a -> b: shaped where a sends (egress on a) or where b receives (ingress on b).
    net.rate_limit("a" if direction == "egress" else "b", 2000, burst_bytes=16 * 1024, direction=direction)
    if direction == "egress":
        assert "tbf" in net.run("a", ["tc", "qdisc", "show", "dev", "eth0"]).stdout
    else:
        shown = subprocess.run(["tc", "qdisc", "show", "dev", net.veth("b")], capture_output=True, text=True)
        assert "tbf" in shown.stdout
    # 400 kB at 2 Mbit/s is 1.6 s (less the burst); no upper bound is asserted.
    assert tcp_send_seconds(net, os.urandom(400_000)) >= 1.2


def test_it_removes_what_a_dead_run_left_and_keeps_a_live_run(netns):
    live = netns("a")
    dead = subprocess.Popen(["true"])
    dead.wait()
    REGISTRY_DIR.mkdir(parents=True, exist_ok=True)
    (REGISTRY_DIR / "not-a-run").write_text("0 0\n")  # not a run id: a stray file
    stale_id, orphan_id = "00dead", "00beef"
    (REGISTRY_DIR / stale_id).write_text(f"{dead.pid} 1\n")
    _ip("netns", "add", f"lc-{stale_id}-x")
    _ip("link", "add", f"lc-{stale_id}-0", "type", "veth", "peer", "name", f"lc-{stale_id}-1")
    _ip("netns", "add", f"lc-{orphan_id}-y")  # no registration at all
    removed = cleanup_stale()
    assert {stale_id, orphan_id, "not-a-run"} <= set(removed)
    assert leftovers(stale_id) == leftovers(orphan_id) == []
    assert not (REGISTRY_DIR / "not-a-run").exists()
    assert live.id not in removed
    assert ping(live, "a", live.gateway)


def test_it_says_why_when_it_cannot_make_namespaces(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NetnsUnavailable, match=r"network namespaces need root \(CI runs as root\)"):
        Network(["a"]).create()


def test_it_refuses_a_host_name_that_would_not_fit_an_interface_name():
    with pytest.raises(ValueError, match="host name 'Edge_A'"):
        Network(["Edge_A"])
    with pytest.raises(ValueError, match="distinct"):
        Network(["a", "a"])
