"""The receiving SRT connection with a fake clock: TSBPD release, loss and
retransmission, ACK/ACKACK/RTT, NAK, too-late drop, wrap-around, limits,
keepalive, idle timeout, shutdown, decryption and key refresh."""

import pytest

from livecenter.media.srt.connection import (
    ACK_INTERVAL_US,
    KEEPALIVE_INTERVAL_US,
    LIGHT_ACK_PACKETS,
    MAX_GAP_WAIT_US,
    MAX_NAK_WORDS,
    MAX_PAYLOAD_BYTES,
    MAX_PENDING_ACKS,
    MAX_REORDER_PACKETS,
    MAX_SEND_BUFFER_PACKETS,
    MIN_NAK_INTERVAL_US,
    NAK_REPEAT_US,
    NAK_RESEND_MARGIN_US,
    PEER_IDLE_TIMEOUT_US,
    SEND_DROP_MARGIN_US,
    SrtConnection,
)
from livecenter.media.srt.crypto import (
    SrtCryptoContext,
    SrtKmState,
    aes_ctr,
    km_state_word,
    wrap_key_material,
)
from livecenter.media.srt.errors import SrtUsageError
from livecenter.media.srt.events import SrtConnectionClosed, SrtDataReceived, SrtPacketsDropped
from livecenter.media.srt.packets import (
    SrtAck,
    SrtAckAck,
    SrtDataPacket,
    SrtDropRequest,
    SrtKeepalive,
    SrtKeyFlag,
    SrtNak,
    SrtShutdown,
    SrtUserControl,
    parse_packet,
)
from livecenter.media.srt.sequence import SEQ_MASK

OURS, PEER = 0x0A0A_0A0A, 0x0B0B_0B0B
START = 100.0  # when the peer's CONCLUSION arrived; its timestamp was 0
LATENCY_S = 0.120
PASSPHRASE = "ten chars or more"


def make(isn=1000, latency_ms=120, start_timestamp=0, **options):
    return SrtConnection(
        socket_id=OURS,
        peer_socket_id=PEER,
        initial_seq=isn,
        latency_ms=latency_ms,
        peer_start_timestamp=start_timestamp,
        now=START,
        **options,
    )


def data(seq, ts_us, payload=None, **fields):
    return bytes(SrtDataPacket(seq, payload or seq.to_bytes(4, "big"), ts_us, OURS, **fields))


def sent(connection):
    return [parse_packet(d) for d in connection.datagrams_to_send()]


def delivered(connection):
    return [(e.seq, e.payload) for e in connection.events() if isinstance(e, SrtDataReceived)]


def test_it_releases_each_packet_at_its_timestamp_plus_the_latency():
    connection = make()
    connection.receive_datagram(data(1000, 10_000), START + 0.011)
    connection.receive_datagram(data(1001, 20_000), START + 0.021)
    assert connection.events() == []
    connection.handle_timer(START + 0.021)  # the ACK
    assert connection.next_timer() == pytest.approx(START + 0.010 + LATENCY_S)
    connection.handle_timer(START + 0.010 + LATENCY_S - 0.000_001)
    assert connection.events() == []
    connection.handle_timer(START + 0.010 + LATENCY_S)
    assert connection.events() == [SrtDataReceived(OURS, 1000, 10_000, (1000).to_bytes(4, "big"))]
    assert connection.next_timer() == pytest.approx(START + 0.020 + LATENCY_S)
    connection.handle_timer(START + 0.020 + LATENCY_S)
    assert delivered(connection) == [(1001, (1001).to_bytes(4, "big"))]
    assert connection.stats.packets_received == 2 and connection.stats.bytes_received == 8


def test_it_sets_the_time_base_from_the_handshake_timestamp():
    connection = make(start_timestamp=5_000_000)  # the peer started 5 s before
    connection.receive_datagram(data(1000, 5_010_000), START + 0.011)
    connection.handle_timer(START + 0.010 + LATENCY_S)
    assert delivered(connection) == [(1000, (1000).to_bytes(4, "big"))]


def test_it_naks_a_gap_at_once_and_delivers_the_retransmission_in_order():
    connection = make()
    connection.receive_datagram(data(1000, 10_000), START + 0.01)
    connection.receive_datagram(data(1003, 40_000), START + 0.04)
    [nak] = sent(connection)
    assert nak == SrtNak(((1001, 1002),), timestamp=40_000, dest_socket_id=PEER)
    connection.receive_datagram(data(1002, 30_000, retransmitted=True), START + 0.05)
    connection.receive_datagram(data(1001, 20_000, retransmitted=True), START + 0.06)
    connection.handle_timer(START + 0.04 + LATENCY_S)
    assert [seq for seq, _ in delivered(connection)] == [1000, 1001, 1002, 1003]
    stats = connection.stats
    assert (stats.packets_lost, stats.packets_retransmitted, stats.packets_dropped) == (2, 2, 0)


