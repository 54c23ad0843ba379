"""Soak: the whole product under steady churn for --minutes, sampled each minute.

    .venv/bin/python bench/soak/run.py --minutes 30 --publishers 20 --viewers 1000 \\
        --json /tmp/soak.json --plot /tmp/soak.png

Started as an operator would, in a temporary directory: a fresh data dir
(SQLite), `manage.py migrate`, an operator, an ingest and a streaming domain,
recording (MP4) and snapshots on every stream's app, and a transcoding
template on the `--transcoded` first streams only (their own app); then
`manage.py runall` (console and media node in one process, the Celery worker
as its child), so the node and the worker are separate PIDs to sample.

Load, all on loopback:
- `--publishers` ffmpeg processes publishing a prepared clip in real time
  (`-re -stream_loop -1 -c copy`), over RTMP, and the last `--srt-publishers`
  of them as MPEG-TS over SRT to the URL the console hands out;
- `--viewers` viewers that join and leave all the time (each session lasts
  a random 20-120 s, then the slot opens a new one), split over RTMP and
  HTTP-FLV (viewers.c, which parses every tag/message and checks the video
  timestamps' continuity), HLS and LL-HLS (hls_viewers.py: media sequence
  and part continuity) and RTS/WHEP (rts_viewers.py: frames received against
  frames sent; at most --rts-viewers, on two streams, as aiortc costs CPU).

Each --sample-seconds (default 60) it records, for the node and the worker:
RSS, open descriptors, threads, and the node's asyncio tasks (`GET
/_node/status`, loopback only), and the rows of every database table.

Pass (bench/README.md, "bench/soak"):
- after --warmup-minutes, no process figure (RSS, descriptors, threads,
  tasks) grows more than 5 % over its first post-warm-up sample (the node's
  descriptors and tasks: with time, beside what its live connections hold,
  CONNECTION_FIGURES), and no
  table other than the history ones (HISTORY_TABLES: one row per recording,
  snapshot, session or sample, growing with time by design) grows more than
  5 % either;
- no viewer session that kept up (not cut by the server) lost a frame;
- every recording file is complete (closed, on disk, no jump in its video
  timestamps) and decodes without an error, and each stream's files add up
  to the time it was published, within RECORDED_TOLERANCE.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import Processes, free_port, log, wait_port  # noqa: E402
from bench.fanout.run import children, flv_get_blob  # noqa: E402
from livecenter.media import amf0  # noqa: E402
from livecenter.media.rtmp import RtmpChunkWriter  # noqa: E402

PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
USERNAME, PASSWORD = "soak", "soak-pass-123"
PUSH, PLAY = "push.soak.test", "play.soak.test"
APP, TRANSCODED_APP, TEMPLATE = "live", "tc", "soak240"
GROWTH_LIMIT = 0.05
# A stream's recordings may miss this much of its published time: (seconds,
# fraction), the larger. The seconds are the job attaching after the stream
# goes live (3-5 s in the short runs) and the publisher's last second.
RECORDED_TOLERANCE = (6.0, 0.01)
# Tables that gain rows with time by design: one per recording file,
# snapshot, publish session, control event, or monitoring sample (pruned
# after LIVECENTER_MONITORING_RETENTION_HOURS, set short here so it levels
# off inside the warm-up). Their rows are reported, not held to the limit.
HISTORY_TABLES = {
    "streams_recording",
    "streams_snapshot",
    "streams_publishsession",
    "streams_streamcontrolevent",
    "streams_mediajob",
    "monitoring_streamsample",
    "django_session",
}
PROCESS_FIGURES = ("rss_kib", "fds", "threads", "tasks")
# The node's figures that follow its live connections (a descriptor and some
# tasks each): the admission gauge lets viewers in and out all run long, so
# their level moves with the connections admitted at the time, not with a
# leak. Their growth is the time trend left once the connections are
# accounted for (connection_adjusted_growth).
CONNECTION_FIGURES = ("fds", "tasks")
# hls_viewers.py's request latency histogram buckets (upper bounds, ms).
LATENCY_BUCKETS_MS = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)
CLK_TCK = os.sysconf("SC_CLK_TCK")

SETUP_SCRIPT = """
import json
from django.contrib.auth import get_user_model
from domains import services
from mediajobs import services as media_services
from streams.player import via_media_host
a = json.loads({args!r})
owner = get_user_model().objects.create_user(a["username"], password=a["password"])
services.add_domain(owner, a["push"], "ingest", "overseas", "ap-southeast-1")
play = services.add_domain(owner, a["play"], "streaming", "overseas", "ap-southeast-1")
services.associate_ingest(play, a["push"])
for app in (a["app"], a["tc_app"]):
    media_services.set_record_config(owner, a["push"], app, cycle_seconds=a["cycle"], format="mp4")
    media_services.set_snapshot_config(owner, a["push"], app, interval_seconds=a["snapshot"])
media_services.add_template(owner, a["push"], a["tc_app"], a["template"], short_side=240, video_bitrate_kbps=300,
                            fps=a["fps"], gop_seconds=1, lazy=False)
out = []
for app, stream, template in a["streams"]:
    u = services.generate_urls(owner, a["push"], app, stream, template=template)
    local = lambda url, d: via_media_host(url, "127.0.0.1", d)
    out.append({{"app": app, "stream": stream, "template": template,
                "ingest": local(u.ingest["rtmp"], u.ingest_domain), "srt": u.ingest["srt"],
                **{{k: local(u.playback[k], u.streaming_domain) for k in ("rtmp", "flv", "m3u8", "whep")}}}})
