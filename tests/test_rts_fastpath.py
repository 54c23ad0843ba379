"""The fast fan-out path's sans-IO parts (livecenter/media/rts/fastpath.py,
srtp.py): headers byte for byte as aiortc writes them, sequence and
timestamp continuity, history bounds, NACK answers, SRTP against RFC 3711's
vectors and against libsrtp; and, on a real aiortc pair on loopback, a
packet written, protected and sent by the fast path arrives at aiortc's
receiver (aiortc_compat.srtp_tx_keys, ice_datagram_path)."""

from __future__ import annotations

import asyncio
import os
import struct

import pylibsrtp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket, unwrap_rtx

from livecenter.media.rts import aiortc_compat, srtp
from livecenter.media.rts.fastpath import (
    MAX_HEADER_BYTES,
    MAX_PAYLOAD_BYTES,
    MAX_RESENDS_PER_NACK,
    MAX_WRITER_RUNS,
    RTX_OSN_BYTES,
    URI_ABS_SEND_TIME,
    URI_MID,
    FastPathError,
    RtpPacketHistory,
    RtpStreamParameters,
    RtpWriter,
    abs_send_time_of,
    extension_ids,
)

SSRC = 0x11223344
RTX_SSRC = 0x55667788
PT = 102
RTX_PT = 103
FRAME_TICKS = 3000  # 90 kHz at 30 fps


def _history_of(frames: int, packets_per_frame: int = 3, start_timestamp: int = 0, history=None):
    history = RtpPacketHistory() if history is None else history
    for frame in range(frames):
        payloads = [bytes([frame % 256, i]) * 50 for i in range(packets_per_frame)]
        history.add_frame(payloads, start_timestamp + frame * FRAME_TICKS, keyframe=frame % 30 == 0)
    return history


def _parameters(mid_id=1, abs_id=3, mid="0", rtx=True):
    return RtpStreamParameters(
        ssrc=SSRC, payload_type=PT, mid=mid, mid_id=mid_id, abs_send_time_id=abs_id,
        rtx_ssrc=RTX_SSRC if rtx else 0, rtx_payload_type=RTX_PT if rtx else None,
    )  # fmt: skip


def _aiortc_bytes(payload, seq, timestamp, marker, mid_id, abs_id, mid, abs_send_time, pt=PT, ssrc=SSRC):
    extensions = []
    if mid_id:
        extensions.append(RTCRtpHeaderExtensionParameters(id=mid_id, uri=URI_MID))
    if abs_id:
        extensions.append(RTCRtpHeaderExtensionParameters(id=abs_id, uri=URI_ABS_SEND_TIME))
    extensions_map = HeaderExtensionsMap()
    extensions_map.configure(RTCRtpParameters(headerExtensions=extensions))
    packet = RtpPacket(payload_type=pt, marker=marker, sequence_number=seq, timestamp=timestamp, ssrc=ssrc,
                       payload=payload)  # fmt: skip
    packet.extensions.mid = mid or None
    packet.extensions.abs_send_time = abs_send_time
    return packet.serialize(extensions_map)


# --- header layout -------------------------------------------------------------------


@pytest.mark.parametrize(
    "mid_id, abs_id, mid",
    [(1, 3, "0"), (0, 0, ""), (1, 0, "video"), (0, 3, ""), (15, 3, "0"), (15, 3, "m" * 16), (4, 2, "audio")],
)
def test_it_writes_the_header_byte_for_byte_as_aiortc_serialises_it(mid_id, abs_id, mid):
    history = _history_of(2)
    writer = RtpWriter(_parameters(mid_id, abs_id, mid), sequence_number=65534, timestamp_origin=0xFFFFF000)
    for index in range(history.next_index):
        packet = history.get(index)
        written = bytes(writer.write(history, index, abs_send_time=0xABCDEF))
        seq = (65534 + index) % 65536
        timestamp = (0xFFFFF000 + packet.timestamp) % (1 << 32)
        expected = _aiortc_bytes(packet.payload, seq, timestamp, packet.marker, mid_id, abs_id, mid, 0xABCDEF)
        assert written == expected, f"packet {index}"


