"""Every private aiortc and aioice name RTS relies on, in one place.

aiortc has no public API for what a WHEP server of pre-encoded media needs:
its own stream id (msid) per track, a keyframe request (PLI/FIR) handed to
the media source rather than to an encoder, a packetiser instead of an
encoder, and ICE host candidates on chosen addresses. Nor for what a WHIP
server that forwards media needs: the depayloaded packets rather than
decoded pictures (the receiver's jitter buffer replaced by the node's
assembler), the publisher's sender reports, a count of the NACKs sent, a
PLI sent when the node wants a keyframe, and a STUN round trip on the
selected ICE pair for the link's RTT. The pinned versions
(constraints.txt: aiortc 1.16.0, aioice 0.13.0) do these through the private
names below; tests/test_aiortc_compat.py fails, naming the attribute, when
an upgrade drops one. `missing_internals()` says the same at run time.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterable

import aioice.ice
import aioice.stun
import aiortc.codecs
from aiortc import RTCDtlsTransport, RTCIceTransport, RTCRtpCodecParameters, RTCRtpReceiver, RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    unpack_remb_fci,
)

# The attribute the sender reads for the msid of its track's stream.
SENDER_STREAM_ID = "_stream_id"
# The method the sender calls on a PLI or FIR (RTCRtpSender._handle_rtcp_packet).
SENDER_KEYFRAME_HOOK = "_send_keyframe"
# The sender's encoder, made on first use unless set (name-mangled `__encoder`).
SENDER_ENCODER = "_RTCRtpSender__encoder"
# The fast path (issue 18): the sender's retransmission of one NACKed
# sequence number (called by its `_handle_rtcp_packet`), its RTCP send (called
# by its `_run_rtcp` with the sender report it built) and the counters that
# report, its RTT estimate and getStats read (name-mangled).
SENDER_RETRANSMIT = "_retransmit"
SENDER_SSRC = "_ssrc"
SENDER_RTX_SSRC = "_rtx_ssrc"
SENDER_SEND_RTCP = "_send_rtcp"
SENDER_REPORT_COUNTERS = (
    "_RTCRtpSender__ntp_timestamp",
    "_RTCRtpSender__rtp_timestamp",
    "_RTCRtpSender__packet_count",
    "_RTCRtpSender__octet_count",
)
SENDER_LSR = "_RTCRtpSender__lsr"
# The coroutine the DTLS transport hands each RTCP packet for the sender's
# SSRC (receiver reports, NACK, PLI/FIR, REMB).
SENDER_RTCP_HANDLER = "_handle_rtcp_packet"
# RFC 3550 6.4.1: fraction lost is a fixed-point number, 8 bits after the point.
FRACTION_LOST_SCALE = 256
# The function aioice asks for the addresses of its host candidates.
ICE_HOST_ADDRESSES = "get_host_addresses"
ICE_HOST_ADDRESSES_PARAMETERS = ("use_ipv4", "use_ipv6")
# The receiver's jitter buffer (`add(packet) -> (pli, frame)`, after
# depayloading) and its negotiated codecs by payload type (name-mangled).
RECEIVER_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
RECEIVER_CODECS = "_RTCRtpReceiver__codecs"
# The receiver's coroutines for incoming RTCP and outgoing NACK and PLI.
RECEIVER_RTCP_HANDLER = "_handle_rtcp_packet"
RECEIVER_SEND_NACK = "_send_rtcp_nack"
RECEIVER_SEND_PLI = "_send_rtcp_pli"
# The DTLS transport's role setter ("auto", "client" or "server").
DTLS_SET_ROLE = "_set_role"
# RTCIceTransport's aioice Connection, and the Connection's selected pairs
# by component (what its consent checks, RFC 7675, are sent on).
ICE_TRANSPORT_CONNECTION = "_connection"
ICE_NOMINATED = "_nominated"
# The RTP component's number in aioice (RFC 8445 4.1.1.1; RTCP is muxed on it).
ICE_RTP_COMPONENT = 1
# The DTLS transport's SRTP session for what it sends (pylibsrtp Session),
# its pyOpenSSL connection (for the negotiated profile and the exported
# keys, RFC 5764 4.2), its role and its profiles (rtcdtlstransport.SRTPProtectionProfile).
DTLS_TX_SRTP = "_tx_srtp"
DTLS_SSL = "_ssl"
DTLS_ROLE = "_role"
DTLS_SRTP_PROFILES = "_srtp_profiles"
DTLS_SETUP_SRTP = "_setup_srtp"
# RFC 5764 4.2: the exporter label of DTLS-SRTP keying material.
DTLS_SRTP_EXPORTER_LABEL = b"EXTRACTOR-dtls_srtp"

_default_host_addresses = aioice.ice.get_host_addresses


def set_stream_id(sender: RTCRtpSender, stream_id: str) -> None:
    """Give the sender's track a stream id (msid) of its own."""
    setattr(sender, SENDER_STREAM_ID, stream_id)