print("URLS " + json.dumps(out))
"""


# --- preparing ---------------------------------------------------------------------


def make_clip(path: Path, size: str, fps: int, bitrate: str) -> None:
    """A 24 s H.264 (1 s GOP, no B-frames, CBR) + AAC clip in FLV."""
    cmd = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-t", "24",
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-bf", "0",
        "-g", str(fps), "-keyint_min", str(fps), "-sc_threshold", "0",
        "-b:v", bitrate, "-minrate", bitrate, "-maxrate", bitrate, "-bufsize", bitrate,
        "-x264-params", "nal-hrd=cbr",
        "-c:a", "aac", "-b:a", "64k",
        "-f", "flv", str(path),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=300)


def rtmp_play_blob(url: str) -> bytes:
    """What an RTMP player sends after the handshake (connect, createStream,
    Set Buffer Length, play), pipelined, for a signed play URL."""
    scheme_host, _, rest = url.partition("://")[2].partition("/")
    app, _, name = rest.partition("/")
    port = scheme_host.rpartition(":")[2]
    writer = RtmpChunkWriter()
    connect = {
        "app": app, "flashVer": "LNX 9,0,124,2", "tcUrl": f"rtmp://127.0.0.1:{port}/{app}", "fpad": False,
        "capabilities": 15.0, "audioCodecs": 4071.0, "videoCodecs": 252.0, "videoFunction": 1.0,
    }  # fmt: skip
    blob = writer.write(3, 20, 0, 0, amf0.encode("connect", 1.0, connect))
    blob += writer.write(3, 20, 0, 0, amf0.encode("createStream", 2.0, None))
    blob += writer.write(2, 4, 0, 0, (3).to_bytes(2, "big") + (1).to_bytes(4, "big") + (3000).to_bytes(4, "big"))
    blob += writer.write(8, 20, 1, 0, amf0.encode("play", 3.0, None, name, -2000.0))
    return blob


# --- processes ---------------------------------------------------------------------


def manage(env: dict, *args: str) -> str:
    out = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"manage.py {args[0]} failed: {out.stderr[-3000:]}")
    return out.stdout


def last_stats(path: Path) -> dict | None:
    """The last STATS line a viewer process wrote."""
    if not path.exists():
        return None
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("STATS ")]
    return json.loads(lines[-1][6:]) if lines else None


# --- sampling ----------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def proc_figures(pid: int) -> dict:
    figures = {"pid": pid, "fds": len(os.listdir(f"/proc/{pid}/fd")), "cpu_s": cpu_seconds(pid)}
    # The main thread (the node's event loop): seconds on a CPU and seconds runnable but waiting for one
    # (/proc schedstat). Both together near the whole interval: the loop is never idle, it is saturated.
    with contextlib.suppress(OSError, ValueError):
        run_ns, wait_ns = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[:2]
        figures["main_run_s"], figures["main_wait_s"] = int(run_ns) / 1e9, int(wait_ns) / 1e9
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            figures["rss_kib"] = int(line.split()[1])
        elif line.startswith("Threads:"):
            figures["threads"] = int(line.split()[1])
    return figures


def node_status(http_port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/_node/status", timeout=30) as response:
        return json.loads(response.read())


def table_rows(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        query = "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        names = [r[0] for r in conn.execute(query)]
        return {name: conn.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0] for name in sorted(names)}
    finally:
        conn.close()


def child_pid(runall_pid: int, marker: bytes) -> int | None:
    """runall supervises its children (the server, `runall --serve`, and the
    Celery worker) and restarts one that dies: look them up every sample."""
    for pid in children(runall_pid):
        try:
            if marker in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return None


def worker_pid(runall_pid: int) -> int | None:
    return child_pid(runall_pid, b"celery")


def server_pid(runall_pid: int) -> int:
    return child_pid(runall_pid, b"--serve") or runall_pid


def machine_cpu_s() -> dict[str, float]:
    """CPU seconds of the whole machine since boot (/proc/stat): busy, and
    the part of it at a positive nice (other people's niced work)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return {"busy": (user + nice + system + irq + softirq + steal) / CLK_TCK, "nice": nice / CLK_TCK}


def take_sample(began: float, runall_pid: int, http_port: int, db: Path, workdir: Path, clients: dict) -> dict:
    """One sample. CPU is in seconds since the start of each process: the
    load generators' (`clients`) too, to tell a starved client from a slow
    node, and the machine's, to tell both from a full machine."""
    sample = {"minute": round((time.monotonic() - began) / 60, 2), "machine_cpu_s": machine_cpu_s()}
    sample["clients_cpu_s"] = {}
    for name, proc in clients.items():
        try:
            sample["clients_cpu_s"][name] = cpu_seconds(proc.pid)
        except OSError:
            pass
    status = node_status(http_port)
    sample["node"] = {**proc_figures(server_pid(runall_pid)), "tasks": status["tasks"],
                      "connections": status["connections"], "viewers": status["viewers"],
                      "streams": status["streams"], "loop_lag_ms": status.get("loop_lag_ms"),
                      "refused": status.get("refused", {}), "malloc": status.get("malloc"),
                      "malloc_trim_ms": status.get("malloc_trim_ms")}  # fmt: skip
    wpid = worker_pid(runall_pid)
    sample["worker"] = proc_figures(wpid) if wpid else {}
    sample["rows"] = table_rows(db)
    sample["viewers"] = {name: last_stats(workdir / f"viewers-{name}.log") for name in VIEWER_KINDS}
    return sample


VIEWER_KINDS = ("rtmp", "flv", "hls", "llhls", "rts")


def malloc_note(malloc: dict | None, trim_ms: float | None = None) -> str:
    """The node's C allocator (livecenter/media/allocator.py): RSS that grows
    with `free` is kept by the allocator, not by live objects; and how long
    its last trim held the loop."""
    if not malloc:
        return ""
    mib = {k: v / 1048576 for k, v in malloc.items()}
    trimmed = f", last trim {trim_ms} ms" if trim_ms is not None else ""
    return (f"; malloc heap {mib['heap_bytes']:.0f} MiB (in use {mib['in_use_bytes']:.0f}, free"
            f" {mib['free_bytes']:.0f}), mmapped {mib['mmapped_bytes']:.0f} MiB{trimmed}")  # fmt: skip


# --- verdict -----------------------------------------------------------------------


def growth(samples: list[dict], warmup_minutes: float, window: int = 3) -> dict:
    """Per figure: its level just after the warm-up and at the end (each the
    median of `window` samples, as viewers' churn moves descriptors, tasks
    and connections from one sample to the next), the peak, and the growth
    from the first level to the last (a fraction)."""
    after = [s for s in samples if s["minute"] >= warmup_minutes]
    out = {}
    if len(after) < 2:
        return out
    window = max(1, min(window, len(after) // 2))
    head, tail = after[:window], after[-window:]

    def level(group: list[dict], part: str, figure: str) -> float:
        return statistics.median(s[part].get(figure, 0) for s in group)

    for proc in ("node", "worker"):
        for figure in PROCESS_FIGURES:
            if any(s[proc].get(figure) is None for s in after):
                continue
            a, b = level(head, proc, figure), level(tail, proc, figure)
            peak = max(s[proc][figure] for s in after)
            out[f"{proc}.{figure}"] = {"first": a, "last": b, "peak": peak, "growth": (b - a) / max(a, 1)}
            if proc == "node" and figure in CONNECTION_FIGURES:
                adjusted = connection_adjusted_growth(after, figure)
                if adjusted is not None:
                    out[f"{proc}.{figure}"].update(raw_growth=(b - a) / max(a, 1), **adjusted)
    for table in after[-1]["rows"]:
        a, b = level(head, "rows", table), level(tail, "rows", table)
        history = table in HISTORY_TABLES
        out[f"rows.{table}"] = {"first": a, "last": b, "growth": (b - a) / max(a, 1), "history": history}
    return out


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float] | None:
    """Gaussian elimination with partial pivoting; None when singular."""
    n = len(vector)
    rows = [row[:] + [v] for row, v in zip(matrix, vector, strict=True)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(rows[r][col]))
        if abs(rows[pivot][col]) < 1e-9:
            return None
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(n):
            if r != col:
                factor = rows[r][col] / rows[col][col]
                rows[r] = [x - factor * y for x, y in zip(rows[r], rows[col], strict=True)]
    return [rows[i][n] / rows[i][i] for i in range(n)]


def connection_adjusted_growth(samples: list[dict], figure: str) -> dict | None:
    """The node's `figure` fitted by least squares as a + b * connections +
    c * minute over `samples`: `c` over the span, against the level the fit
    gives at the start with the run's mean connections, is the growth with
    time that the live connections do not explain (a leak grows with time at
    any connection count; churn moves the figure with the connections only).
    None when the samples cannot separate the two (too few, or a constant
    connection count: then the plain growth stands)."""
    points = [(sum(s["node"]["connections"].values()), s["minute"], s["node"][figure]) for s in samples]
    if len(points) < 5:
        return None
    sums = [[0.0] * 3 for _ in range(3)]
    rhs = [0.0] * 3
    for conns, minute, y in points:
        x = (1.0, float(conns), float(minute))
        for i in range(3):
            rhs[i] += x[i] * y
            for j in range(3):
                sums[i][j] += x[i] * x[j]
    fit = _solve(sums, rhs)
    if fit is None:
        return None
    a, per_connection, per_minute = fit
    mean_conns = statistics.fmean(p[0] for p in points)
    start, span = points[0][1], points[-1][1] - points[0][1]
    base = a + per_connection * mean_conns + per_minute * start
    return {
        "growth": per_minute * span / max(base, 1.0),
        "per_connection": round(per_connection, 3),
        "per_minute": round(per_minute, 3),
    }


def video_jumps(file: Path, max_step_s: float = 1.0) -> list[str]:
    """Steps between consecutive video packets' timestamps over `max_step_s`
    (media missing inside the file)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time",
                          "-of", "csv=p=0", str(file)], capture_output=True, text=True)  # fmt: skip
    times = sorted(float(t) for t in out.stdout.split() if t not in ("", "N/A"))
    return [f"{a:.2f}->{b:.2f}" for a, b in zip(times, times[1:], strict=False) if b - a > max_step_s]


def check_recordings(db: Path, recordings_dir: Path, published: dict[str, float]) -> tuple[list[dict], list[dict]]:
    """Each file: closed, on disk, no jump in its video timestamps, decodes
    without an error. Each stream: its files add up to the time it was
    published (`published`: seconds by stream name), within RECORDED_TOLERANCE."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    rows = conn.execute("SELECT id, app, stream, path, ended_at FROM streams_recording ORDER BY id").fetchall()
    conn.close()

    def check(row) -> dict:
        rid, app, stream, path, ended = row
        file = recordings_dir / path
        result = {"id": rid, "stream": f"{app}/{stream}", "path": path, "closed": ended is not None,
                  "exists": file.exists(), "probe_seconds": None}  # fmt: skip
        if not file.exists():
            result["ok"] = False
            return result
        probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(file)],
                               capture_output=True, text=True)  # fmt: skip
        try:
            result["probe_seconds"] = round(float(json.loads(probe.stdout)["format"]["duration"]), 2)
        except (KeyError, ValueError):
            pass
        result["jumps"] = video_jumps(file)
        decode = subprocess.run(["ffmpeg", "-v", "error", "-i", str(file), "-f", "null", "-"],
                                capture_output=True, text=True)  # fmt: skip
        result["decode_errors"] = decode.stderr.strip()[:300]
        result["ok"] = bool(
            result["closed"] and result["probe_seconds"] and not result["jumps"]
            and decode.returncode == 0 and not result["decode_errors"]
        )  # fmt: skip
        return result

    with ThreadPoolExecutor(max(1, (os.cpu_count() or 2))) as pool:
        files = list(pool.map(check, rows))
    streams = []
    for name, seconds in sorted(published.items()):
        recorded = sum(f["probe_seconds"] or 0 for f in files if f["stream"] == name)
        ok = abs(recorded - seconds) <= max(RECORDED_TOLERANCE[0], RECORDED_TOLERANCE[1] * seconds)
        streams.append({"stream": name, "published_seconds": round(seconds, 1), "recorded_seconds": round(recorded, 1),
                        "files": sum(f["stream"] == name for f in files), "ok": ok})  # fmt: skip
    return files, streams


