"""The fast path's native sender (livecenter/media/rts/_rtssend.c, `make
native`; issue 18) against its pure-Python fallback: libsrtp's known SRTP
vectors, byte-identical SRTP and whole frames on both paths
(media.FastTrackSender), a kernel buffer that fills mid-frame, the choice
made at import; and the FastTrackSender's NACK budget (a fake clock) and
its pick-up of a newly nominated ICE pair."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import subprocess
import sys

import pytest

from livecenter.media.rts import media, srtp
from livecenter.media.rts.fastpath import (
    MAX_RESENDS_BURST,
    MAX_RESENDS_PER_SECOND,
    FastPathError,
    ResendBudget,
    RtpPacketHistory,
    RtpStreamParameters,
    RtpWriter,
)
from livecenter.media.rts.media import FastTrackSender
from tests.test_rts_fastpath import _connected_pair, _libsrtp_receiver, negotiated_stream

needs_native = pytest.mark.skipif(srtp.native is None, reason="the native sender is not built (make native)")

SSRC = 0x0BADCAFE
PARAMETERS = RtpStreamParameters(ssrc=SSRC, payload_type=102, mid="0", mid_id=1, abs_send_time_id=3,
                                 rtx_ssrc=0x0DDBA11, rtx_payload_type=103)  # fmt: skip

# libsrtp's own vectors (test/srtp_driver.c: srtp_validate, srtp_validate_gcm).
LIBSRTP_PLAINTEXT = bytes.fromhex("800f1234decafbadcafebabe" + "ab" * 16)
LIBSRTP_VECTORS = {
    srtp.AES_CM_128_HMAC_SHA1_80: (
        bytes.fromhex("e1f97a0d3e018be0d64fa32c06de41390ec675ad498afeebb6960b3aabe6"),
        bytes.fromhex("800f1234decafbadcafebabe4e55dc4ce79978d88ca4d215949d2402b78d6acc99ea179b8dbb"),
    ),
    srtp.AEAD_AES_128_GCM: (
        bytes.fromhex("000102030405060708090a0b0c0d0e0f" + "a0a1a2a3a4a5a6a7a8a9aaab"),
        bytes.fromhex("800f1234decafbadcafebabec5002ede04cfdd2eb91159e0880aa06ed2976826f796b201df3131a127e8a392"),
    ),
}
IMPLEMENTATIONS = ["cryptography", "libsrtp", pytest.param("native", marks=needs_native)]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("profile", sorted(LIBSRTP_VECTORS))
def test_every_protector_reproduces_libsrtps_known_vectors(profile, implementation):
    key_and_salt, ciphertext = LIBSRTP_VECTORS[profile]
    assert bytes(srtp.protector(profile, key_and_salt, implementation).protect(LIBSRTP_PLAINTEXT)) == ciphertext


def _history(frames: int, packets_per_frame: int, history: RtpPacketHistory | None = None) -> RtpPacketHistory:
    history = RtpPacketHistory() if history is None else history
    for frame in range(frames):
        payloads = [bytes([frame % 256, i % 256]) * (100 + i) for i in range(packets_per_frame)]
        history.add_frame(payloads, frame * 3000, keyframe=frame == 0)
    return history


@needs_native
@pytest.mark.parametrize("profile", sorted(srtp.KEY_SALT_BYTES))
def test_the_native_session_is_byte_identical_to_pylibsrtps_across_the_rollover(profile):
    key_bytes, salt_bytes = srtp.KEY_SALT_BYTES[profile]
    key_and_salt = os.urandom(key_bytes + salt_bytes)
    native, python = srtp.protector(profile, key_and_salt, "native"), srtp.protector(profile, key_and_salt, "libsrtp")
    assert srtp.native_session(native.protect) is native
    assert srtp.native_session(python.protect) is None
    history = _history(4, 3)
    writer = RtpWriter(PARAMETERS, sequence_number=65530, timestamp_origin=0)
    packets = [bytes(writer.write(history, index)) for index in range(history.next_index)]
    for packet in packets:  # 65530 .. 65535, 0 .. 5: the rollover counter goes to 1
        assert native.protect(packet) == bytes(python.protect(packet))
    for packet in (packets[5], packets[0], packets[-1]):  # sent again (a NACK without RTX): its own cycle
        assert native.protect(packet) == bytes(python.protect(packet))
    if profile != srtp.AES_CM_128_HMAC_SHA1_80:  # OpenSSL's GCM: rollover counters for a viewer's few SSRCs
        for ssrc in range(1, srtp.MAX_SSRCS_PER_PROTECTOR):
            native.protect(struct.pack("!BBHLL", 0x80, 96, 1, 0, ssrc) + b"x")
        with pytest.raises(ValueError, match="SSRCs"):
            native.protect(struct.pack("!BBHLL", 0x80, 96, 1, 0, 0xFFFF) + b"x")


def test_the_native_session_refuses_bad_keys_and_packets():
    if srtp.native is None:
        with pytest.raises(ValueError, match="make native"):
            srtp.native_protector(srtp.AEAD_AES_256_GCM, bytes(44))
        return
    with pytest.raises(ValueError, match="44 bytes"):
        srtp.native_protector(srtp.AEAD_AES_256_GCM, bytes(30))
    with pytest.raises(ValueError, match="unknown libsrtp profile"):
        srtp.native.Srtp(999, bytes(30))
    session = srtp.native_protector(srtp.AEAD_AES_256_GCM, bytes(44))
    with pytest.raises(ValueError, match="outside"):
        session.protect(b"\x80" * 5)
    with pytest.raises(ValueError, match="outside"):
        session.protect(b"\x80" + bytes(srtp.native.MAX_RTP_BYTES))
    with pytest.raises(ValueError, match="numeric"):
        srtp.native.sockaddr("localhost", 5000)
    assert srtp.native_destination(object(), ("127.0.0.1", 5000)) == (-1, b"")


def test_the_choice_is_made_once_at_import_and_logged():
    """With the module hidden the fast path is pure Python, said in one INFO line."""
    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s %(message)s')\n"
        "if sys.argv[1] == 'hidden':\n"
        "    sys.modules['livecenter.media.rts._rtssend'] = None\n"
        "from livecenter.media.rts import srtp\n"
        "print('FASTEST', sorted(set(srtp.FASTEST.values())))\n"
    )
    hidden = subprocess.run([sys.executable, "-c", code, "hidden"], capture_output=True, text=True, check=True)
    assert "FASTEST ['libsrtp']" in hidden.stdout
    assert hidden.stderr.count("INFO livecenter.media.rts.srtp rts fast path: pure Python sender") == 1
    if srtp.native is not None:
        built = subprocess.run([sys.executable, "-c", code, "built"], capture_output=True, text=True, check=True)
        assert "FASTEST ['libsrtp', 'native']" in built.stdout
        assert built.stderr.count("INFO livecenter.media.rts.srtp rts fast path: native sender") == 1


# --- whole frames: FastTrackSender on both paths -------------------------------------------


class _Pair:
    def __init__(self, transport, remote_addr):
        self.protocol = type("Protocol", (), {"transport": transport})()
        self.remote_addr = remote_addr


class _Dtls:
    """What ice_nominated_pair reads: transport._connection._nominated[1]."""

    def __init__(self, pair):
        connection = type("Connection", (), {})()
        connection._nominated = {1: pair}
        self.transport = type("IceTransport", (), {"_connection": connection})()

    def nominate(self, pair):
        self.transport._connection._nominated[1] = pair


def _receiver() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def _drain(sock: socket.socket) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(sock.recv(2048))
        except BlockingIOError:
            return got


async def _sender(protect, receiver):
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    address = receiver.getsockname()
    dtls = _Dtls(_Pair(transport, address))
    return FastTrackSender(RtpWriter(PARAMETERS, 65500, 12345), protect, dtls, (transport, address))


def _frames_of(history):
    """The history's frames as (first index, stop) ranges."""
    frames, start = [], history.first_index
    for index in range(history.first_index, history.next_index):
        if history.get(index).marker:
            frames.append(range(start, index + 1))
            start = index + 1
    return frames


