"""SRT playback (m=request) on a real node, with real libsrt peers: ffprobe
(Debian's ffmpeg) and srt-live-transmit (Debian's srt-tools) play a stream
published over RTMP; srt-live-transmit also publishes one; every refusal is
an SRT rejection with its reason (issue 13)."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import select
import shutil
import socket
import subprocess
import time

import pytest

from livecenter.media.admission import Refusal
from livecenter.media.liveurl import Ports, SignedHost, playback_urls
from livecenter.media.play import PlayRefusal
from livecenter.media.policy import StreamKey
from livecenter.media.signing import sign
from livecenter.media.srt.packets import (
    UDT_DGRAM,
    SrtDataPacket,
    SrtFlag,
    SrtHandshake,
    SrtHandshakeType,
    SrtHsExtension,
    SrtKeepalive,
    SrtShutdown,
    parse_packet,
)
from livecenter.media.srt_server import (
    REJECT_FORBIDDEN,
    REJECT_NOT_FOUND,
    REJECT_OVERLOADED,
    REJECT_UNAUTHORIZED,
    REJECT_UNAVAILABLE,
    SRT_TS_PAYLOAD_BYTES,
    play_refusal_code,
)
from tests.mediasupport import (
    INGEST,
    INGEST_KEY,
    PLAY,
    PLAY_KEY,
    VALIDITY_SECONDS,
    NodeThread,
    default_policy,
    start_publisher,
)

pytestmark = pytest.mark.media

KEY = StreamKey(INGEST, "live", "cam1")
needs_srt_tools = pytest.mark.skipif(
    shutil.which("srt-live-transmit") is None, reason="srt-live-transmit missing: make system-deps installs srt-tools"
)


@pytest.fixture
def node():
    node = NodeThread(srt_port=0, play_wait_seconds=10).start()
    yield node
    node.stop()


def srt_play_url(node, app="live", stream="cam1", key=PLAY_KEY, domain=PLAY, **options) -> str:
    """DESIGN.md's SRT playback URL (the streaming domain, signed over the bare
    path) as the URL generator writes it, sent to this node's port."""
    target = SignedHost(domain, key, VALIDITY_SECONDS)
    expires_at = int(time.time()) + VALIDITY_SECONDS
    url = playback_urls(target, app, stream, None, expires_at, Ports(srt=node.node.srt_port))["srt"]
    extra = "".join(f"&{k}={v}" for k, v in options.items())
    return url.replace(f"srt://{domain}:", "srt://127.0.0.1:", 1) + extra


def publish(node, seconds: float = 30):
    publisher = start_publisher(node.publish_url(), seconds=seconds, size="320x240", rate=25)
    assert node.wait_for(lambda: node.node.hub.live_keys() == [KEY], timeout=20), publisher.stop()
    return publisher


def probe(url: str, seconds: float = 3) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ffprobe", "-v", "error", "-rw_timeout", "15000000", "-read_intervals", f"%+{seconds}",
         "-show_entries", "packet=codec_type,dts_time:stream=codec_name", "-of", "json", url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def frames_of(out: subprocess.CompletedProcess) -> dict:
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    packets = data.get("packets", [])
    video = [float(p["dts_time"]) for p in packets if p["codec_type"] == "video"]
    audio = [float(p["dts_time"]) for p in packets if p["codec_type"] == "audio"]
    return {"codecs": sorted(s["codec_name"] for s in data["streams"]), "video": video, "audio": audio}


def assert_continuous(timestamps: list[float], max_step: float) -> None:
    steps = [b - a for a, b in zip(timestamps, timestamps[1:], strict=False)]
    assert all(0 <= s <= max_step for s in steps), steps


def srt_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("livecenter.media")]


