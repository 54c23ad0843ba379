"""The SRT caller (srt/caller.py) against our own listener, in memory: the
HSv5 handshake with and without a passphrase, rejections with their
reasons, lost handshake packets resent, the connect timeout, latency
negotiated to the larger, and the connection that follows (its clock, its
data, its acknowledgements). No sockets: datagrams are handed across."""

from __future__ import annotations

import functools
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livecenter.media.srt.caller import CONNECT_TIMEOUT_US, HANDSHAKE_RESEND_US, HSREQ_FLAGS, SrtCaller
from livecenter.media.srt.errors import SrtUsageError
from livecenter.media.srt.events import (
    SrtCallAccepted,
    SrtCallRejected,
    SrtConnectionClosed,
    SrtConnectionRejected,
    SrtConnectionRequested,
    SrtDataReceived,
)
from livecenter.media.srt.listener import SrtListener
from livecenter.media.srt.packets import (
    SRT_MAGIC_CODE,
    UDT_DGRAM,
    SrtDataPacket,
    SrtHandshake,
    SrtHandshakeExtensionType,
    SrtHandshakeType,
    SrtKeepalive,
    SrtRejectReason,
    SrtShutdown,
    parse_packet,
)

LISTENER = ("192.0.2.1", 1105)
CALLER = ("192.0.2.9", 50000)
STREAM_ID = "#!::h=push.test,r=/live/cam1?lc_node=edge-a&lc_relay=1-abc,m=publish"
PASSPHRASE = "ten chars or more"


class Link:
    """Datagrams between one caller and one listener, at the time given;
    `drop(direction, packet)` says which to lose ("up" is to the listener)."""

    def __init__(self, caller: SrtCaller, listener: SrtListener, drop=None) -> None:
        self.caller, self.listener = caller, listener
        self.drop = drop or (lambda direction, packet: False)
        self.up: list[object] = []  # every packet the caller sent, parsed
        self.down: list[object] = []

    def run(self, now: float) -> None:
        moved = True
        while moved:
            moved = False
            for data in self.caller.datagrams_to_send():
                packet = parse_packet(data)
                self.up.append(packet)
                if not self.drop("up", packet):
                    self.listener.receive_datagram(data, CALLER, now)
                    moved = True
            for data, addr in self.listener.datagrams_to_send():
                assert addr == CALLER
                packet = parse_packet(data)
                self.down.append(packet)
                if not self.drop("down", packet):
                    self.caller.receive_datagram(data, now)
                    moved = True


def decide(listener: SrtListener, now: float, **accept) -> SrtConnectionRequested:
    [request] = listener.events()
    assert isinstance(request, SrtConnectionRequested)
    if accept.pop("reject", None) is not None:
        return request
    listener.accept(request, now, **accept)
    return request


def connect(caller_options=None, listener_options=None, accept=None, now=10.0):
    """A caller and a listener through a handshake that the listener accepts."""
    listener = SrtListener(**(listener_options or {}))
    caller = SrtCaller(LISTENER, now, **{"stream_id": STREAM_ID, **(caller_options or {})})
    link = Link(caller, listener)
    link.run(now)
    request = decide(listener, now, **(accept or {}))
    link.run(now)
    return caller, listener, link, request


def test_it_calls_with_an_hsv4_induction_then_an_hsv5_conclusion_with_the_cookie():
    caller, listener, link, request = connect(caller_options={"latency_ms": 500})
    induction, conclusion = link.up[:2]
    # libsrt's caller: version 4 and the UDT socket type, no cookie, to socket 0.
    assert induction.version == 4 and induction.handshake_type == SrtHandshakeType.INDUCTION
    assert induction.extension_field == UDT_DGRAM and induction.syn_cookie == 0
    assert induction.dest_socket_id == 0 and induction.socket_id == caller.socket_id
    assert induction.peer_ip[:4] == bytes([192, 0, 2, 1])
    answer = link.down[0]
    assert answer.extension_field == SRT_MAGIC_CODE
    assert conclusion.version == 5 and conclusion.handshake_type == SrtHandshakeType.CONCLUSION
    assert conclusion.syn_cookie == answer.syn_cookie != 0
    assert conclusion.initial_seq == induction.initial_seq == caller.initial_seq
    assert conclusion.extension_field == 0x1 | 0x4  # HSREQ and CONFIG (the stream ID); no KMREQ
    assert conclusion.hs_command == SrtHandshakeExtensionType.HSREQ
    assert conclusion.hs.flags == HSREQ_FLAGS
    assert (conclusion.hs.receiver_delay_ms, conclusion.hs.sender_delay_ms) == (500, 500)
    assert conclusion.km is None and conclusion.encryption_field == 0
    assert conclusion.stream_id == STREAM_ID
    assert request.stream_id == STREAM_ID and request.peer_latency_ms == 500 and not request.encrypted


