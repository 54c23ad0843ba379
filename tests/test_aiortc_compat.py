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
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket

from livecenter.media.rts import aiortc_compat
from livecenter.media.rts.aiortc_compat import (
    on_keyframe_request,
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
