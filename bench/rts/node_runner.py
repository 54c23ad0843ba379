"""Our media node alone in a process, for bench/rts/run.py's viewer count.

Signing is off and RTS on; the node binds 127.0.0.1, so its ICE candidates
are loopback. Prints READY once it listens, then every second one JSON line
with what its RTS sources did (frames made, viewers, frames dropped and
skips over all viewers, and its resident memory). SIGTERM or SIGINT stops
it. `--fast-path on|off` sets the node's `rts_fast_path` (issue 18);
default: the node's default. `--udp-gso on|off`: the native sender's UDP
GSO (default on).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.fanout.node_runner import cli  # noqa: E402
from livecenter.media.node import MediaNode  # noqa: E402

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
            "dropped": dropped, "skips": skips, "max_queued": queued, "cpu": round(percent, 1),
            "rss_kib": _rss_kib()}  # fmt: skip


def _rss_kib() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() // 1024


def print_report(node: MediaNode) -> None:
    print(json.dumps(report(node)), flush=True)


if __name__ == "__main__":
    fast_path = None
    if "--fast-path" in sys.argv:
        at = sys.argv.index("--fast-path")
        fast_path = {"on": True, "off": False}[sys.argv[at + 1]]
        del sys.argv[at : at + 2]
    if "--udp-gso" in sys.argv:
        # The native sender's UDP GSO (_rtssend.c), for an A/B of it.
        at = sys.argv.index("--udp-gso")
        from livecenter.media.rts import srtp

        if srtp.native is None:
            sys.exit("--udp-gso: the native sender is not built (make native)")
        srtp.native.gso({"on": True, "off": False}[sys.argv[at + 1]])
        del sys.argv[at : at + 2]
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    cli(__doc__, node_id="bench-rts", rts_enabled=True, every_second=print_report, rts_fast_path=fast_path)
