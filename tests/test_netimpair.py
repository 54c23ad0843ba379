"""The impairment relay (tests/netimpair.py) the network tests put between
their peers: seeded loss, delay, jitter, reordering, duplication, rate, flows,
bounds. Counts are checked against what an echo client observes; timings only
from below (no datagram early), never from above."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from tests.netimpair import (
    DOWN,
    UP,
    Impairment,
    ImpairmentRelay,
    TcpDelayRelay,
    ThreadedImpairmentRelay,
    parse_address,
)
from tests.test_runall import ROOT

LOCAL = ("127.0.0.1", 0)
SEQ = struct.Struct("!Id")  # sequence number, client send time
# 100 small datagrams take about 128 kB of a socket's receive buffer (the
# default is 208 kB).
WINDOW_DATAGRAMS = 100


def run(test):
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(asyncio.wait_for(test(*args, **kwargs), 60))

    return wrapper


async def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.002)


class Echo(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.sources: set[tuple] = set()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data, addr) -> None:
        self.sources.add(addr)
        self.transport.sendto(data, addr)


class Client(asyncio.DatagramProtocol):
    """Sends numbered datagrams and records each echo: (seq, sent, arrived)."""

    def __init__(self) -> None:
        self.echoes: list[tuple[int, float, float]] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data, addr) -> None:
        seq, sent = SEQ.unpack_from(data)
        self.echoes.append((seq, sent, time.monotonic()))

    def send(self, seq: int, size: int = 64) -> None:
        self.transport.sendto(SEQ.pack(seq, time.monotonic()).ljust(size, b"\0"))

    @property
    def seqs(self) -> list[int]:
        return [seq for seq, _, _ in self.echoes]


async def echo_server() -> tuple[asyncio.DatagramTransport, Echo]:
    loop = asyncio.get_running_loop()
    return await loop.create_datagram_endpoint(Echo, local_addr=LOCAL)


async def client_of(relay) -> Client:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_datagram_endpoint(Client, remote_addr=relay.address)
    return client


async def send_paced(client: Client, relay: ImpairmentRelay, count: int, *, echoed: bool = True, **kw) -> None:
    """Send `count` datagrams, at most WINDOW_DATAGRAMS ahead of what came back
    through the relay (`echoed`) or of what it read, so that no socket buffer
    on the way drops anything the test did not configure."""
    up, down = relay.stats[UP], relay.stats[DOWN]
    base = up.received

    def done() -> int:
        if echoed:
            return up.dropped + up.dropped_queue + down.received
        return up.received - base

    for seq in range(count):
        if seq % 25 == 0:
            await wait_for(lambda s=seq: done() >= s - WINDOW_DATAGRAMS)
        client.send(seq, **kw)
    await wait_for(lambda: up.received - base == count)


def settled(relay: ImpairmentRelay, client: Client):
    """Everything the relay forwarded came back through it and reached the client."""
    return lambda: (
        relay.snapshot()["queued"] == 0
        and relay.stats[DOWN].received == relay.stats[UP].forwarded
        and len(client.echoes) == relay.stats[DOWN].forwarded
    )


async def lossy_round(seed: int, count: int) -> tuple[set[int], dict]:
    server, _ = await echo_server()
    lossy = Impairment(loss=0.05)
    async with ImpairmentRelay(LOCAL, server.get_extra_info("sockname"), up=lossy, down=lossy, seed=seed) as relay:
        client = await client_of(relay)
        await send_paced(client, relay, count)
        await wait_for(settled(relay, client))
        client.transport.close()
        snapshot = relay.snapshot()
    server.close()
    return set(client.seqs), snapshot


@run
async def test_it_drops_close_to_the_configured_loss_and_the_same_datagrams_with_the_same_seed():
    count = 5000
    first, stats = await lossy_round(seed=7, count=count)
    # Binomial(5000, 0.05): mean 250, standard deviation 15.4; ±6 sd.
    assert 158 <= stats[UP]["dropped"] <= 342
    assert stats[UP]["received"] == count
    assert stats[UP]["forwarded"] == count - stats[UP]["dropped"]
    assert 150 <= stats[DOWN]["dropped"] <= 330
    assert len(first) == count - stats[UP]["dropped"] - stats[DOWN]["dropped"]

    again, stats_again = await lossy_round(seed=7, count=count)
    assert again == first
    assert stats_again == stats
    other, _ = await lossy_round(seed=8, count=count)
    assert other != first


@run
async def test_it_delays_each_datagram_by_at_least_the_configured_delay_and_keeps_order_under_jitter():
    server, _ = await echo_server()
    up = Impairment(delay_ms=60, jitter_ms=20)  # 40..80 ms
    down = Impairment(delay_ms=30)
    async with ImpairmentRelay(LOCAL, server.get_extra_info("sockname"), up=up, down=down, seed=1) as relay:
        client = await client_of(relay)
        for seq in range(100):
            client.send(seq)
            await asyncio.sleep(0.001)  # pacing only: closer than the jitter, so jitter could reorder
        await wait_for(lambda: len(client.echoes) == 100)
        for _, sent, arrived in client.echoes:
            assert arrived - sent >= 0.040 + 0.030
        assert client.seqs == list(range(100))  # jitter does not reorder
        assert relay.stats[UP].delayed == relay.stats[DOWN].delayed == 100
        assert relay.stats[UP].reordered == 0
    server.close()


@run
async def test_it_reorders_the_configured_share_and_counts_what_the_receiver_sees_out_of_order():
    server, _ = await echo_server()
    # A long hold: on a loaded machine the next datagram may come late, and a
    # datagram released by the timeout leaves in order.
    up = Impairment(reorder=0.05, reorder_hold_ms=1000)
    async with ImpairmentRelay(LOCAL, server.get_extra_info("sockname"), up=up, seed=3) as relay:
        client = await client_of(relay)
        await send_paced(client, relay, 2000)
        await wait_for(settled(relay, client))
        highest, late = -1, 0
        for seq in client.seqs:
            if seq < highest:
                late += 1
            highest = max(highest, seq)
        assert sorted(client.seqs) == list(range(2000))  # nothing lost, nothing twice
        assert late == relay.stats[UP].reordered
        assert 50 <= late <= 150  # 5 % of 2000 is 100; the last held ones may leave in order
    server.close()


@run
async def test_it_releases_a_held_datagram_when_nothing_overtakes_it():
    server, _ = await echo_server()
    up = Impairment(reorder=1.0, reorder_hold_ms=30)
    async with ImpairmentRelay(LOCAL, server.get_extra_info("sockname"), up=up) as relay:
        client = await client_of(relay)
        client.send(0)
        await wait_for(lambda: len(client.echoes) == 1)
        seq, sent, arrived = client.echoes[0]
        assert arrived - sent >= 0.030
        assert relay.stats[UP].reordered == 0  # held, but nothing went past it
    server.close()


@run
async def test_it_duplicates_the_configured_share():
    server, _ = await echo_server()
    down = Impairment(duplicate=0.05)
    async with ImpairmentRelay(LOCAL, server.get_extra_info("sockname"), down=down, seed=5) as relay:
        client = await client_of(relay)
        await send_paced(client, relay, 2000)
        await wait_for(settled(relay, client))
        seqs = client.seqs
        twice = len(seqs) - len(set(seqs))
        assert set(seqs) == set(range(2000))
        assert twice == relay.stats[DOWN].duplicated
        assert 50 <= twice <= 150
        assert relay.stats[DOWN].forwarded == 2000 + twice
        assert relay.stats[UP].duplicated == 0
    server.close()


@run
async def test_it_paces_to_the_rate_and_tail_drops_past_the_backlog():
    server, _ = await echo_server()
    # 1000-byte datagrams at 40 kbit/s: one every 200 ms; room for 5 waiting.
    up = Impairment(rate_kbps=40, queue_datagrams=5)
    async with ImpairmentRelay(LOCAL, server.get_extra_info("sockname"), up=up) as relay:
        client = await client_of(relay)
        first_sent = time.monotonic()
        for seq in range(20):
            client.send(seq, size=1000)
        await wait_for(lambda: relay.stats[UP].received == 20)
        await wait_for(settled(relay, client))
        stats = relay.stats[UP]
        assert stats.forwarded + stats.dropped_queue == 20
        # Only a relay that took over 2 s to read the burst would admit more.
        assert stats.dropped_queue >= 10
        assert stats.dropped == 0
        arrivals = sorted(arrived for _, _, arrived in client.echoes)
        for n, arrived in enumerate(arrivals, start=1):
            assert arrived - first_sent >= n * 0.200 * 0.99
    server.close()


@run
async def test_it_holds_at_most_max_queued_datagrams_and_drops_the_rest():
    server, _ = await echo_server()
    up = Impairment(delay_ms=300)
    target = server.get_extra_info("sockname")
    async with ImpairmentRelay(LOCAL, target, up=up, max_queued_datagrams=100) as relay:
        client = await client_of(relay)
        await send_paced(client, relay, 300, echoed=False)
        snapshot = relay.snapshot()
        assert snapshot["queued"] <= 100
        assert snapshot[UP]["dropped_queue"] >= 200 - snapshot[UP]["forwarded"]
        await wait_for(settled(relay, client))
        assert relay.stats[UP].forwarded + relay.stats[UP].dropped_queue == 300
        assert len(client.echoes) == relay.stats[UP].forwarded
    server.close()


def udp_echo_thread(stop: threading.Event) -> tuple[socket.socket, set]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(LOCAL)
    sock.settimeout(0.1)
    sources: set = set()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(2048)
            except TimeoutError:
                continue
            sources.add(addr)
            sock.sendto(data, addr)
        sock.close()

    threading.Thread(target=serve, daemon=True).start()
    return sock, sources


def test_it_gives_each_client_a_flow_of_its_own_and_refuses_past_max_flows():
    stop = threading.Event()
    server, sources = udp_echo_thread(stop)
    try:
        with ThreadedImpairmentRelay(LOCAL, server.getsockname(), max_flows=3) as relay:
            clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
            for client in clients:
                client.settimeout(5)
            for n, client in enumerate(clients[:3]):
                client.sendto(b"client %d" % n, relay.address)
                assert client.recvfrom(100)[0] == b"client %d" % n
            assert len(sources) == 3  # the server sees three source ports
            assert relay.snapshot()["flows"] == 3
            clients[3].sendto(b"one too many", relay.address)
            clients[0].sendto(b"again", relay.address)
            assert clients[0].recvfrom(100)[0] == b"again"
            assert relay.snapshot()["flows_refused"] == 1
            assert len(sources) == 3
            for client in clients:
                client.close()
    finally:
        stop.set()


@run
async def test_it_forgets_an_idle_flow():
    server, _ = await echo_server()
    async with ImpairmentRelay(LOCAL, server.get_extra_info("sockname"), flow_idle_seconds=0.2) as relay:
        client = await client_of(relay)
        client.send(0)
        await wait_for(lambda: len(client.echoes) == 1)
        assert relay.flows_opened == 1
        await wait_for(lambda: not relay.flows)
        client.send(1)  # a new flow, as a NAT would make
        await wait_for(lambda: len(client.echoes) == 2)
        assert relay.flows_opened == 2
    server.close()


def test_it_refuses_settings_that_are_not_probabilities_or_are_negative():
    with pytest.raises(ValueError, match="loss must be a probability between 0 and 1, not 1.5"):
        Impairment(loss=1.5)
    with pytest.raises(ValueError, match="delay_ms must not be negative"):
        Impairment(delay_ms=-1)
    with pytest.raises(ValueError, match="only delay_ms, loss and rate_kbps apply"):
        TcpDelayRelay(LOCAL, LOCAL, up=Impairment(reorder=0.1))
    assert parse_address("[::1]:1105") == ("::1", 1105)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address("localhost")


@run
async def test_the_tcp_relay_delays_each_way_and_relays_every_byte():
    async def echo(reader, writer):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, *LOCAL)
    delayed = Impairment(delay_ms=50)
    target = server.sockets[0].getsockname()
    async with TcpDelayRelay(LOCAL, target, up=delayed, down=delayed, max_queued_bytes=256 * 1024) as relay:
        reader, writer = await asyncio.open_connection(*relay.address)
        started = time.monotonic()
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        assert time.monotonic() - started >= 0.100
        payload = os.urandom(2 * 1024 * 1024)  # past max_queued_bytes: the relay slows the sender
        writer.write(payload)
        writer.write_eof()
        assert await reader.read() == payload
        writer.close()
        assert relay.bytes_forwarded == {UP: 4 + len(payload), DOWN: 4 + len(payload)}
    server.close()


@run
async def test_the_tcp_relay_turns_loss_into_retransmission_delay_and_keeps_every_byte_in_order():
    async def echo(reader, writer):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, *LOCAL)
    target = server.sockets[0].getsockname()
    # Every chunk loses a segment: each waits a retransmission (200 ms, Linux's
    # minimum RTO, past the 40 ms round trip) on top of the delay.
    lossy = TcpDelayRelay(LOCAL, target, up=Impairment(delay_ms=20, loss=1.0), down=Impairment(delay_ms=20))
    async with lossy as relay:
        assert relay.retransmit_ms == 200
        reader, writer = await asyncio.open_connection(*relay.address)
        started = time.monotonic()
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        assert time.monotonic() - started >= 0.240
        assert relay.retransmits == {UP: 1, DOWN: 0}
        writer.close()
    # A share of them, the same with the same seed; the bytes all there, in order.
    counts = []
    for _ in range(2):
        async with TcpDelayRelay(LOCAL, target, up=Impairment(loss=0.01), seed=7, retransmit_ms=1) as relay:
            reader, writer = await asyncio.open_connection(*relay.address)
            for n in range(200):
                chunk = n.to_bytes(2, "big") * 1000  # 2000 bytes: two segments
                writer.write(chunk)
                await writer.drain()
                assert await reader.readexactly(len(chunk)) == chunk
            writer.close()
            counts.append(relay.retransmits[UP])
    assert counts[0] == counts[1] and 0 < counts[0] < 12  # about 200 × (1 - 0.99²) ≈ 4
    server.close()


def test_the_command_relays_and_prints_its_counters_on_sigterm():
    stop = threading.Event()
    server, _ = udp_echo_thread(stop)
    host, port = server.getsockname()
    argv = [sys.executable, "-m", "tests.netimpair", "--listen", "127.0.0.1:0", "--to", f"{host}:{port}"]
    argv += ["--delay-ms", "20", "--down-delay-ms", "0", "--seed", "7", "--up-rate-kbps", "10000"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:")
        relay = parse_address(line.split()[-1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(10)
            client.sendto(b"hello", relay)
            assert client.recvfrom(100)[0] == b"hello"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0
        final = json.loads(out.strip().splitlines()[-1])
        assert final[UP]["forwarded"] == final[DOWN]["forwarded"] == 1
        assert final[UP]["delayed"] == 1
        assert final[DOWN]["delayed"] == 0
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_command_refuses_a_loss_that_is_not_a_probability():
    argv = [sys.executable, "-m", "tests.netimpair", "--listen", "127.0.0.1:0", "--to", "127.0.0.1:9", "--loss", "5"]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "loss must be a probability between 0 and 1, not 5.0" in result.stderr