def test_it_sets_the_marker_on_a_frames_last_packet_only():
    history = _history_of(1, packets_per_frame=3)
    writer = RtpWriter(_parameters(), 0, 0)
    assert [writer.write(history, i)[1] >> 7 for i in range(3)] == [0, 0, 1]


def test_it_computes_abs_send_time_as_aiortc_does():
    ntp = (3_900_000_000 << 32) | (1 << 31)  # .5 s
    assert abs_send_time_of(ntp) == (ntp >> 14) & 0xFFFFFF


def test_it_finds_the_negotiated_extension_ids():
    extensions = [
        RTCRtpHeaderExtensionParameters(id=4, uri=URI_ABS_SEND_TIME),
        RTCRtpHeaderExtensionParameters(id=9, uri="urn:ietf:params:rtp-hdrext:toffset"),
        RTCRtpHeaderExtensionParameters(id=2, uri=URI_MID),
    ]
    assert extension_ids(extensions) == (2, 4)
    assert extension_ids([]) == (0, 0)


def test_it_refuses_parameters_out_of_range_naming_the_field():
    with pytest.raises(FastPathError, match="payload_type"):
        RtpStreamParameters(ssrc=1, payload_type=128)
    with pytest.raises(FastPathError, match="ssrc"):
        RtpStreamParameters(ssrc=1 << 32, payload_type=96)
    with pytest.raises(FastPathError, match="mid"):
        RtpStreamParameters(ssrc=1, payload_type=96, mid_id=1, mid="")
    with pytest.raises(FastPathError, match="mid must be 1..16 bytes"):
        RtpStreamParameters(ssrc=1, payload_type=96, mid_id=1, mid="m" * 17)


# --- sequence and timestamp continuity ------------------------------------------------


def test_sequence_numbers_wrap_at_2_16_and_timestamps_at_2_32():
    history = _history_of(3, packets_per_frame=2)
    writer = RtpWriter(_parameters(0, 0, ""), sequence_number=65535, timestamp_origin=(1 << 32) - FRAME_TICKS)
    headers = [struct.unpack_from("!HL", writer.write(history, i), 2) for i in range(6)]
    assert [seq for seq, _ in headers] == [65535, 0, 1, 2, 3, 4]
    assert [ts for _, ts in headers] == [(1 << 32) - FRAME_TICKS] * 2 + [0] * 2 + [FRAME_TICKS] * 2


def test_a_source_switch_continues_the_sequence_and_the_timestamp_one_frame_on():
    low = _history_of(4, start_timestamp=1_000_000)
    high = _history_of(5, start_timestamp=7_777_777)  # another rendition: its own clock origin
    writer = RtpWriter(_parameters(0, 0, ""), sequence_number=65533, timestamp_origin=(1 << 32) - 4000)
    for index in range(6):
        writer.write(low, index)
    last_seq, last_ts = struct.unpack_from("!HL", writer.write(low, 6), 2)
    with pytest.raises(FastPathError, match="switch_source"):
        writer.write(high, 9)
    writer.switch_source(FRAME_TICKS)
    seq, ts = struct.unpack_from("!HL", writer.write(high, 9), 2)
    assert seq == (last_seq + 1) % 65536
    assert ts == (last_ts + FRAME_TICKS) % (1 << 32)
    seq2, ts2 = struct.unpack_from("!HL", writer.write(high, 10), 2)
    assert (seq2, ts2) == ((seq + 1) % 65536, ts)  # the same frame
    seq3, ts3 = struct.unpack_from("!HL", writer.write(high, 12), 2)
    assert (seq3, ts3) == ((seq + 2) % 65536, (ts + FRAME_TICKS) % (1 << 32))  # the source's own spacing


def test_a_switch_needs_a_positive_frame_interval():
    with pytest.raises(FastPathError, match="frame_interval_ticks"):
        RtpWriter(_parameters(), 0, 0).switch_source(0)