def naks(connection):
    return [p.losses for p in sent(connection) if isinstance(p, SrtNak)]


def test_it_reports_a_new_gap_twice_then_again_while_it_lasts():
    connection = make(latency_ms=1000)
    connection.receive_datagram(data(1000, 0), START)
    connection.receive_datagram(data(1002, 0), START)
    connection.receive_datagram(data(1005, 0), START + 0.004)
    assert naks(connection) == [((1001, 1001),), ((1003, 1004),)]  # at once
    # Again 10 ms later (one lost NAK must not cost a round trip)...
    connection.handle_timer(START + NAK_REPEAT_US / 1e6)
    assert naks(connection) == [((1001, 1001),)]
    assert connection.next_timer() == pytest.approx(START + 0.004 + NAK_REPEAT_US / 1e6)
    connection.handle_timer(START + 0.004 + NAK_REPEAT_US / 1e6)
    assert naks(connection) == [((1003, 1004),)]
    # ...then again as soon as a libsrt 1.5 sender resends on it, counted
    # from the first report: before any ACKACK (RTT 100 ms, RTTVar 50 ms:
    # SRTT - 4 RTTVar < 0), half a round trip.
    again = 0.050
    connection.handle_timer(START + again - 0.001)
    assert naks(connection) == []
    connection.receive_datagram(data(1003, 0), START + 0.045)
    connection.handle_timer(START + 0.004 + again)
    # (1001 came due 4 ms before; the NAK of 1004 carries it too.)
    assert naks(connection) == [((1001, 1001), (1004, 1004))]
    connection.receive_datagram(data(1001, 0), START + 0.1)
    connection.receive_datagram(data(1004, 0), START + 0.1)
    connection.handle_timer(START + 1.0)
    assert naks(connection) == []


@pytest.mark.parametrize(
    ("rtt_us", "rttvar_us", "again_us"),
    [
        (200_000, 100_000, 100_000),  # the first ACKACK of 200 ms: half a round trip
        (200_000, 10_000, 200_000 - 4 * 10_000 + NAK_RESEND_MARGIN_US),  # steady: once the sender resends
        (1_000, 500, MIN_NAK_INTERVAL_US),  # loopback
    ],
)
def test_it_asks_again_once_the_sender_will_resend(rtt_us, rttvar_us, again_us):
    connection = make(latency_ms=1000)
    connection.receive_datagram(data(1000, 0), START)
    connection.handle_timer(START + 0.010)  # a full ACK
    [ack] = sent(connection)
    connection.receive_packet(SrtAckAck(ack.ack_number), START + 0.210)  # RTT 200 ms
    assert (connection.stats.rtt_us, connection.stats.rttvar_us) == (200_000, 100_000)
    # (Later samples would smooth them; set them as those would have.)
    connection.stats.rtt_us, connection.stats.rttvar_us = rtt_us, rttvar_us
    connection.receive_datagram(data(1002, 0), START + 0.3)
    connection.handle_timer(START + 0.3 + NAK_REPEAT_US / 1e6)
    assert naks(connection) == [((1001, 1001),), ((1001, 1001),)]
    again = START + 0.3 + again_us / 1e6
    assert connection.next_timer() == pytest.approx(again)
    connection.handle_timer(again - 0.0005)
    assert naks(connection) == []
    connection.handle_timer(again)
    assert naks(connection) == [((1001, 1001),)]


def test_it_drops_missing_packets_once_a_later_one_is_due():
    connection = make()
    connection.receive_datagram(data(1000, 10_000), START + 0.01)
    connection.receive_datagram(data(1003, 40_000), START + 0.04)
    connection.handle_timer(START + 0.01 + LATENCY_S)
    assert delivered(connection) == [(1000, (1000).to_bytes(4, "big"))]
    connection.handle_timer(START + 0.04 + LATENCY_S)
    events = connection.events()
    assert events == [
        SrtPacketsDropped(OURS, 1001, 2),
        SrtDataReceived(OURS, 1003, 40_000, (1003).to_bytes(4, "big")),
    ]
    # The retransmission comes too late: counted, not delivered.
    connection.receive_datagram(data(1001, 20_000, retransmitted=True), START + 0.2)
    assert connection.events() == []
    stats = connection.stats
    assert (stats.packets_dropped, stats.packets_belated) == (2, 1)
    # And nothing is asked for any more.
    sent(connection)
    connection.handle_timer(START + 1.0)
    assert not [p for p in sent(connection) if isinstance(p, SrtNak)]


