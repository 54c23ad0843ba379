"""Relaying a stream over SRT (relay.push_srt, srt_call.py, srt/caller.py)
to libsrt: a node takes an RTMP publish from ffmpeg and calls Debian's
`srt-live-transmit`, listening, which writes what it receives to a file
that ffprobe reads back; with and without a passphrase, and refused with
libsrt's reason when the passphrases differ."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time

import pytest

from livecenter.media.policy import StreamKey
from livecenter.media.relay import RelayError, RelayTarget, push_srt
from tests.mediasupport import INGEST, NodeThread, start_publisher

pytestmark = [
    pytest.mark.media,
    pytest.mark.skipif(shutil.which("srt-live-transmit") is None, reason="srt-live-transmit (srt-tools) is missing"),
]

KEY = StreamKey(INGEST, "live", "cam1")
PASSPHRASE = "relay passphrase 1"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LibsrtListener:
    """srt-live-transmit listening on loopback, writing the TS it gets to `path`."""

    def __init__(self, path, *options: str) -> None:
        self.port = free_udp_port()
        query = "&".join(("mode=listener", "adapter=127.0.0.1", *options))
        self.out = open(path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            ["srt-live-transmit", "-q", f"srt://:{self.port}?{query}", "file://con"],
            stdout=self.out,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            _, err = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        self.out.close()
        return err


@pytest.fixture
def node():
    node = NodeThread().start()
    publisher = start_publisher(node.publish_url(), seconds=40, size="640x360")
    assert node.wait_for(lambda: node.node.hub.is_live(KEY)), publisher.stop()
    yield node
    publisher.stop()
    node.stop()


def relay_for(node: NodeThread, listener: LibsrtListener, seconds: float, **options) -> str:
    """Run push_srt to the listener for `seconds` (or until it fails); its
    outcome: "running" if it was still relaying, else the RelayError."""
    target = RelayTarget("127.0.0.1", listener.port, "live", "cam1", (("domain", INGEST),), protocol="srt")

    async def run():
        try:
            async with asyncio.timeout(seconds):
                await push_srt(node.node.hub, KEY, target, **{"latency_ms": 200, **options})
        except TimeoutError:
            return "running"
        except RelayError as exc:
            return exc
        return "ended"

    return node.call(run(), timeout=seconds + 30)


def probe(path) -> tuple[list[dict], list[dict]]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name:packet=stream_index,dts_time",
         "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout)
    return data["streams"], data.get("packets", [])


def assert_continuous_video(streams, packets, seconds: float) -> None:
    assert sorted(s["codec_name"] for s in streams) == ["aac", "h264"]
    video = [i for i, s in enumerate(streams) if s["codec_name"] == "h264"][0]
    times = [float(p["dts_time"]) for p in packets if p["stream_index"] == video and "dts_time" in p]
    assert len(times) > 25 * (seconds - 2), f"only {len(times)} video packets"
    steps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(steps) > 0 and max(steps) < 0.1, f"timestamps jump: {min(steps)}..{max(steps)}"


@pytest.mark.parametrize("passphrase", [None, PASSPHRASE], ids=["clear", "encrypted"])
def test_it_relays_a_stream_to_libsrt_as_a_ts_ffprobe_reads(node, tmp_path, passphrase):
    options = (f"passphrase={PASSPHRASE}", "pbkeylen=16") if passphrase else ()
    listener = LibsrtListener(tmp_path / "relayed.ts", *options)
    try:
        time.sleep(0.5)  # srt-live-transmit binds its port (a call before that is refused and retried anyway)
        outcome = relay_for(node, listener, 6, passphrase=passphrase)
    finally:
        err = listener.stop()
    assert outcome == "running", f"{outcome!r}; srt-live-transmit: {err[-2000:]}"
    assert_continuous_video(*probe(tmp_path / "relayed.ts"), seconds=6)


@pytest.mark.parametrize(
    ("ours", "reason"),
    [("another passphrase", "BADSECRET"), (None, "UNSECURE")],
    ids=["wrong passphrase", "no passphrase"],
)
def test_libsrt_refuses_a_passphrase_mismatch_and_the_relay_says_why(node, tmp_path, ours, reason):
    listener = LibsrtListener(tmp_path / "refused.ts", f"passphrase={PASSPHRASE}")
    try:
        time.sleep(0.5)
        outcome = relay_for(node, listener, 10, passphrase=ours)
    finally:
        listener.stop()
    assert isinstance(outcome, RelayError), outcome
    assert reason in outcome.reason and outcome.refusal == ""  # the link's fault: another center may do


def test_a_call_to_a_port_where_nothing_listens_fails_at_once(node):
    class Nobody:
        port = free_udp_port()

    started = time.monotonic()
    outcome = relay_for(node, Nobody, 10)
    assert isinstance(outcome, RelayError) and "nothing listens there" in outcome.reason
    assert time.monotonic() - started < 2  # the ICMP answer, not the 3 s connect timeout
