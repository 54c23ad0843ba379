"""The private aiortc/aioice names RTS relies on (livecenter/media/rts/
aiortc_compat.py) are there in the pinned versions and do what RTS needs,
checked on a real RTCRtpSender made by a real RTCPeerConnection. A failure
names the attribute an upgrade took away."""

from __future__ import annotations

import asyncio
import inspect

import aioice.ice
import pytest
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    pack_remb_fci,
)

from livecenter.media.rts import aiortc_compat
from livecenter.media.rts.aiortc_compat import (
    on_keyframe_request,
    on_receiver_feedback,
    on_retransmit,
    on_sender_report,
    sender_ssrcs,
    set_stream_id,
    use_encoder,
    use_ice_addresses,
)


async def _sender(kind="video"):
    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver(kind, direction="sendonly")
    return pc, transceiver.sender


@pytest.mark.parametrize(
    "attribute", [aiortc_compat.SENDER_STREAM_ID, aiortc_compat.SENDER_ENCODER, aiortc_compat.SENDER_KEYFRAME_HOOK]
)
def test_it_finds_each_sender_attribute_on_a_real_sender(attribute):
    async def run():
        pc, sender = await _sender()
        try:
            assert hasattr(sender, attribute), f"aiortc RTCRtpSender has no {attribute} any more"
        finally:
            await pc.close()

    asyncio.run(run())


def test_it_finds_nothing_missing_in_the_pinned_aiortc_and_aioice():
    async def run():
        pc, sender = await _sender()
        try:
            assert aiortc_compat.missing_internals(sender) == []
        finally:
            await pc.close()

    asyncio.run(run())


def test_it_finds_aioice_get_host_addresses_with_its_signature():
    function = getattr(aioice.ice, aiortc_compat.ICE_HOST_ADDRESSES, None)
    assert function is not None, "aioice.ice.get_host_addresses is gone"
    assert tuple(inspect.signature(function).parameters) == ("use_ipv4", "use_ipv6")


def test_it_names_what_is_missing():
    class Bare:
        pass

    missing = aiortc_compat.missing_internals(Bare())
    assert "RTCRtpSender instance attribute _stream_id is gone" in missing
    assert "RTCRtpSender instance attribute _RTCRtpSender__encoder is gone" in missing


def test_the_stream_id_becomes_the_tracks_msid():
    async def run():
        pc, sender = await _sender()
        try:
            set_stream_id(sender, "session-1-video")
            await pc.setLocalDescription(await pc.createOffer())
            assert "a=msid:session-1-video " in pc.localDescription.sdp
        finally:
            await pc.close()

    asyncio.run(run())


def test_a_pli_reaches_the_keyframe_hook():
    async def run():
        pc, sender = await _sender()
        requests = []
        try:
            on_keyframe_request(sender, lambda: requests.append("keyframe"))
            pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=sender._ssrc)
            await sender._handle_rtcp_packet(pli)
            assert requests == ["keyframe"]
        finally:
            await pc.close()

    asyncio.run(run())


def test_the_sender_uses_the_encoder_it_is_given():
    async def run():
        pc, sender = await _sender()
        try:
            encoder = object()
            use_encoder(sender, encoder)
            assert getattr(sender, aiortc_compat.SENDER_ENCODER) is encoder
            assert aiortc_compat.SENDER_ENCODER in RTCRtpSender._next_encoded_frame.__code__.co_names
        finally:
            await pc.close()

    asyncio.run(run())


def test_it_offers_host_candidates_on_the_chosen_addresses_only():
    try:
        use_ice_addresses(("127.0.0.1", "::1"))
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]

        async def run():
            pc = RTCPeerConnection()
            pc.addTransceiver("video", direction="sendonly")
            try:
                await pc.setLocalDescription(await pc.createOffer())
                candidates = [line for line in pc.localDescription.sdp.splitlines() if line.startswith("a=candidate")]
                addresses = {line.split()[4] for line in candidates}
                assert "127.0.0.1" in addresses and addresses <= {"127.0.0.1", "::1"}
            finally:
                await pc.close()

        asyncio.run(run())
    finally:
        use_ice_addresses(())
    assert aioice.ice.get_host_addresses is aiortc_compat._default_host_addresses