def test_it_acknowledges_every_10_ms_and_measures_the_rtt_from_the_ackack():
    connection = make()
    connection.receive_datagram(data(1000, 0), START + 0.001)
    connection.receive_datagram(data(1001, 0), START + 0.002)
    assert connection.next_timer() == pytest.approx(START + ACK_INTERVAL_US / 1e6)
    connection.handle_timer(START + 0.010)
    [ack] = sent(connection)
    assert isinstance(ack, SrtAck) and not ack.is_light
    assert ack.last_acked_seq == 1002
    assert ack.ack_number == 1
    assert (ack.rtt_us, ack.rttvar_us) == (100_000, 50_000)
    assert ack.available_buffer_packets == MAX_REORDER_PACKETS - 2
    assert ack.dest_socket_id == PEER and ack.timestamp == 10_000
    # Nothing new: no ACK at the next tick.
    connection.handle_timer(START + 0.020)
    assert sent(connection) == []
    connection.receive_packet(SrtAckAck(1), START + 0.050)
    assert (connection.stats.rtt_us, connection.stats.rttvar_us) == (40_000, 20_000)
    connection.receive_datagram(data(1002, 0), START + 0.051)
    connection.handle_timer(START + 0.060)
    [ack] = sent(connection)
    assert (ack.ack_number, ack.last_acked_seq) == (2, 1003)
    connection.receive_packet(SrtAckAck(2), START + 0.080)
    # 4.10: RTT = 7/8 RTT + 1/8 sample, RTTVar = 3/4 RTTVar + 1/4 |RTT - sample|.
    assert connection.stats.rtt_us == (7 * 40_000 + 20_000) // 8
    assert connection.stats.rttvar_us == (3 * 20_000 + 20_000) // 4
    # An ACKACK for an ACK we never sent changes nothing.
    connection.receive_packet(SrtAckAck(99), START + 0.090)
    assert connection.stats.rtt_us == (7 * 40_000 + 20_000) // 8


def test_it_remembers_acks_awaiting_ackack_up_to_its_limit():
    connection = make(latency_ms=100_000)
    for k in range(MAX_PENDING_ACKS + 1):
        connection.receive_datagram(data(1000 + k, 0), START + k * 0.01)
        connection.handle_timer(START + (k + 1) * 0.01)
    assert connection.stats.acks_sent == MAX_PENDING_ACKS + 1
    now = START + (MAX_PENDING_ACKS + 2) * 0.01
    connection.receive_packet(SrtAckAck(1), now)  # forgotten: the oldest went
    assert connection.stats.rtt_us == 100_000
    connection.receive_packet(SrtAckAck(2), now)
    assert connection.stats.rtt_us != 100_000


def test_it_reports_as_many_losses_as_fit_in_one_nak():
    connection = make(latency_ms=100_000)
    # Every other packet missing: each loss is a word of its own.
    for k in range(MAX_NAK_WORDS + 2):
        connection.receive_datagram(data(1000 + 2 * k, 0), START)
    sent(connection)
    connection.handle_timer(START + 0.15)
    [nak] = [d for d in connection.datagrams_to_send() if parse_packet(d).__class__ is SrtNak]
    assert len(nak) <= 1500 - 28
    assert len(parse_packet(nak).losses) == MAX_NAK_WORDS
    assert parse_packet(nak).losses[0] == (1001, 1001)


def test_it_acknowledges_up_to_the_first_missing_packet():
    connection = make(latency_ms=1000)
    for seq in (1000, 1001, 1003):
        connection.receive_datagram(data(seq, 0), START)
    connection.handle_timer(START + 0.010)
    [ack] = [p for p in sent(connection) if isinstance(p, SrtAck)]
    assert ack.last_acked_seq == 1002


def test_it_sends_a_light_ack_every_64_packets_between_full_ones():
    connection = make(latency_ms=1000)
    for k in range(LIGHT_ACK_PACKETS - 1):
        connection.receive_datagram(data(1000 + k, 0), START)
    assert sent(connection) == []
    connection.receive_datagram(data(1000 + LIGHT_ACK_PACKETS - 1, 0), START)
    [ack] = sent(connection)
    assert ack.is_light and ack.ack_number == 0
    assert ack.last_acked_seq == 1000 + LIGHT_ACK_PACKETS
    assert connection.stats.light_acks_sent == 1