def test_it_opens_a_connection_that_delivers_what_it_sends_and_is_acknowledged():
    caller, listener, link, _ = connect()
    [accepted] = caller.events()
    [connection] = listener.connections.values()
    assert accepted == SrtCallAccepted(caller.socket_id, connection.socket_id, 120, 120, False, 0x010500)
    assert caller.connected and connection.peer_socket_id == caller.socket_id
    payloads = [bytes([n]) * 1316 for n in range(5)]
    for n, payload in enumerate(payloads):
        caller.send(payload, 10.5 + n / 100)
    link.run(10.55)
    for now in (10.7, 10.8):
        listener.handle_timer(now)
        caller.handle_timer(now)
        link.run(now)
    delivered = [e.payload for e in listener.events() if isinstance(e, SrtDataReceived)]
    assert delivered == payloads
    # The listener acknowledged everything: the caller holds nothing to resend.
    assert caller.connection._send_buffer == {}
    assert caller.connection.stats.packets_sent == 5


def test_its_packets_play_on_the_clock_its_conclusion_set():
    """The listener's time base comes from the CONCLUSION's timestamp, so the
    caller's data counts from the same zero: when the call began, not when
    it was answered."""
    listener = SrtListener(latency_ms=120)
    caller = SrtCaller(LISTENER, 10.0, stream_id=STREAM_ID)
    link = Link(caller, listener)
    listener.receive_datagram(caller.datagrams_to_send()[0], CALLER, 10.0)
    [(answer, _)] = listener.datagrams_to_send()
    caller.receive_datagram(answer, 10.2)  # the answer took 200 ms
    [conclusion] = caller.datagrams_to_send()
    assert parse_packet(conclusion).timestamp == 200_000
    listener.receive_datagram(conclusion, CALLER, 10.2)
    decide(listener, 10.3)
    link.run(10.3)
    caller.send(b"x" * 188, 11.0)
    [data] = [p for p in map(parse_packet, caller.datagrams_to_send()) if isinstance(p, SrtDataPacket)]
    assert data.timestamp == 1_000_000
    listener.receive_datagram(bytes(data), CALLER, 11.0)
    listener.handle_timer(11.119)
    assert not [e for e in listener.events() if isinstance(e, SrtDataReceived)]
    listener.handle_timer(11.12)  # sent at 11.0, played 120 ms later
    assert [e.payload for e in listener.events() if isinstance(e, SrtDataReceived)] == [b"x" * 188]


@pytest.mark.parametrize(("ours", "theirs", "agreed"), [(500, 120, 500), (80, 200, 200), (120, 120, 120)])
def test_it_gets_the_larger_of_its_latency_and_the_listeners(ours, theirs, agreed):
    caller, listener, _, _ = connect({"latency_ms": ours}, {"latency_ms": theirs})
    [accepted] = caller.events()
    [connection] = listener.connections.values()
    assert connection.latency_us == agreed * 1000  # the listener plays our packets this late
    assert accepted.send_latency_ms == agreed and caller.connection.send_latency_us == agreed * 1000


@pytest.mark.parametrize("key_bytes", [16, 24, 32])
def test_it_encrypts_with_a_passphrase_and_the_listener_opens_it(key_bytes):
    caller, listener, link, request = connect(
        {"passphrase": PASSPHRASE, "key_bytes": key_bytes}, accept={"passphrase": PASSPHRASE}
    )
    conclusion = link.up[1]
    assert conclusion.extension_field == 0x1 | 0x2 | 0x4
    assert conclusion.encryption_field == key_bytes // 8
    assert conclusion.km_command == SrtHandshakeExtensionType.KMREQ
    assert request.encrypted and request.key_bytes == key_bytes
    [accepted] = caller.events()
    assert accepted.encrypted
    caller.send(b"secret payload" * 10, 10.5)
    [data] = caller.datagrams_to_send()
    assert b"secret payload" not in data  # AES-CTR on the wire
    listener.receive_datagram(data, CALLER, 10.5)
    listener.handle_timer(11.0)
    assert [e.payload for e in listener.events() if isinstance(e, SrtDataReceived)] == [b"secret payload" * 10]


def test_it_takes_the_key_size_a_listener_advertises_when_it_has_none_set():
    listener = SrtListener()
    caller = SrtCaller(LISTENER, 10.0, passphrase=PASSPHRASE)
    listener.receive_datagram(caller.datagrams_to_send()[0], CALLER, 10.0)
    [(answer, _)] = listener.datagrams_to_send()
    advertised = bytes(replace(parse_packet(answer), encryption_field=4))
    caller.receive_datagram(advertised, 10.0)
    [conclusion] = caller.datagrams_to_send()
    assert parse_packet(conclusion).encryption_field == 4


