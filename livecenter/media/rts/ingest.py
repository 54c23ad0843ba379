"""WHIP ingest (RFC 9725): a WebRTC publisher made into a hub publication,
like an RTMP or SRT one (issue 17).

`POST /{app}/{stream}.whip?auth_key=…` on an ingest domain is admitted as
RTMP and SRT publishers are (admission.admit_publish: the domain, its
switches and access lists, the Type A signature over `/{app}/{stream}`, the
forbidden list; the operator's publish callback; one publisher per stream
across the cluster), its offer checked (whep.check_publish_offer: 400 for
a malformed one, 406 when it has no codec the node takes), and answered
with `201`, the SDP answer and the session's `Location`. `DELETE` there
unpublishes.

aiortc does the transport (ICE, DTLS-SRTP, RTX, NACKs, receiver reports);
the receiver's jitter buffer is replaced by the node's (assembly.py), so
each frame is taken as soon as it is whole and never decoded:

- **H.264** access units become the hub's FLV AVC bodies (avc_flv.py): the
  same bytes every protocol sends on, and that WHEP viewers get back
  packetised as they came. B-frames end the session (WebRTC carries no
  decode timestamps to order them by).
- **VP8** (a browser that offers no H.264) is transcoded to H.264 once per
  stream in a node thread (threads.H264Transcoding with FFmpeg's VP8
  decoder), since no protocol but WebRTC carries VP8.
- **Opus** becomes AAC once per stream in a node thread (legacy_audio's
  AacTranscoder) for RTMP, FLV, HLS, recordings and the media workers;
  WHEP viewers of the stream get the publisher's Opus packets as they came
  (`audio_listeners`, media.RtsSource), not AAC made back into Opus.

Times come from the RTP timestamps placed by the publisher's RTCP sender
reports (assembly.TrackClock). Browsers' encoders make a keyframe only when
asked, so the node asks (a PLI, at most once a KEYFRAME_REQUEST_MIN_SECONDS):
when a frame is lost, when a WHEP viewer asks or joins with no picture
cached, and when none has come for `whip_keyframe_interval_seconds` (HLS
segments and a joiner's GOP are no longer than that).

A session that has not connected (ICE and DTLS) within
CONNECT_TIMEOUT_SECONDS, whose connection fails, or that sends no media for
the node's `publish_idle_seconds` is unpublished, and its viewers wait out
the hub's reconnect grace as for RTMP.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription

from ..access import address_of
from ..admission import Client, Refusal, admit_publish, domain_of
from ..avc_flv import AnnexBToFlv, has_idr
from ..codecs import CodecError
from ..flv import FrameKind
from ..hub import AlreadyPublishing
from ..legacy_audio import AacTranscoder
from ..policy import CENTER_PUBLISH, PublishRefused, StreamKey, StreamPublished, WhipSessionStats
from .aiortc_compat import (
    accept_h264_profiles,
    answer_as_dtls_server,
    ice_round_trip,
    receiver_codecs,
    send_pli,
    tap_receiver,
)
from .assembly import FrameAssembler, TrackClock, align_tracks
from .h264 import annexb_has_b_slices
from .threads import OPUS_CLOCK_HZ
from .whep import (
    MAX_OFFER_BYTES,
    NoUsableCodec,
    OfferError,
    WhepPath,
    check_publish_offer,
    created_headers,
)

log = logging.getLogger(__name__)

accept_h264_profiles()

PROTOCOL = "whip"  # as publish history, callbacks and the troubleshooting tool name it
VIDEO_CLOCK_HZ = 90_000
# A session whose ICE and DTLS have not connected by then is unpublished.
CONNECT_TIMEOUT_SECONDS = 30.0
# Keyframe requests (PLI) to one publisher: at most one this often, whoever asks.
KEYFRAME_REQUEST_MIN_SECONDS = 1.0
# How often the link's round trip is measured (a STUN binding request on the
# selected ICE pair, as a consent check is).
RTT_PROBE_SECONDS = 2.0
# The node's jitter buffers (assembly.py). Video: up to 1,024 packets held
# behind a gap (1.5 MB; a 2 s GOP of a 6 Mbit/s stream), each gap waited
# for 500 ms (NACK and retransmission over a 250 ms round trip, twice).
# Audio has no retransmission: a gap is only waited for reordering.
VIDEO_MAX_HELD_PACKETS = 1024
VIDEO_LOSS_WAIT_MS = 500.0
AUDIO_MAX_HELD_PACKETS = 16
AUDIO_LOSS_WAIT_MS = 60.0
# The video transcoder's queue (VP8 to H.264): 5 s at 30 fps.
VP8_TRANSCODER_MAX_PENDING = 150

REFUSAL_CONFLICT = "stream is already being published"
REFUSAL_BFRAMES = "the publisher sends B-frames, which WebRTC cannot time (no decode timestamps): turn B-frames off"
# HTTP statuses of publish refusals; anything else a policy says no to is 403.
_REFUSAL_STATUS = {
    Refusal.UNKNOWN_DOMAIN: 404,
    Refusal.NOT_INGEST: 404,
    Refusal.POLICY_UNAVAILABLE: 503,
}


def _vp8_is_keyframe(frame: bytes) -> bool:
    """RFC 6386 9.1: the frame tag's first bit is 0 on a key frame."""
    return bool(frame) and not frame[0] & 0x01


