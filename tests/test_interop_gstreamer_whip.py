"""GStreamer publishing to the media node over WHIP (issue 17), and the
stream played back over HTTP-FLV by ffprobe: H.264 as sent, Opus become AAC.

Debian bookworm's GStreamer (1.22) has no `whipsink` (it is in
gst-plugins-rs, not packaged for bookworm). Two GStreamer WHIP clients are
tried instead:

- tests/gst_whip_client.py: GStreamer's webrtcbin (ICE, DTLS-SRTP, RTP)
  with videotestsrc ! x264enc tune=zerolatency and audiotestsrc ! opusenc,
  the WHIP HTTP done in Python (what whipsink does around the same element),
  run with the system Python's GObject introspection (python3-gi,
  gir1.2-gst-plugins-bad-1.0). Its candidates are on 127.0.0.1, the node's.
- Meetecho's simple-whip-client (`whip-client`, Debian's package of it, the
  same webrtcbin), when it starts: bookworm's build links libsoup2 while
  webrtcbin's libnice pulls in libsoup3 (through gupnp-igd), and libsoup3
  aborts a process holding both ("libsoup2 symbols detected"); the test is
  skipped, saying so, while that is the case.

Both offer `a=setup:actpass` (RFC 8842: an offerer's value), and GStreamer
1.22's DTLS certificate is RSA: the node answers `a=setup:passive` and is the
DTLS server, since as a client aiortc offers ECDSA cipher suites alone (the
handshake failed with "no shared cipher" before main's 57b971e)."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from livecenter.media.policy import DomainConfig, MemoryPolicy, StreamKey
from livecenter.media.rts import aiortc_compat
from livecenter.media.signing import sign
from tests.mediasupport import INGEST, INGEST_KEY, PLAY, PLAY_KEY, VALIDITY_SECONDS, NodeThread

SYSTEM_PYTHON = "/usr/bin/python3"
CLIENT = Path(__file__).with_name("gst_whip_client.py")
KEY = StreamKey(INGEST, "live", "cam1")
LIVE_SECONDS = 60  # the client's start (GStreamer's registry, x264) and ICE + DTLS, on a loaded machine
STOP_SECONDS = 30  # the DELETE, or the node noticing the publisher has gone


def gstreamer_webrtc_missing() -> str | None:
    """Why the system Python cannot run webrtcbin with x264enc and opusenc, or None."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"no {SYSTEM_PYTHON}"
    check = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstWebRTC', '1.0');"
        " gi.require_version('GstSdp', '1.0'); from gi.repository import Gst, GstWebRTC, GstSdp; Gst.init(None);"
        " missing = [e for e in ('webrtcbin', 'x264enc', 'opusenc', 'rtph264pay', 'rtpopuspay', 'nicesrc')"
        "            if Gst.ElementFactory.find(e) is None]; print(' '.join(missing))"
    )
    try:
        run = subprocess.run([SYSTEM_PYTHON, "-c", check], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "the GStreamer check took over 60 s"
    if run.returncode != 0:
        return f"no GStreamer introspection for the system Python: {run.stderr.strip().splitlines()[-1:]}"
    if run.stdout.strip():
        return f"GStreamer elements missing: {run.stdout.strip()}"
    return None


pytestmark = [pytest.mark.media]
needs_gst_webrtc = pytest.mark.skipif(
    (reason := gstreamer_webrtc_missing()) is not None,
    reason=f"{reason} (apt-get install python3-gi gir1.2-gst-plugins-bad-1.0 gstreamer1.0-nice"
    " gstreamer1.0-plugins-ugly; make system-deps installs them)",
)


def policy() -> MemoryPolicy:
    return MemoryPolicy(
        domains={
            INGEST: DomainConfig(INGEST, "ingest", True, (INGEST_KEY,), VALIDITY_SECONDS),
            PLAY: DomainConfig(
                PLAY, "streaming", True, (PLAY_KEY,), VALIDITY_SECONDS, ingest_domain=INGEST, rts_enabled=True
            ),  # fmt: skip
        }
    )


@pytest.fixture
def node():
    node = NodeThread(policy(), play_wait_seconds=3).start()
    yield node
    node.stop()


def whip_url(node: NodeThread) -> str:
    token = sign("/live/cam1", INGEST_KEY, int(time.time()))
    return f"{node.http}/live/cam1.whip?auth_key={token}&domain={INGEST}"


def probe(url: str) -> dict:
    """Three seconds of `url`'s streams and packets, by ffprobe."""
    run = subprocess.run(
        ["ffprobe", "-v", "error", "-read_intervals", "%+3",
         "-show_entries", "stream=index,codec_type,codec_name,width,height,sample_rate:packet=stream_index,pts_time",
         "-of", "json", url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout)


def assert_plays_over_flv(node: NodeThread, size: tuple[int, int]) -> None:
    played = probe(node.flv_url())
    streams = {s["codec_type"]: s for s in played["streams"]}
    assert streams["video"]["codec_name"] == "h264", played["streams"]
    assert (streams["video"]["width"], streams["video"]["height"]) == size
    assert streams["audio"]["codec_name"] == "aac", played["streams"]
    for kind in ("video", "audio"):
        times = [float(p["pts_time"]) for p in played["packets"] if p["stream_index"] == streams[kind]["index"]]
        assert len(times) > 20 and times[-1] - times[0] > 1.5, (kind, times)


class Client:
    """A WHIP client process; its output (stdout and stderr) in `output`."""

    def __init__(self, cmd: list[str], output: Path) -> None:
        self.output = output
        with open(output, "w") as log_file:
            self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file,
                                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for(self, line: str, timeout: float) -> bool:
        """Whether the client printed `line` before it ended or `timeout` passed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            if line in self.log().splitlines():
                return True
            time.sleep(0.1)
        return line in self.log().splitlines()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            return self.process.wait(STOP_SECONDS)


@needs_gst_webrtc
def test_gstreamer_webrtcbin_publishes_h264_and_opus_over_whip(node, tmp_path):
    cmd = [SYSTEM_PYTHON, str(CLIENT), whip_url(node), "--seconds", "600", "--ice-address", "127.0.0.1"]
    client = Client(cmd, tmp_path / "gst.log")
    try:
        # Live from the answer on; media once ICE and DTLS are up.
        assert client.wait_for("connected", LIVE_SECONDS), client.log()[-4000:]
        assert node.run_sync(node.node.hub.is_live, KEY)
        assert_plays_over_flv(node, (640, 360))
    finally:
        code = client.stop()
    # SIGINT: the client DELETEs its session, and the node unpublishes it.
    assert code == 0 and "DELETE 200" in client.log(), client.log()[-4000:]
    assert node.wait_for(lambda: not node.node.hub.is_live(KEY), STOP_SECONDS)


SIMPLE_WHIP_VIDEO = (
    "videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,framerate=25/1 ! videoconvert"
    " ! queue ! x264enc tune=zerolatency speed-preset=ultrafast bitrate=600 key-int-max=25"
    " ! video/x-h264,profile=constrained-baseline ! rtph264pay config-interval=-1 pt=96 ssrc=2"
    " ! queue ! application/x-rtp,media=video,encoding-name=H264,payload=96"
)
SIMPLE_WHIP_AUDIO = (
    "audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! queue ! opusenc"
    " ! rtpopuspay pt=100 ssrc=1 ! queue ! application/x-rtp,media=audio,encoding-name=OPUS,payload=100"
)
LIBSOUP_CONFLICT = "libsoup2 symbols detected"


@pytest.fixture
def node_on_host_addresses():
    """A node whose RTS ICE candidates are on this machine's addresses but
    loopback (aioice's own choice): whip-client's libnice gathers no
    loopback candidates and has no option to."""
    addresses = tuple(aiortc_compat._default_host_addresses(use_ipv4=True, use_ipv6=False))
    if not addresses:
        pytest.skip("this machine has no address but loopback for whip-client's ICE")
    node = NodeThread(policy(), play_wait_seconds=3, rts_ice_addresses=addresses).start()
    yield node
    node.stop()


@pytest.mark.skipif(
    shutil.which("whip-client") is None, reason="needs whip-client (apt-get install simple-whip-client)"
)
def test_simple_whip_client_publishes_h264_and_opus(node_on_host_addresses, tmp_path):
    node = node_on_host_addresses
    cmd = ["whip-client", "--no-trickle", "--log-level", "4", "--disable-colors", "--url", whip_url(node),
           "--video", SIMPLE_WHIP_VIDEO, "--audio", SIMPLE_WHIP_AUDIO]  # fmt: skip
    client = Client(cmd, tmp_path / "whip-client.log")
    try:
        node.wait_for(lambda: node.node.hub.is_live(KEY) or client.process.poll() is not None, LIVE_SECONDS)
        if LIBSOUP_CONFLICT in client.log():
            pytest.skip(
                "Debian bookworm's simple-whip-client aborts at start: it links libsoup2 and webrtcbin's libnice"
                " loads libsoup3 (gupnp-igd); libsoup3 refuses a process with both"
            )
        assert node.node.hub.is_live(KEY), client.log()[-4000:]
        assert_plays_over_flv(node, (640, 360))
    finally:
        client.stop()
    assert node.wait_for(lambda: not node.node.hub.is_live(KEY), STOP_SECONDS)