# --- history bounds -------------------------------------------------------------------


def test_the_history_keeps_at_most_max_packets():
    history = RtpPacketHistory(max_packets=8, max_bytes=1 << 20)
    _history_of(3, packets_per_frame=3, history=history)  # 9 packets
    assert len(history) == 8
    assert history.first_index == 1 and history.get(0) is None
    assert history.get(8).index == 8 and history.get(9) is None


def test_the_history_keeps_at_most_max_bytes():
    history = RtpPacketHistory(max_packets=100, max_bytes=3 * MAX_PAYLOAD_BYTES)
    history.add_frame([b"x" * MAX_PAYLOAD_BYTES] * 3, 0)
    assert history.bytes == 3 * MAX_PAYLOAD_BYTES and history.first_index == 0
    history.add_frame([b"y"], FRAME_TICKS)  # one byte past the limit
    assert history.bytes == 2 * MAX_PAYLOAD_BYTES + 1
    assert history.first_index == 1 and len(history) == 3


def test_the_history_refuses_a_payload_over_the_limit():
    history = RtpPacketHistory()
    history.add_frame([b"x" * MAX_PAYLOAD_BYTES], 0)
    with pytest.raises(FastPathError, match="MAX_PAYLOAD_BYTES"):
        history.add_frame([b"x" * (MAX_PAYLOAD_BYTES + 1)], FRAME_TICKS)


def test_the_history_finds_the_next_whole_keyframe():
    history = _history_of(31, packets_per_frame=2)  # keyframes at frames 0 and 30
    assert history.keyframe_start(0) == 0
    assert history.keyframe_start(1) == 60
    assert history.keyframe_start(61) is None


def test_writing_a_packet_gone_from_the_history_is_refused():
    history = RtpPacketHistory(max_packets=4, max_bytes=1 << 20)
    _history_of(3, history=history)
    with pytest.raises(FastPathError, match="not in the history"):
        RtpWriter(_parameters(), 0, 0).write(history, 0)


# --- NACK answers -------------------------------------------------------------------


def test_a_nack_is_answered_with_rtx_carrying_the_original_sequence_number():
    history = _history_of(3)
    writer = RtpWriter(_parameters(), sequence_number=65534, timestamp_origin=5, rtx_sequence_number=100)
    originals = {}
    for index in range(history.next_index):
        raw = bytes(writer.write(history, index))
        originals[struct.unpack_from("!H", raw, 2)[0]] = raw
    extensions_map = HeaderExtensionsMap()
    extensions_map.configure(RTCRtpParameters(headerExtensions=[RTCRtpHeaderExtensionParameters(id=1, uri=URI_MID)]))
    answers = writer.resend([65535, 1, 1])
    assert len(answers) == 2
    for answer, lost, rtx_seq in zip(answers, [65535, 1], [100, 101], strict=True):
        rtx = RtpPacket.parse(answer, extensions_map)
        assert (rtx.ssrc, rtx.payload_type, rtx.sequence_number) == (RTX_SSRC, RTX_PT, rtx_seq)
        assert rtx.extensions.mid == "0"
        original = RtpPacket.parse(originals[lost], extensions_map)
        recovered = unwrap_rtx(rtx, payload_type=PT, ssrc=SSRC)
        assert (recovered.sequence_number, recovered.timestamp, recovered.marker, recovered.payload) == (
            original.sequence_number, original.timestamp, original.marker, original.payload)  # fmt: skip
    assert writer.rtx_sequence_number == 102 and writer.resends == 2


def test_without_rtx_a_nack_is_answered_with_the_original_packet():
    history = _history_of(2)
    writer = RtpWriter(_parameters(rtx=False), sequence_number=10, timestamp_origin=0)
    sent = [bytes(writer.write(history, i, abs_send_time=1)) for i in range(history.next_index)]
    assert writer.resend([12, 14], abs_send_time=1) == [sent[2], sent[4]]