def on_keyframe_request(sender: RTCRtpSender, fn: Callable[[], None]) -> None:
    """Call `fn` (on the loop) when the peer asks for a keyframe (PLI or FIR)."""
    setattr(sender, SENDER_KEYFRAME_HOOK, fn)


def use_encoder(sender: RTCRtpSender, encoder) -> None:
    """Have the sender use `encoder` (an aiortc Encoder: `pack` for
    pre-encoded packets) rather than make one for its codec."""
    setattr(sender, SENDER_ENCODER, encoder)


def on_send_parameters(sender: RTCRtpSender, fn: Callable) -> None:
    """Call `fn(parameters)` (RTCRtpSendParameters: the negotiated codecs,
    header extensions and mid) once the sender starts, which aiortc does
    after the DTLS handshake (RTCPeerConnection.__connect). Wraps the
    sender's public `send` on the instance."""
    send = sender.send

    async def send_and_tell(parameters) -> None:
        await send(parameters)
        fn(parameters)

    sender.send = send_and_tell


def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    """The sender's SSRC and its RTX SSRC (what the answer's a=ssrc lines name)."""
    return getattr(sender, SENDER_SSRC), getattr(sender, SENDER_RTX_SSRC)


def on_retransmit(sender: RTCRtpSender, fn: Callable[[int], None]) -> None:
    """Call `fn(sequence_number)` for each sequence number a NACK for the
    sender's SSRC names, instead of aiortc's retransmission (its history is
    empty when the fast path sends the media)."""

    async def retransmit(sequence_number: int) -> None:
        fn(sequence_number)

    setattr(sender, SENDER_RETRANSMIT, retransmit)


def on_sender_report(sender: RTCRtpSender, fn: Callable[[], tuple[int, int, int, int] | None]) -> None:
    """Have the sender's RTCP sender reports (RFC 3550 6.4.1) carry what
    `fn()` returns, (NTP time, RTP timestamp, packets, octets) of the last
    packet the fast path sent, or None before the first one. aiortc's own
    counters stay at zero once its RTP task sends nothing; they are set too,
    for its RTT estimate (LSR) and getStats."""
    send_rtcp = getattr(sender, SENDER_SEND_RTCP)

    async def send_with_report(packets) -> None:
        values = fn()
        if values is not None:
            ntp, rtp_timestamp, count, octets = values
            info = RtcpSenderInfo(
                ntp_timestamp=ntp,
                rtp_timestamp=rtp_timestamp,
                packet_count=count & 0xFFFFFFFF,
                octet_count=octets & 0xFFFFFFFF,
            )
            for packet in packets:
                if isinstance(packet, RtcpSrPacket) and packet.ssrc == sender._ssrc:
                    packet.sender_info = info
                    setattr(sender, SENDER_LSR, (ntp >> 16) & 0xFFFFFFFF)
            for name, value in zip(SENDER_REPORT_COUNTERS, values, strict=True):
                setattr(sender, name, value)
        await send_rtcp(packets)

    setattr(sender, SENDER_SEND_RTCP, send_with_report)