def _starts_frame(codec: str, payload: bytes, data: bytes) -> bool:
    """Whether a packet may start a frame: for VP8 the payload descriptor's
    S bit with partition 0 (RFC 7741 4.2); for H.264 a NAL unit's start
    (the depayloader prefixes a start code), the rest is told by timestamps."""
    if codec == "VP8":
        return bool(payload) and payload[0] & 0x10 != 0 and payload[0] & 0x07 == 0
    return data[:4] == b"\x00\x00\x00\x01"


class RtpTap:
    """Stands in for a receiver's jitter buffer (aiortc_compat.tap_receiver):
    its depayloaded packets go to a FrameAssembler and the frames to the
    publisher; aiortc gets nothing to decode."""

    def __init__(self, publisher: WhipPublisher, kind: str, receiver: RTCRtpReceiver) -> None:
        self.publisher = publisher
        self.kind = kind
        self.receiver = receiver
        self.ssrc: int | None = None
        self.codec = ""
        video = kind == "video"
        self.assembler = FrameAssembler(
            packet_is_frame=not video,
            max_packets=VIDEO_MAX_HELD_PACKETS if video else AUDIO_MAX_HELD_PACKETS,
            loss_wait_ms=VIDEO_LOSS_WAIT_MS if video else AUDIO_LOSS_WAIT_MS,
            is_keyframe=None if not video else has_idr,
        )
        self.packets = 0

    def add(self, packet) -> tuple[bool, None]:
        codec = receiver_codecs(self.receiver).get(packet.payload_type)
        if codec is None:
            return False, None
        name = codec.name
        if name != self.codec:
            self.codec = name
            if self.kind == "video":
                self.assembler.is_keyframe = _vp8_is_keyframe if name == "VP8" else has_idr
        self.ssrc = packet.ssrc
        self.packets += 1
        now_ms = time.monotonic() * 1000
        lost = self.assembler.frames_lost
        data = packet._data  # noqa: SLF001 - what the receiver depayloaded (aiortc_compat)
        starts = _starts_frame(name, packet.payload, data)
        frames = self.assembler.add(packet.sequence_number, packet.timestamp, packet.marker, starts, data, now_ms)
        if self.assembler.frames_lost != lost:
            self.publisher.request_keyframe("frame lost")
        for frame in frames:
            self.publisher.on_frame(self, frame, now_ms)
        return False, None