def test_a_nack_answer_keeps_the_timestamp_a_packet_was_sent_with_across_a_switch():
    low, high = _history_of(2, start_timestamp=0), _history_of(2, start_timestamp=500_000)
    writer = RtpWriter(_parameters(rtx=False), sequence_number=0, timestamp_origin=0)
    before = [bytes(writer.write(low, i)) for i in range(3)]
    writer.switch_source(FRAME_TICKS)
    after = [bytes(writer.write(high, i)) for i in range(3, 6)]
    assert writer.resend([1, 4]) == [before[1], after[1]]


def test_a_nack_for_packets_never_sent_gone_or_too_many_is_bounded():
    history = RtpPacketHistory(max_packets=64, max_bytes=1 << 20)
    _history_of(20, packets_per_frame=3, history=history)  # 60 packets
    writer = RtpWriter(_parameters(), sequence_number=0, timestamp_origin=0)
    for index in range(60):
        writer.write(history, index)
    assert writer.resend([60, 61, 40000]) == []  # not sent yet / far away
    assert len(writer.resend(range(60))) == MAX_RESENDS_PER_NACK
    _history_of(10, history=history)  # the first packets leave the history
    assert writer.resend([0, 1]) == []


def test_a_nack_reaches_back_only_over_the_runs_the_writer_remembers():
    history = _history_of(2 * (MAX_WRITER_RUNS + 2), packets_per_frame=1)
    writer = RtpWriter(_parameters(rtx=False), sequence_number=0, timestamp_origin=0)
    for index in range(0, 2 * (MAX_WRITER_RUNS + 2), 2):  # every packet a run of its own (skips)
        writer.write(history, index)
    newest_runs = range(writer.packets - MAX_WRITER_RUNS, writer.packets)
    chunks = range(newest_runs.start, newest_runs.stop, 16)
    resent = [answer for start in chunks for answer in writer.resend(range(start, start + 16))]
    assert len(resent) == MAX_WRITER_RUNS
    assert writer.resend([newest_runs.start - 1]) == []


def test_a_packet_stamped_for_a_joiners_burst_is_resent_with_the_same_timestamp():
    history = _history_of(3)
    writer = RtpWriter(_parameters(rtx=False), sequence_number=100, timestamp_origin=1000)
    sent = []
    for frame in range(3):
        for index in range(frame * 3, frame * 3 + 3):
            sent.append(bytes(writer.write(history, index, timestamp=2 * FRAME_TICKS - (2 - frame))))
    sent.append(bytes(writer.write(history, 8)))  # not stamped: its own timestamp
    timestamps = [int.from_bytes(p[4:8], "big") for p in sent]
    assert (
        timestamps[:9]
        == [1000 + 2 * FRAME_TICKS - 2] * 3 + [1000 + 2 * FRAME_TICKS - 1] * 3 + [1000 + 2 * FRAME_TICKS] * 3
    )
    for sequence_number, packet in zip(range(100, 109), sent, strict=False):
        (again,) = writer.resend([sequence_number])
        assert again == packet


# --- SRTP ----------------------------------------------------------------------------

# RFC 3711 B.3: key derivation.
B3_MASTER_KEY = bytes.fromhex("E1F97A0D3E018BE0D64FA32C06DE4139")
B3_MASTER_SALT = bytes.fromhex("0EC675AD498AFEEBB6960B3AABE6")
B3_CIPHER_KEY = bytes.fromhex("C61E7A93744F39EE10734AFE3FF7A087")
B3_CIPHER_SALT = bytes.fromhex("30CBBC08863D8C85D49DB34A9AE1")
B3_AUTH_KEY = bytes.fromhex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
# RFC 3711 B.2: AES-CM keystream.
B2_SESSION_KEY = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C")
B2_IV = bytes.fromhex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000")
B2_KEYSTREAM = {
    0x0000: "E03EAD0935C95E80E166B16DD92B4EB4",
    0x0001: "D23513162B02D0F72A43A2FE4A5F97AB",
    0x0002: "41E95B3BB0A2E8DD477901E4FCA894C0",
    0xFEFF: "EC8CDF7398607CB0F2D21675EA9EA1E4",
    0xFF00: "362B7C3C6773516318A077D7FC5073AE",
    0xFF01: "6A2CC3787889374FBEB4C81B17BA6C44",
}


