"""SRT packet codecs and sequence arithmetic (draft-sharabayko-srt 3)."""

import struct

import pytest

from livecenter.media.srt.errors import SrtProtocolError
from livecenter.media.srt.packets import (
    MAX_DATAGRAM_BYTES,
    MAX_STREAM_ID_BYTES,
    SRT_MAGIC_CODE,
    SrtAck,
    SrtAckAck,
    SrtCongestionWarning,
    SrtDataPacket,
    SrtDropRequest,
    SrtFlag,
    SrtHandshake,
    SrtHandshakeType,
    SrtHsExtension,
    SrtKeepalive,
    SrtKeyFlag,
    SrtNak,
    SrtPacketPosition,
    SrtPeerError,
    SrtShutdown,
    SrtUserControl,
    parse_packet,
    peer_ip_field,
    swap_words,
)
from livecenter.media.srt.sequence import (
    SEQ_MASK,
    seq_cmp,
    seq_inc,
    seq_offset,
    timestamp_offset_us,
)


def test_it_wraps_sequence_numbers():
    assert seq_inc(SEQ_MASK) == 0
    assert seq_inc(0, -1) == SEQ_MASK
    assert seq_inc(5, 10) == 15
    assert seq_offset(SEQ_MASK - 1, 3) == 5
    assert seq_offset(3, SEQ_MASK - 1) == -5
    assert seq_offset(7, 7) == 0
    assert seq_cmp(SEQ_MASK, 0) == -1
    assert seq_cmp(0, SEQ_MASK) == 1
    assert seq_cmp(10, 10) == 0
    assert seq_cmp(10, 11) == -1
    # Half the number space ahead is the boundary: 2**30 - 1 ahead is ahead.
    assert seq_offset(0, 2**30 - 1) == 2**30 - 1
    assert seq_offset(0, 2**30 + 1) == -(2**30 - 1)


def test_it_measures_timestamps_across_the_32_bit_wrap():
    assert timestamp_offset_us(0xFFFF_FF00, 0x100) == 0x200
    assert timestamp_offset_us(0x100, 0xFFFF_FF00) == -0x200
    assert timestamp_offset_us(1000, 3000) == 2000


def test_it_round_trips_a_data_packet():
    packet = SrtDataPacket(
        seq=SEQ_MASK,
        payload=b"\x47" * 1316,
        timestamp=0xFFFF_FFFF,
        dest_socket_id=0x1234_5678,
        message_number=0x03FF_FFFF,
        position=SrtPacketPosition.FIRST,
        in_order=True,
        key=SrtKeyFlag.ODD,
        retransmitted=True,
    )
    data = bytes(packet)
    assert len(data) == 16 + 1316
    assert data[:8] == bytes.fromhex("7fffffff") + bytes([0b10_1_10_1_11]) + b"\xff\xff\xff"
    assert parse_packet(data) == packet


def test_it_reads_a_data_packet_header_bit_by_bit():
    # seq 1, PP=11 O=0 KK=01 R=0 msgno 7, ts 1000, dest 42
    data = struct.pack(">IIII", 1, 0b11_0_01_0 << 26 | 7, 1000, 42) + b"x"
    packet = parse_packet(data)
    assert packet == SrtDataPacket(1, b"x", 1000, 42, 7, SrtPacketPosition.SINGLE, False, SrtKeyFlag.EVEN, False)


