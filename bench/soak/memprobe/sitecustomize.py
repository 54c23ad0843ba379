"""A memory probe for the soak's node (bench/README.md, "Item 1, the node's
RSS growth"); a bench tool, not part of the product.

Put this directory on PYTHONPATH and set MEMPROBE_DIR: in `manage.py runall
--serve` only (the console and media node), a daemon thread appends to
MEMPROBE_DIR/probe.jsonl every MEMPROBE_SECONDS (default 30): RSS, the RSS
of the `[heap]`, anonymous and file mappings (/proc/self/smaps), glibc's
mallinfo2 and, every fourth time, object counts by type (gc.get_objects()).
MEMPROBE_TRIM_EVERY=N calls malloc_trim(0) every Nth time and records RSS
before and after (what the allocator held free). MEMPROBE_TRACEMALLOC=F
starts tracemalloc (F frames) after MEMPROBE_START seconds (default 60; the
start-up under tracemalloc outlasts the soak's wait for the ports) and dumps
a snapshot each time (snap-NNN.pickle; compare with
tracemalloc.Snapshot.load(...).compare_to(..., "traceback")). It slows the
node a great deal: a run with it tells where memory goes, not what the node
carries.

    MEMPROBE_DIR=/tmp/probe PYTHONPATH=bench/soak/memprobe MEMPROBE_SECONDS=20 MEMPROBE_TRIM_EVERY=15 \\
        flock /tmp/livecenter-bench.lock .venv/bin/python bench/soak/run.py --minutes 5
"""

import os
import sys

_dir = os.environ.get("MEMPROBE_DIR")
if _dir and "--serve" in sys.argv:
    import collections
    import ctypes
    import gc
    import json
    import threading
    import time

    class _MallInfo2(ctypes.Structure):
        _fields_ = [
            (n, ctypes.c_size_t)
            for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                      "keepcost")
        ]  # fmt: skip

    _libc = ctypes.CDLL("libc.so.6")
    _libc.mallinfo2.restype = _MallInfo2

    def _rss_kib() -> int:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

    def _smaps() -> dict:
        out: collections.Counter = collections.Counter()
        kind = None
        with open("/proc/self/smaps") as smaps:
            for line in smaps:
                parts = line.split()
                if ":" not in parts[0]:  # a mapping's first line
                    name = parts[5] if len(parts) > 5 else ""
                    kind = "heap" if name == "[heap]" else "anon" if not name else "other" if name[0] == "[" else "file"
                elif parts[0] == "Rss:":
                    out[kind] += int(parts[1])
        return {f"{k}_kib": v for k, v in out.items()}

    def _probe() -> None:
        interval = float(os.environ.get("MEMPROBE_SECONDS", "30"))
        trim_every = int(os.environ.get("MEMPROBE_TRIM_EVERY", "0"))
        frames = int(os.environ.get("MEMPROBE_TRACEMALLOC", "0"))
        if frames:
            import tracemalloc

            time.sleep(float(os.environ.get("MEMPROBE_START", "60")))
            tracemalloc.start(frames)
        i = 0
        while True:
            time.sleep(interval)
            i += 1
            try:
                m = _libc.mallinfo2()
                rec = {"i": i, "t": time.time(), "rss_kib": _rss_kib(), **_smaps(),
                       "malloc": {n: getattr(m, n) for n, _ in _MallInfo2._fields_}}  # fmt: skip
                if frames:
                    tracemalloc.take_snapshot().dump(os.path.join(_dir, f"snap-{i:03d}.pickle"))
                    rec["traced"] = tracemalloc.get_traced_memory()[0]
                if i % 4 == 0:
                    counts = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
                    rec["gc_counts"] = dict(counts.most_common(300))
                if trim_every and i % trim_every == 0:
                    before = _rss_kib()
                    _libc.malloc_trim(0)
                    rec["trim"] = {"before_kib": before, "after_kib": _rss_kib()}
                with open(os.path.join(_dir, "probe.jsonl"), "a") as f:
                    f.write(json.dumps(rec) + "\n")
            except Exception as exc:  # noqa: BLE001 - a probe must not stop the node
                with open(os.path.join(_dir, "probe.err"), "a") as f:
                    f.write(f"{exc!r}\n")

    threading.Thread(target=_probe, daemon=True, name="memprobe").start()
