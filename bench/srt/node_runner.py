"""Our media node alone in a process, for bench/srt/run.py: SRT ingest on
--srt-port, signing off (bench/fanout/node_runner.py's domains). Prints READY
once it listens, then every second one JSON line with what SRT brought in:
connections, publishing streams, payload bytes received over the live
connections, and bytes the hub took. SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.fanout.node_runner import cli  # noqa: E402
from livecenter.media.node import MediaNode  # noqa: E402


def report(node: MediaNode) -> dict:
    srt = node.srt
    connections = list(srt.listener.connections.values()) if srt is not None else []
    hub_bytes = 0
    for key in node.hub.live_keys():
        stream = node.hub.stream(key)
        hub_bytes += stream.bytes_in if stream is not None else 0
    return {
        "t": time.time(),
        "connections": len(connections),
        "publishers": len(srt.publishers) if srt is not None else 0,
        "live": len(node.hub.live_keys()),
        "srt_bytes": sum(c.stats.bytes_received for c in connections),
        "packets_lost": sum(c.stats.packets_lost for c in connections),
        "packets_dropped": sum(c.stats.packets_dropped for c in connections),
        "hub_bytes": hub_bytes,
    }


def print_report(node: MediaNode) -> None:
    print(json.dumps(report(node)), flush=True)


if __name__ == "__main__":
    cli(__doc__, node_id="bench-srt", every_second=print_report)