@pytest.mark.parametrize(
    "packet",
    [
        SrtKeepalive(timestamp=5, dest_socket_id=9),
        SrtShutdown(timestamp=5, dest_socket_id=9),
        SrtCongestionWarning(timestamp=1, dest_socket_id=2),
        SrtAckAck(ack_number=77, timestamp=5, dest_socket_id=9),
        SrtPeerError(error_code=4000, dest_socket_id=3),
        SrtAck(last_acked_seq=100),  # light
        SrtAck(last_acked_seq=100, ack_number=3, rtt_us=10_000, rttvar_us=2_000, available_buffer_packets=8000),
        SrtAck(
            last_acked_seq=SEQ_MASK,
            ack_number=4,
            rtt_us=100_000,
            rttvar_us=50_000,
            available_buffer_packets=8192,
            packets_per_second=500,
            link_capacity_packets_per_second=10_000,
            receive_rate_bytes_per_second=700_000,
            timestamp=123,
            dest_socket_id=456,
        ),
        SrtNak(losses=((5, 5), (SEQ_MASK - 1, 2), (9, 9))),
        SrtDropRequest(message_number=12, first_seq=100, last_seq=104),
        SrtUserControl(subtype=3, body=b"\x12\x20\x29\x01" + b"\x00" * 44),
    ],
)
def test_it_round_trips_control_packets(packet):
    assert parse_packet(bytes(packet)) == packet


def test_it_encodes_the_ack_sizes_of_the_draft():
    assert len(bytes(SrtAck(1))) == 16 + 4
    assert len(bytes(SrtAck(1, 1, 1, 1, 1))) == 16 + 16
    assert len(bytes(SrtAck(1, 1, 1, 1, 1, 1, 1, 1))) == 16 + 28
    assert SrtAck(1).is_light
    # An ACK of SRT before 1.2 stops after the link capacity (24 bytes).
    old = bytes(SrtAck(1, 2, 3, 4, 5, 6, 7, 8))[:-4]
    assert parse_packet(old) == SrtAck(1, 2, 3, 4, 5, 6, 7, None)


def test_it_encodes_a_nak_range_with_the_top_bit():
    data = bytes(SrtNak(losses=((10, 12), (20, 20))))
    assert data[16:] == struct.pack(">III", 0x8000_000A, 12, 20)
    assert data[:4] == bytes.fromhex("80030000")


def test_it_writes_the_control_header():
    assert bytes(SrtAckAck(ack_number=7, timestamp=8, dest_socket_id=9)) == (
        bytes.fromhex("80060000 00000007 00000008 00000009 00000000")
    )


def test_it_reverses_string_words_as_libsrt_does():
    assert swap_words(b"#!::r=live") == b"::!#il=r\x00\x00ev"
    assert swap_words(b"abcd") == b"dcba"


def make_conclusion(**changes):
    fields = dict(
        version=5,
        handshake_type=SrtHandshakeType.CONCLUSION,
        socket_id=0x0BAD_CAFE,
        syn_cookie=0x1234_5678,
        encryption_field=2,
        extension_field=0x5,
        initial_seq=12345,
        mtu_bytes=1500,
        flow_window_packets=8192,
        peer_ip=peer_ip_field("192.0.2.7"),
        hs=SrtHsExtension(0x010503, SrtFlag.TSBPDSND | SrtFlag.CRYPT, 120, 200),
        km=b"\x12\x20\x29\x02" + b"\x00" * 12,
        stream_id="#!::h=live.example.com,r=/live/cam1?auth_key=1-0-0-abc,m=publish",
        congestion="live",
        other_extensions=((8, b"\x00\x00\x00\x01"),),
        timestamp=1_000_000,
        dest_socket_id=0,
    )
    fields.update(changes)
    return SrtHandshake(**fields)


def test_it_round_trips_a_conclusion_with_extensions():
    handshake = make_conclusion()
    assert parse_packet(bytes(handshake)) == handshake


def test_it_lays_out_the_handshake_as_the_draft_does():
    data = bytes(make_conclusion(km=None, stream_id="abcde", congestion=None, other_extensions=()))
    cif = data[16:]
    assert cif[:4] == b"\x00\x00\x00\x05"
    assert cif[4:8] == b"\x00\x02\x00\x05"
    assert cif[20:24] == b"\xff\xff\xff\xff"
    # Peer IP: libsrt's in-memory IPv4 address, word-swapped on the wire.
    assert cif[32:48] == bytes([7, 2, 0, 192]) + b"\x00" * 12
    # HSREQ: type 1, 3 words; version, flags, receiver delay, sender delay.
    assert cif[48:64] == bytes.fromhex("00010003 00010503 00000005 007800c8")
    # SID: type 5, 2 words, "abcd" "e\0\0\0" each reversed.
    assert cif[64:] == bytes.fromhex("00050002") + b"dcba\x00\x00\x00e"