def test_it_finds_nothing_missing_of_what_whip_uses_on_a_real_receiver():
    async def run():
        pc = RTCPeerConnection()
        transceiver = pc.addTransceiver("video", direction="recvonly")
        try:
            assert aiortc_compat.missing_internals(pc.addTransceiver("video").sender, transceiver.receiver) == []
        finally:
            await pc.close()

    asyncio.run(run())


def test_a_tapped_receiver_hands_its_packets_to_the_tap_and_reports_sender_reports_and_nacks():
    """The receiver's jitter buffer is the tap; a sender report and a NACK
    the receiver sends are seen (aiortc_compat.tap_receiver)."""
    from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket

    class Tap:
        def __init__(self):
            self.packets = []

        def add(self, packet):
            self.packets.append(packet)
            return False, None

    async def run():
        pc = RTCPeerConnection()
        transceiver = pc.addTransceiver("video", direction="recvonly")
        receiver = transceiver.receiver
        tap, reports, nacks = Tap(), [], []
        aiortc_compat.tap_receiver(receiver, tap, lambda *r: reports.append(r), nacks.append)
        try:
            assert aiortc_compat.receiver_codecs(receiver) == {}  # filled when the receiver starts
            sr = RtcpSrPacket(ssrc=5, sender_info=RtcpSenderInfo(ntp_timestamp=7 << 32, rtp_timestamp=9000,
                                                                  packet_count=1, octet_count=100))  # fmt: skip
            await receiver._handle_rtcp_packet(sr)
            assert reports == [(5, 7 << 32, 9000)]
            await receiver._send_rtcp_nack(5, [1, 2, 3])
            assert nacks == [3]
            assert getattr(receiver, aiortc_compat.RECEIVER_JITTER_BUFFER) is tap
        finally:
            await pc.close()

    asyncio.run(run())


def test_whip_adds_main_and_high_h264_and_whep_answers_keep_to_baseline():
    from livecenter.media.rts import ingest  # noqa: F401 - importing it adds the profiles
    from livecenter.media.rts.session import _whep_codec

    codecs = RTCRtpSender.getCapabilities("video").codecs
    profiles = {c.parameters.get("profile-level-id") for c in codecs if c.mimeType.lower() == "video/h264"}
    assert {"42001f", "42e01f", "4d001f", "640c1f", "64001f"} <= profiles
    whep = {
        c.parameters.get("profile-level-id") for c in codecs if c.mimeType.lower() == "video/h264" and _whep_codec(c)
    }
    assert whep == {"42001f", "42e01f"}


def test_it_finds_nothing_missing_of_what_the_fast_path_uses():
    assert aiortc_compat.missing_fast_path_internals() == []


def test_it_names_what_the_fast_path_misses(monkeypatch):
    from aiortc import RTCDtlsTransport

    monkeypatch.delattr(RTCDtlsTransport, aiortc_compat.DTLS_SETUP_SRTP)
    monkeypatch.delattr(aioice.ice.CandidatePair, "remote_addr")
    missing = aiortc_compat.missing_fast_path_internals()
    assert "RTCDtlsTransport._setup_srtp is gone" in missing
    assert "aioice.ice.CandidatePair.remote_addr is gone" in missing


def test_a_nack_reaches_the_retransmit_hook_once_per_lost_packet():
    async def run():
        pc, sender = await _sender()
        lost = []
        try:
            on_retransmit(sender, lost.append)
            nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=sender._ssrc)
            nack.lost = [5, 6, 65535]
            await sender._handle_rtcp_packet(nack)
            assert lost == [5, 6, 65535]
        finally:
            await pc.close()

    asyncio.run(run())