def test_it_plays_a_stream_to_ffprobe_over_srt(node, caplog):
    caplog.set_level(logging.INFO, logger="livecenter.media")
    publisher = publish(node)
    try:
        viewer = subprocess.Popen(
            ["ffprobe", "-v", "error", "-rw_timeout", "15000000", "-read_intervals", "%+4",
             "-show_entries", "packet=codec_type,dts_time:stream=codec_name", "-of", "json", srt_play_url(node)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        # Counted as an SRT viewer of the stream while it plays.
        assert node.wait_for(lambda: node.node.hub.stream(KEY).viewers() == {"srt": 1}, timeout=20)
        stdout, stderr = viewer.communicate(timeout=60)
        got = frames_of(subprocess.CompletedProcess(viewer.args, viewer.returncode, stdout, stderr))
        assert got["codecs"] == ["aac", "h264"]
        assert len(got["video"]) >= 50 and len(got["audio"]) >= 50
        assert_continuous(got["video"], 0.2)  # 25 fps, no frame missing
        assert_continuous(got["audio"], 0.2)
        assert node.run_sync(lambda: node.node.hub.stream(KEY).counters.bytes_out["srt"]) > 100_000
        # ffprobe's shutdown ends the play.
        assert node.wait_for(lambda: not node.node.srt.viewers, timeout=20)
        assert node.run_sync(lambda: node.node.hub.stream(KEY).viewers()) == {}
    finally:
        publisher.stop()
    line = next(line for line in srt_lines(caplog) if "play of" in line)
    assert "ended (peer shut down)" in line and "0 skipped" in line, line


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("bad signature", REJECT_UNAUTHORIZED),
        ("not live", REJECT_NOT_FOUND),
        ("unknown domain", REJECT_NOT_FOUND),
        ("ingest domain", REJECT_NOT_FOUND),
        ("disabled domain", REJECT_FORBIDDEN),
    ],
)
def test_it_refuses_a_player_with_an_srt_rejection_reason(caplog, case, code):
    caplog.set_level(logging.INFO, logger="livecenter.media")
    policy = default_policy()
    if case == "disabled domain":
        policy.domains[PLAY] = dataclasses.replace(policy.domains[PLAY], enabled=False)
    node = NodeThread(policy, srt_port=0, play_wait_seconds=10).start()
    publisher = None if case == "not live" else publish(node)
    try:
        url = {
            "bad signature": lambda: srt_play_url(node, key="wrongKey"),
            "not live": lambda: srt_play_url(node),
            "unknown domain": lambda: srt_play_url(node, domain="nowhere.test"),
            "ingest domain": lambda: srt_play_url(node, key=INGEST_KEY, domain=INGEST),
            "disabled domain": lambda: srt_play_url(node),
        }[case]()
        out = probe(url)
        assert out.returncode != 0
        assert "reject" in out.stderr.lower(), out.stderr
        refusals = [line for line in srt_lines(caplog) if line.startswith("srt ") and "play refused" in line]
        assert len(refusals) == 1 and refusals[0].endswith(f"({code})"), refusals
        assert not node.node.srt.viewers
    finally:
        if publisher is not None:
            publisher.stop()
        node.stop()


