"""The SRT listener: caller-listener handshake v5 (draft-sharabayko-srt 4.3.1),
SYN cookies, HSREQ/HSRSP, latency, stream ID, rejections and limits."""

import random

import pytest

from livecenter.media.srt.crypto import wrap_key_material
from livecenter.media.srt.errors import SrtUsageError
from livecenter.media.srt.events import SrtConnectionRejected, SrtConnectionRequested
from livecenter.media.srt.listener import (
    COOKIE_PERIOD_US,
    MAX_HANDSHAKES_PER_SOURCE_PER_SECOND,
    MAX_PENDING_HANDSHAKES,
    MAX_RATE_TRACKED_SOURCES,
    PENDING_HANDSHAKE_TIMEOUT_US,
    SrtListener,
)
from livecenter.media.srt.packets import (
    SRT_MAGIC_CODE,
    UDT_DGRAM,
    SrtDataPacket,
    SrtFlag,
    SrtHandshake,
    SrtHandshakeExtensionType,
    SrtHandshakeType,
    SrtHsExtension,
    SrtKeepalive,
    SrtNak,
    SrtRejectReason,
    parse_packet,
)

PEER = ("192.0.2.10", 40000)
CALLER_ID = 0x1111_2222
ISN = 0x0123_4567
STREAM_ID = "#!::h=live.example.com,r=/live/cam1?auth_key=1-0-0-abc,m=publish"
PASSPHRASE = "ten chars or more"
CALLER_FLAGS = (
    SrtFlag.TSBPDSND | SrtFlag.TSBPDRCV | SrtFlag.CRYPT | SrtFlag.TLPKTDROP | SrtFlag.PERIODICNAK | SrtFlag.REXMITFLG
)


def induction(socket_id=CALLER_ID):
    # What libsrt's caller sends first: HSv4 fields, socket type DGRAM.
    return bytes(
        SrtHandshake(
            version=4,
            handshake_type=SrtHandshakeType.INDUCTION,
            socket_id=socket_id,
            extension_field=UDT_DGRAM,
            initial_seq=ISN,
            timestamp=50,
        )
    )


def conclusion(cookie, socket_id=CALLER_ID, **changes):
    fields = dict(
        version=5,
        handshake_type=SrtHandshakeType.CONCLUSION,
        socket_id=socket_id,
        syn_cookie=cookie,
        extension_field=0x5,
        initial_seq=ISN,
        hs=SrtHsExtension(0x010501, CALLER_FLAGS, 120, 120),
        stream_id=STREAM_ID,
        timestamp=300_000,
    )
    fields.update(changes)
    return bytes(SrtHandshake(**fields))


def answers(listener):
    return [(parse_packet(data), addr) for data, addr in listener.datagrams_to_send()]


def cookie_for(listener, peer=PEER, now=10.0):
    listener.receive_datagram(induction(), peer, now)
    [(answer, _)] = answers(listener)
    return answer.syn_cookie


def request(listener, peer=PEER, now=10.0, socket_id=CALLER_ID, **changes):
    listener.receive_datagram(induction(socket_id), peer, now)
    [(answer, _)] = answers(listener)
    listener.receive_datagram(conclusion(answer.syn_cookie, socket_id, **changes), peer, now)
    events = listener.events()
    assert len(events) == 1
    return events[0]


def test_it_answers_an_induction_with_srt_magic_and_a_cookie_and_keeps_no_state():
    listener = SrtListener()
    listener.receive_datagram(induction(), PEER, 10.0)
    [(answer, addr)] = answers(listener)
    assert addr == PEER
    assert answer.version == 5
    assert answer.handshake_type == SrtHandshakeType.INDUCTION
    assert answer.extension_field == SRT_MAGIC_CODE
    assert answer.dest_socket_id == CALLER_ID
    assert answer.initial_seq == ISN
    assert answer.syn_cookie != 0
    assert answer.peer_ip[:4] == bytes([192, 0, 2, 10])
    assert listener.events() == []
    assert listener.connections == {}
    assert listener.next_timer() is None
    assert listener.stats.inductions_answered == 1


def test_it_gives_each_address_and_port_its_own_cookie():
    listener = SrtListener(secret=b"k" * 32)
    assert cookie_for(listener) == cookie_for(listener)
    assert cookie_for(listener) != cookie_for(listener, peer=(PEER[0], PEER[1] + 1))
    assert cookie_for(listener) != cookie_for(listener, peer=("192.0.2.11", PEER[1]))
    assert cookie_for(listener) != cookie_for(SrtListener(secret=b"j" * 32))


