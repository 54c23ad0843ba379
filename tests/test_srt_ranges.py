"""The receiver's loss list and forgotten slots as ranges (SrtSeqRanges),
held to a plain set of integers under random operations; and the
connection's loss list, across the sequence number wrap, held to a
per-sequence model of what is missing."""

from hypothesis import given, settings
from hypothesis import strategies as st

from livecenter.media.srt.connection import SrtConnection
from livecenter.media.srt.events import SrtDataReceived, SrtPacketsDropped
from livecenter.media.srt.packets import SrtDataPacket, SrtDropRequest, SrtNak, parse_packet
from livecenter.media.srt.ranges import SrtSeqRanges
from livecenter.media.srt.sequence import SEQ_MASK, seq_inc, seq_offset


def spans(ranges: SrtSeqRanges) -> list[tuple[int, int, int]]:
    return list(ranges)


def test_it_appends_merges_and_splits():
    ranges = SrtSeqRanges()
    ranges.add(10, 20, stamp=5)
    ranges.add(30, 40, stamp=7)
    ranges.add(20, 25, stamp=9)  # touches the first: one range, the smaller stamp
    assert spans(ranges) == [(10, 25, 5), (30, 40, 7)]
    ranges.remove(12, 13)  # both halves keep the stamp
    assert spans(ranges) == [(10, 12, 5), (13, 25, 5), (30, 40, 7)]
    assert (len(ranges), ranges.first(), 12 in ranges, 13 in ranges) == (24, 10, False, True)
    assert ranges.range_at(35) == (30, 40) and ranges.range_at(12) is None
    assert ranges.within(0, 14) == [(10, 12), (13, 14)] and ranges.within(25, 30) == []
    ranges.restamp(1, 100)
    ranges.remove_below(20)
    assert spans(ranges) == [(20, 25, 100), (30, 40, 7)]
    ranges.remove_below(31)
    assert spans(ranges) == [(31, 40, 7)]
    ranges.add(0, 1000)
    assert spans(ranges) == [(0, 1000, 0)] and len(ranges) == 1000
    ranges.remove(-5, 2000)
    assert not ranges and ranges.first() is None and len(ranges) == 0


def test_it_holds_a_whole_window_as_one_range():
    ranges = SrtSeqRanges()
    ranges.add(2**31 - 10, 2**31 + 8182)  # positions count on past the 31-bit wrap
    assert ranges.ranges == 1 and len(ranges) == 8192


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["add", "remove", "remove_below"]), st.integers(0, 120), st.integers(0, 30)),
        max_size=80,
    )
)
def test_it_holds_what_a_set_of_integers_holds(operations):
    ranges, naive = SrtSeqRanges(), set()
    for operation, start, length in operations:
        if operation == "add":
            ranges.add(start, start + length)
            naive.update(range(start, start + length))
        elif operation == "remove":
            ranges.remove(start, start + length)
            naive.difference_update(range(start, start + length))
        else:
            ranges.remove_below(start)
            naive = {x for x in naive if x >= start}
        held = [(s, e) for s, e, _ in ranges]
        assert all(s < e for s, e in held)
        assert all(e1 < s2 for (_, e1), (s2, _) in zip(held, held[1:], strict=False))  # sorted, apart
        assert {x for s, e in held for x in range(s, e)} == naive
        assert len(ranges) == len(naive) and ranges.first() == min(naive, default=None)
        assert all((x in ranges) == (x in naive) for x in range(-1, 152))


ISN = SEQ_MASK - 40  # the sequence numbers wrap within a few dozen packets
WINDOW = 64


@settings(max_examples=300, deadline=None)
@given(
    st.booleans(),
    st.lists(
        st.tuples(
            st.sampled_from(["data", "data", "drop", "wait"]),
            st.integers(-10, 150),  # sequence number, from the initial one
            st.integers(0, 40),  # how many more (drop), or tenths of the latency (data, wait)
        ),
        max_size=60,
    ),
)
def test_a_connection_misses_acknowledges_and_releases_what_a_per_sequence_model_does(too_late_drop, steps):
    # What is missing is [next to deliver, one past the highest received)
    # less what arrived and what the sender gave up; the ACK names its
    # first; the NAKs name only missing packets; the events account for
    # every sequence number once, in order.
    conn = SrtConnection(
        socket_id=1,
        peer_socket_id=2,
        initial_seq=ISN,
        latency_ms=100,
        peer_start_timestamp=0,
        now=0.0,
        window_packets=WINDOW,
        too_late_drop=too_late_drop,
    )
    received: set[int] = set()
    forgotten: set[int] = set()
    accounted = ISN  # the next sequence number the events must account for
    now = 0.0
    for kind, offset, amount in steps:
        seq = seq_inc(ISN, offset)
        deliver = conn._deliver_seq
        if kind == "data":
            before = conn.stats.packets_received
            conn.receive_packet(SrtDataPacket(seq, b"x", int(now * 1e6) + amount * 10_000), now)
            if conn.stats.packets_received > before:
                received.add(seq)
        elif kind == "drop":
            last = seq_inc(seq, amount)
            start = max(seq_offset(deliver, seq), 0)
            end = min(seq_offset(deliver, last) + 1, WINDOW)
            forgotten.update(seq_inc(deliver, k) for k in range(start, end))
            conn.receive_packet(SrtDropRequest(1, seq, last), now)
        else:
            now += amount * 0.01
            conn.handle_timer(now)
        if conn.closed:
            return
        deliver = conn._deliver_seq
        span = [seq_inc(deliver, k) for k in range(seq_offset(deliver, conn._next_seq))]
        missing = [s for s in span if s not in received and s not in forgotten]
        lost = {seq_inc(deliver, s - conn._deliver_unwrapped) for s, e, _ in conn._lost for s in range(s, e)}
        assert lost == set(missing) and conn.lost_packets == len(missing)
        assert conn._ack_seq() == (missing[0] if missing else conn._next_seq)
        held = [s for s in span if s in conn._buffer]
        first = conn._first_held()
        assert (first[0] & SEQ_MASK if first else None) == (held[0] if held else None)
        for datagram in conn.datagrams_to_send():
            packet = parse_packet(datagram)
            if isinstance(packet, SrtNak):
                for a, b in packet.losses:
                    assert all(seq_inc(a, k) in lost for k in range(seq_offset(a, b) + 1))
        for event in conn.events():
            if isinstance(event, SrtDataReceived):
                assert event.seq == accounted
                accounted = seq_inc(accounted)
            elif isinstance(event, SrtPacketsDropped):
                assert event.first_seq == accounted and event.count > 0
                accounted = seq_inc(accounted, event.count)
        assert accounted == deliver