@needs_native
@pytest.mark.parametrize("profile", sorted(srtp.KEY_SALT_BYTES))
def test_a_frame_sent_natively_is_byte_identical_to_the_python_path(profile):
    """Frames of 1, 6 and 150 packets (over the native batch), across the
    sequence-number wrap: the same datagrams on the wire, in order; and the
    writers agree on what a NACK and a sender report need."""
    key_bytes, salt_bytes = srtp.KEY_SALT_BYTES[profile]
    key_and_salt = os.urandom(key_bytes + salt_bytes)

    async def run():
        native_in, python_in = _receiver(), _receiver()
        fast = await _sender(srtp.protector(profile, key_and_salt, "native").protect, native_in)
        slow = await _sender(srtp.protector(profile, key_and_salt, "libsrtp").protect, python_in)
        assert fast.fd >= 0 and fast.srtp is not None
        assert slow.fd == -1 and slow.srtp is None
        history = RtpPacketHistory()
        for count in (1, 6, 150, 6, 1):
            _history(1, count, history)
        got_native, got_python = [], []
        for indexes in _frames_of(history):
            for sender in (fast, slow):
                assert sender.ready()
                sender.send(history, indexes, 0x123456, 7, 100)
            await asyncio.sleep(0)
            got_native += _drain(native_in)
            got_python += _drain(python_in)
        assert len(got_python) == history.next_index
        assert got_native == got_python
        assert fast.writer.sequence_number == slow.writer.sequence_number == (65500 + 164) % 65536
        assert fast.report() == slow.report()
        lost = [65500, 65535, 0, 5]
        assert fast.writer.resend(lost) == slow.writer.resend(lost)
        receiver = _libsrtp_receiver(profile, key_and_salt)
        header_bytes = fast.writer.template.header_bytes
        payloads = [history.get(index).payload for index in range(history.next_index)]
        assert [receiver.unprotect(datagram)[header_bytes:] for datagram in got_native] == payloads
        for sender in (fast, slow):
            sender.transport.close()
        native_in.close()
        python_in.close()

    asyncio.run(run())