def test_it_surfaces_a_conclusion_with_its_stream_id():
    listener = SrtListener()
    event = request(listener)
    assert event == SrtConnectionRequested(
        request_id=event.request_id,
        peer=PEER,
        peer_socket_id=CALLER_ID,
        stream_id=STREAM_ID,
        encrypted=False,
        key_bytes=0,
        peer_latency_ms=120,
        peer_srt_version=0x010501,
    )
    assert listener.datagrams_to_send() == []  # nothing until the caller decides


def test_it_answers_an_accepted_caller_with_hsrsp():
    listener = SrtListener(latency_ms=120)
    event = request(listener)
    connection = listener.accept(event, 10.1)
    [(answer, addr)] = answers(listener)
    assert addr == PEER
    assert answer.handshake_type == SrtHandshakeType.CONCLUSION
    assert answer.version == 5
    assert answer.dest_socket_id == CALLER_ID
    assert answer.socket_id == connection.socket_id != 0
    # Our clock starts when the CONCLUSION came (10.0); we answered 100 ms later.
    assert answer.timestamp == 100_000
    assert answer.initial_seq == ISN
    assert answer.hs_command == SrtHandshakeExtensionType.HSRSP
    assert answer.hs.flags & SrtFlag.TSBPDRCV and answer.hs.flags & SrtFlag.TLPKTDROP
    assert not answer.hs.flags & SrtFlag.STREAM
    assert (answer.hs.receiver_delay_ms, answer.hs.sender_delay_ms) == (120, 120)
    assert answer.km is None and answer.encryption_field == 0
    assert listener.connections == {connection.socket_id: connection}
    assert connection.latency_us == 120_000


def test_it_drops_too_late_packets_only_if_the_caller_asks_for_it_and_says_so():
    listener = SrtListener(latency_ms=120)
    without = listener.accept(
        request(listener, hs=SrtHsExtension(0x010501, CALLER_FLAGS & ~SrtFlag.TLPKTDROP, 120, 120)), 10.0
    )
    [(answer, _)] = answers(listener)
    assert not answer.hs.flags & SrtFlag.TLPKTDROP and answer.hs.flags & SrtFlag.PERIODICNAK
    assert not without.too_late_drop
    with_drop = listener.accept(request(listener, socket_id=CALLER_ID + 1), 10.0)
    [(answer, _)] = answers(listener)
    assert answer.hs.flags & SrtFlag.TLPKTDROP and with_drop.too_late_drop


@pytest.mark.parametrize(
    ("ours", "theirs", "receive", "send"),
    [
        (120, SrtHsExtension(0x010501, CALLER_FLAGS, 120, 200), 200, 120),
        (300, SrtHsExtension(0x010501, CALLER_FLAGS, 500, 200), 300, 500),
        (120, SrtHsExtension(0x010501, CALLER_FLAGS, 0, 0), 120, 120),
    ],
)
def test_it_negotiates_the_larger_latency_each_way(ours, theirs, receive, send):
    listener = SrtListener(latency_ms=50)
    connection = listener.accept(request(listener, hs=theirs), 10.0, latency_ms=ours)
    [(answer, _)] = answers(listener)
    assert (answer.hs.receiver_delay_ms, answer.hs.sender_delay_ms) == (receive, send)
    assert connection.latency_us == receive * 1000


def test_it_answers_a_repeated_conclusion_with_the_same_answer():
    listener = SrtListener()
    cookie = cookie_for(listener)
    listener.receive_datagram(conclusion(cookie), PEER, 10.0)
    listener.receive_datagram(conclusion(cookie), PEER, 10.25)  # while pending
    [event] = listener.events()
    assert listener.datagrams_to_send() == []
    listener.accept(event, 10.3)
    first = listener.datagrams_to_send()
    listener.receive_datagram(conclusion(cookie), PEER, 10.5)  # our answer was lost
    assert listener.datagrams_to_send() == first
    assert listener.events() == []
    assert listener.stats.handshakes_repeated == 2


def test_it_ignores_a_conclusion_with_a_wrong_cookie_without_answering():
    listener = SrtListener()
    cookie = cookie_for(listener)
    listener.receive_datagram(conclusion(cookie ^ 1), PEER, 10.0)
    listener.receive_datagram(conclusion(cookie), ("192.0.2.99", PEER[1]), 10.0)
    assert listener.events() == []
    assert listener.datagrams_to_send() == []
    assert listener.stats.handshakes_bad_cookie == 2