def test_it_follows_sequence_numbers_across_the_wrap():
    connection = make(isn=SEQ_MASK - 1)
    connection.receive_datagram(data(SEQ_MASK - 1, 0), START)
    connection.receive_datagram(data(1, 3000), START)  # SEQ_MASK and 0 are missing
    [nak] = sent(connection)
    assert nak.losses == ((SEQ_MASK, 0),)
    connection.receive_datagram(data(0, 2000), START)
    connection.receive_datagram(data(SEQ_MASK, 1000), START)
    connection.handle_timer(START + 1.0)
    assert [seq for seq, _ in delivered(connection)] == [SEQ_MASK - 1, SEQ_MASK, 0, 1]
    ack = [p for p in sent(connection) if isinstance(p, SrtAck)][-1]
    assert ack.last_acked_seq == 2


def test_it_follows_timestamps_across_the_32_bit_wrap():
    connection = make(start_timestamp=0xFFFF_0000)
    connection.receive_datagram(data(1000, 0xFFFF_FF00), START)
    connection.receive_datagram(data(1001, 0x100), START)  # 512 us later
    first = START + (0xFFFF_FF00 - 0xFFFF_0000) / 1e6 + LATENCY_S
    connection.handle_timer(first + 0.000_2)
    assert [seq for seq, _ in delivered(connection)] == [1000]
    connection.handle_timer(first + 0.000_512)
    assert [seq for seq, _ in delivered(connection)] == [1001]


def test_it_holds_packets_up_to_the_window_and_drops_one_past_it():
    connection = make(latency_ms=10_000)
    connection.receive_datagram(data(1000 + MAX_REORDER_PACKETS - 1, 0), START)
    assert connection.stats.packets_received == 1
    connection.receive_datagram(data(1000 + MAX_REORDER_PACKETS, 0), START)
    assert connection.stats.packets_out_of_window == 1
    assert connection.stats.packets_received == 1
    assert connection.buffered_packets == 1


def test_it_counts_duplicates_once():
    connection = make()
    connection.receive_datagram(data(1000, 0), START)
    connection.receive_datagram(data(1000, 0), START)
    connection.handle_timer(START + 1)
    assert len(delivered(connection)) == 1
    assert connection.stats.packets_duplicate == 1


def test_it_forgets_what_the_sender_dropped():
    connection = make(latency_ms=1000)
    connection.receive_datagram(data(1000, 0), START)
    connection.receive_datagram(data(1004, 0), START)
    sent(connection)
    connection.receive_packet(SrtDropRequest(7, 1001, 1002), START + 0.01)
    assert [seq for seq, _ in delivered(connection)] == []
    connection.handle_timer(START + 0.2)
    naks = [p for p in sent(connection) if isinstance(p, SrtNak)]
    assert [n.losses for n in naks] == [((1003, 1003),)]
    connection.receive_datagram(data(1003, 0), START + 0.3)
    connection.handle_timer(START + 1.0)
    # One event for the gap, not one per packet.
    assert [e for e in connection.events() if isinstance(e, SrtPacketsDropped)] == [SrtPacketsDropped(OURS, 1001, 2)]
    assert connection.stats.packets_dropped == 2


def test_it_forgets_a_whole_window_at_once_and_counts_what_comes_for_it_after():
    first = SEQ_MASK - 100  # across the wrap
    connection = make(isn=first, latency_ms=1000)
    connection.receive_datagram(data(first, 0), START)
    connection.receive_datagram(data(5, 0), START)  # 105 missing
    # From before the window to past it: everything in the window is
    # forgotten but the packets held, which are still delivered.
    connection.receive_packet(SrtDropRequest(7, first - 100, (first + 2 * MAX_REORDER_PACKETS) & SEQ_MASK), START)
    assert connection.lost_packets == 0
    connection.handle_timer(START + 1.0)
    assert connection.events() == [
        SrtDataReceived(OURS, first, 0, first.to_bytes(4, "big")),
        SrtPacketsDropped(OURS, first + 1, 105),
        SrtDataReceived(OURS, 5, 0, (5).to_bytes(4, "big")),
        SrtPacketsDropped(OURS, 6, MAX_REORDER_PACKETS - 107),
    ]
    assert naks(connection) == [((first + 1, 4),)]  # only the first report, before the drop request
    connection.receive_datagram(data(SEQ_MASK, 0, retransmitted=True), START + 1.1)
    connection.receive_datagram(data(6 + MAX_REORDER_PACKETS - 107, 0), START + 1.1)  # the next one after
    stats = connection.stats
    assert (stats.packets_belated, stats.packets_received, stats.packets_dropped) == (1, 3, MAX_REORDER_PACKETS - 2)
    assert stats.packets_sender_dropped == MAX_REORDER_PACKETS - 2