def test_remb_and_receiver_reports_reach_the_feedback_hooks_and_aiortc_still_sees_them():
    async def run():
        pc, sender = await _sender()
        estimates, losses, keyframes = [], [], []
        try:
            on_receiver_feedback(sender, estimates.append, losses.append)
            on_keyframe_request(sender, lambda: keyframes.append(1))
            ssrc = sender._ssrc
            remb = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(750_000, [ssrc]))
            other = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(9, [ssrc + 1]))
            garbage = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=b"not a remb")

            def block(source, fraction):
                return RtcpReceiverInfo(ssrc=source, fraction_lost=fraction, packets_lost=0, highest_sequence=0,
                                        jitter=0, lsr=0, dlsr=0)  # fmt: skip

            rr = RtcpRrPacket(ssrc=1, reports=[block(ssrc + 1, 255), block(ssrc, 64)])
            for packet in (remb, other, garbage, rr):
                await sender._handle_rtcp_packet(packet)
            assert estimates == [750_000]
            assert losses == [0.25], "RFC 3550 6.4.1: 64/256 of the packets lost"
            await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=ssrc))
            assert keyframes == [1], "aiortc's own handling runs after the hook"
        finally:
            await pc.close()

    asyncio.run(run())


def test_sender_reports_carry_the_fast_paths_counts():
    async def run():
        pc, sender = await _sender()
        values = []
        try:
            on_sender_report(sender, lambda: values[-1] if values else None)
            stale = RtcpSenderInfo(ntp_timestamp=0, rtp_timestamp=0, packet_count=0, octet_count=0)
            before = RtcpSrPacket(ssrc=sender._ssrc, sender_info=stale)
            await getattr(sender, aiortc_compat.SENDER_SEND_RTCP)([before])  # not connected: not sent
            assert before.sender_info is stale, "nothing sent yet: aiortc's report stands"
            values.append(((1 << 40) + 12345, 90_000, (1 << 32) + 7, 900))
            report = RtcpSrPacket(ssrc=sender._ssrc, sender_info=stale)
            other = RtcpSrPacket(ssrc=sender._ssrc ^ 1, sender_info=stale)
            await getattr(sender, aiortc_compat.SENDER_SEND_RTCP)([report, other])
            info = report.sender_info
            assert (info.ntp_timestamp, info.rtp_timestamp, info.packet_count, info.octet_count) == (
                (1 << 40) + 12345,
                90_000,
                7,
                900,
            )
            assert other.sender_info is stale
            assert getattr(sender, aiortc_compat.SENDER_LSR) == ((1 << 40) + 12345) >> 16
            assert (await sender.getStats()) is not None
        finally:
            await pc.close()

    asyncio.run(run())


def test_it_reads_the_senders_ssrcs():
    async def run():
        pc, sender = await _sender()
        try:
            await pc.setLocalDescription(await pc.createOffer())
            ssrc, rtx_ssrc = sender_ssrcs(sender)
            assert f"a=ssrc:{ssrc} " in pc.localDescription.sdp
            assert f"a=ssrc:{rtx_ssrc} " in pc.localDescription.sdp
        finally:
            await pc.close()

    asyncio.run(run())


def test_it_names_what_the_fast_path_needs_of_the_sender(monkeypatch):
    class Bare:
        pass

    missing = aiortc_compat.missing_internals(Bare())
    assert "RTCRtpSender instance attribute _RTCRtpSender__lsr is gone" in missing
    assert "RTCRtpSender instance attribute _RTCRtpSender__packet_count is gone" in missing
    assert "RTCRtpSender instance attribute _ssrc is gone" in missing
    monkeypatch.setattr(RTCRtpSender, "_run_rtcp", lambda self: None)
    monkeypatch.setattr(RTCRtpSender, "_handle_rtcp_packet", lambda self, packet: None)
    missing = aiortc_compat.missing_internals(Bare())
    assert "RTCRtpSender._run_rtcp no longer calls _send_rtcp" in missing
    assert "RTCRtpSender._handle_rtcp_packet no longer calls _retransmit" in missing
