"""bench/rts's light viewer generator (bench/rts/viewers.py --client light,
issue 18): aiortc opens a few viewers of a real node (bench/rts/node_runner.py
fed by ffmpeg), hands their sockets to bench/rts/rtpcount.c, and the counter
counts the stream's frames and answers the node's ICE consent checks, so the
node still holds every session after the checks have come round."""

import json
import shutil
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from aioice import stun

from bench.common import free_port, wait_port
from tests.mediasupport import start_publisher

ROOT = Path(__file__).resolve().parents[1]
VIEWERS = 3

pytestmark = [
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (make system-deps)"),
    pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (make system-deps)"),
]


def test_light_viewers_count_frames_and_answer_consent_checks():
    rtmp_port, http_port = free_port(), free_port()
    node = subprocess.Popen(
        [sys.executable, str(ROOT / "bench/rts/node_runner.py"), "--rtmp-port", str(rtmp_port),
         "--http-port", str(http_port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    reports: list[dict] = []
    reader = threading.Thread(
        target=lambda: reports.extend(json.loads(line) for line in node.stdout if line.startswith("{")), daemon=True
    )
    reader.start()
    publisher = None
    try:
        wait_port(rtmp_port)
        wait_port(http_port)
        # No B-frames (ultrafast), a keyframe a second, for longer than the test.
        publisher = start_publisher(f"rtmp://127.0.0.1:{rtmp_port}/live/bench?domain=push.bench", seconds=120,
                                    size="320x240")  # fmt: skip
        # The window (12 s after a 2 s warm-up) spans two of aioice's
        # consent intervals (5 s, randomised 0.8-1.2x).
        viewers = subprocess.run(
            [sys.executable, str(ROOT / "bench/rts/viewers.py"), "--client", "light", "--count", str(VIEWERS),
             "--url", f"http://127.0.0.1:{http_port}/live/bench.whep?domain=play.bench",
             "--warmup", "2", "--window", "12"],
            cwd=ROOT, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        sessions_after = reports[-1]["sessions"] if reports else None
    finally:
        if publisher is not None:
            publisher.stop()
        node.terminate()
        node.wait(15)
    assert viewers.returncode == 0, viewers.stderr[-2000:]
    result = json.loads(viewers.stdout.strip().splitlines()[-1])
    assert result["client"] == "light"
    assert result["connected"] == VIEWERS, viewers.stderr[-2000:]
    # Every viewer counted video frames (the marker bit on the answer's
    # H.264 type) and audio packets over the window, on its own socket.
    assert len(result["video_frames"]) == VIEWERS
    assert all(frames > 0 for frames in result["video_frames"]), result
    assert all(packets > 0 for packets in result["audio_packets"]), result
    # The node's consent checks were answered (at least one a viewer) and it
    # still held every viewer's session once the window was over.
    assert result["stun_answers"] >= VIEWERS, result
    assert sessions_after == VIEWERS, reports[-3:]


def rtp(payload_type: int, marker: bool, seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, payload_type | (0x80 if marker else 0), seq, seq * 3000, 1234) + bytes(1188)


def end_window(ours: socket.socket, counter: subprocess.Popen) -> dict:
    """The counter's line for the window begun with "B"."""
    ours.send(b"E")
    return json.loads(counter.stdout.readline())


def consent_check(password: str) -> stun.Message:
    """A consent check as aioice on the node sends it (RFC 7675)."""
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = "abcd:efgh"
    request.add_message_integrity(password.encode())
    return request


def start_counter(tmp_path: Path) -> tuple[socket.socket, subprocess.Popen]:
    """rtpcount.c built and started: our end of its control socket, and it."""
    binary = tmp_path / "rtpcount"
    subprocess.run(["cc", "-O2", "-Wall", "-o", str(binary), str(ROOT / "bench/rts/rtpcount.c"), "-lcrypto"],
                   check=True)  # fmt: skip
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    counter = subprocess.Popen([str(binary), "--control-fd", str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    theirs.close()
    return ours, counter


def test_counter_answers_a_binding_request_and_counts_rtp_by_its_header(tmp_path):
    ours, counter = start_counter(tmp_path)
    viewer, server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        viewer.bind(("127.0.0.1", 0))
        server.bind(("127.0.0.1", 0))
        server.settimeout(10)
        server_address = server.getsockname()
        password = "a" * 22
        socket.send_fds(ours, [f"P {password} 96".encode()], [viewer.fileno()])
        ours.send(b"B")
        # Two frames of three packets (the marker on the last), one audio
        # packet, and an RTCP sender report, which is not counted.
        for seq, marker in enumerate([False, False, True, False, False, True]):
            server.sendto(rtp(96, marker, seq), viewer.getsockname())
        server.sendto(rtp(111, True, 7), viewer.getsockname())
        server.sendto(bytes([0x80, 200]) + bytes(26), viewer.getsockname())
        request = consent_check(password)
        server.sendto(bytes(request), viewer.getsockname())
        data, _ = server.recvfrom(1500)
        result = end_window(ours, counter)
    finally:
        ours.close()
        counter.wait(10)
        viewer.close()
        server.close()
    # The answer passes aioice's own checks: FINGERPRINT, and
    # MESSAGE-INTEGRITY keyed with the viewer's password.
    response = stun.parse_message(data)
    assert response.check_message_integrity(password.encode())
    assert not response.check_message_integrity(b"b" * 22)
    assert response.message_class == stun.Class.RESPONSE
    assert response.transaction_id == request.transaction_id
    assert response.attributes["XOR-MAPPED-ADDRESS"] == server_address
    assert "FINGERPRINT" in response.attributes
    assert (result["peers"], result["video_frames"], result["audio_packets"]) == (1, [2], [1])
    assert (result["stun_answers"], result["socket_drops"]) == (1, 0)


def test_counter_reads_every_socket_of_a_viewer_not_only_its_nominated_one(tmp_path):
    # A viewer with two host candidates (another local address up while it
    # gathered): under aioice's aggressive nomination the server may keep
    # the other pair, and send its media and consent checks there.
    ours, counter = start_counter(tmp_path)
    nominated, other, server = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3))
    try:
        for sock in (nominated, other, server):
            sock.bind(("127.0.0.1", 0))
        server.settimeout(10)
        other_address = other.getsockname()
        password = "p" * 22
        socket.send_fds(ours, [f"P {password} 96".encode()], [nominated.fileno(), other.fileno()])
        ours.send(b"B")
        for seq, marker in enumerate([False, True, False, True, True]):
            server.sendto(rtp(96, marker, seq), other.getsockname())
        server.sendto(rtp(96, True, 9), nominated.getsockname())
        request = consent_check(password)
        server.sendto(bytes(request), other.getsockname())
        data, answered_from = server.recvfrom(1500)
        result = end_window(ours, counter)
    finally:
        ours.close()
        counter.wait(10)
        for sock in (nominated, other, server):
            sock.close()
    # The consent check is answered from the socket it came to, as the
    # server's pair expects (RFC 8445 7.2.5.2.1: the addresses must match).
    assert answered_from == other_address
    assert stun.parse_message(data).check_message_integrity(password.encode())
    # One viewer, its frames on both sockets counted together.
    assert (result["peers"], result["video_frames"], result["audio_packets"]) == (1, [4], [0])
    assert (result["sockets"], result["off_nominated"], result["stun_answers"]) == (2, 1, 1)