@pytest.mark.parametrize(
    ("caller_passphrase", "listener_passphrase", "reason"),
    [
        ("another passphrase", PASSPHRASE, SrtRejectReason.BADSECRET),
        (None, PASSPHRASE, SrtRejectReason.UNSECURE),
        (PASSPHRASE, None, SrtRejectReason.UNSECURE),
    ],
    ids=["wrong passphrase", "none where one is wanted", "one where none is"],
)
def test_a_passphrase_mismatch_ends_the_call_with_the_listeners_reason(caller_passphrase, listener_passphrase, reason):
    caller, listener, _, _ = connect({"passphrase": caller_passphrase}, accept={"passphrase": listener_passphrase})
    [rejected] = caller.events()
    assert isinstance(rejected, SrtCallRejected) and rejected.reason == reason
    assert str(int(reason)) in rejected.detail and reason.name in rejected.detail
    assert [type(e) for e in listener.events()] == [SrtConnectionRejected]
    assert caller.ended and not caller.connected and caller.next_timer() is None
    with pytest.raises(SrtUsageError):
        caller.send(b"x", 11.0)


def test_an_access_control_rejection_surfaces_with_its_code():
    listener = SrtListener()
    caller = SrtCaller(LISTENER, 10.0, stream_id=STREAM_ID)
    link = Link(caller, listener)
    link.run(10.0)
    listener.reject(decide(listener, 10.0, reject=True), 1403, 10.0)
    link.run(10.0)
    assert caller.events() == [SrtCallRejected(1403, "the listener rejected the call (1403, FORBIDDEN)")]
    assert caller.ended


def test_it_resends_a_lost_induction_and_a_lost_conclusion_every_250_ms():
    lost = {"induction": 1, "conclusion": 1, "answer": 1}

    def drop(direction, packet):
        if not isinstance(packet, SrtHandshake):
            return False
        what = "answer" if direction == "down" and packet.handshake_type == SrtHandshakeType.CONCLUSION else None
        if direction == "up":
            what = "induction" if packet.handshake_type == SrtHandshakeType.INDUCTION else "conclusion"
        if what is not None and lost[what]:
            lost[what] -= 1
            return True
        return False

    listener = SrtListener()
    caller = SrtCaller(LISTENER, 10.0, stream_id=STREAM_ID)
    link = Link(caller, listener, drop)
    now = 10.0
    link.run(now)
    while not listener.connections and now < 12.0:
        assert caller.next_timer() == pytest.approx(now + HANDSHAKE_RESEND_US / 1e6)
        now = caller.next_timer()
        caller.handle_timer(now)
        link.run(now)
        for event in listener.events():
            listener.accept(event, now)
            link.run(now)
    assert caller.events() == []  # the listener's answer was lost: still calling
    now = caller.next_timer()
    caller.handle_timer(now)
    link.run(now)  # the CONCLUSION again, answered again
    [accepted] = caller.events()
    assert isinstance(accepted, SrtCallAccepted)
    sent = [p.handshake_type for p in link.up if isinstance(p, SrtHandshake)]
    assert sent == [SrtHandshakeType.INDUCTION] * 2 + [SrtHandshakeType.CONCLUSION] * 3
    assert now == pytest.approx(10.75)
    assert listener.stats.handshakes_repeated == 1


def test_it_gives_up_after_the_connect_timeout_with_libsrts_timeout_reason():
    caller = SrtCaller(LISTENER, 10.0, connect_timeout_us=1_000_000)
    sent = len(caller.datagrams_to_send())
    while (timer := caller.next_timer()) is not None:
        caller.handle_timer(timer)
        sent += len(caller.datagrams_to_send())
    assert timer is None and sent == 4  # at 0, 250, 500 and 750 ms
    assert caller.events() == [SrtCallRejected(SrtRejectReason.TIMEOUT, "no answer from the listener within 1 s")]
    assert CONNECT_TIMEOUT_US == 3_000_000  # libsrt's SRTO_CONNTIMEO


def test_it_ignores_what_is_not_for_it_or_not_its_turn():
    caller = SrtCaller(LISTENER, 10.0, socket_id=77)
    caller.datagrams_to_send()
    caller.receive_datagram(b"\x00" * 8, 10.0)  # too short to be SRT
    caller.receive_datagram(bytes(SrtKeepalive(dest_socket_id=78)), 10.0)  # another socket
    caller.receive_datagram(bytes(SrtKeepalive(dest_socket_id=77)), 10.0)  # a connection before its answer
    conclusion = SrtHandshake(5, SrtHandshakeType.CONCLUSION, 5, dest_socket_id=77)
    caller.receive_datagram(bytes(conclusion), 10.0)  # an answer to a CONCLUSION it has not sent
    stats = caller.stats
    assert (stats.datagrams_undecodable, stats.datagrams_foreign, stats.answers_ignored) == (1, 1, 2)
    assert caller.events() == [] and caller.datagrams_to_send() == []