def test_it_asks_for_what_a_drop_request_shows_never_came():
    connection = make(latency_ms=1000)
    connection.receive_datagram(data(1000, 0), START)
    connection.receive_datagram(data(1003, 0), START)  # 1001 and 1002 missing
    connection.receive_packet(SrtDropRequest(7, 1005, 1006), START + 0.001)  # so 1004 was sent too
    assert naks(connection) == [((1001, 1002),)]
    assert connection.lost_packets == 3 and connection.stats.packets_lost == 3
    connection.handle_timer(START + 0.001)
    assert naks(connection) == [((1004, 1004),)]
    connection.receive_datagram(data(1007, 0), START + 0.002)  # no gap: 1005 and 1006 are forgotten
    assert naks(connection) == []


def test_it_counts_a_packet_the_sender_gave_up_that_comes_after_all_as_belated():
    connection = make(latency_ms=1000)
    connection.receive_datagram(data(1000, 0), START)
    connection.receive_datagram(data(1003, 0), START)
    connection.receive_packet(SrtDropRequest(7, 1001, 1002), START + 0.01)
    connection.receive_datagram(data(1002, 0, retransmitted=True), START + 0.02)
    connection.handle_timer(START + 1.0)
    assert [seq for seq, _ in delivered(connection)] == [1000, 1003]
    assert (connection.stats.packets_belated, connection.stats.packets_dropped) == (1, 2)


def test_it_waits_for_the_retransmission_without_too_late_drop():
    connection = make(too_late_drop=False)
    connection.receive_datagram(data(1000, 10_000), START + 0.01)
    connection.receive_datagram(data(1002, 30_000), START + 0.03)
    connection.handle_timer(START + 0.03 + LATENCY_S)
    assert [seq for seq, _ in delivered(connection)] == [1000]
    # Past 1002's time it still waits (the next wake: MAX_GAP_WAIT_US past it, or a NAK).
    assert connection.next_timer() < START + 0.03 + LATENCY_S + MAX_GAP_WAIT_US / 1e6
    connection.handle_timer(START + 1.0)
    assert delivered(connection) == []
    connection.receive_datagram(data(1001, 20_000, retransmitted=True), START + 1.5)
    assert [seq for seq, _ in delivered(connection)] == [1001, 1002]
    assert connection.stats.packets_dropped == connection.stats.gaps_given_up == 0


def test_it_gives_a_gap_up_after_the_longest_wait_without_too_late_drop():
    connection = make(too_late_drop=False)
    connection.receive_datagram(data(1000, 10_000), START + 0.01)
    connection.receive_datagram(data(1002, 30_000), START + 0.03)
    connection.handle_timer(START + 0.03 + LATENCY_S)
    give_up = START + 0.03 + LATENCY_S + MAX_GAP_WAIT_US / 1e6
    for now in (START + 0.5, START + 1.0, START + 1.5, START + 2.0):
        connection.receive_packet(SrtKeepalive(), now)  # the peer is alive and the NAKs go on
        connection.handle_timer(now)
    connection.handle_timer(give_up - 0.001)
    assert [seq for seq, _ in delivered(connection)] == [1000]
    assert connection.next_timer() == pytest.approx(give_up)
    connection.handle_timer(give_up)
    assert connection.events() == [
        SrtPacketsDropped(OURS, 1001, 1),
        SrtDataReceived(OURS, 1002, 30_000, (1002).to_bytes(4, "big")),
    ]
    assert (connection.stats.packets_dropped, connection.stats.gaps_given_up) == (1, 1)


def test_it_gives_a_gap_up_when_the_window_is_full_without_too_late_drop():
    connection = make(too_late_drop=False, window_packets=16)
    connection.receive_datagram(data(1000, 0), START)
    connection.receive_datagram(data(1002, 0), START)
    connection.handle_timer(START + LATENCY_S)
    assert [seq for seq, _ in delivered(connection)] == [1000]
    for seq in range(1003, 1016):
        connection.receive_datagram(data(seq, 0), START + LATENCY_S)
    assert delivered(connection) == []
    # The window holds 1001 to 1016: with 1016 it is full, and what came next would be refused.
    connection.receive_datagram(data(1016, 0), START + LATENCY_S)
    events = connection.events()
    assert events[0] == SrtPacketsDropped(OURS, 1001, 1)
    assert [e.seq for e in events[1:]] == list(range(1002, 1017))
    assert connection.stats.gaps_given_up == 1