def test_key_derivation_matches_rfc_3711_b3():
    assert srtp.derive_session_key(B3_MASTER_KEY, B3_MASTER_SALT, srtp.LABEL_RTP_ENCRYPTION, 16) == B3_CIPHER_KEY
    assert srtp.derive_session_key(B3_MASTER_KEY, B3_MASTER_SALT, srtp.LABEL_RTP_SALT, 14) == B3_CIPHER_SALT
    assert srtp.derive_session_key(B3_MASTER_KEY, B3_MASTER_SALT, srtp.LABEL_RTP_AUTHENTICATION, 20) == B3_AUTH_KEY


def test_the_aes_cm_keystream_matches_rfc_3711_b2():
    keystream = srtp.aes_cm_keystream(B2_SESSION_KEY, B2_IV, 16 * 0x10000)
    for counter, block in B2_KEYSTREAM.items():
        assert keystream[16 * counter : 16 * counter + 16].hex().upper() == block, f"counter {counter:04X}"


def _libsrtp_receiver(profile, key_and_salt):
    policy = pylibsrtp.Policy(key=key_and_salt, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                              srtp_profile=srtp.LIBSRTP_PROFILES[profile])  # fmt: skip
    policy.window_size = 1024
    return pylibsrtp.Session(policy)


@pytest.mark.parametrize("implementation", ["cryptography", "libsrtp"])
@pytest.mark.parametrize("profile", sorted(srtp.KEY_SALT_BYTES))
def test_libsrtp_unprotects_what_is_protected_across_the_rollover(profile, implementation):
    key_bytes, salt_bytes = srtp.KEY_SALT_BYTES[profile]
    key_and_salt = os.urandom(key_bytes + salt_bytes)
    protector = srtp.protector(profile, key_and_salt, implementation)
    receiver = _libsrtp_receiver(profile, key_and_salt)
    history = _history_of(4, packets_per_frame=3)
    writer = RtpWriter(_parameters(), sequence_number=65530, timestamp_origin=0)
    for index in range(history.next_index):  # 65530 .. 65535, 0 .. 5: the ROC goes to 1
        packet = bytes(writer.write(history, index))
        assert receiver.unprotect(protector.protect(packet)) == packet


def test_the_cryptography_protector_is_byte_identical_to_libsrtp():
    for profile in srtp.KEY_SALT_BYTES:
        key_bytes, salt_bytes = srtp.KEY_SALT_BYTES[profile]
        key_and_salt = os.urandom(key_bytes + salt_bytes)
        ours, theirs = srtp.protector(profile, key_and_salt, "cryptography"), srtp.protector(
            profile, key_and_salt, "libsrtp")  # fmt: skip
        history = _history_of(2)
        writer = RtpWriter(_parameters(), sequence_number=65535, timestamp_origin=0)
        for index in range(history.next_index):
            packet = bytes(writer.write(history, index))
            assert ours.protect(packet) == theirs.protect(packet), profile


def test_a_packet_resent_from_the_previous_rollover_cycle_is_protected_with_its_own_roc():
    key_and_salt = os.urandom(30)
    protector = srtp.protector(srtp.AES_CM_128_HMAC_SHA1_80, key_and_salt, "cryptography")
    receiver = _libsrtp_receiver(srtp.AES_CM_128_HMAC_SHA1_80, key_and_salt)
    history = _history_of(3, packets_per_frame=2)
    writer = RtpWriter(_parameters(rtx=False), sequence_number=65534, timestamp_origin=0)
    for index in range(4):  # 65534, 65535 (lost on the way), 0, 1: the receiver's ROC is 1
        protected = protector.protect(bytes(writer.write(history, index)))
        if index != 1:
            receiver.unprotect(protected)
    (again,) = writer.resend([65535])  # a NACK answered with the original (no RTX)
    assert receiver.unprotect(protector.protect(again)) == again