@needs_native
def test_what_a_full_kernel_buffer_refuses_comes_back_protected_and_in_order():
    """A datagram socket whose peer's queue is full (AF_UNIX: the queue is
    bounded in datagrams): send_frame sends what fits, returns the rest
    protected; together they are the Python path's packets."""
    key_and_salt = os.urandom(44)
    history = _history(1, 12)
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setblocking(False)
    peer.setblocking(False)
    try:
        while True:
            try:
                ours.send(b"filler")
            except BlockingIOError:
                break
        session = srtp.native_protector(srtp.AEAD_AES_256_GCM, key_and_salt)
        writer = RtpWriter(PARAMETERS, 100, 0)
        sequence_number, offset = writer.claim(history, range(12))
        template = writer.template
        args = (template.buffer, template.header_bytes, template.abs_offset, template.payload_type)
        unsent = srtp.native.send_frame(
            session, ours.fileno(), b"", *args, sequence_number, offset, 0, history.packets(range(12))
        )
        assert len(unsent) == 12  # nothing fitted
        fillers = _drain(peer)
        assert fillers and set(fillers) == {b"filler"}
        room = 3
        for _ in range(len(fillers) - room):
            ours.send(b"filler")
        sequence_number, offset = writer.claim(history, range(12))
        partly = srtp.native.send_frame(
            session, ours.fileno(), b"", *args, sequence_number, offset, 0, history.packets(range(12))
        )
        sent = [d for d in _drain(peer) if d != b"filler"]
        assert sent and partly and len(sent) + len(partly) == 12

        python = srtp.protector(srtp.AEAD_AES_256_GCM, key_and_salt, "libsrtp")
        again = RtpWriter(PARAMETERS, 100, 0)
        expected = [bytes(python.protect(again.write(history, index))) for index in list(range(12)) * 2]
        assert unsent + sent + partly == expected
    finally:
        ours.close()
        peer.close()


