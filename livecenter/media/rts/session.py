"""WHEP sessions: the aiortc glue and the registry (issue 5).

`RtsService` belongs to a media node. For each WHEP POST it admits the
viewer (signature, the domain's RTS switch, B-frames against the domain's
HTML5 auto-transcoding switch), makes an aiortc `RTCPeerConnection` with
the stream's shared source's tracks, and answers; the session lives until
the browser DELETEs it, its connection fails, or the stream ends.

aiortc does the rest of WebRTC: ICE (host candidates, no STUN: the node is
reachable on its own addresses), DTLS-SRTP, RTCP, NACK retransmission from
its history of sent packets. A PLI or FIR reaches the source through the
sender's keyframe hook (`media.RtsSource.keyframe_requested`).

With the node's `rts_fast_path` on (issue 18), aiortc sends no media: once
a track's sender starts (after the DTLS handshake) `_start_fast` gives the
viewer's track a `media.FastTrackSender` (the sender's SSRCs, the
negotiated payload types, mid and extension ids, libsrtp with the keys the
handshake exported, the nominated ICE pair) and the source sends for it;
aiortc's sender keeps its RTCP task, its NACKs are answered from the
source's shared history and its sender reports carry the fast path's
counts (aiortc_compat.on_retransmit, on_sender_report). A track whose
set-up fails stays on aiortc's sender.

Every video sender's REMB and receiver reports reach the viewer
(aiortc_compat.on_receiver_feedback): a viewer that cannot keep up is
skipped to a keyframe, and a viewer of an ABR template group
(`/{app}/{stream}_{group}.whep`, abr.py) changes rendition.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import secrets
import time

import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.codecs.h264 import H264Encoder

from ..admission import Refusal, domain_of
from ..http_server import RequestBodyError, refusal_headers
from ..play import PlayDecision, PlayRequest, admit_viewer, log_refusal, wait_live
from ..policy import DomainConfig, PolicyUnavailable, StreamKey
from . import srtp
from .abr import AbrLadder, RtsAbr, abr_ladder, request_renditions
from .aiortc_compat import (
    BASELINE_PROFILE_PREFIX,
    ice_datagram_path,
    missing_internals,
    on_keyframe_request,
    on_receiver_feedback,
    on_retransmit,
    on_send_parameters,
    on_sender_report,
    sender_ssrcs,
    set_stream_id,
    srtp_tx_keys,
    use_encoder,
    use_ice_addresses,
)
from .fastpath import RtpStreamParameters, RtpWriter, extension_ids
from .ingest import WhipIngest
from .media import PASSTHROUGH, FastTrackSender, RtsSource, RtsTrack, RtsViewer
from .whep import MAX_OFFER_BYTES, SDP_CONTENT_TYPE, WHIP, OfferError, WhepPath, check_offer, created_headers

log = logging.getLogger(__name__)

# A session whose ICE and DTLS have not connected by then is closed.
CONNECT_TIMEOUT_SECONDS = 30.0
# How long a POST for a stream that just went live waits for its first video
# frames, so that B-frames are known before the answer.
FIRST_FRAMES_WAIT_SECONDS = 2.0
# x264 with B-frames sends I P B: the third frame shows them.
FIRST_FRAMES = 4
# The hub subscription a WHEP POST waits for the first frames with (the node's
# own work, hub.INTERNAL_PROTOCOLS: no viewer).
PROBE_PROTOCOL = "rts-probe"
REFUSAL_BFRAMES = "stream has B-frames and HTML5 auto-transcoding is off for this domain"
REFUSAL_RTS_OFF = "RTS is off for this domain"

# The node sets its ICE addresses through this module (node.py).
__all__ = ["RtsService", "WhepSession", "use_ice_addresses"]
# RFC 3550 5.1: the first sequence number and timestamp are random; below
# 2^15 for the sequence number as aiortc (and Chrome) choose it, so SRTP's
# rollover counter is not needed early.
FIRST_SEQUENCE_NUMBERS = 1 << 15
TIMESTAMP_ORIGINS = 1 << 32
# Access units whose RTP payloads are kept for the next viewer's sender. A
# frame reaches its viewers' senders within a few turns of the loop; 64 covers
# that for dozens of streams at 30 fps (a miss only packetises again).
SHARED_PAYLOADS_FRAMES = 64


class SharedH264Packetizer(H264Encoder):
    """aiortc's H.264 packetiser (RFC 6184 STAP-A and FU-A), run once per
    access unit for all viewers: every viewer's sender gets the same shared
    av.Packet (media.VideoUnit), so its payloads are cut once and reused.
    Packets of a joiner's start (their own av.Packet) are cut for it alone."""

    _recent: dict[int, tuple[av.Packet, list[bytes], int]] = {}

    def pack(self, packet: av.Packet) -> tuple[list[bytes], int]:
        recent = self._recent
        cached = recent.get(id(packet))
        if cached is not None and cached[0] is packet:
            return cached[1], cached[2]
        payloads, timestamp = super().pack(packet)
        recent[id(packet)] = (packet, payloads, timestamp)
        if len(recent) > SHARED_PAYLOADS_FRAMES:
            del recent[next(iter(recent))]
        return payloads, timestamp