def test_it_refuses_a_listener_that_does_not_speak_hsv5():
    caller = SrtCaller(LISTENER, 10.0, socket_id=77)
    udt = SrtHandshake(4, SrtHandshakeType.INDUCTION, 5, 99, extension_field=2, dest_socket_id=77)
    caller.receive_datagram(bytes(udt), 10.0)
    [rejected] = caller.events()
    assert rejected.reason == SrtRejectReason.VERSION


def test_it_hangs_up_on_an_answer_it_cannot_take():
    """An HSRSP missing: the listener holds a connection for us, which a
    SHUTDOWN ends."""
    caller = SrtCaller(LISTENER, 10.0, socket_id=77, initial_seq=5)
    induction = SrtHandshake(5, SrtHandshakeType.INDUCTION, 9, 1234, extension_field=SRT_MAGIC_CODE, dest_socket_id=77)
    caller.receive_datagram(bytes(induction), 10.0)
    caller.datagrams_to_send()
    no_hsrsp = SrtHandshake(5, SrtHandshakeType.CONCLUSION, 9, 1234, initial_seq=5, dest_socket_id=77)
    caller.receive_datagram(bytes(no_hsrsp), 10.1)
    [rejected] = caller.events()
    assert rejected == SrtCallRejected(SrtRejectReason.ROGUE, "the listener's answer has no HSRSP")
    [shutdown] = map(parse_packet, caller.datagrams_to_send())
    assert isinstance(shutdown, SrtShutdown) and shutdown.dest_socket_id == 9


def test_a_closed_connection_says_so_and_hangs_up_on_the_listener():
    caller, listener, link, _ = connect()
    caller.events()
    caller.close(11.0)
    link.run(11.0)
    assert isinstance(link.up[-1], SrtShutdown)
    assert [type(e) for e in listener.events()] == [SrtConnectionClosed]
    assert caller.ended and not caller.connected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"latency_ms": 70_000}, "latency_ms 70000 is outside 0-65535"),
        ({"passphrase": "short"}, "a passphrase has 10 to 79 characters"),
        ({"key_bytes": 20}, "key_bytes 20 is not 16, 24 or 32"),
        ({"stream_id": "x" * 513}, "a stream ID has at most 512 bytes"),
    ],
)
def test_it_refuses_options_libsrt_would(options, message):
    with pytest.raises(SrtUsageError, match=message):
        SrtCaller(LISTENER, 10.0, **options)


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OURS = 77


@functools.cache
def listener_answers() -> tuple[bytes, ...]:
    """What a listener with a passphrase sends a caller: its INDUCTION and
    CONCLUSION answers (HSRSP, KMRSP), then a keepalive."""
    listener = SrtListener(secret=b"fuzz" * 8)
    caller = SrtCaller(LISTENER, 10.0, stream_id=STREAM_ID, passphrase=PASSPHRASE, socket_id=OURS, initial_seq=5)
    link = Link(caller, listener)
    link.run(10.0)
    decide(listener, 10.0, passphrase=PASSPHRASE)
    link.run(10.0)
    listener.handle_timer(11.5)
    link.run(11.5)
    return tuple(bytes(packet) for packet in link.down)


@FUZZ
@given(
    edits=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 400), st.integers(0, 255)), max_size=6),
    garbage=st.lists(st.binary(max_size=200), max_size=4),
)
def test_nothing_a_listener_sends_makes_it_raise(edits, garbage):
    datagrams = [*listener_answers()] + [OURS.to_bytes(4, "big").rjust(16, b"\x80") + g for g in garbage]
    caller = SrtCaller(LISTENER, 10.0, stream_id=STREAM_ID, passphrase=PASSPHRASE, socket_id=OURS, initial_seq=5)
    for which, position, value in edits:
        data = bytearray(datagrams[which])
        if position < len(data):
            data[position] = value
        elif data:
            del data[position % len(data) :]
        datagrams[which] = bytes(data)
    now = 10.0
    for data in datagrams:
        caller.receive_datagram(data, now)
        now += 0.1
        caller.handle_timer(now)
    for event in caller.events():
        assert isinstance(event, SrtCallAccepted | SrtCallRejected | SrtConnectionClosed), event
    caller.datagrams_to_send()