def on_receiver_feedback(
    sender: RTCRtpSender, on_estimate: Callable[[int], None], on_loss: Callable[[float], None]
) -> None:
    """Call `on_estimate(bps)` for each REMB (draft-alvestrand-rmcat-remb:
    RTCP PSFB "application layer feedback") naming the sender's SSRC, and
    `on_loss(fraction)` (0..1) for each receiver report block about it
    (RFC 3550 6.4.1), before aiortc's own handling (its RTT estimate, NACK,
    PLI/FIR) of the same packet. Viewers send REMB when abs-send-time is
    negotiated, which the node's answers do; transport-wide congestion
    control feedback needs its own header extension, which aiortc does not
    offer, so no peer of the node sends it."""
    handle = getattr(sender, SENDER_RTCP_HANDLER)

    async def handle_rtcp(packet) -> None:
        ssrc = getattr(sender, SENDER_SSRC)
        if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            for report in packet.reports:
                if report.ssrc == ssrc:
                    on_loss(report.fraction_lost / FRACTION_LOST_SCALE)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                bitrate, ssrcs = 0, []  # another application's feedback, or a malformed REMB
            if ssrc in ssrcs:
                on_estimate(bitrate)
        await handle(packet)

    setattr(sender, SENDER_RTCP_HANDLER, handle_rtcp)


def use_ice_addresses(addresses: Iterable[str]) -> None:
    """Offer ICE host candidates on these addresses only (every interface
    but loopback when empty, aioice's default). aioice has no per-connection
    setting, so this is for the whole process, like the node itself."""
    chosen = tuple(addresses)
    if chosen:

        def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

        aioice.ice.get_host_addresses = host_addresses
    else:
        aioice.ice.get_host_addresses = _default_host_addresses


# H.264 profiles a WHIP publisher may send besides the Baseline and
# Constrained Baseline aiortc knows (its codecs.CODECS): Main, Constrained
# High and High. The node never decodes them, so any profile passes; WHEP
# answers keep to aiortc's own two (session.py).
WHIP_H264_PROFILE_LEVEL_IDS = ("4d001f", "640c1f", "64001f")
BASELINE_PROFILE_PREFIX = "42"


def accept_h264_profiles() -> None:
    """Add WHIP_H264_PROFILE_LEVEL_IDS to aiortc's video codecs (each with
    its RTX), once per process."""
    codecs = aiortc.codecs.CODECS["video"]
    known = {c.parameters.get("profile-level-id") for c in codecs if c.mimeType.lower() == "video/h264"}
    template = next((c for c in codecs if c.mimeType.lower() == "video/h264"), None)
    if template is None:
        return
    payload_type = max(c.payloadType for c in codecs) + 1
    for profile_level_id in WHIP_H264_PROFILE_LEVEL_IDS:
        if profile_level_id in known:
            continue
        codecs.append(
            RTCRtpCodecParameters(
                mimeType="video/H264",
                clockRate=template.clockRate,
                payloadType=payload_type,
                rtcpFeedback=list(template.rtcpFeedback),
                parameters={**template.parameters, "profile-level-id": profile_level_id},
            )
        )
        codecs.append(
            RTCRtpCodecParameters(
                mimeType="video/rtx",
                clockRate=template.clockRate,
                payloadType=payload_type + 1,
                parameters={"apt": payload_type},
            )  # fmt: skip
        )
        payload_type += 2