def test_it_refuses_a_player_past_the_nodes_capacity_as_overloaded(caplog):
    caplog.set_level(logging.INFO, logger="livecenter.media")
    node = NodeThread(srt_port=0, play_wait_seconds=10, max_egress_mbps=0.001).start()
    publisher = publish(node)
    first = None
    try:
        # One viewer is in (the first is admitted below the limit) ...
        first = subprocess.Popen(
            ["ffmpeg", "-v", "error", "-i", srt_play_url(node), "-c", "copy", "-f", "null", "-"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert node.wait_for(lambda: len(node.node.srt.viewers) == 1, timeout=20)
        # ... so the next one is refused, and the first one goes on.
        out = probe(srt_play_url(node))
        assert out.returncode != 0
        refusals = [line for line in srt_lines(caplog) if "play refused" in line]
        assert len(refusals) == 1 and refusals[0].endswith(f"at capacity ({REJECT_OVERLOADED})"), refusals
        assert first.poll() is None and len(node.node.srt.viewers) == 1
    finally:
        if first is not None:
            first.terminate()
            first.communicate(timeout=15)
        publisher.stop()
        node.stop()


def test_it_refuses_a_player_that_brings_a_passphrase(node, caplog):
    """Playback is in clear (srt_server.py's docstring): a caller with a
    passphrase is refused with UNSECURE rather than sent clear text."""
    caplog.set_level(logging.INFO, logger="livecenter.media")
    publisher = publish(node)
    try:
        out = probe(srt_play_url(node, passphrase="Correct-Horse-Battery-9"))
        assert out.returncode != 0
        assert "caller sent a passphrase we have none for" in caplog.text
        assert not node.node.srt.viewers
    finally:
        publisher.stop()


def test_it_ends_a_play_when_the_stream_ends(node, caplog):
    caplog.set_level(logging.INFO, logger="livecenter.media")
    node.run_sync(setattr, node.node.hub, "reconnect_grace_seconds", 0)
    publisher = publish(node, seconds=60)
    viewer = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-i", srt_play_url(node), "-c", "copy", "-f", "null", "-"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert node.wait_for(lambda: len(node.node.srt.viewers) == 1, timeout=20)
        publisher.stop()
        assert node.wait_for(lambda: not node.node.srt.viewers, timeout=20)
        # The node's SHUTDOWN ends the player's input.
        viewer.wait(30)
    finally:
        viewer.kill()
        viewer.communicate()
    assert any("ended (stream ended)" in line for line in srt_lines(caplog))


@needs_srt_tools
def test_srt_live_transmit_publishes_a_ts_file_that_plays_over_flv(node, tmp_path):
    clip = tmp_path / "clip.ts"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "20",
         "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-f", "mpegts", str(clip)],
        check=True, timeout=120,
    )  # fmt: skip
    # ffmpeg reads the file in real time (-re) into srt-live-transmit's stdin.
    feeder = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-i", str(clip), "-c", "copy", "-f", "mpegts", "-"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    transmit = subprocess.Popen(
        ["srt-live-transmit", "-q", "file://con", node.srt_publish_url()],
        stdin=feeder.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    feeder.stdout.close()
    try:
        assert node.wait_for(lambda: node.node.hub.live_keys() == [KEY], timeout=20), transmit.poll()
        published = [e for e in node.sink.events if type(e).__name__ == "StreamPublished"]
        assert published[-1].protocol == "srt"
        got = frames_of(probe(node.flv_url()))
        assert got["codecs"] == ["aac", "h264"]
        assert len(got["video"]) >= 50
        assert_continuous(got["video"], 0.2)
    finally:
        for process in (transmit, feeder):
            process.terminate()
            process.wait(15)