def test_it_takes_a_cookie_from_the_minute_before_but_not_older():
    period_s = COOKIE_PERIOD_US / 1_000_000
    listener = SrtListener()
    cookie = cookie_for(listener, now=0.0)
    listener.receive_datagram(conclusion(cookie), PEER, period_s + 1)
    assert len(listener.events()) == 1
    listener = SrtListener(secret=b"s" * 32)
    cookie = cookie_for(listener, now=0.0)
    listener.receive_datagram(conclusion(cookie), PEER, 2 * period_s + 1)
    assert listener.events() == []
    assert listener.stats.handshakes_bad_cookie == 1


def test_it_rejects_with_an_access_control_code_on_the_wire():
    listener = SrtListener()
    event = request(listener)
    listener.reject(event, SrtRejectReason.FORBIDDEN, 10.1)
    [(answer, addr)] = answers(listener)
    assert addr == PEER
    assert answer.handshake_type == 2403
    assert answer.rejection_reason == 1403
    assert answer.dest_socket_id == CALLER_ID
    assert listener.connections == {}
    # Answered requests are gone: a late second answer does nothing.
    assert listener.accept(event, 10.2) is None
    listener.reject(event, 1401, 10.2)
    assert listener.datagrams_to_send() == []


def test_it_refuses_a_reject_reason_outside_libsrts_ranges():
    listener = SrtListener()
    event = request(listener)
    with pytest.raises(SrtUsageError, match="^reject reason 3000 is outside 0-2999$"):
        listener.reject(event, 3000, 10.0)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"version": 4}, SrtRejectReason.VERSION),
        ({"hs": None}, SrtRejectReason.ROGUE),
        ({"hs": SrtHsExtension(0x010203, CALLER_FLAGS, 120, 120)}, SrtRejectReason.VERSION),
        ({"hs": SrtHsExtension(0x010501, CALLER_FLAGS | SrtFlag.STREAM, 120, 120)}, SrtRejectReason.MESSAGEAPI),
        ({"congestion": "file"}, SrtRejectReason.CONGESTION),
        ({"other_extensions": ((7, b"fec,cols:10\x00"),)}, SrtRejectReason.FILTER),
        ({"other_extensions": ((8, b"\x00" * 8),)}, SrtRejectReason.GROUP),
        ({"km": b"\x12\x20\x29\x01"}, SrtRejectReason.ROGUE),
    ],
)
def test_it_rejects_what_it_cannot_serve(changes, reason):
    listener = SrtListener()
    listener.receive_datagram(conclusion(cookie_for(listener), **changes), PEER, 10.0)
    [event] = listener.events()
    assert isinstance(event, SrtConnectionRejected)
    assert event.reason == reason and event.request_id == 0 and event.peer == PEER
    [(answer, _)] = answers(listener)
    assert answer.rejection_reason == reason


def test_it_accepts_the_congestion_extension_saying_live():
    listener = SrtListener()
    assert isinstance(request(listener, congestion="live"), SrtConnectionRequested)


def km_request(passphrase=PASSPHRASE, key=bytes(range(16))):
    return bytes(wrap_key_material(passphrase, even=key, odd=None))


def test_it_accepts_a_caller_with_the_right_passphrase_and_echoes_its_key_material():
    listener = SrtListener()
    km = km_request(key=bytes(range(32)))
    event = request(listener, km=km, extension_field=0x7, encryption_field=4)
    assert event.encrypted and event.key_bytes == 32
    connection = listener.accept(event, 10.0, passphrase=PASSPHRASE)
    [(answer, _)] = answers(listener)
    assert answer.km_command == SrtHandshakeExtensionType.KMRSP
    assert answer.km == km
    assert answer.encryption_field == 4
    assert answer.extension_field & 0x2
    assert connection.crypto.even[1] == bytes(range(32))


@pytest.mark.parametrize(
    ("km", "passphrase", "reason", "detail"),
    [
        (km_request("another passphrase"), PASSPHRASE, SrtRejectReason.BADSECRET, "wrong passphrase"),
        (None, PASSPHRASE, SrtRejectReason.UNSECURE, "caller sent no passphrase"),
        (km_request(), None, SrtRejectReason.UNSECURE, "caller sent a passphrase we have none for"),
    ],
    ids=["wrong passphrase", "no passphrase", "unexpected passphrase"],  # key material is random: pytest-xdist
)
def test_it_refuses_a_passphrase_mismatch(km, passphrase, reason, detail):
    listener = SrtListener()
    event = request(listener, km=km)
    assert listener.accept(event, 10.0, passphrase=passphrase) is None
    [(answer, _)] = answers(listener)
    assert answer.rejection_reason == reason
    assert listener.events() == [SrtConnectionRejected(event.request_id, PEER, STREAM_ID, reason, detail)]
    assert listener.connections == {}


