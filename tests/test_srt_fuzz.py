"""Property tests of the SRT listener and connection (hypothesis): random
datagrams, and a valid encrypted publishing session with bytes flipped,
datagrams cut, dropped, repeated and reordered and garbage in between, at
random times. Nothing a peer sends raises: bad datagrams are dropped and
counted, and the buffers stay within their limits."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livecenter.media.srt.connection import MAX_REORDER_PACKETS, SrtConnection
from livecenter.media.srt.crypto import aes_ctr, wrap_key_material
from livecenter.media.srt.errors import SrtProtocolError
from livecenter.media.srt.events import SrtConnectionRequested, SrtDataReceived
from livecenter.media.srt.listener import MAX_PENDING_HANDSHAKES, SrtListener
from livecenter.media.srt.packets import (
    SrtAckAck,
    SrtDataPacket,
    SrtDropRequest,
    SrtHandshake,
    SrtHandshakeType,
    SrtHsExtension,
    SrtKeepalive,
    SrtKeyFlag,
    SrtNak,
    SrtShutdown,
    SrtUserControl,
    parse_packet,
)
from tests.test_srt_libsrt_vectors import CONCLUSION, DATA

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SECRET = b"fuzz" * 8
PEER = ("192.0.2.1", 9000)
PASSPHRASE = "ten chars or more"
CALLER_ID = 77
ISN = 0x7FFF_FFF0  # the session crosses the sequence wrap
# Stands for the connection's socket ID, which the listener draws at random.
THEIRS = b"\xff\xff\xff\xff"
KEY = bytes(range(16))
MATERIAL = wrap_key_material(PASSPHRASE, even=KEY, odd=None, salt=bytes(16))
PAYLOADS = [bytes([0x47, k]) + bytes(186) for k in range(40)]


def session() -> list[bytes]:
    """A caller's datagrams: handshake, encrypted data, control, shutdown."""
    induction = SrtHandshake(
        version=4, handshake_type=SrtHandshakeType.INDUCTION, socket_id=CALLER_ID, extension_field=2
    )
    probe = SrtListener(secret=SECRET)
    probe.receive_datagram(bytes(induction), PEER, 10.0)
    cookie = parse_packet(probe.datagrams_to_send()[0][0]).syn_cookie
    conclusion = SrtHandshake(
        version=5,
        handshake_type=SrtHandshakeType.CONCLUSION,
        socket_id=CALLER_ID,
        syn_cookie=cookie,
        extension_field=0x7,
        initial_seq=ISN,
        hs=SrtHsExtension(0x010501, 0xBF, 120, 120),
        km=bytes(MATERIAL),
        stream_id="#!::r=live/cam,m=publish",
    )
    to_them = int.from_bytes(THEIRS, "big")
    datagrams = [bytes(induction), bytes(conclusion)]
    for k, payload in enumerate(PAYLOADS):
        seq = (ISN + k) & 0x7FFF_FFFF
        encrypted = aes_ctr(KEY, MATERIAL.salt, seq, payload)
        datagrams.append(bytes(SrtDataPacket(seq, encrypted, 1000 * k, to_them, key=SrtKeyFlag.EVEN)))
        if k % 10 == 5:
            datagrams.append(bytes(SrtAckAck(k // 10 + 1, dest_socket_id=to_them)))
    datagrams += [
        bytes(SrtKeepalive(dest_socket_id=to_them)),
        bytes(SrtNak(((ISN, ISN + 3),), dest_socket_id=to_them)),
        bytes(SrtDropRequest(1, ISN + 40, ISN + 45, dest_socket_id=to_them)),
        bytes(SrtUserControl(3, bytes(MATERIAL), dest_socket_id=to_them)),
        bytes(SrtShutdown(dest_socket_id=to_them)),
    ]
    return datagrams


SESSION = session()


class Driver:
    """What the node does with a listener: accept everyone, run timers."""

    def __init__(self) -> None:
        self.listener = SrtListener(secret=SECRET)
        self.now = 10.0
        self.payloads: list[bytes] = []

    def feed(self, data: bytes, addr=PEER) -> None:
        if data[12:16] == THEIRS and self.listener.connections:
            data = data[:12] + next(iter(self.listener.connections)).to_bytes(4, "big") + data[16:]
        self.listener.receive_datagram(data, addr, self.now)
        self.settle()

    def wait(self, seconds: float) -> None:
        self.now += seconds
        self.settle()

    def settle(self) -> None:
        for _ in range(3):
            timer = self.listener.next_timer()
            if timer is not None and timer <= self.now:
                self.listener.handle_timer(self.now)
            for event in self.listener.events():
                if isinstance(event, SrtConnectionRequested):
                    self.listener.accept(event, self.now, passphrase=PASSPHRASE)
                elif isinstance(event, SrtDataReceived):
                    self.payloads.append(event.payload)
            for data, _ in self.listener.datagrams_to_send():
                parse_packet(data)  # what we send parses
        assert len(self.listener.connections) <= self.listener.max_connections
        for connection in self.listener.connections.values():
            assert connection.buffered_packets <= MAX_REORDER_PACKETS


def test_the_session_goes_through_unharmed():
    driver = Driver()
    for data in SESSION[:-1]:
        driver.feed(data)
        driver.wait(0.001)
    driver.wait(1.0)
    assert driver.payloads == PAYLOADS
    [connection] = driver.listener.connections.values()
    assert connection.stats.packets_received == len(PAYLOADS)
    driver.feed(SESSION[-1])
    assert driver.listener.connections == {}


datagram_edits = st.lists(
    st.tuples(
        st.integers(0, len(SESSION) - 1),  # which datagram
        st.sampled_from(["flip", "cut", "drop", "repeat", "garbage", "swap"]),
        st.integers(0, 1500),  # where
        st.integers(0, 255),  # with what
        st.binary(max_size=64),
    ),
    max_size=12,
)


@FUZZ
@given(datagram_edits, st.lists(st.floats(0, 0.3), min_size=len(SESSION), max_size=len(SESSION)))
def test_it_survives_a_mutated_session(edits, gaps):
    datagrams = list(SESSION)
    for index, kind, where, value, garbage in edits:
        index %= len(datagrams)
        data = datagrams[index]
        if kind == "flip":
            where %= len(data)
            datagrams[index] = data[:where] + bytes([data[where] ^ (value or 1)]) + data[where + 1 :]
        elif kind == "cut":
            datagrams[index] = data[: where % (len(data) + 1)]
        elif kind == "drop":
            del datagrams[index]
        elif kind == "repeat":
            datagrams.insert(index, data)
        elif kind == "garbage":
            datagrams.insert(index, data[:16] + garbage)
        elif kind == "swap" and index + 1 < len(datagrams):
            datagrams[index], datagrams[index + 1] = datagrams[index + 1], data
        if not datagrams:
            return
    driver = Driver()
    for data, gap in zip(datagrams, gaps * 2, strict=False):
        if data:
            driver.feed(data)
        driver.wait(gap)
    driver.wait(10.0)
    assert driver.listener.connections == {}  # closed by shutdown or idle timeout


@FUZZ
@given(st.lists(st.tuples(st.binary(min_size=0, max_size=1600), st.integers(0, 3)), max_size=40))
def test_it_drops_random_datagrams_and_counts_them(datagrams):
    driver = Driver()
    for data, source in datagrams:
        driver.feed(data, (f"198.51.100.{source}", 1000 + source))
    stats = driver.listener.stats
    assert stats.datagrams_received == len(datagrams)
    assert len(driver.listener.connections) == 0


@FUZZ
@given(st.lists(st.binary(min_size=16, max_size=200), max_size=30), st.sampled_from(SESSION[2:] + [DATA]))
def test_a_connection_drops_random_datagrams(garbage, seed):
    connection = SrtConnection(
        socket_id=1, peer_socket_id=2, initial_seq=ISN, latency_ms=120, peer_start_timestamp=0, now=10.0
    )
    for k, data in enumerate(garbage):
        # Half of them look like the seed, with the garbage as the rest.
        data = seed[: len(data) // 2] + data if k % 2 else data
        if not connection.closed:  # a datagram may have been the peer's shutdown
            connection.send(bytes(188), 10.0 + k * 0.01)  # so that NAKs and ACKs find something
        connection.receive_datagram(data, 10.0 + k * 0.01)
        connection.handle_timer(10.0 + k * 0.01)
        for datagram in connection.datagrams_to_send():
            parse_packet(datagram)
        connection.events()
    assert connection.buffered_packets <= MAX_REORDER_PACKETS


def test_a_flood_of_forged_conclusions_costs_no_state():
    listener = SrtListener(secret=SECRET)
    for k in range(2 * MAX_PENDING_HANDSHAKES):
        forged = SrtHandshake(
            version=5,
            handshake_type=SrtHandshakeType.CONCLUSION,
            socket_id=k + 1,
            syn_cookie=k,
            hs=SrtHsExtension(0x010501, 0xBF, 120, 120),
        )
        listener.receive_datagram(bytes(forged), (f"203.0.113.{k % 250}", 1000 + k), 10.0)
    assert listener.events() == [] and listener.datagrams_to_send() == []
    assert listener.next_timer() is None
    assert listener.stats.handshakes_bad_cookie == 2 * MAX_PENDING_HANDSHAKES


def test_the_libsrt_conclusion_without_our_cookie_is_ignored():
    listener = SrtListener(secret=SECRET)
    listener.receive_datagram(CONCLUSION, PEER, 10.0)
    assert listener.stats.handshakes_bad_cookie == 1


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=1600),
        st.sampled_from(SESSION + [CONCLUSION, DATA]).flatmap(
            lambda seed: st.tuples(st.integers(0, len(seed)), st.binary(max_size=40)).map(
                lambda cut: seed[: cut[0]] + cut[1]
            )
        ),
    )
)
def test_the_codec_raises_only_its_own_error(data):
    try:
        packet = parse_packet(data)
    except SrtProtocolError:
        return
    # What parses encodes again.
    bytes(packet)
