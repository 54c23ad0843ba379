"""bench/rts's Janus reference (issue 18): the viewers' Janus client
(bench/rts/viewers.py --janus) negotiates with a real Janus 1.1 fed by
ffmpeg (bench/rts/janus_server.py) and counts its RTP; and the H.264
payload types are found whatever the order of the SDP's m-lines."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import free_port
from bench.rts import janus_server

ROOT = Path(__file__).resolve().parents[1]
ALL_CORES = f"0-{(os.cpu_count() or 1) - 1}"


def test_h264_types_are_read_from_the_video_section_whatever_its_place():
    # viewers.py patches aioice when imported: read it in a child, as the bench does.
    script = (
        "import sys; sys.argv = ['x']\n"
        "from bench.rts.viewers import h264_types\n"
        "sdp = 'v=0\\r\\nm=audio 9 UDP/TLS/RTP/SAVPF 111\\r\\na=rtpmap:111 opus/48000/2\\r\\n'"
        " 'm=video 9 UDP/TLS/RTP/SAVPF 96 97\\r\\na=rtpmap:96 H264/90000\\r\\na=rtpmap:97 rtx/90000\\r\\n'\n"
        "print(sorted(h264_types(sdp)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[96]"


def test_janus_listens_and_gathers_on_loopback_or_on_the_address_given(tmp_path):
    loopback = janus_server.write_config(tmp_path / "lo", 8088, 5004, 5006).parent
    assert 'ice_enforce_list = "lo"' in (loopback / "janus.jcfg").read_text()
    assert 'ip = "127.0.0.1"' in (loopback / "janus.transport.http.jcfg").read_text()
    # bench/rts --viewers-netns: the viewers reach it on the root end of their veth pair.
    veth = janus_server.write_config(tmp_path / "veth", 8088, 5004, 5006, host="10.64.3.254").parent
    assert 'ice_enforce_list = "10.64.3.254"' in (veth / "janus.jcfg").read_text()
    assert 'ip = "10.64.3.254"' in (veth / "janus.transport.http.jcfg").read_text()


@pytest.mark.skipif(janus_server.available() is not None, reason=f"{janus_server.available()} (make system-deps)")
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (make system-deps)")
def test_janus_viewers_negotiate_and_count_rtp(tmp_path):
    clip = tmp_path / "clip.flv"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-f", "lavfi", "-i", "sine=frequency=440",
         "-t", "4", "-c:v", "libx264", "-preset", "ultrafast", "-bf", "0", "-g", "30",
         "-c:a", "aac", "-f", "flv", str(clip)],
        check=True, timeout=60,
    )  # fmt: skip
    http_port, video_port, audio_port = free_port(), free_port(), free_port()
    janus = janus_server.start(tmp_path / "janus", http_port, video_port, audio_port, ALL_CORES, event_loops=1)
    feed = janus_server.feed(janus_server.annex_b_copy(clip), video_port, audio_port, ALL_CORES)
    try:
        viewers = subprocess.run(
            [sys.executable, str(ROOT / "bench/rts/viewers.py"), "--janus", "--url", f"http://127.0.0.1:{http_port}/janus",
             "--count", "2", "--warmup", "2", "--window", "3"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        for proc in (feed, janus):
            proc.terminate()
            proc.wait(15)
    assert viewers.returncode == 0, viewers.stderr[-2000:]
    result = json.loads(viewers.stdout.strip().splitlines()[-1])
    assert result["connected"] == 2
    # Frames by the marker bit on the offer's H.264 type, and Opus packets:
    # both viewers got both, over a window of 3 s of a 30 fps clip.
    assert all(frames > 0 for frames in result["video_frames"]), result
    assert all(packets > 0 for packets in result["audio_packets"]), result