@needs_srt_tools
def test_srt_live_transmit_plays_a_stream_as_ts(node, tmp_path):
    publisher = publish(node)
    received = tmp_path / "received.ts"
    try:
        with received.open("wb") as out:
            subprocess.run(["srt-live-transmit", "-q", "-t:5", srt_play_url(node), "file://con"],
                           stdout=out, stderr=subprocess.PIPE, timeout=60)  # fmt: skip
    finally:
        publisher.stop()
    data = received.read_bytes()
    # Whole TS packets, 7 to each SRT payload as srt-live-transmit writes them out.
    assert len(data) > 50 * SRT_TS_PAYLOAD_BYTES and len(data) % 188 == 0
    assert data[::188] == b"\x47" * (len(data) // 188)
    got = frames_of(probe(str(received), seconds=10))
    assert got["codecs"] == ["aac", "h264"]
    assert len(got["video"]) >= 50
    assert_continuous(got["video"], 0.2)


class RawCaller:
    """A caller of our own that completes the handshake and then never
    acknowledges what it receives (a viewer whose link cannot carry the
    stream, or that stopped reading), but keeps the connection alive."""

    def __init__(self, port: int, stream_id: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect(("127.0.0.1", port))
        self.socket_id = 0x0BAD_CAFE
        self.data_packets = 0
        self.shutdown = False
        induction = SrtHandshake(version=4, handshake_type=SrtHandshakeType.INDUCTION, socket_id=self.socket_id,
                                 extension_field=UDT_DGRAM, initial_seq=1000)  # fmt: skip
        answer = self._handshake(bytes(induction))
        flags = SrtFlag.TSBPDSND | SrtFlag.TSBPDRCV | SrtFlag.TLPKTDROP | SrtFlag.PERIODICNAK | SrtFlag.REXMITFLG
        conclusion = SrtHandshake(
            version=5, handshake_type=SrtHandshakeType.CONCLUSION, socket_id=self.socket_id,
            syn_cookie=answer.syn_cookie, extension_field=0x5, initial_seq=1000,
            hs=SrtHsExtension(0x010501, flags, 120, 120), stream_id=stream_id,
        )  # fmt: skip
        answer = self._handshake(bytes(conclusion))
        assert answer.handshake_type == SrtHandshakeType.CONCLUSION, answer
        self.peer_socket_id = answer.socket_id

    def _handshake(self, data: bytes) -> SrtHandshake:
        for _ in range(20):
            self.sock.send(data)
            if select.select([self.sock], [], [], 0.5)[0]:
                packet = parse_packet(self.sock.recv(2048))
                if type(packet) is SrtHandshake:
                    return packet
        raise AssertionError("no handshake answer")

    def run(self, seconds: float) -> None:
        """Read for `seconds` (or until the node shuts the connection),
        sending a keepalive every 0.5 s and nothing else."""
        deadline = time.monotonic() + seconds
        next_keepalive = 0.0
        while not self.shutdown and time.monotonic() < deadline:
            if time.monotonic() >= next_keepalive:
                self.sock.send(bytes(SrtKeepalive(dest_socket_id=self.peer_socket_id)))
                next_keepalive = time.monotonic() + 0.5
            if select.select([self.sock], [], [], 0.1)[0]:
                packet = parse_packet(self.sock.recv(2048))
                if type(packet) is SrtDataPacket:
                    self.data_packets += 1
                elif type(packet) is SrtShutdown:
                    self.shutdown = True

    def close(self) -> None:
        self.sock.close()


def test_it_skips_and_then_disconnects_a_viewer_that_acknowledges_nothing(node, caplog):
    caplog.set_level(logging.INFO, logger="livecenter.media")
    node.run_sync(setattr, node.node.srt, "viewer_max_dropping_seconds", 3.0)
    publisher = publish(node, seconds=60)
    token = sign("/live/cam1", PLAY_KEY, int(time.time()))
    caller = RawCaller(node.node.srt_port, f"#!::h={PLAY},r=/live/cam1?auth_key={token},m=request")
    try:
        assert node.wait_for(lambda: len(node.node.srt.viewers) == 1, timeout=10)
        caller.run(seconds=30)
        assert caller.shutdown, "the node never cut the viewer"
        assert caller.data_packets > 0
        assert not node.node.srt.viewers
    finally:
        caller.close()
        publisher.stop()
    line = next(line for line in srt_lines(caplog) if "play of" in line)
    match = re.search(r"ended \(too slow, disconnected\): \d+ frames sent, (\d+) skipped in (\d+) skips", line)
    assert match and int(match[1]) > 0 and int(match[2]) >= 1, line


@pytest.mark.parametrize(
    ("refusal", "reason", "code"),
    [
        (PlayRefusal.DENIED, "invalid md5hash", REJECT_UNAUTHORIZED),
        (PlayRefusal.DENIED, "expired timestamp", REJECT_UNAUTHORIZED),
        (PlayRefusal.DENIED, str(Refusal.UNKNOWN_DOMAIN), REJECT_NOT_FOUND),
        (PlayRefusal.DENIED, str(Refusal.NOT_STREAMING), REJECT_NOT_FOUND),
        (PlayRefusal.DENIED, str(Refusal.NOT_ASSOCIATED), REJECT_NOT_FOUND),
        (PlayRefusal.DENIED, str(Refusal.DOMAIN_DISABLED), REJECT_FORBIDDEN),
        (PlayRefusal.UNAVAILABLE, str(Refusal.POLICY_UNAVAILABLE), REJECT_UNAVAILABLE),
        (PlayRefusal.AT_CAPACITY, "media node at capacity", REJECT_OVERLOADED),
        (PlayRefusal.NOT_LIVE, "stream is not live", REJECT_NOT_FOUND),
    ],
)
def test_it_maps_each_play_refusal_to_an_srt_rejection_reason(refusal, reason, code):
    assert play_refusal_code(refusal, reason) == code