def test_the_protectors_refuse_what_is_not_rtp_and_wrong_key_lengths():
    protector = srtp.protector(srtp.AEAD_AES_256_GCM, bytes(44), "cryptography")
    with pytest.raises(srtp.SrtpError, match="version 2"):
        protector.protect(b"\x00" * 20)
    with pytest.raises(srtp.SrtpError, match="extension"):
        protector.protect(b"\x90" + bytes(13))
    with pytest.raises(ValueError, match="44 bytes"):
        srtp.protector(srtp.AEAD_AES_256_GCM, bytes(30), "cryptography")
    with pytest.raises(ValueError, match="unknown SRTP profile"):
        srtp.protector("SRTP_NULL", bytes(30))


# --- on a real aiortc pair -----------------------------------------------------------


class _Tap:
    def __init__(self):
        self.packets = []
        self.arrived = asyncio.Event()

    def add(self, packet):
        self.packets.append(packet)
        self.arrived.set()
        return False, None


async def _connected_pair():
    """An aiortc sender (sendonly video, no track: its own RTP task sends
    nothing) and receiver (tapped) connected on loopback."""
    aiortc_compat.use_ice_addresses(("127.0.0.1",))
    sending, receiving = RTCPeerConnection(RTCConfiguration(iceServers=[])), RTCPeerConnection(
        RTCConfiguration(iceServers=[]))  # fmt: skip
    sender = sending.addTransceiver("video", direction="sendonly")
    receiver = receiving.addTransceiver("video", direction="recvonly")
    tap = _Tap()
    aiortc_compat.tap_receiver(receiver.receiver, tap, lambda *a: None, lambda n: None)
    connected = asyncio.Event()

    @sending.on("connectionstatechange")
    def changed():
        if sending.connectionState == "connected":
            connected.set()

    await sending.setLocalDescription(await sending.createOffer())
    await receiving.setRemoteDescription(sending.localDescription)
    await receiving.setLocalDescription(await receiving.createAnswer())
    await sending.setRemoteDescription(receiving.localDescription)
    async with asyncio.timeout(20):
        await connected.wait()
    return sending, receiving, sender, receiver, tap


def negotiated_stream(sending, sender) -> RtpStreamParameters:
    """The fast path's parameters for the sender's track of a connected pair."""
    from aiortc.sdp import SessionDescription

    media = SessionDescription.parse(sending.remoteDescription.sdp).media[0]
    mid_id, abs_id = extension_ids(media.rtp.headerExtensions)
    assert mid_id, "aiortc negotiates sdes:mid"
    codec = next(c for c in media.rtp.codecs if c.mimeType.lower() != "video/rtx")
    return RtpStreamParameters(ssrc=sender.sender._ssrc, payload_type=codec.payloadType, mid=sender.mid,
                               mid_id=mid_id, abs_send_time_id=abs_id)  # fmt: skip


def test_a_packet_written_protected_and_sent_by_the_fast_path_reaches_aiortcs_receiver():
    async def run():
        sending, receiving, sender, receiver, tap = await _connected_pair()
        try:
            dtls = sender.sender.transport
            profile, key_and_salt = aiortc_compat.srtp_tx_keys(dtls)
            assert profile == srtp.AEAD_AES_256_GCM  # aiortc's first choice, and Chrome's
            assert aiortc_compat.tx_srtp(dtls) is not None
            path = aiortc_compat.ice_datagram_path(dtls)
            assert path is not None
            transport, remote = path
            parameters = negotiated_stream(sending, sender)
            history = RtpPacketHistory()
            history.add_frame([b"\x65" + bytes(99)], 90_000, keyframe=True)
            writer = RtpWriter(parameters, sequence_number=4242, timestamp_origin=0)
            protector = srtp.protector(profile, key_and_salt, "cryptography")
            transport.sendto(protector.protect(writer.write(history, 0)), remote)
            async with asyncio.timeout(10):
                await tap.arrived.wait()
            (packet,) = tap.packets
            assert (packet.ssrc, packet.sequence_number, packet.timestamp) == (sender.sender._ssrc, 4242, 90_000)
        finally:
            await sending.close()
            await receiving.close()
            aiortc_compat.use_ice_addresses(())

    asyncio.run(run())


