"""WHEP on the media node (livecenter/media/rts/): refusals over real HTTP,
and playback with aiortc as the WHEP client against a stream ffmpeg
publishes; the node binds loopback on port 0. The browser plays it in
tests/test_browser_rts.py."""

from __future__ import annotations

import asyncio
import re
import socket
import time

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from livecenter.media import http_server
from livecenter.media.policy import DomainConfig, MemoryPolicy
from livecenter.media.rts.whep import (
    MAX_OFFER_BYTES,
    WHIP,
    NoUsableCodec,
    OfferError,
    check_offer,
    check_publish_offer,
    parse_whep_path,
)
from livecenter.media.signing import sign
from tests.mediasupport import INGEST, INGEST_KEY, PLAY, PLAY_KEY, VALIDITY_SECONDS, NodeThread, start_publisher
from tests.mediasupport import http_request as request

NO_RTS = "norts.test"
NO_TRANSCODE = "notranscode.test"


def policy() -> MemoryPolicy:
    def streaming(name, **switches):
        return DomainConfig(name, "streaming", True, (PLAY_KEY,), VALIDITY_SECONDS, ingest_domain=INGEST, **switches)

    return MemoryPolicy(
        domains={
            INGEST: DomainConfig(INGEST, "ingest", True, (INGEST_KEY,), VALIDITY_SECONDS),
            PLAY: streaming(PLAY, rts_enabled=True, html5_transcode=True),
            NO_RTS: streaming(NO_RTS, rts_enabled=False),
            NO_TRANSCODE: streaming(NO_TRANSCODE, rts_enabled=True, html5_transcode=False),
        }
    )


@pytest.fixture
def node():
    node = NodeThread(policy(), play_wait_seconds=1).start()
    yield node
    node.stop()


def whep_url(node, stream="cam1", domain=PLAY, key=PLAY_KEY, auth=True) -> str:
    token = sign(f"/live/{stream}", key, int(time.time()))
    query = f"auth_key={token}&domain={domain}" if auth else f"domain={domain}"
    return f"{node.http}/live/{stream}.whep?{query}"


async def make_offer(pc: RTCPeerConnection) -> str:
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription.sdp


def browser_like_offer() -> str:
    async def offer():
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            return await make_offer(pc)
        finally:
            await pc.close()

    return asyncio.run(offer())


# --- pure ----------------------------------------------------------------------------------


def test_it_parses_whep_paths():
    assert parse_whep_path("/live/cam1.whep").session is None
    path = parse_whep_path("/live/cam1.whep/abcdefghijklmnopqrstuvwx")
    assert (path.app, path.stream, path.session) == ("live", "cam1", "abcdefghijklmnopqrstuvwx")
    assert path.signed_uri == "/live/cam1"
    assert parse_whep_path("/live/cam1.flv") is None
    assert parse_whep_path("/live/cam1.whep/short") is None


@pytest.mark.parametrize(
    ("sdp", "message"),
    [
        ("hello", "the body is not an SDP offer"),
        ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n", "no video"),
        ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n", "RTS sends H.264 only"),
        ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\na=sendonly\r\n", "recvonly"),
    ],
)
def test_it_refuses_offers_it_cannot_answer(sdp, message):
    with pytest.raises(OfferError, match=message):
        check_offer(sdp)


def test_it_accepts_an_aiortc_offer():
    check_offer(browser_like_offer())


def test_it_parses_whip_paths():
    path = parse_whep_path("/live/cam1.whip")
    assert (path.kind, path.session, path.endpoint, path.signed_uri) == (WHIP, None, "/live/cam1.whip", "/live/cam1")
    path = parse_whep_path("/live/cam1.whip/abcdefghijklmnopqrstuvwx")
    assert (path.kind, path.session) == (WHIP, "abcdefghijklmnopqrstuvwx")
    assert parse_whep_path("/live/cam1.whipx") is None


SENDING_H264 = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\na=sendonly\r\n"
SENDING_OPUS = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=sendonly\r\n"


@pytest.mark.parametrize(
    "sdp",
    [
        SENDING_H264 + SENDING_OPUS,
        SENDING_H264.replace("H264", "VP8"),
        "v=0\r\n" + SENDING_OPUS,  # audio only
        SENDING_H264.replace("a=sendonly", "a=sendrecv"),
    ],
)
def test_it_accepts_whip_offers_it_can_take(sdp):
    check_publish_offer(sdp)