def test_it_sends_a_keepalive_after_a_second_of_silence():
    connection = make()
    assert connection.next_timer() == pytest.approx(START + KEEPALIVE_INTERVAL_US / 1e6)
    connection.receive_packet(SrtKeepalive(), START + 0.5)
    connection.handle_timer(START + 1.0)
    [keepalive] = sent(connection)
    assert keepalive == SrtKeepalive(timestamp=1_000_000, dest_socket_id=PEER)


def test_it_closes_when_the_peer_goes_silent():
    connection = make()
    connection.receive_packet(SrtKeepalive(), START + 1.0)
    connection.handle_timer(START + 1.0 + PEER_IDLE_TIMEOUT_US / 1e6 - 0.001)
    assert not connection.closed
    sent(connection)
    connection.handle_timer(START + 1.0 + PEER_IDLE_TIMEOUT_US / 1e6)
    assert connection.closed
    assert connection.events() == [SrtConnectionClosed(OURS, "peer idle timeout")]
    assert isinstance(sent(connection)[-1], SrtShutdown)
    assert connection.next_timer() is None


def test_it_delivers_what_it_holds_when_the_peer_shuts_down():
    connection = make()
    connection.receive_datagram(data(1000, 10_000), START + 0.01)
    connection.receive_datagram(data(1002, 30_000), START + 0.03)
    connection.receive_packet(SrtShutdown(), START + 0.04)
    assert connection.events() == [
        SrtDataReceived(OURS, 1000, 10_000, (1000).to_bytes(4, "big")),
        SrtPacketsDropped(OURS, 1001, 1),
        SrtDataReceived(OURS, 1002, 30_000, (1002).to_bytes(4, "big")),
        SrtConnectionClosed(OURS, "peer shut down"),
    ]
    assert connection.closed
    connection.receive_datagram(data(1003, 40_000), START + 0.05)
    assert connection.events() == [] and connection.stats.packets_received == 2


def test_it_closes_from_our_side_with_a_shutdown():
    connection = make()
    connection.close(START + 1)
    assert isinstance(sent(connection)[-1], SrtShutdown)
    assert connection.closed and connection.events() == []


def test_it_counts_undecodable_datagrams():
    connection = make()
    connection.receive_datagram(b"\x80\x02", START)
    assert connection.stats.datagrams_undecodable == 1


def crypto_connection(even=bytes(16), odd=None):
    crypto = SrtCryptoContext(PASSPHRASE)
    material = wrap_key_material(PASSPHRASE, even=even, odd=odd)
    crypto.install(material)
    return make(crypto=crypto), material.salt


def test_it_decrypts_payloads_with_the_key_the_packet_names():
    connection, salt = crypto_connection()
    payload = b"\x47" + bytes(187)
    connection.receive_datagram(data(1000, 0, aes_ctr(bytes(16), salt, 1000, payload), key=SrtKeyFlag.EVEN), START)
    connection.receive_datagram(data(1001, 0, b"\x47clear", key=SrtKeyFlag.ODD), START)  # no odd key yet
    connection.handle_timer(START + 1)
    assert connection.events() == [
        SrtDataReceived(OURS, 1000, 0, payload),
        SrtPacketsDropped(OURS, 1001, 1),
    ]
    assert connection.stats.packets_undecrypted == 1


def test_it_takes_a_refreshed_key_and_answers_with_kmrsp():
    connection, salt = crypto_connection()
    refresh = bytes(wrap_key_material(PASSPHRASE, even=None, odd=bytes([9]) * 16, salt=salt))
    connection.receive_packet(SrtUserControl(3, refresh), START + 0.1)
    [answer] = sent(connection)
    assert answer == SrtUserControl(4, refresh, timestamp=100_000, dest_socket_id=PEER)
    payload = b"odd key payload"
    encrypted = aes_ctr(bytes([9]) * 16, salt, 1000, payload)
    connection.receive_datagram(data(1000, 0, encrypted, key=SrtKeyFlag.ODD), START + 0.1)
    connection.handle_timer(START + 1)
    assert delivered(connection) == [(1000, payload)]


