"""Issue 13's lossy link, our receiver beside libsrt's (bench/README.md,
"bench/srt", loss): an ffmpeg (libsrt 1.5) publisher in a network namespace
pushes 640x360 25 fps H.264 at 2 Mbit/s as MPEG-TS through
tests/netimpair.py's relay (100 ms and 5 % loss each way) with 400 ms of
latency, to

- `ours`: the media node, read back over HTTP-FLV for 15 s by ffprobe,
  which decodes it (tests/test_srt_loss.py's publish_through_loss);
- `libsrt`: `srt-live-transmit srt://:PORT?mode=listener file://con > file` (Debian's
  srt-tools, libsrt 1.5.1), the file decoded by ffprobe afterwards;

each with too-late drop (the default) and with `tlpktdrop=0` on the
publisher (and, for libsrt, on the listener too: libsrt's receiver goes by
its own option). Per run: frames decoded, frames missing (a skip in the
decoded frames' DTS), decoder error lines (a damaged frame that is still
there: our demuxer drops a PES with a hole, ffmpeg's passes it on), and the
receiver's loss counters where we have them.

    sudo-capable (network namespaces):
    flock /tmp/livecenter-bench.lock nice -n 19 .venv/bin/python bench/srt/loss.py [--runs 2]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.mediasupport import publisher_command  # noqa: E402
from tests.netimpair import Impairment, ThreadedImpairmentRelay  # noqa: E402
from tests.netns import Network  # noqa: E402
from tests.test_srt_loss import FPS, READ_SECONDS, decoded_video, missing_frames, publish_through_loss  # noqa: E402

LATENCY_MS = 400


def netns_factory(networks: list[Network]):
    def make(*hosts: str) -> Network:
        network = Network(hosts)
        network.create()
        networks.append(network)
        return network

    return make


def ours(tlpktdrop: bool) -> dict:
    networks: list[Network] = []
    try:
        options = {} if tlpktdrop else {"tlpktdrop": 0}
        video, errors, session, demuxer, relay = publish_through_loss(netns_factory(networks), LATENCY_MS, **options)
    finally:
        for network in networks:
            network.close()
    return {
        "frames": len(video),
        "missing": missing_frames(video),
        "decoder_errors": len(errors),
        "lost": session.packets_lost,
        "retransmitted": session.packets_retransmitted,
        "dropped": session.packets_dropped,
        "belated": session.packets_belated,
        "sender_dropped": session.packets_sender_dropped,
        "gaps_given_up": session.gaps_given_up,
        "relay_dropped": f"{relay['up']['dropped']}/{relay['down']['dropped']}",
    }


def libsrt(tlpktdrop: bool) -> dict:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    drop = "" if tlpktdrop else "&tlpktdrop=0"
    with tempfile.TemporaryDirectory() as folder, Network(("publisher",)) as net:
        out = Path(folder) / "out.ts"
        sink = out.open("wb")
        receiver = subprocess.Popen(  # its file target is stdout only
            ["srt-live-transmit", "-q", f"srt://127.0.0.1:{port}?mode=listener&latency={LATENCY_MS}{drop}", "file://con"],
            stdout=sink, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        link = Impairment(loss=0.05, delay_ms=100)
        relay = ThreadedImpairmentRelay((net.gateway, 0), ("127.0.0.1", port), up=link, down=link, seed=13)
        relay.start()
        try:
            time.sleep(0.5)
            url = f"srt://{relay.address[0]}:{relay.address[1]}?latency={LATENCY_MS * 1000}{drop}"
            cmd = publisher_command(url, seconds=READ_SECONDS + 2, size="640x360", rate=FPS, container="mpegts")
            publisher = net.popen("publisher", cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            publisher.wait(READ_SECONDS + 60)
            time.sleep(1.5)  # the last retransmissions
        finally:
            receiver.terminate()
            try:
                receiver.wait(5)
            except subprocess.TimeoutExpired:
                receiver.kill()  # it may not leave a blocked read on SIGTERM
                receiver.wait(5)
            sink.close()
            counters = relay.snapshot()
            relay.stop()
        video, errors = decoded_video(str(out), READ_SECONDS + 2)
    return {
        "frames": len(video),
        "missing": missing_frames(video),
        "decoder_errors": len(errors),
        "relay_dropped": f"{counters['up']['dropped']}/{counters['down']['dropped']}",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--which", default="ours,libsrt")
    args = parser.parse_args()
    receivers = {"ours": ours, "libsrt": libsrt}
    for run in range(args.runs):
        for name in args.which.split(","):
            for tlpktdrop in (True, False):
                result = receivers[name](tlpktdrop)
                mode = "too-late drop" if tlpktdrop else "tlpktdrop=0"
                print(f"run {run + 1} {name:6} {mode:13} {result}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