class _BufferingTransport:
    """An asyncio datagram transport holding unsent bytes (its socket real)."""

    def __init__(self, sock):
        self.sock = sock
        self.sent = []
        self.buffered = 1

    def get_extra_info(self, name):
        return self.sock if name == "socket" else None

    def get_write_buffer_size(self):
        return self.buffered

    def is_closing(self):
        return False

    def sendto(self, data, address):
        self.sent.append(bytes(data))


@needs_native
def test_a_frame_waits_behind_what_asyncio_holds_and_a_refused_rest_joins_it(monkeypatch):
    """Unsent bytes in asyncio's buffer: the frame takes the Python path
    (behind them, through the transport). The native call's refused rest
    goes to the transport too, where the caller's unsent-bytes check sees it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        transport = _BufferingTransport(sock)
        address = ("127.0.0.1", 9)
        key_and_salt = os.urandom(44)
        protector = srtp.protector(srtp.AEAD_AES_256_GCM, key_and_salt)
        sender = FastTrackSender(
            RtpWriter(PARAMETERS, 1, 0), protector.protect, _Dtls(_Pair(transport, address)), (transport, address)
        )
        assert sender.fd == sock.fileno() and sender.sockaddr == srtp.native.sockaddr(*address)
        calls = []
        monkeypatch.setattr(srtp.native, "send_frame", lambda *args: calls.append(args) or [b"rest-1", b"rest-2"])
        history = _history(2, 4)
        sender.send(history, range(0, 4), 0, 0, 0)
        assert not calls and len(transport.sent) == 4
        python = srtp.protector(srtp.AEAD_AES_256_GCM, key_and_salt, "libsrtp")
        again = RtpWriter(PARAMETERS, 1, 0)
        assert transport.sent == [bytes(python.protect(again.write(history, index))) for index in range(4)]
        transport.buffered = 0
        sender.send(history, range(4, 8), 0, 0, 0)
        assert len(calls) == 1 and calls[0][7] == 5  # the sequence number after the Python path's four
        assert transport.sent[4:] == [b"rest-1", b"rest-2"]
    finally:
        sock.close()


@needs_native
def test_a_viewer_whose_socket_the_kernel_refuses_goes_on_through_asyncio_and_raises_nothing(caplog):
    """send_frame raises on EINVAL/EBADF (not a lost packet); the sender
    catches it for its viewer (a loop over a source's viewers goes on), logs
    it once and sends the next frames through asyncio's transport."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gso = srtp.native.gso()  # an EINVAL while GSO is on turns it off first (_rtssend.send_batch)
    try:
        transport = _BufferingTransport(sock)
        transport.buffered = 0
        address = ("127.0.0.1", 9)
        protector = srtp.protector(srtp.AEAD_AES_128_GCM, os.urandom(28))
        sender = FastTrackSender(
            RtpWriter(PARAMETERS, 1, 0), protector.protect, _Dtls(_Pair(transport, address)), (transport, address)
        )
        sender.sockaddr = b"\x02\x00"  # an AF_INET sockaddr cut short: the kernel answers EINVAL
        template = sender.writer.template
        with pytest.raises(OSError):  # what the native call itself does with it
            srtp.native.send_frame(
                sender.srtp, sender.fd, sender.sockaddr, template.buffer, template.header_bytes, template.abs_offset,
                template.payload_type, 1, 0, 0, _history(1, 1).packets(range(0, 1)),
            )  # fmt: skip
        assert srtp.native.gso() == gso  # a plain message's EINVAL is its address's: GSO stays as it was
        history = _history(2, 4)
        with caplog.at_level(logging.WARNING, logger="livecenter.media.rts.media"):
            sender.send(history, range(0, 4), 0, 0, 0)
        assert sender.fd == -1 and transport.sent == []  # that frame is lost to it (NACKs ask again)
        assert sum("native send refused" in record.getMessage() for record in caplog.records) == 1
        sender.send(history, range(4, 8), 0, 0, 0)
        assert len(transport.sent) == 4  # the next frame, through the transport
        assert sender.writer.sequence_number == 9
    finally:
        srtp.native.gso(gso)
        sock.close()


# --- the ICE pair, NACK budget: both paths ---------------------------------------------


class _Transport:
    def __init__(self):
        self.sent = []
        self.closing = False

    def get_extra_info(self, name):
        return None  # no socket: the Python path

    def get_write_buffer_size(self):
        return 0

    def is_closing(self):
        return self.closing

    def sendto(self, data, address):
        self.sent.append((bytes(data), address))


@pytest.mark.parametrize("implementation", ["libsrtp", pytest.param("native", marks=needs_native)])
def test_a_newly_nominated_ice_pair_is_picked_up(implementation):
    old, new = _Transport(), _Transport()
    dtls = _Dtls(_Pair(old, ("10.0.0.1", 1000)))
    protect = srtp.protector(srtp.AEAD_AES_256_GCM, bytes(44), implementation).protect
    sender = FastTrackSender(RtpWriter(PARAMETERS, 1, 0), protect, dtls, (old, ("10.0.0.1", 1000)))
    history = _history(3, 2)
    assert sender.ready()
    sender.send(history, range(0, 2), 0, 0, 0)
    dtls.nominate(_Pair(new, ("10.0.0.2", 2000)))  # the old transport stays open
    assert sender.ready()
    sender.send(history, range(2, 4), 0, 0, 0)
    assert [a for _, a in old.sent] == [("10.0.0.1", 1000)] * 2
    assert [a for _, a in new.sent] == [("10.0.0.2", 2000)] * 2
    new.closing = True
    dtls.nominate(None)
    assert not sender.ready()  # no pair: the caller skips the viewer


def test_the_resend_budget_refills_at_its_rate_up_to_its_burst():
    budget = ResendBudget(rate=10, burst=5, min_interval=0.1)
    assert [budget.allow(100.0, seq) for seq in range(7)] == [True] * 5 + [False] * 2  # the burst
    assert [budget.allow(100.25, seq) for seq in range(10, 14)] == [True, True, False, False]  # 0.25 s at 10/s
    assert not budget.allow(99.0, 20)  # a clock going back refills nothing
    assert [budget.allow(200.0, seq) for seq in range(100, 150)].count(True) == 5  # never more than the burst
    assert budget.refused == 2 + 2 + 1 + 45
    with pytest.raises(ValueError, match="burst"):
        ResendBudget(rate=1, burst=0)


def test_a_packet_asked_again_soon_after_its_resend_is_not_resent_nor_charged():
    budget = ResendBudget(rate=0, burst=3, min_interval=0.1)
    assert budget.allow(10.0, 7)
    assert not budget.allow(10.05, 7)  # asked again within the interval
    assert budget.repeated == 1 and budget.refused == 0
    assert budget.allow(10.2, 7)  # its resend was lost too: asked again later
    assert budget.allow(10.2, 8)
    assert not budget.allow(10.2, 9)  # the three tokens are spent (rate 0)
    assert budget.refused == 1


def test_the_resend_budget_remembers_a_bounded_number_of_resends():
    from livecenter.media.rts.fastpath import MAX_RESENDS_REMEMBERED

    budget = ResendBudget(rate=0, burst=MAX_RESENDS_REMEMBERED + 2, min_interval=10)
    for seq in range(MAX_RESENDS_REMEMBERED + 1):
        assert budget.allow(1.0, seq)
    assert len(budget._resent) == MAX_RESENDS_REMEMBERED
    assert budget.allow(1.0, 0)  # the oldest was forgotten: resent again


@pytest.mark.parametrize("implementation", ["libsrtp", pytest.param("native", marks=needs_native)])
def test_nack_answers_one_sequence_number_a_call_are_bounded_per_track(implementation, monkeypatch):
    """aiortc's hook hands in one sequence number a call, so the bound is
    the track's budget, not MAX_RESENDS_PER_NACK; asked again at once, none
    is resent twice."""
    now = [1000.0]
    monkeypatch.setattr(media.time, "monotonic", lambda: now[0])
    transport = _Transport()
    dtls = _Dtls(_Pair(transport, ("10.0.0.1", 1000)))
    protect = srtp.protector(srtp.AEAD_AES_256_GCM, bytes(44), implementation).protect
    sender = FastTrackSender(RtpWriter(PARAMETERS, 0, 0), protect, dtls, (transport, ("10.0.0.1", 1000)))
    history = _history(100, 3)
    sender.send(history, range(0, 300), 0, 0, 0)
    transport.sent.clear()
    for _ in range(3):
        for sequence_number in range(300):
            sender.resend([sequence_number])
    assert len(transport.sent) == MAX_RESENDS_BURST
    assert sender.resend_budget.repeated == 2 * MAX_RESENDS_BURST  # the resent ones, asked twice more at once
    now[0] += 0.5
    for sequence_number in range(300):
        sender.resend([sequence_number])
    assert len(transport.sent) == MAX_RESENDS_BURST + min(MAX_RESENDS_BURST, int(0.5 * MAX_RESENDS_PER_SECOND))
    assert sender.writer.resends == len(transport.sent)
    assert sender.resend_budget.repeated == 2 * MAX_RESENDS_BURST  # 0.5 s later is not too soon


@needs_native
def test_a_frame_sent_natively_on_the_ice_pair_reaches_aiortcs_receiver():
    from livecenter.media.rts import aiortc_compat

    async def run():
        sending, receiving, sender, receiver, tap = await _connected_pair()
        try:
            dtls = sender.sender.transport
            profile, key_and_salt = aiortc_compat.srtp_tx_keys(dtls)
            parameters = negotiated_stream(sending, sender)
            fast = FastTrackSender(RtpWriter(parameters, 4242, 0), srtp.protector(profile, key_and_salt).protect,
                                   dtls, aiortc_compat.ice_datagram_path(dtls))  # fmt: skip
            assert fast.fd >= 0 and fast.srtp is not None
            history = RtpPacketHistory()
            history.add_frame([b"\x7c\x85" + bytes(500), b"\x7c\x45" + bytes(300)], 90_000, keyframe=True)
            # One UDP GSO message (a packet, then a shorter one): aiortc's socket gets two datagrams.
            assert srtp.native.gso()
            assert fast.ready()
            fast.send(history, range(0, 2), 0, 0, 802)
            async with asyncio.timeout(10):
                while len(tap.packets) < 2:
                    tap.arrived.clear()
                    await tap.arrived.wait()
            assert [(p.sequence_number, p.timestamp, p.marker) for p in tap.packets] == [
                (4242, 90_000, 0), (4243, 90_000, 1)]  # fmt: skip
        finally:
            await sending.close()
            await receiving.close()
            aiortc_compat.use_ice_addresses(())

    asyncio.run(run())


def test_the_historys_packets_of_a_range_follow_the_ring_across_its_end():
    history = RtpPacketHistory(max_packets=8)
    for frame in range(5):
        history.add_frame([bytes([frame, i]) * 10 for i in range(3)], frame * 3000)
    assert history.first_index == 7 and history.next_index == 15
    for indexes in (range(7, 10), range(9, 15), range(14, 15), range(12, 12)):
        assert history.packets(indexes) == [history.get(index) for index in indexes]
        assert history.packets(indexes) is history.packets(indexes)  # one list for every viewer of the frame
    kept = history.packets(range(12, 15))
    history.add_frame([b"new"], 5 * 3000)
    assert history.packets(range(12, 15)) is not kept  # a packet added: made again


@needs_native
def test_a_rendition_switch_is_byte_identical_on_both_paths():
    """RtpWriter.claim keeps the sequence and timestamp continuous across a
    switch of history (an ABR rendition) as RtpWriter.write does."""
    key_and_salt = os.urandom(44)

    async def run():
        native_in, python_in = _receiver(), _receiver()
        fast = await _sender(srtp.protector(srtp.AEAD_AES_256_GCM, key_and_salt, "native").protect, native_in)
        slow = await _sender(srtp.protector(srtp.AEAD_AES_256_GCM, key_and_salt, "libsrtp").protect, python_in)
        top, low = _history(3, 4), RtpPacketHistory()
        for frame in range(3):
            low.add_frame([b"low" * 20] * 2, 777_000 + frame * 3000, keyframe=frame == 0)
        for sender in (fast, slow):
            sender.send(top, range(0, 8), 0, 0, 0)
            sender.writer.switch_source(3000)
            sender.send(low, range(0, 2), 0, 0, 0)
            sender.send(low, range(2, 4), 0, 0, 0)
            with pytest.raises(FastPathError, match="switch_source"):
                sender.send(top, range(8, 12), 0, 0, 0)  # back without a switch: refused on both paths
        await asyncio.sleep(0)
        got_native, got_python = _drain(native_in), _drain(python_in)
        assert len(got_python) == 12 and got_native == got_python
        assert fast.writer.last_timestamp == slow.writer.last_timestamp
        for sender in (fast, slow):
            sender.transport.close()
        native_in.close()
        python_in.close()

    asyncio.run(run())


# --- UDP GSO: a frame's equal-size packets as one message -----------------------------------

UDP_GRO = getattr(socket, "UDP_GRO", 104)  # linux/udp.h


def _equal_runs_history() -> RtpPacketHistory:
    """Frames as the H.264 packetiser cuts them: a NAL unit's fragments of one
    size, its first ones a byte longer, a short last packet; one frame of 70
    (over the native batch and a GSO message's segments), one of a single
    packet, one whose packets all differ."""
    history = RtpPacketHistory(max_packets=512, max_bytes=512 * 1300)
    frames = [
        [1200] * 3 + [1199] * 4 + [300],
        [1200] * 70,
        [900],
        [100, 1200, 1200, 50, 1200],
    ]
    for number, sizes in enumerate(frames):
        history.add_frame([bytes([number, i % 256]) * (size // 2) + b"x" * (size % 2) for i, size in
                           enumerate(sizes)], number * 3000, keyframe=number == 0)  # fmt: skip
    return history


def _send_all(sender, history) -> None:
    for indexes in _frames_of(history):
        assert sender.ready()
        sender.send(history, indexes, 0x123456, 7, 100)


@needs_native
def test_a_frame_sent_as_udp_gso_messages_arrives_as_the_python_paths_datagrams():
    """GSO on and off, and the Python path: the same datagrams, in order,
    at a socket without UDP_GRO (the kernel cuts the segments apart)."""
    key_and_salt = os.urandom(44)
    history = _equal_runs_history()

    async def run(gso: bool, implementation: str) -> list[bytes]:
        before = srtp.native.gso()
        srtp.native.gso(gso)
        receiver = _receiver()
        try:
            sender = await _sender(srtp.protector(srtp.AEAD_AES_256_GCM, key_and_salt, implementation).protect,
                                   receiver)  # fmt: skip
            _send_all(sender, history)
            await asyncio.sleep(0)
            sender.transport.close()
            return _drain(receiver)
        finally:
            srtp.native.gso(before)
            receiver.close()

    with_gso = asyncio.run(run(True, "native"))
    without = asyncio.run(run(False, "native"))
    python = asyncio.run(run(True, "libsrtp"))
    assert len(python) == history.next_index == 84
    assert with_gso == without == python


def _send_frames_natively(sender: socket.socket, receiver: socket.socket, key_and_salt: bytes, history) -> int:
    """Every frame of `history` through send_frame on `sender` to `receiver`,
    nothing refused; returns the RTP header's length."""
    session = srtp.native_protector(srtp.AEAD_AES_256_GCM, key_and_salt)
    writer = RtpWriter(PARAMETERS, 100, 0)
    template = writer.template
    address = srtp.native.sockaddr(*receiver.getsockname())
    for indexes in _frames_of(history):
        sequence_number, offset = writer.claim(history, indexes)
        assert srtp.native.send_frame(
            session, sender.fileno(), address, template.buffer, template.header_bytes, template.abs_offset,
            template.payload_type, sequence_number, offset, 0, history.packets(indexes),
        ) is None  # fmt: skip
    return template.header_bytes


@needs_native
def test_the_equal_size_packets_really_go_as_gso_messages():
    """A receiver that asked for UDP_GRO gets a GSO message whole: fewer
    reads than packets, the same bytes; with GSO off, one read a packet."""
    key_and_salt = os.urandom(44)
    history = _equal_runs_history()
    reads = {}
    before = srtp.native.gso()
    try:
        for gso in (True, False):
            srtp.native.gso(gso)
            assert srtp.native.gso() is gso
            receiver = _receiver()
            receiver.setsockopt(socket.IPPROTO_UDP, UDP_GRO, 1)
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                header_bytes = _send_frames_natively(sender, receiver, key_and_salt, history)
                reads[gso] = []
                while True:
                    try:
                        reads[gso].append(receiver.recv(65536))
                    except BlockingIOError:
                        break
                got = sum(len(data) for data in reads[gso])
            finally:
                sender.close()
                receiver.close()
            assert got == sum(len(history.get(i).payload) + header_bytes + 16 for i in range(84))
    finally:
        srtp.native.gso(before)
    assert len(reads[False]) == 84
    # Frame 1: 1200 ×3 and a 1199 | 1199 ×3 and the 300; frame 2: 70 packets, batches of 64, at
    # most GSO_MAX_BYTES a message: 48 | 16 | 6; frame 3: 1; frame 4: 100 | 1200 1200 50 | 1200.
    assert len(reads[True]) == 2 + 3 + 1 + 3
    assert b"".join(reads[True]) == b"".join(reads[False])


@needs_native
def test_a_kernel_that_refuses_gso_turns_it_off_and_nothing_is_lost():
    """A socket the kernel will not segment for (SO_NO_CHECK: UDP GSO needs
    the checksum, EINVAL): the refused message and the rest of its batch go
    one datagram a packet, and GSO stays off."""
    key_and_salt = os.urandom(44)
    history = _equal_runs_history()
    before = srtp.native.gso()
    srtp.native.gso(True)
    receiver = _receiver()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sender.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_NO_CHECK", 11), 1)
        _send_frames_natively(sender, receiver, key_and_salt, history)
        assert srtp.native.gso() is False
        got = _drain(receiver)
    finally:
        srtp.native.gso(before)
        sender.close()
        receiver.close()
    python = srtp.protector(srtp.AEAD_AES_256_GCM, key_and_salt, "libsrtp")
    again = RtpWriter(PARAMETERS, 100, 0)
    assert got == [bytes(python.protect(again.write(history, index))) for index in range(history.next_index)]


@needs_native
@pytest.mark.parametrize("profile", [srtp.AEAD_AES_128_GCM, srtp.AEAD_AES_256_GCM])
def test_the_native_gcm_is_byte_identical_to_pylibsrtps_for_any_payload_size(profile):
    # The native GCM calls OpenSSL's provider functions itself (no EVP): an
    # empty payload skips the encryption, and OpenSSL's stitched AES-NI/CLMUL
    # code takes over from 288 bytes.
    key_bytes, salt_bytes = srtp.KEY_SALT_BYTES[profile]
    key_and_salt = os.urandom(key_bytes + salt_bytes)
    native, python = srtp.protector(profile, key_and_salt, "native"), srtp.protector(profile, key_and_salt, "libsrtp")
    extension = bytes.fromhex("bede0002220102031007" + "0000")  # abs-send-time and mid, one-byte form
    for number, size in enumerate((0, 1, 15, 16, 17, 100, 287, 288, 289, 1200)):
        for first, header in ((0x80, b""), (0x90, extension)):
            packet = struct.pack("!BBHLL", first, 96, 2 * number + len(header) % 2, 3000 * number, 0xCAFE)
            packet += header + os.urandom(size)
            assert native.protect(packet) == bytes(python.protect(packet))