def tap_receiver(receiver: RTCRtpReceiver, buffer, on_sender_report: Callable, on_nack: Callable) -> None:
    """Have the receiver hand its depayloaded packets to `buffer` (its
    `add(packet)` returns (False, None): nothing for aiortc to decode), call
    `on_sender_report(ssrc, ntp_timestamp, rtp_timestamp)` for each RTCP
    sender report and `on_nack(count)` for each NACK it sends. Before the
    receiver starts (setRemoteDescription)."""
    setattr(receiver, RECEIVER_JITTER_BUFFER, buffer)
    handle = getattr(receiver, RECEIVER_RTCP_HANDLER)
    send_nack = getattr(receiver, RECEIVER_SEND_NACK)

    async def handle_rtcp(packet) -> None:
        if isinstance(packet, RtcpSrPacket):
            info = packet.sender_info
            on_sender_report(packet.ssrc, info.ntp_timestamp, info.rtp_timestamp)
        await handle(packet)

    async def nack(media_ssrc: int, lost: list[int]) -> None:
        on_nack(len(lost))
        await send_nack(media_ssrc, lost)

    setattr(receiver, RECEIVER_RTCP_HANDLER, handle_rtcp)
    setattr(receiver, RECEIVER_SEND_NACK, nack)


def answer_as_dtls_server(transceiver) -> None:
    """Make the answer to an `a=setup:actpass` offer say `a=setup:passive`,
    the node then being the DTLS server. aiortc answers `active` (client),
    and as a client offers only ECDHE-ECDSA suites, which a server with an
    RSA certificate (GStreamer 1.22's webrtcbin) cannot take; as the server
    the node's own ECDSA certificate decides the suite. Before createAnswer."""
    getattr(transceiver.receiver.transport, DTLS_SET_ROLE)("server")


def receiver_codecs(receiver: RTCRtpReceiver) -> dict:
    """The receiver's negotiated codecs (RTCRtpCodecParameters) by payload type."""
    return getattr(receiver, RECEIVER_CODECS)


async def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    """Ask the sender of `media_ssrc` for a keyframe (RTCP PLI, RFC 4585 6.3.1)."""
    await getattr(receiver, RECEIVER_SEND_PLI)(media_ssrc)


async def ice_round_trip(receiver: RTCRtpReceiver) -> float | None:
    """Seconds a STUN binding request takes to be answered on the selected
    ICE pair (as a consent check), or None with no pair or no answer."""
    connection = getattr(receiver.transport.transport, ICE_TRANSPORT_CONNECTION)
    password = connection.remote_password
    for pair in getattr(connection, ICE_NOMINATED).values():
        if password is None:
            return None
        request = connection.build_request(pair, nominate=False)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await pair.protocol.request(
                request, pair.remote_addr, integrity_key=password.encode("utf8"), retransmissions=0
            )
        except aioice.stun.TransactionError:
            return None
        return loop.time() - started
    return None


def ice_nominated_pair(dtls_transport: RTCDtlsTransport):
    """The aioice CandidatePair nominated for RTP under this DTLS transport
    (`Connection._nominated[1]`), or None. aioice replaces it when a later
    check of another pair succeeds nominated (the controlling peer may
    nominate again), so a sender that holds a pair's transport compares the
    pair it read with this one. None for no DTLS transport (a test's sender)."""
    connection = getattr(getattr(dtls_transport, "transport", None), ICE_TRANSPORT_CONNECTION, None)
    return getattr(connection, ICE_NOMINATED, {}).get(ICE_RTP_COMPONENT) if connection is not None else None


def ice_datagram_path(dtls_transport: RTCDtlsTransport) -> tuple[asyncio.DatagramTransport, tuple] | None:
    """The asyncio datagram transport and remote address of the ICE pair
    nominated for RTP under this DTLS transport (aioice
    `Connection._nominated[1].protocol.transport`, `.remote_addr`), or None
    before ICE has nominated a pair: what aiortc's `_send_rtp` ends in, so
    the fast path can `sendto` a protected packet there itself. Read it
    again after an ICE restart: the pair may change."""
    pair = ice_nominated_pair(dtls_transport)
    if pair is None:
        return None
    transport = getattr(pair.protocol, "transport", None)
    if transport is None or transport.is_closing():
        return None
    return transport, pair.remote_addr