def test_it_holds_pending_handshakes_up_to_its_limit_and_refuses_one_past_it():
    listener = SrtListener()
    for i in range(MAX_PENDING_HANDSHAKES):
        peer = (f"198.51.100.{i}", 5000)
        assert isinstance(request(listener, peer=peer), SrtConnectionRequested)
    event = request(listener, peer=("203.0.113.1", 5000))
    assert isinstance(event, SrtConnectionRejected)
    assert event.reason == SrtRejectReason.BACKLOG
    [(answer, _)] = answers(listener)
    assert answer.rejection_reason == SrtRejectReason.BACKLOG


def test_it_forgets_an_unanswered_request_after_the_timeout():
    listener = SrtListener()
    event = request(listener, now=10.0)
    assert listener.next_timer() == pytest.approx(10.0 + PENDING_HANDSHAKE_TIMEOUT_US / 1e6)
    listener.handle_timer(listener.next_timer())
    assert listener.stats.handshakes_expired == 1
    assert listener.accept(event, 13.5) is None
    assert listener.datagrams_to_send() == []
    assert listener.next_timer() is None


def test_it_refuses_a_caller_past_the_connection_limit():
    listener = SrtListener(max_connections=1)
    listener.accept(request(listener), 10.0)
    listener.datagrams_to_send()
    event = request(listener, socket_id=CALLER_ID + 1)
    assert event.reason == SrtRejectReason.RESOURCE


def test_it_rate_limits_handshakes_per_source_and_second():
    listener = SrtListener()
    for _ in range(MAX_HANDSHAKES_PER_SOURCE_PER_SECOND):
        listener.receive_datagram(induction(), PEER, 10.0)
    assert len(listener.datagrams_to_send()) == MAX_HANDSHAKES_PER_SOURCE_PER_SECOND
    listener.receive_datagram(induction(), PEER, 10.5)
    assert listener.datagrams_to_send() == []
    assert listener.stats.handshakes_rate_limited == 1
    # Another source, and the same one a second later, go through.
    listener.receive_datagram(induction(), ("192.0.2.77", 1), 10.5)
    listener.receive_datagram(induction(), PEER, 11.0)
    assert len(listener.datagrams_to_send()) == 2


def test_it_bounds_the_sources_it_counts():
    listener = SrtListener()
    for i in range(MAX_RATE_TRACKED_SOURCES):
        listener.receive_datagram(induction(), (f"10.{i >> 8}.{i & 255}.1", 1), 10.0)
    assert len(listener.datagrams_to_send()) == MAX_RATE_TRACKED_SOURCES
    listener.receive_datagram(induction(), ("10.255.255.1", 1), 10.0)
    assert listener.datagrams_to_send() == []
    listener.receive_datagram(induction(), ("10.255.255.1", 1), 11.0)
    assert len(listener.datagrams_to_send()) == 1


def test_it_routes_datagrams_by_socket_id_and_peer_address():
    listener = SrtListener()
    connection = listener.accept(request(listener), 10.0)
    listener.datagrams_to_send()
    data = bytes(SrtDataPacket(ISN, b"ts", timestamp=300_000, dest_socket_id=connection.socket_id))
    listener.receive_datagram(data, ("192.0.2.66", PEER[1]), 10.01)
    assert listener.stats.datagrams_wrong_peer == 1
    listener.receive_datagram(bytes(SrtDataPacket(ISN, b"ts", dest_socket_id=12345)), PEER, 10.01)
    assert listener.stats.datagrams_unknown_socket == 1
    listener.receive_datagram(bytes(SrtKeepalive()), PEER, 10.01)
    assert listener.stats.datagrams_not_handshake == 1
    listener.receive_datagram(b"\x00" * 3, PEER, 10.01)
    assert listener.stats.datagrams_undecodable == 1
    listener.receive_datagram(data, PEER, 10.01)
    assert connection.stats.packets_received == 1


def test_it_ignores_other_handshake_types():
    listener = SrtListener()
    waveahand = SrtHandshake(version=5, handshake_type=SrtHandshakeType.WAVEAHAND, socket_id=1)
    listener.receive_datagram(bytes(waveahand), PEER, 1.0)
    assert listener.datagrams_to_send() == [] and listener.stats.handshakes_unexpected == 1