def verdict(samples: list[dict], warmup: float, recordings: list[dict], streams: list[dict], viewers: dict) -> dict:
    grown = growth(samples, warmup)
    too_much = {k: v for k, v in grown.items() if not v.get("history") and v["growth"] > GROWTH_LIMIT}
    lost = {}
    for kind, stats in viewers.items():
        if not stats:
            lost[kind] = "no report"
            continue
        if kind in ("rtmp", "flv"):
            if stats["sessions_with_gaps"] or stats["open_gaps"]:
                lost[kind] = f"{stats['sessions_with_gaps']} sessions with gaps ({stats['gaps']} gaps)"
        elif kind in ("hls", "llhls"):
            # hls_viewers.py's rule: a node loss is media the node listed and then failed to serve, or dropped
            # early, to a viewer that kept up; a viewer that fell out of the window resyncs, reported apart.
            if stats["sessions_with_node_losses"]:
                lost[kind] = f"{stats['sessions_with_node_losses']} sessions lost media the node had listed"
        elif stats["short_sessions"]:
            lost[kind] = f"{stats['short_sessions']} sessions got < 90 % of the frames"
    bad_recordings = [r for r in recordings if not r["ok"]]
    short_streams = [s for s in streams if not s["ok"]]
    criteria = {
        "growth": not too_much and bool(grown),
        "lost_frames": not lost,
        "recordings": not bad_recordings and not short_streams and bool(recordings),
    }
    return {
        "growth_over_limit": too_much,
        "lost_frames": lost,
        "bad_recordings": bad_recordings,
        "incompletely_recorded_streams": short_streams,
        "recordings": len(recordings),
        "criteria": criteria,
        "passed": all(criteria.values()),
    }