def tx_srtp(dtls_transport: RTCDtlsTransport):
    """The pylibsrtp Session aiortc protects what it sends with (None
    before the DTLS handshake): SSRC_ANY_OUTBOUND, so packets of an SSRC
    the fast path writes must not also be sent by aiortc's sender."""
    return getattr(dtls_transport, DTLS_TX_SRTP)


def srtp_tx_keys(dtls_transport: RTCDtlsTransport) -> tuple[str, bytes] | None:
    """The negotiated SRTP profile's name (b"SRTP_AEAD_AES_256_GCM" ...
    decoded) and the master key and salt this side sends with, exported
    again from the DTLS connection exactly as aiortc's `_setup_srtp` does
    (None before the handshake). The key is a secret: never log it."""
    ssl = getattr(dtls_transport, DTLS_SSL)
    if ssl is None or getattr(dtls_transport, DTLS_TX_SRTP) is None:
        return None
    selected = ssl.get_selected_srtp_profile()
    for profile in getattr(dtls_transport, DTLS_SRTP_PROFILES):
        if profile.openssl_profile == selected:
            break
    else:
        return None
    material = ssl.export_keying_material(DTLS_SRTP_EXPORTER_LABEL, 2 * (profile.key_length + profile.salt_length))
    # RFC 5764 4.2: client key, server key, client salt, server salt.
    side = 1 if getattr(dtls_transport, DTLS_ROLE) == "server" else 0
    return profile.openssl_profile.decode(), profile.get_key_and_salt(material, side)


def _reads(function, name: str) -> bool:
    return name in function.__code__.co_names


def missing_internals(sender: RTCRtpSender, receiver: RTCRtpReceiver | None = None) -> list[str]:
    """What the installed aiortc/aioice lack of the names above, each naming
    the attribute (empty when all is there). `sender` and `receiver` are
    real ones, made by an RTCPeerConnection's addTransceiver."""
    missing = []
    if receiver is not None:
        instance = vars(receiver)
        for name in (RECEIVER_JITTER_BUFFER, RECEIVER_CODECS):
            if name not in instance:
                missing.append(f"RTCRtpReceiver instance attribute {name} is gone")
        for name in (RECEIVER_RTCP_HANDLER, RECEIVER_SEND_NACK, RECEIVER_SEND_PLI):
            if not inspect.iscoroutinefunction(getattr(RTCRtpReceiver, name, None)):
                missing.append(f"RTCRtpReceiver.{name} is gone")
        handler = getattr(RTCRtpReceiver, "_handle_rtp_packet", None)
        if handler is None or not _reads(handler, RECEIVER_SEND_NACK):
            missing.append(f"RTCRtpReceiver._handle_rtp_packet no longer calls {RECEIVER_SEND_NACK}")
        connection_init = getattr(aioice.ice.Connection, "__init__", None)
        if not callable(getattr(aioice.ice.Connection, "build_request", None)):
            missing.append("aioice.ice.Connection.build_request is gone")
        if connection_init is None or ICE_NOMINATED not in connection_init.__code__.co_names:
            missing.append(f"aioice.ice.Connection no longer sets {ICE_NOMINATED}")
        if not callable(getattr(RTCDtlsTransport, DTLS_SET_ROLE, None)):
            missing.append(f"RTCDtlsTransport.{DTLS_SET_ROLE} is gone")
        if ICE_TRANSPORT_CONNECTION not in RTCIceTransport.__init__.__code__.co_names:
            missing.append(f"RTCIceTransport no longer sets {ICE_TRANSPORT_CONNECTION}")
    missing.extend(missing_fast_path_internals())
    instance = vars(sender)
    for name in (SENDER_STREAM_ID, SENDER_ENCODER, SENDER_SSRC, SENDER_RTX_SSRC, SENDER_LSR, *SENDER_REPORT_COUNTERS):
        if name not in instance:
            missing.append(f"RTCRtpSender instance attribute {name} is gone")
    if not callable(getattr(RTCRtpSender, SENDER_KEYFRAME_HOOK, None)):
        missing.append(f"RTCRtpSender.{SENDER_KEYFRAME_HOOK} is gone")
    handler = getattr(RTCRtpSender, SENDER_RTCP_HANDLER, None)
    if not inspect.iscoroutinefunction(handler):
        missing.append(f"RTCRtpSender.{SENDER_RTCP_HANDLER} is no longer a coroutine")
    if handler is None or not _reads(handler, SENDER_KEYFRAME_HOOK):
        missing.append(f"RTCRtpSender._handle_rtcp_packet no longer calls {SENDER_KEYFRAME_HOOK}")
    if handler is None or not _reads(handler, SENDER_RETRANSMIT):
        missing.append(f"RTCRtpSender._handle_rtcp_packet no longer calls {SENDER_RETRANSMIT}")
    run_rtcp = getattr(RTCRtpSender, "_run_rtcp", None)
    if run_rtcp is None or not _reads(run_rtcp, SENDER_SEND_RTCP):
        missing.append(f"RTCRtpSender._run_rtcp no longer calls {SENDER_SEND_RTCP}")
    if not inspect.iscoroutinefunction(getattr(RTCRtpSender, "send", None)):
        missing.append("RTCRtpSender.send is no longer a coroutine")
    encode = getattr(RTCRtpSender, "_next_encoded_frame", None)
    if encode is None or not _reads(encode, SENDER_ENCODER):
        missing.append(f"RTCRtpSender._next_encoded_frame no longer reads {SENDER_ENCODER}")
    function = getattr(aioice.ice, ICE_HOST_ADDRESSES, None)
    if function is None:
        missing.append(f"aioice.ice.{ICE_HOST_ADDRESSES} is gone")
    else:
        parameters = tuple(inspect.signature(_default_host_addresses).parameters)
        if parameters != ICE_HOST_ADDRESSES_PARAMETERS:
            missing.append(f"aioice.ice.{ICE_HOST_ADDRESSES} takes {parameters}, not {ICE_HOST_ADDRESSES_PARAMETERS}")
        if not any(_reads(f, ICE_HOST_ADDRESSES) for f in _functions_of(aioice.ice.Connection)):
            missing.append(f"aioice.ice.Connection no longer calls {ICE_HOST_ADDRESSES}")
    return missing


