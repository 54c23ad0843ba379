"""Our media node alone in a process, for bench/rts/run.py's viewer count.

Signing is off and RTS on; the node binds 127.0.0.1, so its ICE candidates
are loopback. Prints READY once it listens, then every second one JSON line
with what its RTS sources did (frames made, viewers, frames dropped and
skips over all viewers). SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from livecenter.media.node import MediaNode, NodeConfig  # noqa: E402
from livecenter.media.policy import DomainConfig, MemoryPolicy, MemorySink  # noqa: E402

INGEST = "push.bench"
PLAY = "play.bench"
VALIDITY_SECONDS = 3600


def bench_policy() -> MemoryPolicy:
    return MemoryPolicy(
        domains={
            INGEST: DomainConfig(INGEST, "ingest", True, None, VALIDITY_SECONDS),
            PLAY: DomainConfig(PLAY, "streaming", True, None, VALIDITY_SECONDS, ingest_domain=INGEST, rts_enabled=True),
        }
    )


_last = [time.monotonic(), time.process_time()]


def report(node: MediaNode) -> dict:
    # Frames in: without B-frames the source passes each on, so this is what
    # every viewer should get (counted at the hub: sources come and go).
    units = sum(node.hub.stream(key).video_frames for key in node.hub.live_keys())
    viewers = dropped = skips = queued = 0
    for source in node.rts.sources.values():
        for viewer in source.viewers:
            viewers += 1
            dropped += viewer.dropped
            skips += viewer.skips
            queued = max(queued, len(viewer.video.queue))
    now, cpu = time.monotonic(), time.process_time()
    # This process's CPU (every thread: the loop, PyAV's) over the last second, in % of one core.
    percent = 100 * (cpu - _last[1]) / (now - _last[0])
    _last[:] = [now, cpu]
    return {"t": time.time(), "units": units, "viewers": viewers, "sessions": len(node.rts.sessions),
            "dropped": dropped, "skips": skips, "max_queued": queued, "cpu": round(percent, 1)}  # fmt: skip


async def main(rtmp_port: int, http_port: int) -> None:
    node = MediaNode(
        NodeConfig(host="127.0.0.1", rtmp_port=rtmp_port, http_port=http_port, node_id="bench-rts"),
        bench_policy(),
        MemorySink(),
    )
    await node.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY", flush=True)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            print(json.dumps(report(node)), flush=True)
    await node.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rtmp-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(args.rtmp_port, args.http_port))