class WhepSession:
    def __init__(self, service: RtsService, session_id: str, key: StreamKey, viewer: RtsViewer, peer: str):
        self.service = service
        self.id = session_id
        self.key = key
        self.viewer = viewer
        self.peer = peer
        # The stream its URL named: `key`'s, or an ABR group's (abr.py).
        self.stream_name = key.stream
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.started = time.monotonic()
        self.answer_sdp = ""
        self.closed = False
        self._connected = asyncio.Event()  # set by the connectionstatechange event
        self._watch: asyncio.Task | None = None
        self._protectors: dict[int, object] = {}  # the fast path's, by DTLS transport (one with BUNDLE)

    async def answer(self, offer: str) -> str:
        pc = self.pc
        # The transceivers come first, so that the offer's media sections take
        # them and the answer keeps to H.264 (aiortc filters the codecs when
        # it reads the offer).
        for track in (self.viewer.video, self.viewer.audio):
            if f"\nm={track.kind} " not in offer:
                continue  # the offer does not receive this kind (an audio-less offer)
            transceiver = pc.addTransceiver(track, direction="sendonly")
            if not self.service.node.config.rts_lip_sync:
                # A stream id (msid) of its own per track: the browser then
                # shows each picture as soon as it is decoded rather than hold
                # video back to the audio's jitter buffer (WebRTC syncs the
                # tracks of one stream id). bench/README.md has what it costs.
                set_stream_id(transceiver.sender, f"{self.id}-{track.kind}")
            # PLI and FIR ask the sender for a keyframe; for pre-encoded
            # media only the source can make (or wait for) one.
            on_keyframe_request(transceiver.sender, track.request_keyframe)
            if track.kind == "video":
                # REMB and receiver reports: a viewer that cannot keep up is
                # skipped to a keyframe, and an ABR viewer changes rendition.
                on_receiver_feedback(transceiver.sender, self.viewer.estimate_reported, self.viewer.loss_reported)
            if self._fast_path(transceiver.sender):
                # Its frames wait for the DTLS handshake; then the source
                # sends them itself (media.FastTrackSender).
                track.fast_wanted = True
                on_send_parameters(transceiver.sender, functools.partial(self._start_fast, track, transceiver.sender))
            if track.kind == "video":
                # The sender makes its encoder on first use; give it ours.
                use_encoder(transceiver.sender, SharedH264Packetizer())
                capabilities = RTCRtpSender.getCapabilities("video").codecs
                transceiver.setCodecPreferences([c for c in capabilities if _whep_codec(c)])
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        pc.on("connectionstatechange", self._state_changed)
        self._watch = asyncio.get_running_loop().create_task(self._watch_session())
        return pc.localDescription.sdp

    def _fast_path(self, sender: RTCRtpSender) -> bool:
        if not self.viewer.source.fast_path:
            return False
        missing = missing_internals(sender)
        if missing:
            log.warning("rts: fast path off, aiortc lacks: %s", "; ".join(missing))
            self.viewer.source.fast_path = False
        return not missing

    def _start_fast(self, track: RtsTrack, sender: RTCRtpSender, parameters) -> None:
        """After the DTLS handshake (aiortc's sender.send): a writer with
        what the answer negotiated, SRTP with the handshake's keys, the
        nominated ICE pair; aiortc's sender keeps RTCP, and its NACKs and
        sender reports go to the fast path. Anything missing: the track
        stays on aiortc's sender."""
        fast = None
        try:
            fast = self._fast_sender(sender, parameters)
        except Exception:
            log.exception("rts %s: fast path not set up (session %s)", self.peer, self.id)
        if fast is not None:
            on_retransmit(sender, lambda sequence_number: fast.resend([sequence_number]))
            on_sender_report(sender, fast.report)
        else:
            log.info("rts %s: %s on aiortc's sender (session %s)", self.peer, track.kind, self.id)
        track.viewer.start_fast(track.kind, fast)

    def _fast_sender(self, sender: RTCRtpSender, parameters) -> FastTrackSender | None:
        dtls = sender.transport
        keys = srtp_tx_keys(dtls)
        path = ice_datagram_path(dtls)
        if keys is None or path is None or not parameters.codecs:
            return None
        codec = parameters.codecs[0]
        rtx = next(
            (
                c
                for c in parameters.codecs
                if c.mimeType.lower().endswith("/rtx") and c.parameters.get("apt") == codec.payloadType
            ),
            None,
        )
        mid_id, abs_send_time_id = extension_ids(parameters.headerExtensions)
        ssrc, rtx_ssrc = sender_ssrcs(sender)
        stream = RtpStreamParameters(
            ssrc=ssrc,
            payload_type=codec.payloadType,
            mid=parameters.muxId or "",
            mid_id=mid_id if parameters.muxId else 0,
            abs_send_time_id=abs_send_time_id,
            rtx_ssrc=rtx_ssrc,
            rtx_payload_type=rtx.payloadType if rtx is not None else None,
        )
        writer = RtpWriter(
            stream,
            secrets.randbelow(FIRST_SEQUENCE_NUMBERS),
            secrets.randbelow(TIMESTAMP_ORIGINS),
            secrets.randbelow(FIRST_SEQUENCE_NUMBERS),
        )
        protector = self._protectors.get(id(dtls))
        if protector is None:
            protector = self._protectors[id(dtls)] = srtp.protector(*keys)
        return FastTrackSender(writer, protector.protect, dtls, path)

    def _state_changed(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self._connected.set()
        elif state in ("failed", "closed"):
            self.service.end(self, f"connection {state}")

    async def _watch_session(self) -> None:
        """End the session when the stream ends, or when it never connects."""
        if self.pc.connectionState == "connected":
            self._connected.set()
        connected = asyncio.ensure_future(self._connected.wait())
        ended = asyncio.ensure_future(self.viewer.ended.wait())
        try:
            done, _ = await asyncio.wait(
                (connected, ended), timeout=CONNECT_TIMEOUT_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            connected.cancel()
            ended.cancel()
        if not done:
            self.service.end(self, "did not connect")
            return
        await self.viewer.ended.wait()
        self.service.end(self, "stream ended")

    async def close(self) -> None:
        self.closed = True
        if self._watch is not None and self._watch is not asyncio.current_task():
            self._watch.cancel()
        self.viewer.close()
        await self.pc.close()


class RtsService:
    """A media node's WHEP endpoint, its sessions and the shared sources."""

    def __init__(self, node) -> None:
        self.node = node
        self.sources: dict[StreamKey, RtsSource] = {}
        self.sessions: dict[str, WhepSession] = {}
        self._closing: set[asyncio.Task] = set()
        self.whip = WhipIngest(self)  # the publishing side (ingest.py)

    # --- sources -------------------------------------------------------------------

    def source(self, key: StreamKey) -> RtsSource:
        source = self.sources.get(key)
        if source is None or source.closed:
            source = self.sources[key] = RtsSource(self, key)
        return source

    def source_closed(self, source: RtsSource) -> None:
        if self.sources.get(source.key) is source:
            del self.sources[source.key]

    def publisher_started(self, key: StreamKey, publisher) -> None:
        """A WHIP publisher of `key` (ingest.py): its viewers' source takes its Opus."""
        source = self.sources.get(key)
        if source is not None and not source.closed:
            source.attach_whip(publisher)

    def publisher_ended(self, key: StreamKey, publisher) -> None:
        source = self.sources.get(key)
        if source is not None:
            source.detach_whip(publisher)

    # --- sessions ------------------------------------------------------------------

    async def create(
        self,
        key: StreamKey,
        offer: str,
        may_transcode: bool,
        peer: str,
        ladder: AbrLadder | None = None,
        identity: str = "",
    ) -> WhepSession:
        """A session playing `key`; with `ladder` (abr.py), its renditions too."""
        source = self.source(key)
        viewer = source.add_viewer(may_transcode, identity)
        if ladder is not None:
            viewer.abr = RtsAbr(self, viewer, ladder)
        session = WhepSession(self, secrets.token_urlsafe(18), key, viewer, peer)
        if ladder is not None:
            session.stream_name = ladder.group.stream
        self.sessions[session.id] = session
        try:
            session.answer_sdp = await session.answer(offer)
        except Exception:
            self.sessions.pop(session.id, None)
            await session.close()
            raise
        log.info("rts %s playing %s (%s, session %s)", peer, key, source.mode, session.id)
        return session

    def end(self, session: WhepSession, reason: str) -> None:
        if session.closed or self.sessions.get(session.id) is not session:
            return
        del self.sessions[session.id]
        session.closed = True
        viewer = session.viewer
        log.info("rts %s play of %s %s (session %s: %d video frames, %d dropped, %d skips, %d keyframe requests, "
                 "%d rendition switches)", session.peer, session.key, reason, session.id, viewer.video_frames,
                 viewer.dropped, viewer.skips, viewer.keyframe_requests, viewer.rendition_switches)  # fmt: skip
        task = asyncio.get_running_loop().create_task(session.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def stop(self) -> None:
        await self.whip.stop()
        for session in list(self.sessions.values()):
            self.end(session, "media node stopped")
        if self._closing:
            await asyncio.wait(self._closing, timeout=5)
        for source in list(self.sources.values()):
            source.close()

    # --- HTTP (called by http_server.MediaHttpSession) -----------------------------

    async def handle_http(self, http, request, method: bytes, path: WhepPath, query: dict[str, str]) -> None:
        """WHEP (play) and WHIP (publish, ingest.py): the session resources
        and the checks of a POST they share, then each its own."""
        whip = path.kind == WHIP
        if path.session is not None:
            if method == b"DELETE":
                sessions = self.whip.publishers if whip else self.sessions
                session = sessions.get(path.session)
                if session is None or session.key.app != path.app or _stream_named(session, whip) != path.stream:
                    http.send_simple(404, f"no such {path.kind.upper()} session\n")
                    return
                if whip:
                    self.whip.end(session, "ended by the publisher (DELETE)")
                else:
                    self.end(session, "ended by the viewer (DELETE)")
                http.send_simple(200, "")
                return
            # RFC 9725 4.4: a server without trickle ICE answers PATCH 405.
            http.send_simple(405, "only DELETE\n", [(b"Allow", b"DELETE, OPTIONS")])
            return
        if method != b"POST":
            http.send_simple(405, "POST an SDP offer\n", [(b"Allow", b"POST, OPTIONS")])
            return
        headers = {name.lower(): value for name, value in request.headers}
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().decode("latin-1").lower()
        if content_type != SDP_CONTENT_TYPE:
            http.send_simple(415, f"the offer must be {SDP_CONTENT_TYPE}\n")
            return
        if whip:
            await self.whip.publish(http, path, query, headers)
            return
        # The URL first (domain, signature, switches): a peer that may not
        # play is answered before its body is read (issue 11, item 4).
        play = PlayRequest(
            protocol="rts",
            peer=http.peer,
            domain=domain_of(headers.get(b"host", b"").decode("latin-1"), query),
            app=path.app,
            stream=path.stream,
            uri=path.signed_uri,
            query=query,
            referer=http.referer(),
        )
        decision = await admit_viewer(self.node, play, _rts_switch)
        if not decision.ok:
            http.refuse_play(decision)
            return
        # `/{app}/{stream}_{group}.whep`: the stream, with its template
        # group's renditions (abr.py).
        try:
            ladder = await abr_ladder(self.node.policy, decision.key)
        except PolicyUnavailable:
            self._refuse(http, play, 503, decision.key, str(Refusal.POLICY_UNAVAILABLE))
            return
        if ladder is not None:
            decision = PlayDecision(dataclasses.replace(decision.admission, key=ladder.source))
        key, domain = decision.key, decision.admission.domain
        try:
            body = await http.read_body(MAX_OFFER_BYTES)
        except RequestBodyError as exc:
            self._refuse(http, play, exc.status, key, f"the offer did not arrive whole: {exc.reason}")
            return
        try:
            offer = body.decode("utf-8")
            check_offer(offer)
        except UnicodeDecodeError:
            self._refuse(http, play, 400, key, "the offer is not UTF-8 text")
            return
        except OfferError as exc:
            self._refuse(http, play, 400, key, str(exc))
            return
        decision = await wait_live(self.node, play, decision)
        if not decision.ok:
            http.refuse_play(decision)
            return
        await self._wait_first_frames(key)
        if ladder is not None:
            request_renditions(self.node, ladder)
        source = self.sources.get(key)
        stream = self.node.hub.stream(key)
        if not domain.html5_transcode and (
            (source is not None and source.mode != PASSTHROUGH) or (stream is not None and stream.has_bframes)
        ):
            self._refuse(http, play, 403, key, REFUSAL_BFRAMES)
            return
        try:
            session = await self.create(key, offer, domain.html5_transcode, http.peer, ladder, http.viewer_identity())
        except Exception as exc:  # noqa: BLE001 - aiortc answers a bad offer with assertions, KeyError, ValueError ...
            self._refuse(http, play, 400, key, f"the offer could not be answered: {type(exc).__name__} {exc}"[:300])
            return
        headers = created_headers(path, session.id)
        http.send_response(201, headers, session.answer_sdp.encode())

    async def _wait_first_frames(self, key: StreamKey) -> None:
        """Wait (at most FIRST_FRAMES_WAIT_SECONDS) until the stream has
        shown FIRST_FRAMES video frames or B-frames, or has ended. A probe
        subscription of the hub's wakes it on each frame."""
        stream = self.node.hub.stream(key)
        if stream is None or _first_frames_seen(stream):
            return
        seen = asyncio.Event()

        def on_ready(subscription) -> None:
            subscription.drain()
            if subscription.ended or _first_frames_seen(stream):
                seen.set()

        probe = self.node.hub.subscribe(key, protocol=PROBE_PROTOCOL, on_ready=on_ready)
        probe.viewers = 0
        try:
            on_ready(probe)  # what came in before the probe was set up
            async with asyncio.timeout(FIRST_FRAMES_WAIT_SECONDS):
                await seen.wait()
        except TimeoutError:
            pass
        finally:
            probe.close()

    def _refuse(self, http, play: PlayRequest, status: int, stream: StreamKey, reason: str) -> None:
        log_refusal(play, stream, reason)
        http.send_simple(status, f"{reason}\n", refusal_headers(reason))


def _whep_codec(codec) -> bool:
    """What WHEP answers with: aiortc's own H.264 (Baseline, Constrained
    Baseline; not the profiles added for WHIP publishers) and RTX."""
    mime = codec.mimeType.lower()
    if mime == "video/h264":
        return codec.parameters.get("profile-level-id", "").startswith(BASELINE_PROFILE_PREFIX)
    return mime == "video/rtx"


def _rts_switch(domain: DomainConfig) -> str | None:
    return None if domain.rts_enabled else REFUSAL_RTS_OFF


def _first_frames_seen(stream) -> bool:
    return stream.video_frames >= FIRST_FRAMES or stream.has_bframes


def _stream_named(session, whip: bool) -> str:
    """The stream a session's URL named: a WHIP publisher's key, a WHEP
    viewer's stream or ABR group (WhepSession.stream_name)."""
    return session.key.stream if whip else session.stream_name