def missing_fast_path_internals() -> list[str]:
    """What the fast path (fastpath.py, srtp.py) needs of aiortc and aioice
    that the installed versions lack, each naming the attribute."""
    missing = []
    setup = getattr(RTCDtlsTransport, DTLS_SETUP_SRTP, None)
    if setup is None:
        missing.append(f"RTCDtlsTransport.{DTLS_SETUP_SRTP} is gone")
    else:
        for name in (DTLS_TX_SRTP, DTLS_SSL, DTLS_ROLE, DTLS_SRTP_PROFILES):
            if name not in setup.__code__.co_names:
                missing.append(f"RTCDtlsTransport.{DTLS_SETUP_SRTP} no longer reads {name}")
        if DTLS_SRTP_EXPORTER_LABEL not in setup.__code__.co_consts:
            missing.append(f"RTCDtlsTransport.{DTLS_SETUP_SRTP} no longer exports {DTLS_SRTP_EXPORTER_LABEL!r}")
    sendto = getattr(aioice.ice.Connection, "sendto", None)
    if sendto is None or ICE_NOMINATED not in sendto.__code__.co_names:
        missing.append(f"aioice.ice.Connection.sendto no longer reads {ICE_NOMINATED}")
    send_data = getattr(aioice.ice.StunProtocol, "send_data", None)
    if send_data is None or "transport" not in send_data.__code__.co_names:
        missing.append("aioice.ice.StunProtocol.send_data no longer sends on its transport")
    if not isinstance(getattr(aioice.ice.CandidatePair, "remote_addr", None), property):
        missing.append("aioice.ice.CandidatePair.remote_addr is gone")
    return missing


def _functions_of(cls) -> list:
    return [f for f in vars(cls).values() if inspect.isfunction(f)]
