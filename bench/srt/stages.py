"""Where an SRT frame's time goes inside our node, stage by stage
(bench/README.md, bench/srt, "Stages").

One process: a media node (bench/fanout/node_runner.py's domains, signing
off) with SRT ingest, the latency calibrator publishing to it
(`manage.py calibrator --url srt://…`, 1280x720 30 fps 2 Mbit/s, through
srt-live-transmit), and a hub subscriber standing in for a viewer. For each
video frame it notes, on the wall clock:

- capture: the time painted into the frame (read back after the run);
- arrival: when the datagram carrying the frame's last byte was read off
  the node's socket (the frame is emitted while that packet is handled);
- due: that packet's TSBPD time (the sender's timestamp + time base + latency);
- release: when the listener released it (SrtDataReceived);
- PES out: when the TS demuxer gave the frame back;
- hub: when a subscriber's on_ready drained it (what RTS, FLV and SRT
  playback servers are woken by).

and prints p50 and p95 of each step. The RTS send and the browser come
after the hub: bench/srt/run.py's RTMP row measures them.

    .venv/bin/python bench/srt/stages.py [--seconds 20] [--srt-latency 120]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import av  # noqa: E402

from bench.fanout.node_runner import INGEST, bench_policy  # noqa: E402
from livecenter.media import timecode  # noqa: E402
from livecenter.media.flv import FrameKind  # noqa: E402
from livecenter.media.mpegts_demux import FrameReceived  # noqa: E402
from livecenter.media.node import MediaNode, NodeConfig  # noqa: E402
from livecenter.media.policy import MemorySink, StreamKey  # noqa: E402
from livecenter.media.srt.events import SrtDataReceived  # noqa: E402
from livecenter.media.srt_server import SrtServer  # noqa: E402

CALIBRATOR_ARGS = ["--size", "1280x720", "--fps", "30", "--bitrate", "2M", "--gop-seconds", "1", "--bframes", "0"]
SKIP_SECONDS = 3  # the start: the encoder's and the connection's first frames


class Trace:
    def __init__(self) -> None:
        self.arrival: dict[tuple[int, int], float] = {}  # (socket ID, seq) -> wall time read
        self.packet: tuple[float | None, float, float] | None = None  # arrival, due, release of the one handled
        self.frames: dict[bytes, dict] = {}  # video body -> its times
        self.order: list[bytes] = []
        self.header: bytes | None = None
        self.mono_to_wall = time.time() - time.monotonic()

    def install(self) -> None:
        trace = self
        received, on_data = SrtServer.datagrams_received, SrtServer.on_data

        def datagrams_received(server, datagrams):
            now = time.time()
            for data, _ in datagrams:
                if len(data) >= 16 and not data[0] & 0x80:  # a data packet: its seq and socket ID
                    trace.arrival[(int.from_bytes(data[12:16], "big"), int.from_bytes(data[0:4], "big"))] = now
            received(server, datagrams)

        def traced_on_data(server, event: SrtDataReceived):
            publisher = server.publishers.get(event.socket_id)
            connection = server.listener.connections.get(event.socket_id)
            if publisher is not None and connection is not None:
                if not hasattr(publisher.demuxer, "traced"):
                    trace.wrap(publisher.demuxer)
                due = connection._play_time_us(event.timestamp_us) / 1e6 + trace.mono_to_wall  # diagnostic only
                trace.packet = (trace.arrival.pop((event.socket_id, event.seq), None), due, time.time())
            on_data(server, event)

        SrtServer.datagrams_received = datagrams_received
        SrtServer.HANDLERS = {**SrtServer.HANDLERS, SrtDataReceived: traced_on_data}

    def wrap(self, demuxer) -> None:
        real = demuxer.receive_data

        def receive_data(data):
            events = real(data)
            out = time.time()
            for e in events:
                if isinstance(e, FrameReceived) and e.kind is FrameKind.VIDEO:
                    if e.body[1] == 0:
                        self.header = e.body
                    elif self.packet is not None:
                        arrival, due, release = self.packet
                        self.frames[e.body] = {"arrival": arrival, "due": due, "release": release, "pes": out,
                                               "header": self.header}  # fmt: skip
                        self.order.append(e.body)
            return events

        demuxer.receive_data = receive_data
        demuxer.traced = True

    def on_ready(self, subscription) -> None:
        now = time.time()
        for frame in subscription.drain():
            times = self.frames.get(frame.body)
            if times is not None:
                times["hub"] = now

    def captures(self) -> None:
        """Each frame's capture time, from its timecode."""
        context, header = None, None
        for body in self.order:
            times = self.frames[body]
            if times["header"] is not header:
                header = times["header"]
                context = av.CodecContext.create("h264", "r")
                context.extradata = header[5:]
            for picture in context.decode(av.Packet(body[5:])):
                plane = picture.planes[0]
                ms = timecode.decode_luma(bytes(plane), picture.width, picture.height, plane.line_size)
                times["capture"] = ms / 1000 if ms is not None else None


STEPS = [
    ("capture → arrival (encoder, relay, SRT sender, loopback)", "capture", "arrival"),
    ("arrival → due (the TSBPD wait)", "arrival", "due"),
    ("due → release (timer lateness)", "due", "release"),
    ("release → PES out (demux)", "release", "pes"),
    ("PES out → hub subscriber", "pes", "hub"),
    ("capture → hub subscriber", "capture", "hub"),
]


def table(trace: Trace, skip: int) -> str:
    rows = [
        t for t in (trace.frames[b] for b in trace.order[skip:]) if all(t.get(k) for _, a, b in STEPS for k in (a, b))
    ]
    lines = [f"{len(rows)} video frames", "| step | p50 | p95 |", "| --- | ---: | ---: |"]
    for label, a, b in STEPS:
        values = sorted((t[b] - t[a]) * 1000 for t in rows)
        if values:
            lines.append(f"| {label} | {statistics.median(values):.1f} ms | {values[int(len(values) * 0.95)]:.1f} ms |")
    return "\n".join(lines)


async def run(args) -> Trace:
    trace = Trace()
    trace.install()
    config = NodeConfig(host="127.0.0.1", rtmp_port=0, http_port=0, srt_port=0, node_id="bench-stages")
    policy = bench_policy()
    policy.domains[INGEST] = dataclasses.replace(policy.domains[INGEST], srt_latency_ms=args.srt_latency)
    node = MediaNode(config, policy, MemorySink())
    await node.start()
    port = node.srt_port
    url = f"srt://127.0.0.1:{port}?streamid=#!::h={INGEST},r=/live/calib,m=publish&latency={args.srt_latency}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "livecenter.settings"}
    calibrator = subprocess.Popen([sys.executable, "manage.py", "calibrator", "--url", url, *CALIBRATOR_ARGS],
                                  cwd=ROOT, env=env, stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        key = StreamKey(INGEST, "live", "calib")
        for _ in range(100):
            if key in node.hub.live_keys():
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError("the calibrator's stream did not go live")
        subscription = node.hub.subscribe(key, protocol="trace", on_ready=trace.on_ready)
        await asyncio.sleep(args.seconds)
        subscription.close()
    finally:
        calibrator.terminate()
        calibrator.wait(10)
        await node.stop()
    return trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--srt-latency", type=int, default=120, help="ms, both ends")
    args = parser.parse_args()
    trace = asyncio.run(run(args))
    trace.captures()
    print(table(trace, SKIP_SECONDS * 30))


if __name__ == "__main__":
    main()
