"""Our media node alone in a process, for bench/rts/run.py's viewer count.

Signing is off and RTS on; the node binds 127.0.0.1, so its ICE candidates
are loopback. Prints READY once it listens, then every second one JSON line
with what its RTS sources did (frames made, viewers, frames dropped and
skips over all viewers, and its resident memory). SIGTERM or SIGINT stops
it. `--fast-path on|off` sets the node's `rts_fast_path` (issue 18);
default: the node's default. `--udp-gso on|off`: the native sender's UDP
GSO (default on). `--timings`: each second's line also says how long the
loop spent fanning each video frame and Opus packet out to the viewers,
and in the garbage collector (calls, mean and longest ms).
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.fanout.node_runner import cli  # noqa: E402
from livecenter.media.node import MediaNode  # noqa: E402
from livecenter.media.rts.media import RtsSource  # noqa: E402

_last = [time.monotonic(), time.process_time()]


class Timings:
    """How long the loop spent in each call of some functions, and in the
    garbage collector, since the last report: (count, total s, longest s)."""

    def __init__(self) -> None:
        self.spans: dict[str, list[float]] = {}

    def add(self, name: str, seconds: float) -> None:
        span = self.spans.setdefault(name, [0, 0.0, 0.0])
        span[0] += 1
        span[1] += seconds
        span[2] = max(span[2], seconds)

    def wrap(self, cls, name: str, label: str) -> None:
        """Time `cls.name` (a method called on the loop) under `label`."""
        original = getattr(cls, name)

        def timed(*args, **kwargs):
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(label, time.perf_counter() - began)

        setattr(cls, name, timed)

    def watch_gc(self) -> None:
        began = [0.0]

        def callback(phase: str, info: dict) -> None:
            if phase == "start":
                began[0] = time.perf_counter()
            else:
                self.add(f"gc{info['generation']}", time.perf_counter() - began[0])

        gc.callbacks.append(callback)

    def report(self) -> dict:
        """{label: [calls, mean ms, longest ms]} since the last report."""
        out = {
            label: [count, round(1000 * total / count, 2), round(1000 * longest, 2)]
            for label, (count, total, longest) in self.spans.items()
            if count
        }
        self.spans.clear()
        return out


# `--timings`: a frame's fan-out to every viewer (a video access unit, an
# Opus packet: RtsSource's `_video_out`, `_audio_out`) and the collector's
# pauses, as the loop spent them; off by default (two clock reads a frame).
TIMINGS = Timings()


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
            "rss_kib": _rss_kib(), "loop_lag_ms": round(node.loop_lag.lag_s(now) * 1000, 1),
            "loop_lag_worst_ms": round(node.loop_lag.worst_s(now) * 1000, 1), "timings": TIMINGS.report()}  # fmt: skip


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
    if "--timings" in sys.argv:
        sys.argv.remove("--timings")
        TIMINGS.wrap(RtsSource, "_video_out", "video_fanout")
        TIMINGS.wrap(RtsSource, "_audio_out", "audio_fanout")
        TIMINGS.watch_gc()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    cli(__doc__, node_id="bench-rts", rts_enabled=True, every_second=print_report, rts_fast_path=fast_path)