def test_it_answers_key_material_it_cannot_open_with_badsecret():
    connection, _ = crypto_connection()
    other = bytes(wrap_key_material("another passphrase", even=bytes(16), odd=None))
    connection.receive_packet(SrtUserControl(3, other), START + 0.1)
    [answer] = sent(connection)
    assert answer.body == km_state_word(SrtKmState.BADSECRET)
    assert connection.crypto.even[1] == bytes(16)
    unencrypted = make()
    unencrypted.receive_packet(SrtUserControl(3, other), START + 0.1)
    assert sent(unencrypted)[0].body == km_state_word(SrtKmState.NOSECRET)


def test_it_drops_encrypted_packets_without_a_passphrase():
    connection = make()
    connection.receive_datagram(data(1000, 0, b"secret", key=SrtKeyFlag.EVEN), START)
    connection.handle_timer(START + 1)
    assert connection.events() == [SrtPacketsDropped(OURS, 1000, 1)]
    assert connection.stats.packets_undecrypted == 1


def test_it_wakes_for_the_earliest_thing_to_do():
    connection = make(latency_ms=1000)
    connection.receive_datagram(data(1000, 0), START)
    connection.receive_datagram(data(1002, 0), START)
    sent(connection)
    # ACK and the NAK's repeat due at 10 ms beat the release at 1 s and the keepalive.
    assert connection.next_timer() == pytest.approx(START + 0.010)
    connection.handle_timer(START + 0.010)
    assert connection.next_timer() == pytest.approx(START + 0.050)  # the NAK again


# -- sending (a caller playing from us) ----------------------------------


def test_it_sends_a_message_as_one_data_packet():
    connection = make(isn=SEQ_MASK)
    assert connection.send(b"\x47" * 1316, START + 0.5) == SEQ_MASK
    assert connection.send(b"\x47" * 188, START + 0.6) == 0
    first, second = sent(connection)
    assert first == SrtDataPacket(
        SEQ_MASK, b"\x47" * 1316, 500_000, PEER, message_number=1, in_order=True, key=SrtKeyFlag.NONE
    )
    assert (second.seq, second.message_number, second.timestamp) == (0, 2, 600_000)
    assert connection.stats.packets_sent == 2 and connection.stats.bytes_sent == 1316 + 188


def test_it_refuses_a_payload_past_the_largest_and_sending_when_closed():
    connection = make()
    connection.send(bytes(MAX_PAYLOAD_BYTES), START)
    with pytest.raises(SrtUsageError, match="^payload of 1457 bytes exceeds 1456$"):
        connection.send(bytes(MAX_PAYLOAD_BYTES + 1), START)
    connection.close(START)
    with pytest.raises(SrtUsageError, match="^send on a closed connection$"):
        connection.send(b"x", START)


def test_it_retransmits_what_a_nak_names_and_answers_a_full_ack_with_ackack():
    connection = make()
    for k in range(5):
        connection.send(bytes([k]), START + k * 0.001)
    sent(connection)
    connection.receive_packet(SrtNak(((1001, 1002), (1004, 1004), (2000, 2000))), START + 0.01)
    resent = sent(connection)
    assert [(p.seq, p.payload, p.retransmitted) for p in resent] == [
        (1001, b"\x01", True),
        (1002, b"\x02", True),
        (1004, b"\x04", True),
    ]
    assert connection.stats.packets_resent == 3
    connection.receive_packet(
        SrtAck(1003, ack_number=7, rtt_us=1, rttvar_us=1, available_buffer_packets=1), START + 0.02
    )
    assert sent(connection) == [SrtAckAck(7, timestamp=20_000, dest_socket_id=PEER)]
    assert (connection.stats.rtt_us, connection.stats.rttvar_us) == (1, 1)  # the peer's estimate
    # Acknowledged packets are gone: a NAK for them sends nothing.
    connection.receive_packet(SrtNak(((1000, 1002),)), START + 0.03)
    assert sent(connection) == []
    # A light ACK releases too, and is not answered.
    connection.receive_packet(SrtAck(1005), START + 0.04)
    connection.receive_packet(SrtNak(((1003, 1004),)), START + 0.05)
    assert sent(connection) == []
    # An ACK of what we never sent is ignored.
    connection.receive_packet(SrtAck(1500), START + 0.06)
    connection.send(b"\x05", START + 0.07)
    connection.receive_packet(SrtNak(((1005, 1005),)), START + 0.08)
    assert [p.seq for p in sent(connection)] == [1005, 1005]