def test_it_runs_its_connections_timers():
    listener = SrtListener(latency_ms=120)
    connection = listener.accept(request(listener, now=10.0), 10.0)
    listener.datagrams_to_send()
    data = SrtDataPacket(ISN, b"ts", timestamp=300_000 + 5_000, dest_socket_id=connection.socket_id)
    listener.receive_datagram(bytes(data), PEER, 10.006)
    assert listener.next_timer() == pytest.approx(10.010)  # the first ACK
    listener.handle_timer(10.010)
    [(ack, addr)] = answers(listener)
    assert addr == PEER and ack.last_acked_seq == ISN + 1
    assert listener.next_timer() == pytest.approx(10.005 + 0.120)  # the release
    listener.handle_timer(10.125)
    [event] = listener.events()
    assert event.payload == b"ts" and event.socket_id == connection.socket_id


def test_its_next_timer_is_the_earliest_of_its_connections_whatever_happens():
    # next_timer() keeps the earliest rather than looking at every connection each time.
    rng = random.Random(13)
    listener = SrtListener(latency_ms=120)
    now = 10.0
    seqs: dict[int, int] = {}
    peers: dict[int, tuple] = {}
    for step in range(400):
        now += rng.choice((0.0005, 0.002, 0.011))
        action = rng.random()
        if action < 0.1 or not listener.connections:
            peer = (f"198.51.100.{step % 250}", 40000 + step)  # within each address's handshake rate
            connection = listener.accept(request(listener, peer, now, socket_id=0x1000 + step), now)
            seqs[connection.socket_id], peers[connection.socket_id] = ISN, peer
        elif action < 0.15:
            listener.close(rng.choice(list(listener.connections)), now)
        elif action < 0.6:
            socket_id = rng.choice(list(listener.connections))
            seq = seqs[socket_id] = seqs[socket_id] + rng.choice((1, 1, 1, 3))  # a gap now and then
            packet = SrtDataPacket(seq, b"ts", timestamp=300_000 + round((now - 10.0) * 1e6), dest_socket_id=socket_id)
            listener.receive_datagram(bytes(packet), peers[socket_id], now)
        else:
            due = listener.next_timer()
            if due is not None:
                now = max(now, due)
                listener.handle_timer(now)
        listener.events()
        listener.datagrams_to_send()
        expected = min((c.next_timer() for c in listener.connections.values()), default=None)
        assert listener.next_timer() == expected, step


def test_it_sends_a_message_to_a_caller_playing_from_us_and_resends_what_it_naks():
    listener = SrtListener(latency_ms=120)
    connection = listener.accept(request(listener, now=10.0), 10.0)
    listener.datagrams_to_send()
    first = listener.send(connection.socket_id, b"\x47" * 1316, 10.5)
    second = listener.send(connection.socket_id, b"\x47" * 188, 10.5)
    sent = answers(listener)
    assert [(p.seq, p.dest_socket_id, len(p.payload), addr) for p, addr in sent] == [
        (ISN, CALLER_ID, 1316, PEER),
        (ISN + 1, CALLER_ID, 188, PEER),
    ]
    assert (first, second) == (ISN, ISN + 1)
    nak = SrtNak(((ISN, ISN),), dest_socket_id=connection.socket_id)
    listener.receive_datagram(bytes(nak), PEER, 10.6)
    [(resent, addr)] = answers(listener)
    assert (resent.seq, resent.retransmitted, addr) == (ISN, True, PEER)
    # What it sent has a deadline (given up on past the peer's latency + 1 s): the timer knows it at once.
    assert listener.next_timer() == connection.next_timer()


def test_it_refuses_to_send_on_a_socket_that_is_not_open_or_too_much():
    listener = SrtListener()
    connection = listener.accept(request(listener, now=10.0), 10.0)
    with pytest.raises(SrtUsageError, match="payload of 1457 bytes exceeds 1456"):
        listener.send(connection.socket_id, bytes(1457), 10.1)
    listener.close(connection.socket_id, 10.1)
    with pytest.raises(SrtUsageError, match=f"send on socket {connection.socket_id}, which is not an open connection"):
        listener.send(connection.socket_id, b"ts", 10.2)
    with pytest.raises(SrtUsageError, match="send on socket 7, which is not an open connection"):
        listener.send(7, b"ts", 10.2)