class WhipPublisher:
    """One WHIP session: its peer connection and its publication."""

    def __init__(self, ingest: WhipIngest, session_id: str, key: StreamKey, peer: str) -> None:
        self.ingest = ingest
        self.node = ingest.node
        self.id = session_id
        self.key = key
        self.peer = peer
        self.publication = None  # the hub's, once the answer is made and the stream claimed
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.taps: dict[str, RtpTap] = {}
        self.clocks = {"video": TrackClock(VIDEO_CLOCK_HZ), "audio": TrackClock(OPUS_CLOCK_HZ)}
        self.aligned = False
        self.origin_ms = time.monotonic() * 1000
        self.avc = AnnexBToFlv()
        self.vp8 = None  # media.VideoTranscoder, for a VP8 publisher
        self.aac: AacTranscoder | None = None
        self.last_ms = {FrameKind.VIDEO: 0, FrameKind.AUDIO: 0}
        # WHEP viewers' sources (media.RtsSource) take the publisher's Opus
        # as it came: each is called with (Opus packet, 48 kHz pts).
        self.audio_listeners: set[Callable[[bytes, int], None]] = set()
        self.answer_sdp = ""
        self.closed = False
        self.connected = asyncio.Event()
        self.last_media = time.monotonic()
        self.keyframe_requests = 0
        self.nacks_sent = 0
        self.rtt_ms = 0.0
        self._last_keyframe_request = float("-inf")
        self._last_keyframe = time.monotonic()
        self._tasks: set[asyncio.Task] = set()

    # --- signalling -------------------------------------------------------------------

    async def answer(self, offer: str) -> str:
        pc = self.pc
        for kind in ("video", "audio"):
            if f"\nm={kind} " not in offer:
                continue
            transceiver = pc.addTransceiver(kind, direction="recvonly")
            transceiver.setCodecPreferences(_preferred_codecs(kind))
            tap = self.taps[kind] = RtpTap(self, kind, transceiver.receiver)
            tap_receiver(transceiver.receiver, tap, self._sender_report, self._nacked)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        if "a=setup:actpass" in offer:
            for transceiver in pc.getTransceivers():
                answer_as_dtls_server(transceiver)
        await pc.setLocalDescription(await pc.createAnswer())
        pc.on("connectionstatechange", self._state_changed)
        self._start(self._watch())
        return pc.localDescription.sdp

    def _start(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _state_changed(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self.connected.set()
        elif state in ("failed", "closed"):
            self.ingest.end(self, f"connection {state}")

    async def _watch(self) -> None:
        """Unpublish a session that does not connect in time, that the
        publisher was kicked from (forbid), or that stops sending; keep the
        round trip measured and keyframes coming meanwhile."""
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                await self.connected.wait()
        except TimeoutError:
            self.ingest.end(self, "did not connect")
            return
        self.last_media = time.monotonic()
        config = self.node.config
        kicked = asyncio.ensure_future(self.publication.kicked.wait())
        try:
            while not self.closed:
                done, _ = await asyncio.wait({kicked}, timeout=min(RTT_PROBE_SECONDS, config.publish_idle_seconds))
                if done:
                    log.info("whip %s stream=%s: publisher kicked (forbidden)", self.peer, self.key)
                    self.ingest.end(self, "forbidden")
                    return
                now = time.monotonic()
                if now - self.last_media >= config.publish_idle_seconds:
                    self.ingest.end(self, "no data")
                    return
                interval = config.whip_keyframe_interval_seconds
                if interval and now - self._last_keyframe >= interval:
                    self.request_keyframe("keyframe interval")
                await self._measure_rtt()
        finally:
            kicked.cancel()

    async def _measure_rtt(self) -> None:
        tap = next(iter(self.taps.values()), None)
        if tap is None:
            return
        try:
            seconds = await ice_round_trip(tap.receiver)
        except (ConnectionError, AttributeError):
            seconds = None
        if seconds is not None:
            self.rtt_ms = seconds * 1000

    # --- from the receivers -----------------------------------------------------------

    def _sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int) -> None:
        for kind, tap in self.taps.items():
            if tap.ssrc == ssrc:
                self.clocks[kind].sender_report(ntp_timestamp / (1 << 32), rtp_timestamp)
        if not self.aligned:
            self.aligned = align_tracks(self.clocks["video"], [self.clocks["audio"]])

    def _nacked(self, count: int) -> None:
        self.nacks_sent += count

    def on_frame(self, tap: RtpTap, frame, arrival_ms: float) -> None:
        if self.closed or self.publication is None:
            return
        self.last_media = time.monotonic()
        clock = self.clocks[tap.kind]
        ms = clock.ms(frame.rtp_timestamp, arrival_ms - self.origin_ms)
        if tap.kind == "video":
            if frame.keyframe:
                self._last_keyframe = self.last_media
            if tap.codec == "VP8":
                self._vp8(frame.data, ms, frame.keyframe)
            else:
                self._h264(frame.data, ms)
        else:
            self._opus(frame.data, ms)

    def _push(self, kind: FrameKind, ms: float, body: bytes) -> None:
        # A track moved by the sender reports may step back once: held at its last time.
        timestamp = max(int(ms), self.last_ms[kind])
        self.last_ms[kind] = timestamp
        self.publication.push(kind, timestamp, body)

    def _h264(self, access_unit: bytes, ms: float) -> None:
        if annexb_has_b_slices(access_unit):
            log.info("whip %s stream=%s: %s", self.peer, self.key, REFUSAL_BFRAMES)
            self.ingest.end(self, REFUSAL_BFRAMES)
            return
        try:
            bodies = self.avc.bodies(access_unit)
        except CodecError as exc:
            log.info("whip %s stream=%s: video frame dropped: %s", self.peer, self.key, exc)
            self.taps["video"].assembler.need_keyframe = True
            self.request_keyframe("frame unreadable")
            return
        for body in bodies:
            self._push(FrameKind.VIDEO, ms, body)

    def _vp8(self, frame: bytes, ms: float, keyframe: bool) -> None:
        if self.vp8 is None:
            from .media import VideoTranscoder  # media imports this module's service: here, not at the top

            self.vp8 = VideoTranscoder(self._transcoded, decoder_name="vp8", max_pending=VP8_TRANSCODER_MAX_PENDING)
            self.vp8.configure(None)
        self.vp8.push(frame, int(ms), int(ms), keyframe)

    def _transcoded(self, access_unit: bytes, pts_90khz: int, keyframe: bool) -> None:
        if not self.closed:
            self._h264(access_unit, pts_90khz / 90)

    def _opus(self, packet: bytes, ms: float) -> None:
        if self.aac is None:
            self.aac = AacTranscoder(self._aac_output)
            self.aac.configure("opus", int(ms))
        self.aac.push([(packet, int(ms))])
        if self.audio_listeners:
            # On the hub's timeline (a returning publisher's is moved to continue the stream's).
            pts = round((ms + self.publication.offset_of(FrameKind.VIDEO)) * OPUS_CLOCK_HZ / 1000)
            for listener in tuple(self.audio_listeners):
                listener(packet, pts)

    def _aac_output(self, timestamp_ms: int, body: bytes, is_header: bool) -> None:
        if not self.closed:
            self._push(FrameKind.AUDIO, timestamp_ms, body)

    # --- keyframes ----------------------------------------------------------------------

    def request_keyframe(self, why: str) -> bool:
        """Send the publisher a PLI, unless one went less than
        KEYFRAME_REQUEST_MIN_SECONDS ago. True if it was sent."""
        tap = self.taps.get("video")
        now = time.monotonic()
        if self.closed or tap is None or tap.ssrc is None:
            return False
        if now - self._last_keyframe_request < KEYFRAME_REQUEST_MIN_SECONDS:
            return False
        self._last_keyframe_request = now
        self.keyframe_requests += 1
        log.debug("whip %s stream=%s: keyframe asked for (%s)", self.peer, self.key, why)
        self._start(send_pli(tap.receiver, tap.ssrc))
        return True

    # --- monitoring ---------------------------------------------------------------------

    async def stats(self) -> WhipSessionStats:
        received = lost = 0
        jitter_ms = 0.0
        for kind, tap in self.taps.items():
            report = await tap.receiver.getStats()
            for stat in report.values():
                if stat.type == "inbound-rtp":
                    received += stat.packetsReceived
                    lost += max(stat.packetsLost, 0)
                    if kind == "video":
                        jitter_ms = stat.jitter * 1000 / VIDEO_CLOCK_HZ
        video, audio = self.taps.get("video"), self.taps.get("audio")
        return WhipSessionStats(
            session_id=self.id,
            peer=self.peer,
            video_codec=video.codec if video else "",
            audio_codec=audio.codec.lower() if audio else "",
            connection_state=self.pc.connectionState,
            rtt_ms=round(self.rtt_ms, 1),
            jitter_ms=round(jitter_ms, 1),
            packets_received=received,
            packets_lost=lost,
            nacks_sent=self.nacks_sent,
            keyframe_requests=self.keyframe_requests,
            frames_lost=sum(t.assembler.frames_lost for t in self.taps.values()),
        )

    # --- ending -------------------------------------------------------------------------

    async def close(self) -> None:
        self.closed = True
        for worker in (self.vp8, self.aac):
            if worker is not None:
                worker.close()
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        await self.pc.close()


def _preferred_codecs(kind: str) -> list:
    """The receiver's codecs in the node's order: H.264 (any profile),
    then VP8, with RTX; Opus for audio."""
    capabilities = RTCRtpReceiver.getCapabilities(kind).codecs
    if kind == "audio":
        return [c for c in capabilities if c.mimeType.lower() == "audio/opus"]
    order = {"video/h264": 0, "video/vp8": 1, "video/rtx": 2}
    return sorted((c for c in capabilities if c.mimeType.lower() in order), key=lambda c: order[c.mimeType.lower()])


class WhipIngest:
    """A media node's WHIP endpoint and its publishers."""

    def __init__(self, service) -> None:
        self.service = service  # session.RtsService: the WHEP side, whose sources take the Opus
        self.node = service.node
        self.publishers: dict[str, WhipPublisher] = {}  # by session id
        self.by_key: dict[StreamKey, WhipPublisher] = {}
        self._closing: set[asyncio.Task] = set()

    async def publish(self, http, path: WhepPath, query: dict[str, str], headers: dict[bytes, bytes]) -> None:
        """A WHIP POST whose method and content type session.RtsService has checked."""
        domain = domain_of(headers.get(b"host", b"").decode("latin-1"), query)
        name = f"{domain}/{path.app}/{path.stream}"
        # The URL first (domain, signature, access lists, forbidden): a
        # publisher that may not publish is answered before its body is read.
        admission = await admit_publish(
            self.node.policy, domain, path.app, path.stream, query.get("auth_key"), time.time(), False,
            Client(address_of(http.peer)),
        )  # fmt: skip
        if not admission.ok:
            status = _REFUSAL_STATUS.get(admission.refusal, 403)
            return self._refuse(http, name, status, str(admission.refusal))
        key = admission.key
        try:
            body = await http.read_body(MAX_OFFER_BYTES)
        except Exception as exc:  # noqa: BLE001 - http_server.RequestBodyError (imported there, not here)
            return self._refuse(http, name, getattr(exc, "status", 400), f"the offer did not arrive whole: {exc}")
        try:
            offer = body.decode("utf-8")
            check_publish_offer(offer)
        except UnicodeDecodeError:
            return self._refuse(http, name, 400, "the offer is not UTF-8 text")
        except NoUsableCodec as exc:
            return self._refuse(http, name, 406, str(exc))
        except OfferError as exc:
            return self._refuse(http, name, 400, str(exc))
        if denied := await self.node.publish_hooks.refusal(key, PROTOCOL, http.peer):
            return self._refuse(http, name, 403, denied)
        stream = self.node.hub.stream(key)
        if stream is not None and stream.publication is not None:
            return self._refuse(http, name, 409, REFUSAL_CONFLICT)
        # The answer before the claim: an offer aiortc cannot take then claims
        # nothing. No media can come before the publisher has the answer.
        publisher = WhipPublisher(self, secrets.token_urlsafe(18), key, http.peer)
        try:
            publisher.answer_sdp = await publisher.answer(offer)
        except Exception as exc:  # noqa: BLE001 - aiortc answers a bad offer with assertions, KeyError, ValueError ...
            await publisher.close()
            return self._refuse(http, name, 400, f"the offer could not be answered: {type(exc).__name__} {exc}"[:300])
        if (taken := await self.node.claim_publish(key)) is not None:
            await publisher.close()
            return self._refuse(http, name, 409, taken)
        try:
            publisher.publication = self.node.hub.publish(key)
        except AlreadyPublishing:  # another POST for the stream got here first
            await publisher.close()
            return self._refuse(http, name, 409, REFUSAL_CONFLICT)
        self.publishers[publisher.id] = publisher
        self.by_key[key] = publisher
        self.node.stream_started(
            StreamPublished(
                key=key,
                session_id=publisher.id,
                protocol=PROTOCOL,
                client_addr=http.peer,
                publish_url=f"{http.scheme}://{domain}{path.endpoint}",
                started_at=time.time(),
                node_id=self.node.config.node_id,
                publish_type=CENTER_PUBLISH,
            )
        )
        self.service.publisher_started(key, publisher)
        log.info("whip %s publishing %s (session %s)", http.peer, key, publisher.id)
        headers = created_headers(path, publisher.id)
        http.send_response(201, headers, publisher.answer_sdp.encode())

    def _refuse(self, http, name: str, status: int, reason: str) -> None:
        from ..http_server import refusal_headers  # http_server imports rts: here, not at the top

        log.info("whip %s publish refused: stream=%s reason=%s (%d)", http.peer, name, reason, status)
        domain, _, rest = name.partition("/")
        app, _, stream = rest.partition("/")
        self.node.publish_refused(
            PublishRefused(domain, app, stream, PROTOCOL, http.peer, reason, status, time.time(),
                           self.node.config.node_id)
        )  # fmt: skip
        http.send_simple(status, f"{reason}\n", refusal_headers(reason))

    def _forget(self, publisher: WhipPublisher) -> bool:
        if self.publishers.pop(publisher.id, None) is None:
            return False
        if self.by_key.get(publisher.key) is publisher:
            del self.by_key[publisher.key]
        return True

    def end(self, publisher: WhipPublisher, reason: str) -> None:
        """Unpublish and close a session (once)."""
        if publisher.closed or not self._forget(publisher):
            return
        publisher.closed = True
        self.service.publisher_ended(publisher.key, publisher)
        publisher.publication.close(reason)
        self.node.stream_ended(publisher.key, publisher.id, reason)
        log.info("whip %s stopped publishing %s (%s; session %s: %d keyframe requests, %d NACKed)", publisher.peer,
                 publisher.key, reason, publisher.id, publisher.keyframe_requests, publisher.nacks_sent)  # fmt: skip
        task = asyncio.get_running_loop().create_task(publisher.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def session_stats(self) -> dict[StreamKey, WhipSessionStats]:
        """Each WHIP publish session's link now, by stream (stats.py)."""
        readings = {}
        for key, publisher in list(self.by_key.items()):
            try:
                readings[key] = await publisher.stats()
            except Exception as exc:  # noqa: BLE001 - a session closing under aiortc's getStats: no reading, sampling goes on
                log.info("whip %s stream=%s: no link reading: %s: %s", publisher.peer, key, type(exc).__name__, exc)
        return readings

    async def stop(self) -> None:
        for publisher in list(self.publishers.values()):
            self.end(publisher, "media node stopped")
        if self._closing:
            await asyncio.wait(self._closing, timeout=5)