def test_it_gives_up_on_packets_too_old_to_play_and_tells_the_peer():
    connection = make(send_latency_ms=200)
    connection.send(b"a", START)
    connection.send(b"b", START + 0.5)
    sent(connection)
    give_up = START + 0.200 + SEND_DROP_MARGIN_US / 1e6
    assert connection.next_timer() == pytest.approx(min(give_up, START + KEEPALIVE_INTERVAL_US / 1e6 + 0.5))
    connection.handle_timer(give_up)
    [drop] = [p for p in sent(connection) if isinstance(p, SrtDropRequest)]
    assert (drop.first_seq, drop.last_seq, drop.message_number) == (1000, 1000, 1)
    assert connection.stats.packets_send_dropped == 1
    connection.receive_packet(SrtNak(((1000, 1001),)), give_up)
    assert [p.seq for p in sent(connection)] == [1001]


def test_it_holds_sent_packets_up_to_the_send_buffer_and_drops_the_oldest_past_it():
    connection = make()
    for _ in range(MAX_SEND_BUFFER_PACKETS):
        connection.send(b"x", START)
    assert connection.stats.packets_send_dropped == 0
    connection.send(b"x", START)
    assert connection.stats.packets_send_dropped == 1
    sent(connection)
    connection.receive_packet(SrtNak(((1000, 1001),)), START)
    assert [p.seq for p in sent(connection)] == [1001]


def test_it_encrypts_with_the_callers_current_key():
    connection, salt = crypto_connection()
    connection.send(b"\x47clear", START)
    [packet] = sent(connection)
    assert packet.key == SrtKeyFlag.EVEN
    assert aes_ctr(bytes(16), salt, packet.seq, packet.payload) == b"\x47clear"
    refresh = bytes(wrap_key_material(PASSPHRASE, even=None, odd=bytes([3]) * 16, salt=salt))
    connection.receive_packet(SrtUserControl(3, refresh), START)
    sent(connection)
    connection.send(b"\x47clear", START)
    [packet] = sent(connection)
    assert packet.key == SrtKeyFlag.ODD
    assert aes_ctr(bytes([3]) * 16, salt, packet.seq, packet.payload) == b"\x47clear"


def test_two_connections_recover_every_packet_through_a_lossy_link():
    """Our sender to our receiver, every 20th datagram lost (5 %, each
    retransmission again has a chance to be lost), 100 ms each way, 400 ms
    latency: the issue's loss-recovery case."""
    crypto_a, crypto_b = SrtCryptoContext(PASSPHRASE), SrtCryptoContext(PASSPHRASE)
    material = wrap_key_material(PASSPHRASE, even=bytes(range(16)), odd=None)
    crypto_a.install(material)
    crypto_b.install(material)
    sender = SrtConnection(
        socket_id=PEER,
        peer_socket_id=OURS,
        initial_seq=SEQ_MASK - 20,
        latency_ms=400,
        peer_start_timestamp=0,
        now=START,
        crypto=crypto_a,
        send_latency_ms=400,
    )
    # The receiver's time base: the sender's handshake (timestamp 0) took
    # the one-way 100 ms too.
    receiver = SrtConnection(
        socket_id=OURS,
        peer_socket_id=PEER,
        initial_seq=SEQ_MASK - 20,
        latency_ms=400,
        peer_start_timestamp=0,
        now=START + 0.100,
        crypto=crypto_b,
    )
    in_flight: list[tuple[float, SrtConnection, bytes]] = []
    counter = 0
    payloads = [bytes([0x47, k % 256]) + bytes(186) for k in range(300)]
    got: list[bytes] = []
    now = START
    for step in range(3000):  # 1 ms steps: 3 s
        now = START + step * 0.001
        if step < len(payloads) * 2 and step % 2 == 0:
            sender.send(payloads[step // 2], now)
        for connection in (sender, receiver):
            timer = connection.next_timer()
            if timer is not None and timer <= now:
                connection.handle_timer(now)
        for source, target in ((sender, receiver), (receiver, sender)):
            for datagram in source.datagrams_to_send():
                counter += 1
                if counter % 20:
                    in_flight.append((now + 0.100, target, datagram))
        due = [item for item in in_flight if item[0] <= now]
        in_flight = [item for item in in_flight if item[0] > now]
        for _, target, datagram in due:
            target.receive_datagram(datagram, now)
        got += [e.payload for e in receiver.events() if isinstance(e, SrtDataReceived)]
    assert got == payloads
    assert receiver.stats.packets_dropped == 0
    assert receiver.stats.packets_retransmitted > 0 and sender.stats.packets_resent > 0
    assert 200_000 <= receiver.stats.rtt_us <= 215_000  # 200 ms plus waiting for timers