def percentile_ms(hist: list[int], q: float) -> str:
    """The bucket (hls_viewers.py LATENCY_BUCKETS_MS) holding the q-quantile of a histogram."""
    total = sum(hist)
    if not total:
        return "-"
    seen = 0
    for i, count in enumerate(hist):
        seen += count
        if seen >= q * total:
            return f"<{LATENCY_BUCKETS_MS[i]}" if i < len(LATENCY_BUCKETS_MS) else f">{LATENCY_BUCKETS_MS[-1]}"
    return "-"


def viewers_table(viewers: dict) -> str:
    """Per protocol: sessions, refusals (each followed by a back-off), what
    the verdict judges (media lost by a viewer that kept up) and the rest."""
    lines = [
        "| protocol | sessions | refused | lost media (judged) | fell behind (not judged) | other |",
        "| --- | ---: | ---: | --- | --- | --- |",
    ]
    for kind, st in viewers.items():
        if not st:
            lines.append(f"| {kind} | no report | | | | |")
            continue
        behind = ""
        if kind in ("rtmp", "flv"):
            lost = f"{st['sessions_with_gaps']} with a gap ({st['gaps']} gaps; {st['open_gaps']} in open sessions)"
            other = (f"cut by the node {st['cut_by_server']}, never played {st['never_played']}, largest step"
                     f" {st['worst_step_ms']} ms, {st['video_frames']:,} video frames")  # fmt: skip
        elif kind in ("hls", "llhls"):
            lat = st["latency_ms"]
            lost = f"{st['sessions_with_node_losses']} ({st['node_losses']} node losses)"
            behind = (f"{st['sessions_resynced']} sessions resynced ({st['resyncs']} resyncs, of them"
                      f" {st['resyncs_client_starved']} with this client's loop > 0.5 s late); {st['late_404']}"
                      f" 404s asked after the retention")  # fmt: skip
            other = (f"{st['fetched']:,} fetches, {st['catch_up_segments']} catch-up segments, errors {st['errors']},"
                     f" requests > 2 s {st['slow_requests']} (max {st['max_request_s']} s); ms p50/p99: part"
                     f" {percentile_ms(lat['part'], 0.5)}/{percentile_ms(lat['part'], 0.99)}, segment"
                     f" {percentile_ms(lat['segment'], 0.5)}/{percentile_ms(lat['segment'], 0.99)}, playlist"
                     f" {percentile_ms(lat['playlist'], 0.5)}/{percentile_ms(lat['playlist'], 0.99)}, blocking"
                     f" {percentile_ms(lat['blocking'], 0.5)}/{percentile_ms(lat['blocking'], 0.99)}; client loop"
                     f" late p99 {percentile_ms(st['client_loop_lag_ms'], 0.99)} ms, max"
                     f" {st['client_loop_lag_max_ms']} ms")  # fmt: skip
        else:
            lost = f"{st['short_sessions']} got < 90 % of the frames"
            other = (f"{st['video_frames']:,} of {st['expected_frames']:,} frames expected, never played"
                     f" {st['never_played']}, errors {st['errors']}")  # fmt: skip
        lines.append(f"| {kind} | {st['sessions']:,} | {st.get('refused', 0):,} | {lost} | {behind} | {other} |")
    return "\n".join(lines)