@pytest.mark.parametrize(
    ("sdp", "error", "message"),
    [
        ("v=0\r\n", OfferError, "no audio or video to publish"),
        (SENDING_H264.replace("a=sendonly", "a=recvonly"), OfferError, "sendonly or sendrecv"),
        (SENDING_H264 + SENDING_H264[5:], OfferError, "at most one video and one audio section"),
        (SENDING_H264.replace("H264", "AV1"), NoUsableCodec, "neither H.264 nor VP8"),
        (SENDING_H264 + SENDING_OPUS.replace("opus", "G722"), NoUsableCodec, "no Opus"),
        ("v=0\r\n" + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n" * 9, OfferError, "more than 8"),
    ],
)
def test_it_refuses_whip_offers_with_the_reason(sdp, error, message):
    with pytest.raises(error, match=message):
        check_publish_offer(sdp)


# Malformed offers (issue 11, item 6): the line aiortc would choke on, and the reason.
MALFORMED = [
    (r"m=video \d+", "m=video abc", "line 7 ('m=video abc", "m= must be '<media> <port> <proto> <formats>'"),
    (r"a=rtpmap:(\d+) H264/90000", r"a=rtpmap:\1 H264", "a=rtpmap:", "<encoding>/<clock rate>"),
    (r"\nc=IN IP4 [0-9.]+", "\nc=IN IP4", "'c=IN IP4'", "c= must be 'IN IP4|IP6 <address>'"),
    (r"a=setup:\w+", "a=setup:zzz", "'a=setup:zzz'", "a=setup must be active, passive, actpass or holdconn"),
    (r"a=fmtp:(\d+)", "a=fmtp:x", "'a=fmtp:x", "a=fmtp must be '<payload type> <parameters>'"),
    (r"a=rtpmap:(\d+) H264", "a=rtpmap:250 H264", "a=rtpmap:250", "names a payload type its m= line does not list"),
    (r"m=video (\d+) (\S+) \d+", r"m=video \1 \2 74", "m=video", "payload type '74' must be 0-127, not 72-76"),
    (r"a=fingerprint:\S+ ", "a=fingerprint:", "a=fingerprint", "'<hash function> <fingerprint>'"),
    (r"a=candidate:\S+ \d+", "a=candidate:x y", "a=candidate:x y", "a=candidate must be"),
    (r"a=ssrc:\d+", "a=ssrc:12x", "a=ssrc:12x", "a=ssrc must be '<32-bit ssrc> <attribute>:<value>'"),
    (r"a=extmap:\d+", "a=extmap:x", "a=extmap:x", "a=extmap must be '<id>[/<direction>] <uri>'"),
    (r"\ns=-", "\ns=-\nthis is not sdp", "'this is not sdp'", "not an SDP line"),
]


def malformed(offer: str, pattern: str, replacement: str) -> str:
    bad = re.sub(pattern, replacement, offer, count=1)
    assert bad != offer, pattern
    return bad


@pytest.fixture(scope="module")
def aiortc_offer() -> str:
    return browser_like_offer()


@pytest.mark.parametrize(("pattern", "replacement", "line", "reason"), MALFORMED)
def test_it_names_the_malformed_line_of_an_offer(aiortc_offer, pattern, replacement, line, reason):
    with pytest.raises(OfferError) as raised:
        check_offer(malformed(aiortc_offer, pattern, replacement))
    assert line in str(raised.value) and reason in str(raised.value), str(raised.value)


# --- refusals over HTTP ----------------------------------------------------------------------


@pytest.mark.media
def test_it_refuses_what_it_must(node):
    offer = browser_like_offer().encode()
    cases = [
        (whep_url(node, domain=NO_RTS), 403, "RTS is off for this domain"),
        (whep_url(node, key="wrongKey99"), 403, "invalid md5hash"),
        (whep_url(node, auth=False), 403, "no auth_key"),
        (whep_url(node, domain="nowhere.test"), 403, "non-existent domain"),
        (whep_url(node, stream="offline"), 404, "stream is not live"),
    ]
    for url, status, reason in cases:
        got, headers, _ = request(url, body=offer)
        assert (got, headers.get("X-LiveCenter-Error")) == (status, reason), url
    assert request(whep_url(node), body=offer, content_type="text/plain")[0] == 415
    assert request(whep_url(node), body=b"v=0\r\n" + b"a" * MAX_OFFER_BYTES)[0] == 413
    assert request(whep_url(node), method="GET")[0] == 405
    resource = f"{node.http}/live/cam1.whep/abcdefghijklmnopqrstuvwx"
    assert request(resource, method="DELETE")[0] == 404
    status, headers, _ = request(
        resource, method="PATCH", body=b"a=candidate", content_type="application/trickle-ice-sdpfrag"
    )
    assert (status, headers["Allow"]) == (405, "DELETE, OPTIONS")
    # The preflight a browser sends before POSTing application/sdp.
    status, headers, _ = request(whep_url(node), method="OPTIONS")
    assert status == 204
    assert "POST" in headers["Access-Control-Allow-Methods"] and "DELETE" in headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in headers["Access-Control-Allow-Headers"]
    assert "Location" in headers["Access-Control-Expose-Headers"]


@pytest.mark.media
def test_it_names_b_frames_when_auto_transcoding_is_off(node):
    publisher = start_publisher(node.publish_url(), seconds=30, size="320x240", extra=("-bf", "2"), tune="",
                                preset="veryfast")  # fmt: skip
    try:
        assert node.wait_for(lambda: node.node.hub.live_keys())
        assert node.wait_for(lambda: node.node.hub.stream(node.node.hub.live_keys()[0]).has_bframes)
        status, headers, body = request(whep_url(node, domain=NO_TRANSCODE), body=browser_like_offer().encode())
        reason = "stream has B-frames and HTML5 auto-transcoding is off for this domain"
        assert (status, headers.get("X-LiveCenter-Error"), body.strip()) == (403, reason, reason)
    finally:
        publisher.stop()


@pytest.mark.media
def test_it_answers_400_when_aiortc_cannot_take_an_offer_that_looks_right(node, aiortc_offer):
    """What the line check lets through and aiortc still refuses (a fmtp
    parameter it reads as a number) is a 400 with the reason, not a traceback."""
    publisher = start_publisher(node.publish_url(), seconds=30, size="320x240")
    try:
        assert node.wait_for(lambda: node.node.hub.live_keys())
        offer = re.sub(r"a=fmtp:(\d+) apt=\d+", r"a=fmtp:\1 apt=abc", aiortc_offer, count=1)
        assert offer != aiortc_offer
        status, headers, body = request(whep_url(node), body=offer.encode())
        assert status == 400, (status, body)
        assert headers["X-LiveCenter-Error"].startswith("the offer could not be answered: ValueError")
        assert not node.node.rts.sessions
    finally:
        publisher.stop()


@pytest.mark.media
def test_it_answers_every_malformed_offer_400_with_the_reason(node, aiortc_offer):
    for pattern, replacement, _, reason in MALFORMED:
        status, headers, body = request(whep_url(node), body=malformed(aiortc_offer, pattern, replacement).encode())
        assert status == 400, (pattern, status, body)
        assert reason in headers["X-LiveCenter-Error"] and reason in body, (pattern, headers, body)


def raw_post(node, url: str, head_extra: str = "", length: int = 1000) -> socket.socket:
    """A WHEP POST whose head says `length` body bytes, none sent yet."""
    target = url.split(str(node.node.http_port), 1)[1]
    sock = socket.create_connection(("127.0.0.1", node.node.http_port), timeout=30)
    head = f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/sdp\r\n"
    sock.sendall(f"{head}Content-Length: {length}\r\n{head_extra}\r\n".encode())
    return sock


def dribble_until_answered(sock: socket.socket, seconds: float) -> tuple[bytes, float]:
    """Send the body a byte every 0.5 s until the node answers; its answer and when."""
    began = time.monotonic()
    sock.settimeout(0.5)
    answer = b""
    while time.monotonic() - began < seconds:
        try:
            data = sock.recv(4096)
        except TimeoutError:
            try:
                sock.sendall(b"v")
            except OSError:
                break
            continue
        if not data:
            break
        answer += data
    return answer, time.monotonic() - began


@pytest.mark.media
def test_it_refuses_the_url_before_reading_a_slow_body(node):
    """Issue 11, item 4: no auth_key and an unknown domain are answered from
    the head alone, whatever the body does."""
    for url, reason in [
        (whep_url(node, domain="nowhere.test", auth=False), b"non-existent domain"),
        (whep_url(node, auth=False), b"no auth_key"),
    ]:
        sock = raw_post(node, url)
        try:
            answer, took = dribble_until_answered(sock, 20)
        finally:
            sock.close()
        assert answer.startswith(b"HTTP/1.1 403 "), answer
        assert b"X-LiveCenter-Error: " + reason in answer
        assert took < 5, took  # not the 1000 s the body would take


@pytest.mark.media
def test_it_gives_a_slow_body_one_deadline_for_all_of_it(node, monkeypatch):
    monkeypatch.setattr(http_server, "REQUEST_BODY_TIMEOUT_SECONDS", 2)
    sock = raw_post(node, whep_url(node))
    try:
        answer, took = dribble_until_answered(sock, 30)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"the offer did not arrive whole: the body did not arrive within 2 s" in answer
    assert took < 10, took  # each byte came well within any per-read timeout


@pytest.mark.media
def test_it_refuses_a_body_longer_than_the_cap_from_its_content_length(node):
    sock = raw_post(node, whep_url(node), length=MAX_OFFER_BYTES + 1)
    try:
        answer, _ = dribble_until_answered(sock, 10)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 413 "), answer


# --- playback with aiortc as the viewer ----------------------------------------------------------


async def watch(url: str, frames: int, timeout: float = 60) -> dict:
    """One WHEP viewer: POST, play until `frames` video frames are decoded, DELETE."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    got = {"video": 0, "audio": 0, "sizes": set()}
    tracks = []
    pc.on("track", tracks.append)
    offer = await make_offer(pc)
    status, headers, answer = await asyncio.to_thread(request, url, "POST", offer.encode())
    assert status == 201, (status, headers, answer)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def read(track):
        while True:
            frame = await track.recv()
            got[track.kind] += 1
            if track.kind == "video":
                got["sizes"].add((frame.width, frame.height))

    readers = [asyncio.ensure_future(read(t)) for t in tracks]
    try:
        async with asyncio.timeout(timeout):
            while got["video"] < frames or got["audio"] < frames:
                await asyncio.sleep(0.1)
    finally:
        for reader in readers:
            reader.cancel()
        location = headers["Location"]
        got["delete"] = (await asyncio.to_thread(request, url.split("/live/")[0] + location, "DELETE"))[0]
        await pc.close()
    return got


@pytest.mark.media
def test_it_plays_to_two_viewers_from_one_shared_source(node):
    publisher = start_publisher(node.publish_url(), seconds=60, size="320x240")
    try:
        assert node.wait_for(lambda: node.node.hub.live_keys())
        url = whep_url(node)

        peak = []

        async def viewers_per_source():
            while True:
                peak.append(max((len(s.viewers) for s in list(node.node.rts.sources.values())), default=0))
                await asyncio.sleep(0.05)

        async def two():
            probe = asyncio.ensure_future(viewers_per_source())
            try:
                return await asyncio.gather(watch(url, 60), watch(url, 60))
            finally:
                probe.cancel()

        results = asyncio.run(two())
        assert max(peak) == 2, "the two viewers share one source"
        for got in results:
            assert got["sizes"] == {(320, 240)}, got
            assert got["delete"] == 200
        key = node.node.hub.live_keys()[0]
        # Both DELETEd: the sessions are gone, and with them the shared source
        # (one hub subscriber, one Opus encoder, while they played).
        assert node.wait_for(lambda: not node.node.rts.sessions and not node.node.rts.sources)
        assert node.run_sync(lambda: node.node.hub.stream(key).viewers().get("rts")) is None
    finally:
        publisher.stop()


def _fast_tracks(node) -> list:
    """(kind, FastTrackSender or None, fast_wanted) of every viewer's tracks, read on the node's loop."""

    def read():
        return [
            (track.kind, track.fast, track.fast_wanted)
            for source in node.node.rts.sources.values()
            for viewer in source.viewers
            for track in (viewer.video, viewer.audio)
        ]

    return node.run_sync(read)


@pytest.mark.media
@pytest.mark.parametrize("fast_path", [True, False])
def test_it_plays_through_the_fast_path_when_it_is_on(fast_path):
    node = NodeThread(policy(), play_wait_seconds=1, rts_fast_path=fast_path).start()
    publisher = start_publisher(node.publish_url(), seconds=60, size="320x240")
    try:
        assert node.wait_for(lambda: node.node.hub.live_keys())
        url = whep_url(node)
        seen = []
        resent = []

        def resend_last(fast) -> int:
            # A NACK for the last packet sent, as aiortc's RTCP handler
            # hands it to the sender's hook: answered from the shared history.
            fast.resend([(fast.writer.sequence_number - 1) % 65536])
            return fast.writer.resends

        async def play():
            async def look():
                while True:
                    tracks = _fast_tracks(node)
                    if tracks:
                        seen.append(tracks)
                        for kind, fast, _ in tracks:
                            if kind == "video" and fast is not None and fast.writer.packets and not resent:
                                resent.append(node.run_sync(resend_last, fast))
                    await asyncio.sleep(0.2)

            probe = asyncio.ensure_future(look())
            try:
                return await watch(url, 60)
            finally:
                probe.cancel()

        got = asyncio.run(play())
        assert got["sizes"] == {(320, 240)}, got
        assert got["audio"] >= 60
        last = seen[-1]
        assert {kind for kind, _, _ in last} == {"video", "audio"}
        if fast_path:
            for kind, fast, wanted in last:
                assert wanted and fast is not None, kind
                assert fast.writer.packets > 0 and fast.report() is not None
            assert resent == [1]
        else:
            assert all(fast is None and not wanted for _, fast, wanted in last)
    finally:
        publisher.stop()
        node.stop()