def test_it_reads_an_induction_answer_and_a_rejection():
    induction = SrtHandshake(
        version=5, handshake_type=SrtHandshakeType.INDUCTION, socket_id=1, extension_field=SRT_MAGIC_CODE
    )
    assert parse_packet(bytes(induction)).extension_field == 0x4A17
    rejection = SrtHandshake(version=5, handshake_type=1000 + 1403, socket_id=1)
    assert parse_packet(bytes(rejection)).rejection_reason == 1403
    assert induction.rejection_reason is None
    assert make_conclusion().rejection_reason is None


def test_it_takes_a_stream_id_at_its_limit_and_refuses_one_past_it():
    at_limit = make_conclusion(stream_id="s" * MAX_STREAM_ID_BYTES, km=None, congestion=None, other_extensions=())
    assert parse_packet(bytes(at_limit)).stream_id == "s" * MAX_STREAM_ID_BYTES
    past = make_conclusion(stream_id="s" * (MAX_STREAM_ID_BYTES + 1), km=None, congestion=None, other_extensions=())
    with pytest.raises(SrtProtocolError, match="^stream ID of 516 bytes exceeds 512$"):
        parse_packet(bytes(past))


def test_it_takes_a_datagram_at_its_limit_and_refuses_one_past_it():
    at_limit = bytes(SrtDataPacket(1, b"\x00" * (MAX_DATAGRAM_BYTES - 16)))
    assert len(parse_packet(at_limit).payload) == MAX_DATAGRAM_BYTES - 16
    with pytest.raises(SrtProtocolError, match="^datagram of 1501 bytes exceeds 1500$"):
        parse_packet(at_limit + b"\x00")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x80" * 15, "datagram of 15 bytes is shorter than the 16-byte header"),
        (bytes.fromhex("80090000") + b"\x00" * 12, "unknown control type 0x0009"),
        (bytes.fromhex("80020000") + b"\x00" * 12 + b"\x00\x00", "ACK body of 2 bytes is shorter than 4"),
        (bytes.fromhex("80030000") + b"\x00" * 12, "NAK body of 0 bytes is not a whole number of words, at least one"),
        (bytes.fromhex("80030000") + b"\x00" * 12 + b"\x80\x00\x00\x01", "NAK loss range has no end"),
        (bytes.fromhex("80070000") + b"\x00" * 12 + b"\x00" * 4, "drop request body of 4 bytes is shorter than 8"),
        (bytes.fromhex("80000000") + b"\x00" * 12 + b"\x00" * 47, "handshake body of 47 bytes is shorter than 48"),
    ],
)
def test_it_names_what_is_wrong_with_a_packet(data, reason):
    with pytest.raises(SrtProtocolError) as error:
        parse_packet(data)
    assert error.value.reason == reason


def test_it_names_what_is_wrong_with_handshake_extensions():
    base = bytes(make_conclusion(hs=None, km=None, stream_id=None, congestion=None, other_extensions=()))
    cases = [
        (base + b"\x00\x01", "handshake has 2 bytes after its last extension"),
        (base + bytes.fromhex("00050004") + b"abcd", "handshake extension 5 of 16 bytes overruns the packet"),
        (base + bytes.fromhex("00010002") + b"\x00" * 8, "handshake extension 1 of 8 bytes is shorter than 12"),
        (base + bytes.fromhex("00050001") + b"\xff\xfe\xfd\xfc", "stream ID is not UTF-8"),
        (base + (bytes.fromhex("00050001") + b"dcba") * 2, "handshake extension 5 appears twice"),
    ]
    for data, reason in cases:
        with pytest.raises(SrtProtocolError) as error:
            parse_packet(data)
        assert error.value.reason == reason