def test_before_connecting_there_is_no_datagram_path_and_no_keys():
    async def run():
        pc = RTCPeerConnection()
        transceiver = pc.addTransceiver("video", direction="sendonly")
        try:
            assert aiortc_compat.ice_datagram_path(transceiver.sender.transport) is None
            assert aiortc_compat.srtp_tx_keys(transceiver.sender.transport) is None
        finally:
            await pc.close()

    asyncio.run(run())


def test_the_libsrtp_protector_calls_libsrtp_directly_and_falls_back_to_session_protect():
    key_and_salt = os.urandom(44)
    direct = srtp.LibsrtpProtector(srtp.AEAD_AES_256_GCM, key_and_salt)
    assert srtp.missing_libsrtp_internals(direct._session) == []
    assert direct._direct
    fallback = srtp.LibsrtpProtector(srtp.AEAD_AES_256_GCM, key_and_salt)
    fallback._direct = False
    history = _history_of(2)
    one, two = RtpWriter(_parameters(), 7, 0), RtpWriter(_parameters(), 7, 0)
    for index in range(history.next_index):
        assert direct.protect(one.write(history, index)) == fallback.protect(two.write(history, index))


def test_it_names_the_missing_pylibsrtp_internals():
    class Bare:
        pass

    assert srtp.missing_libsrtp_internals(Bare()) == [
        "pylibsrtp.Session instance attribute _srtp is gone",
        "pylibsrtp.Session instance attribute _cdata is gone",
        "pylibsrtp.Session instance attribute _buffer is gone",
    ]


@pytest.mark.parametrize("implementation", ["cryptography", "libsrtp"])
def test_the_largest_packet_the_writer_makes_is_protected(implementation):
    """MAX_PAYLOAD_BYTES, the longest mid in the two-byte form, abs-send-time
    and the RTX OSN: still under libsrtp's packet limit."""
    parameters = RtpStreamParameters(ssrc=SSRC, payload_type=PT, mid="m" * 16, mid_id=15, abs_send_time_id=16,
                                     rtx_ssrc=RTX_SSRC, rtx_payload_type=RTX_PT)  # fmt: skip
    history = RtpPacketHistory()
    history.add_frame([b"x" * MAX_PAYLOAD_BYTES], 0)
    writer = RtpWriter(parameters, 0, 0)
    protector = srtp.protector(srtp.AES_CM_128_HMAC_SHA1_80, bytes(30), implementation)
    receiver = _libsrtp_receiver(srtp.AES_CM_128_HMAC_SHA1_80, bytes(30))
    packet = bytes(writer.write(history, 0))
    assert receiver.unprotect(protector.protect(packet)) == packet
    (rtx,) = writer.resend([0])
    assert len(rtx) <= MAX_HEADER_BYTES + RTX_OSN_BYTES + MAX_PAYLOAD_BYTES
    assert receiver.unprotect(protector.protect(rtx)) == rtx


def test_a_cryptography_protector_keeps_rollover_counters_for_at_most_max_ssrcs():
    protector = srtp.protector(srtp.AEAD_AES_128_GCM, bytes(28), "cryptography")
    for ssrc in range(srtp.MAX_SSRCS_PER_PROTECTOR):
        protector.protect(struct.pack("!BBHLL", 0x80, 96, 1, 0, ssrc) + b"x")
    with pytest.raises(srtp.SrtpError, match="MAX_SSRCS_PER_PROTECTOR"):
        protector.protect(struct.pack("!BBHLL", 0x80, 96, 1, 0, srtp.MAX_SSRCS_PER_PROTECTOR) + b"x")
