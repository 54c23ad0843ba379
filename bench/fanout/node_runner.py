"""Our media node alone in a process, for bench/fanout/run.py.

Signing is off on both domains (the bench measures fan-out, not MD5); the
publisher and the viewers name their domain with `domain=` as on a bare IP.
Prints READY once both servers listen; SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from livecenter.media.node import MediaNode, NodeConfig  # noqa: E402
from livecenter.media.policy import DomainConfig, MemoryPolicy, MemorySink  # noqa: E402

INGEST = "push.bench"
PLAY = "play.bench"
VALIDITY_SECONDS = 3600


def bench_policy(rts_enabled: bool = False) -> MemoryPolicy:
    return MemoryPolicy(
        domains={
            INGEST: DomainConfig(INGEST, "ingest", True, None, VALIDITY_SECONDS),
            PLAY: DomainConfig(
                PLAY, "streaming", True, None, VALIDITY_SECONDS, ingest_domain=INGEST, rts_enabled=rts_enabled
            ),
        }
    )


async def serve(
    rtmp_port: int,
    http_port: int,
    node_id: str = "bench",
    rts_enabled: bool = False,
    every_second=None,
    max_egress_mbps: float = 0.0,
    srt_port: int | None = None,
):
    """Run the node until SIGTERM or SIGINT; READY once it listens, then
    `every_second(node)` each second if given. The benches measure the node
    without a capacity (capacity.py) unless `max_egress_mbps` is given; it
    listens for SRT (UDP) on `srt_port` if given (0: a free port)."""
    config = NodeConfig(
        host="127.0.0.1",
        rtmp_port=rtmp_port,
        http_port=http_port,
        srt_port=srt_port,
        node_id=node_id,
        max_egress_mbps=max_egress_mbps,
        # Every bench viewer comes from loopback: no cap per address.
        max_connections_per_address=1_000_000,
    )
    node = MediaNode(
        config,
        bench_policy(rts_enabled),
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
            if every_second is not None:
                every_second(node)
    await node.stop()


def cli(description: str, **options) -> None:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rtmp-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--max-egress-mbps", type=float, default=0.0, help="the node's capacity; 0: none")
    parser.add_argument("--srt-port", type=int, help="also listen for SRT (UDP) here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(
        serve(args.rtmp_port, args.http_port, max_egress_mbps=args.max_egress_mbps, srt_port=args.srt_port, **options)
    )


if __name__ == "__main__":
    cli(__doc__)