def verdict_text(result: dict, grown: dict) -> str:
    """The verdict, criterion by criterion (bench/README.md, "bench/soak")."""
    v = result["verdict"]
    ok = {True: "PASS", False: "FAIL"}
    judged = {k: g for k, g in grown.items() if not g.get("history")}
    largest = max(judged.items(), key=lambda kv: kv[1]["growth"], default=None)
    lines = ["VERDICT"]
    growth_note = f"largest {largest[0]} {largest[1]['growth']:+.1%}" if largest else "too few samples"
    over = ", ".join(f"{k} {g['growth']:+.1%}" for k, g in v["growth_over_limit"].items())
    lines.append(f"  1. nothing grows > {GROWTH_LIMIT:.0%} after the warm-up: {ok[v['criteria']['growth']]}"
                 f" ({over or growth_note})")  # fmt: skip
    lines.append(f"  2. no viewer that kept up lost a frame: {ok[v['criteria']['lost_frames']]}")
    for kind in result.get("viewers", {}):
        lines.append(f"       {kind}: {ok[kind not in v['lost_frames']]}{'  ' + v['lost_frames'].get(kind, '')}")
    short = v["incompletely_recorded_streams"]
    lines.append(f"  3. every recording complete and covering its stream: {ok[v['criteria']['recordings']]}"
                 f" ({v['recordings']} files, {len(v['bad_recordings'])} bad, {len(short)} streams short)")  # fmt: skip
    lines.append(f"  => {'PASSED' if v['passed'] else 'FAILED'}")
    return "\n".join(lines)


# --- report ------------------------------------------------------------------------


def plot(samples: list[dict], warmup: float, path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plot (the table is in the output)")
        return False
    minutes = [s["minute"] for s in samples]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    panels = [("rss_kib", "RSS (MiB)", 1 / 1024), ("fds", "descriptors", 1), ("threads", "threads", 1)]
    for ax, (figure, label, scale) in zip(axes[0], panels, strict=True):
        for proc in ("node", "worker"):
            ax.plot(minutes, [s[proc].get(figure, 0) * scale for s in samples], marker=".", label=proc)
        ax.set_title(label)
    axes[1][0].plot(minutes, [s["node"]["tasks"] for s in samples], marker=".", label="node")
    axes[1][0].set_title("asyncio tasks (node)")
    rows_ax = axes[1][1]
    # The tables whose rows change (the static ones would only crowd the panel).
    tables = sorted({t for s in samples for t in s["rows"] if s["rows"][t] != samples[0]["rows"].get(t)})
    for table in tables:
        rows_ax.plot(minutes, [s["rows"].get(table, 0) for s in samples], marker=".", label=table)
    rows_ax.set_yscale("symlog")
    rows_ax.set_title("database rows (tables that change)")
    rows_ax.legend(fontsize=6)
    conn_ax = axes[1][2]
    kinds = sorted({k for s in samples for k in s["node"]["connections"]})
    for kind in kinds:
        conn_ax.plot(minutes, [s["node"]["connections"].get(kind, 0) for s in samples], marker=".", label=kind)
    conn_ax.set_title("node connections")
    for ax in [*axes[0], *axes[1]]:
        ax.axvline(warmup, color="grey", linestyle=":")
        ax.set_xlabel("minute")
        if ax is not rows_ax:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


def table(samples: list[dict]) -> str:
    lines = [
        "| minute | node RSS MiB | node fds | node threads | node tasks | worker RSS MiB | worker fds | worker threads"
        " | CPU (cores) | connections | rows (non-empty tables) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for s in samples:
        n, w = s["node"], s["worker"]
        rows = ", ".join(f"{t.split('_', 1)[1]} {c}" for t, c in s["rows"].items() if c and not t.startswith("auth"))
        conns = ", ".join(f"{k} {v}" for k, v in sorted(n["connections"].items()))
        cpu = ", ".join(f"{k.removeprefix('viewers-')} {v}" for k, v in s.get("cpu_share", {}).items())
        lines.append(
            f"| {s['minute']:.1f} | {n['rss_kib'] / 1024:.0f} | {n['fds']} | {n['threads']} | {n['tasks']} |"
            f" {w.get('rss_kib', 0) / 1024:.0f} | {w.get('fds', '')} | {w.get('threads', '')} | {cpu} | {conns} |"
            f" {rows} |"
        )
    return "\n".join(lines)


def latency_table(samples: list[dict], kind: str = "llhls") -> str:
    """Per sample interval: the node's loop lag and CPU, refusals, and what
    the (LL-)HLS viewers saw: part latency, resyncs (fell behind), node
    losses, this client's own loop lateness. Tells a slow node from a
    starved client (hls_viewers.py)."""
    lines = [
        f"| minute | machine busy (niced) | node loop lag ms | node CPU | node loop on CPU + waiting for one |"
        f" refused (node) | {kind} CPU |"
        f" {kind} loop late p99 ms | part ms p50/p90/p99 | parts > 200 ms | catch-up segments | resyncs |"
        " node losses |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for before, after in zip(samples, samples[1:], strict=False):
        a, b = (before["viewers"] or {}).get(kind), (after["viewers"] or {}).get(kind)
        if not a or not b or "latency_ms" not in b:
            continue
        parts = [y - x for x, y in zip(a["latency_ms"]["part"], b["latency_ms"]["part"], strict=True)]
        loop = [y - x for x, y in zip(a["client_loop_lag_ms"], b["client_loop_lag_ms"], strict=True)]
        over = sum(parts[LATENCY_BUCKETS_MS.index(200) + 1 :]) / max(1, sum(parts))
        refused = sum(after["node"].get("refused", {}).values()) - sum(before["node"].get("refused", {}).values())
        share = after.get("cpu_share", {})
        lines.append(
            f"| {after['minute']:.1f} | {share.get('machine-busy', '')} ({share.get('machine-nice', '')}) |"
            f" {after['node'].get('loop_lag_ms')} | {share.get('node', '')} |"
            f" {share.get('node-loop-run', '')} + {share.get('node-loop-wait', '')} | {refused} |"
            f" {share.get('viewers-' + kind, '')} | {percentile_ms(loop, 0.99)} |"
            f" {'/'.join(percentile_ms(parts, q) for q in (0.5, 0.9, 0.99))} | {over:.1%} |"
            f" {b['catch_up_segments'] - a['catch_up_segments']} | {b['resyncs'] - a['resyncs']} |"
            f" {b['node_losses'] - a['node_losses']} |"
        )
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------


def split_viewers(total: int, rts_max: int) -> dict[str, int]:
    rts = min(rts_max, total // 10)
    rest = total - rts
    out = {"rtmp": int(rest * 0.35), "flv": int(rest * 0.35), "hls": int(rest * 0.15)}
    out["llhls"] = rest - sum(out.values())
    out["rts"] = rts
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--publishers", type=int, default=20)
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--rts-viewers", type=int, default=50, help="at most this many of the viewers over RTS")
    parser.add_argument(
        "--srt-publishers",
        type=int,
        default=4,
        help="of the publishers, this many (the last ones) publish over SRT (default 4)",
    )
    parser.add_argument("--transcoded", type=int, default=1, help="streams with a transcoding template (default 1)")
    parser.add_argument("--warmup-minutes", type=float, help="default 5, or a third of --minutes if shorter than 15")
    parser.add_argument("--sample-seconds", type=float, default=60)
    parser.add_argument("--record-cycle", type=int, default=600, help="recording split, seconds (default 600)")
    parser.add_argument("--snapshot-seconds", type=int, default=10)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--bitrate", default="600k")
    parser.add_argument("--min-life", type=float, default=20, help="viewer session length, seconds: at least")
    parser.add_argument("--max-life", type=float, default=120, help="viewer session length, seconds: at most")
    parser.add_argument("--json", help="write every sample and the verdict here")
    parser.add_argument("--plot", help="write the curves here (PNG, matplotlib)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, recordings)")
    args = parser.parse_args()
    warmup = args.warmup_minutes if args.warmup_minutes is not None else (5 if args.minutes >= 15 else args.minutes / 3)
    for tool in ("ffmpeg", "ffprobe", "cc"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed (apt-get install ffmpeg gcc)")
    if not 0 <= args.transcoded <= args.publishers:
        sys.exit("--transcoded: between 0 and --publishers")
    if not 0 <= args.srt_publishers <= args.publishers - args.transcoded:
        sys.exit("--srt-publishers: between 0 and --publishers less --transcoded")

    workdir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    data = workdir / "data"
    rtmp_port, http_port, console_port, srt_port = free_port(), free_port(), free_port(), free_port()
    per_stream_jobs = 2  # a recording and a snapshot series
    env = {
        **os.environ,
        "LIVECENTER_DATA_DIR": str(data),
        "DJANGO_SETTINGS_MODULE": "livecenter.settings",
        "LIVECENTER_RTMP_PORT": str(rtmp_port),
        "LIVECENTER_SRT_PORT": str(srt_port),
        "LIVECENTER_HTTP_PORT": str(http_port),
        "LIVECENTER_MEDIA_HOST": "127.0.0.1",
        "LIVECENTER_PLAYER_MEDIA_HOST": "127.0.0.1",
        "LIVECENTER_CONSOLE_PORT": str(console_port),
        "LIVECENTER_NODE_ID": "bench-soak",
        "LIVECENTER_LOG_LEVEL": "WARNING",
        "LIVECENTER_WORKER_CONCURRENCY": str(args.publishers * per_stream_jobs + args.transcoded + 8),
        # Samples level off inside the warm-up (3 minutes kept, pruned every 30 s).
        "LIVECENTER_MONITORING_RETENTION_HOURS": str(min(3, warmup * 0.6) / 60),
        "LIVECENTER_MONITORING_PRUNE_SECONDS": "30",
        # Every viewer and publisher of the soak comes from loopback.
        "LIVECENTER_MEDIA_MAX_CONNECTIONS_PER_ADDRESS": "100000",
    }
    procs = Processes(workdir, env)
    counts = split_viewers(args.viewers, args.rts_viewers)
    seconds = args.minutes * 60
    # Viewers outlast the sampling, so the last sample is taken under the full load.
    viewer_seconds = seconds + 20
    samples: list[dict] = []
    publish_began: dict[str, float] = {}
    result: dict = {"args": vars(args), "warmup_minutes": warmup, "viewer_split": counts, "workdir": str(workdir)}
    try:
        log(f"soak: {args.publishers} publishers, viewers {counts}, {args.minutes} min, in {workdir}")
        clip = workdir / "clip.flv"
        make_clip(clip, args.size, args.fps, args.bitrate)
        binary = workdir / "viewers"
        subprocess.run(["cc", "-O2", "-Wall", "-o", str(binary), str(HERE / "viewers.c")], check=True)
        manage(env, "migrate", "--noinput")
        streams = [(TRANSCODED_APP if i < args.transcoded else APP, f"s{i:02d}", None) for i in range(args.publishers)]
        renditions = [(TRANSCODED_APP, f"s{i:02d}", TEMPLATE) for i in range(args.transcoded)]
        setup_args = {"username": USERNAME, "password": PASSWORD, "push": PUSH, "play": PLAY, "app": APP,
                      "tc_app": TRANSCODED_APP, "template": TEMPLATE, "cycle": args.record_cycle,
                      "snapshot": args.snapshot_seconds, "fps": args.fps,
                      "streams": [list(s) for s in streams + renditions]}  # fmt: skip
        out = manage(env, "shell", "-c", SETUP_SCRIPT.format(args=json.dumps(setup_args)))
        urls = json.loads(next(ln for ln in out.splitlines() if ln.startswith("URLS "))[5:])
        sources, rendition_urls = urls[: len(streams)], urls[len(streams) :]

        runall = procs.start("runall", [PYTHON, "manage.py", "runall", "--host", "127.0.0.1",
                                        "--port", str(console_port)])  # fmt: skip
        for port in (rtmp_port, http_port, console_port):
            wait_port(port, timeout=60)
        for i, u in enumerate(sources):
            if i >= len(sources) - args.srt_publishers:  # MPEG-TS over SRT, to the URL the console handed out
                target = ["-f", "mpegts", u["srt"].replace(f"srt://{PUSH}:", "srt://127.0.0.1:", 1)]
            else:
                target = ["-f", "flv", u["ingest"]]
            publish = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip),
                       "-c", "copy", *target]  # fmt: skip
            procs.start(f"publisher-{i:02d}", publish)
            publish_began[f"{u['app']}/{u['stream']}"] = time.monotonic()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and node_status(http_port)["streams"] < args.publishers + args.transcoded:
            time.sleep(1)
        log(f"live: {node_status(http_port)['streams']} streams (with renditions)")
        time.sleep(3)  # a GOP cached everywhere

        # Viewers, all for the soak's whole length.
        began = time.monotonic()
        played = sources + rendition_urls
        for kind in ("rtmp", "flv"):
            if not counts[kind]:
                continue
            blobs = workdir / f"blobs-{kind}"
            blobs.mkdir()
            for i, u in enumerate(played):
                if kind == "rtmp":
                    blob = rtmp_play_blob(u["rtmp"])
                else:
                    path = u["flv"].split("://", 1)[1].split("/", 1)[1]
                    blob = flv_get_blob(http_port, "/" + path)
                (blobs / f"blob-{i}").write_bytes(blob)
            procs.start(f"viewers-{kind}", [str(binary), "--mode", kind, "--port", str(rtmp_port if kind == "rtmp"
                        else http_port), "--n", str(counts[kind]), "--streams", str(len(played)), "--blobs",
                        str(blobs), "--min-life", str(args.min_life), "--max-life", str(args.max_life),
                        "--duration", str(viewer_seconds), "--report", "10", "--connect-rate", "100"])  # fmt: skip
        for kind in ("hls", "llhls"):
            if counts[kind]:
                (workdir / f"{kind}.json").write_text(json.dumps([u["m3u8"] for u in played]))
                procs.start(f"viewers-{kind}", [PYTHON, str(HERE / "hls_viewers.py"), "--urls",
                            str(workdir / f"{kind}.json"), "--mode", kind, "--count", str(counts[kind]),
                            "--min-life", str(args.min_life), "--max-life", str(args.max_life),
                            "--duration", str(viewer_seconds)])  # fmt: skip
        if counts["rts"]:
            # Two streams: each RTS stream costs the node an AAC-to-Opus transcoder.
            (workdir / "rts.json").write_text(json.dumps([u["whep"] for u in sources[-2:]]))
            procs.start("viewers-rts", [PYTHON, str(HERE / "rts_viewers.py"), "--urls", str(workdir / "rts.json"),
                        "--count", str(counts["rts"]), "--fps", str(args.fps), "--min-life", str(args.min_life),
                        "--max-life", str(args.max_life), "--duration", str(viewer_seconds)])  # fmt: skip

        db = data / "db.sqlite3"
        clients = {name: proc for name, proc in procs.running if name.startswith("viewers-")}
        next_sample = began
        while time.monotonic() < began + seconds:
            if runall.poll() is not None:
                raise RuntimeError(f"runall stopped: {procs.tail('runall')}")
            if time.monotonic() >= next_sample:
                sample = take_sample(began, runall.pid, http_port, db, workdir, clients)
                samples.append(sample)
                n, w = sample["node"], sample["worker"]
                if len(samples) > 1:
                    p, span = samples[-2], (sample["minute"] - samples[-2]["minute"]) * 60
                    cpu = {name: (sample[name]["cpu_s"] - p[name]["cpu_s"]) / span for name in ("node", "worker")
                           if sample[name] and p[name]}  # fmt: skip
                    cpu.update({name: (t - p["clients_cpu_s"].get(name, t)) / span
                                for name, t in sample["clients_cpu_s"].items()})  # fmt: skip
                    cpu.update({f"machine-{k}": (t - p["machine_cpu_s"][k]) / span
                                for k, t in sample["machine_cpu_s"].items()})  # fmt: skip
                    cpu.update({f"node-loop-{k}": (sample["node"][f"main_{k}_s"] - p["node"][f"main_{k}_s"]) / span
                                for k in ("run", "wait") if f"main_{k}_s" in sample["node"]
                                and sample["node"]["pid"] == p["node"].get("pid")})  # fmt: skip
                    sample["cpu_share"] = {k: round(v, 2) for k, v in cpu.items()}
                    log(f"  cpu (cores): {sample['cpu_share']}")
                log(f"  min {sample['minute']:5.1f}: node {n['rss_kib'] // 1024} MiB, {n['fds']} fds, {n['threads']}"
                    f" threads, {n['tasks']} tasks, {n['connections']}; worker {w.get('rss_kib', 0) // 1024} MiB,"
                    f" {w.get('fds')} fds, {w.get('threads')} threads; loop lag {n.get('loop_lag_ms')} ms,"
                    f" refused {n.get('refused')}{malloc_note(n.get('malloc'), n.get('malloc_trim_ms'))}")  # fmt: skip
                next_sample += args.sample_seconds
            time.sleep(1)
        samples.append(take_sample(began, runall.pid, http_port, db, workdir, clients))

        # Viewers end by themselves; then the publishers, so the recordings close.
        for name, proc in procs.running:
            if name.startswith("viewers-"):
                try:
                    proc.wait(90)
                except subprocess.TimeoutExpired:
                    procs.stop(proc)
        viewers = {kind: last_stats(workdir / f"viewers-{kind}.log") for kind in VIEWER_KINDS if counts[kind]}
        for name, proc in procs.running:
            if name.startswith("publisher-"):
                procs.stop(proc)
        stopped = time.monotonic()
        published = {name: stopped - began_at for name, began_at in publish_began.items()}
        log("publishers stopped; waiting for the recordings to close ...")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
            open_files = conn.execute("SELECT COUNT(*) FROM streams_recording WHERE ended_at IS NULL").fetchone()[0]
            conn.close()
            if not open_files:
                break
            time.sleep(2)
        procs.stop(runall)
        log("checking the recordings (ffprobe, full decode) ...")
        recordings, recorded_streams = check_recordings(db, data / "recordings", published)
        result.update(samples=samples, viewers=viewers, recordings=recordings, recorded_streams=recorded_streams)
        result["verdict"] = verdict(samples, warmup, recordings, recorded_streams, viewers)
    finally:
        procs.stop_all()
        if args.json:
            Path(args.json).write_text(json.dumps({**result, "samples": samples}, indent=1, default=str))
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"kept {workdir}")
    print(table(samples))
    print()
    if "verdict" not in result:
        sys.exit(1)
    print("viewers:", json.dumps(result["viewers"], indent=1))
    print()
    print(viewers_table(result["viewers"]))
    print()
    print(latency_table(samples))
    refused = samples[-1]["node"].get("refused", {}) if samples else {}
    print(f"node refusals: {refused} (loop lag at the end {samples[-1]['node'].get('loop_lag_ms')} ms)")
    print()
    grown = growth(samples, warmup)
    print("growth after warm-up (process figures; non-history tables):")
    for name, g in grown.items():
        if not g.get("history") and (g["first"] or g["last"]):
            adjusted = (
                f" (raw {g['raw_growth']:+.1%}; {g['per_connection']} per live connection,"
                f" {g['per_minute']:+} a minute beside them)"
                if "raw_growth" in g
                else ""
            )
            print(f"  {name}: {g['first']} -> {g['last']} ({g['growth']:+.1%}){adjusted}")
    bad = result["verdict"]["bad_recordings"]
    print(f"recordings: {len(result['recordings'])} files, bad: {len(bad)}")
    for r in bad[:10]:
        print("  ", r)
    for s in result["recorded_streams"]:
        print(
            f"  {s['stream']}: published {s['published_seconds']} s, recorded {s['recorded_seconds']} s"
            f" in {s['files']} files{'' if s['ok'] else '  <-- incomplete'}"
        )
    print()
    print(verdict_text(result, grown))
    if args.plot and samples:
        plot(samples, warmup, args.plot)
    sys.exit(0 if result["verdict"]["passed"] else 1)


if __name__ == "__main__":
    main()
