"""Fan-out bench: viewers of one 2 Mbit/s stream a server holds on one core.

    .venv/bin/python bench/fanout/run.py            # the whole bench, <= 15 min
    .venv/bin/python bench/fanout/run.py --servers livecenter --protocols flv --start 200 --max 400
    .venv/bin/python bench/fanout/run.py --servers livecenter --protocols flv --start 4000 --max 4000 \
        --refine 0 --capacity-mbps 5000     # past the capacity: refused, and the admitted keep up

For each server and protocol it steps the number of viewers up (doubling,
then bisecting between the last pass and the first failure) and reports the
largest number with no viewer stalling. Each step starts the server afresh
pinned to core 0 (`taskset -c 0`), publishes a prepared 720p30 H.264 + AAC
clip into it in real time with `ffmpeg -re -stream_loop -1 -c copy`, and runs
the C load generator (loadgen.c) pinned to core 1 beside the publisher.

Servers: `livecenter` (our media node, bench/fanout/node_runner.py) over RTMP,
HTTP-FLV and HTTP-FLV over TLS (`https-flv`: TLS 1.3, the streaming domain's
P-256 certificate chosen by SNI, as a browser gets it), and `nginx-rtmp`
(Debian's nginx with libnginx-mod-rtmp) over RTMP only: it has no HTTP-FLV. See bench/README.md for what was measured.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import free_port, log, require_nginx_rtmp, wait_port  # noqa: E402
from livecenter.media import amf0  # noqa: E402
from livecenter.media.rtmp import RtmpChunkWriter  # noqa: E402

SERVER_CORE, CLIENT_CORE = "0", "1"
CLIP_SECONDS = 24
VIDEO_BITRATE = "2M"
AUDIO_BITRATE = "128k"
# A viewer keeps up if it gets this share of the clip's byte rate over the
# window, with no gap longer than MAX_GAP_MS.
MIN_FRACTION = 0.9
MAX_GAP_MS = 2000
CONNECT_RATE_PER_S = 1000
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = 4
INGEST, PLAY = "push.bench", "play.bench"  # node_runner.py's domains


# --- preparing ---------------------------------------------------------------------


def require_tools(servers: list[str]) -> None:
    for tool in ("ffmpeg", "ffprobe", "cc", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed (apt-get install ffmpeg gcc util-linux)")
    if "nginx-rtmp" in servers:
        require_nginx_rtmp()


def make_clip(path: Path, fmt: str = "flv") -> float:
    """A 720p30 H.264 (1 s GOP, no B-frames, CBR 2 Mbit/s) + AAC clip in
    `fmt` (FLV, or MPEG-TS for bench/srt); returns its byte rate per second."""
    cmd = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-t", str(CLIP_SECONDS),
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-bf", "0",
        "-g", "30", "-keyint_min", "30", "-sc_threshold", "0",
        "-b:v", VIDEO_BITRATE, "-minrate", VIDEO_BITRATE, "-maxrate", VIDEO_BITRATE, "-bufsize", VIDEO_BITRATE,
        "-x264-params", "nal-hrd=cbr",
        "-c:a", "aac", "-b:a", AUDIO_BITRATE,
        "-f", fmt, str(path),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=300)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    duration = float(json.loads(probe.stdout)["format"]["duration"])
    return path.stat().st_size / duration


def compile_loadgen(workdir: Path) -> Path:
    binary = workdir / "loadgen"
    subprocess.run(["cc", "-O2", "-Wall", "-o", str(binary), str(HERE / "loadgen.c"), "-lssl", "-lcrypto"], check=True)
    return binary


def rtmp_play_blob(port: int, stream: str) -> bytes:
    """What an RTMP player sends after the handshake, as FFmpeg does: connect,
    createStream, Set Buffer Length and play, pipelined (the load generator
    does not wait for the answers; stream id 1 is what both servers give the
    first createStream)."""
    writer = RtmpChunkWriter()
    connect = amf0.encode(
        "connect",
        1.0,
        {
            "app": "live",
            "flashVer": "LNX 9,0,124,2",
            "tcUrl": f"rtmp://127.0.0.1:{port}/live",
            "fpad": False,
            "capabilities": 15.0,
            "audioCodecs": 4071.0,
            "videoCodecs": 252.0,
            "videoFunction": 1.0,
        },
    )
    blob = writer.write(3, 20, 0, 0, connect)
    blob += writer.write(3, 20, 0, 0, amf0.encode("createStream", 2.0, None))
    # RTMP 7.1.7 User Control SetBufferLength: stream 1, 3000 ms.
    blob += writer.write(2, 4, 0, 0, struct.pack(">HII", 3, 1, 3000))
    blob += writer.write(8, 20, 1, 0, amf0.encode("play", 3.0, None, stream, -2000.0))
    return blob


def flv_get_blob(port: int, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: bench-loadgen\r\nAccept: */*\r\n\r\n".encode()


# --- /proc -------------------------------------------------------------------------


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(c) for c in text]
    return found


# --- servers -----------------------------------------------------------------------


@dataclass
class Running:
    process: subprocess.Popen
    pid: int  # the process that serves viewers (nginx: its one worker)
    rtmp_port: int
    http_port: int = 0
    https_port: int = 0
    extra: list = field(default_factory=list)

    def stop(self) -> None:
        for proc in [*self.extra, self.process]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self.extra, self.process]:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start_livecenter(workdir: Path, capacity_mbps: float = 0.0, max_loop_lag_ms: float | None = None) -> Running:
    rtmp_port, http_port, https_port = free_port(), free_port(), free_port()
    cmd = [sys.executable, str(HERE / "node_runner.py"), "--rtmp-port", str(rtmp_port), "--http-port", str(http_port),
           "--https-port", str(https_port)]  # fmt: skip
    cmd += ["--max-egress-mbps", str(capacity_mbps)]
    if max_loop_lag_ms is not None:
        cmd += ["--max-loop-lag-ms", str(max_loop_lag_ms)]
    # Its log goes to a file: stopping it mid-stream logs every cancelled session.
    with open(workdir / "node.log", "a") as err:
        process = subprocess.Popen(["taskset", "-c", SERVER_CORE, *cmd], stdout=subprocess.PIPE, stderr=err, text=True)
    line = process.stdout.readline()
    if line.strip() != "READY":
        process.kill()
        raise RuntimeError(f"the media node did not start: {(workdir / 'node.log').read_text()[-2000:]}")
    return Running(process, process.pid, rtmp_port, http_port, https_port)


NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
worker_rlimit_nofile {files};
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
events {{ worker_connections {files}; }}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        application live {{ live on; }}
    }}
}}
"""


def start_nginx(workdir: Path) -> Running:
    prefix = workdir / "nginx"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = prefix / "nginx.conf"
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    conf.write_text(NGINX_CONF.format(prefix=prefix, port=port, files=files))
    process = subprocess.Popen(
        ["taskset", "-c", SERVER_CORE, "nginx", "-p", str(prefix), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port, timeout=10)
    deadline = time.monotonic() + 5
    while not (workers := children(process.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not workers:
        process.kill()
        raise RuntimeError("nginx started no worker")
    return Running(process, workers[0], port)


def publish(running: Running, server: str, clip: Path) -> subprocess.Popen:
    query = f"?domain={INGEST}" if server == "livecenter" else ""
    url = f"rtmp://127.0.0.1:{running.rtmp_port}/live/bench{query}"
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip)]
    cmd += ["-c", "copy", "-f", "flv", url]
    # Beside the load generator, ahead of it: a late source would fail every viewer.
    return subprocess.Popen(
        ["taskset", "-c", CLIENT_CORE, "nice", "-n", "-10", *cmd], stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


# --- one step ----------------------------------------------------------------------


@dataclass
class Step:
    server: str
    protocol: str
    n: int
    ok: bool
    stalled: int
    cpu_percent: float
    rss0_kib: int
    rss_kib: int
    result: dict

    @property
    def kib_per_viewer(self) -> float:
        return (self.rss_kib - self.rss0_kib) / self.n

    def line(self) -> str:
        r = self.result
        return (
            f"{self.server:10} {self.protocol:4} N={self.n:5} {'ok   ' if self.ok else 'STALL'} "
            f"admitted={r.get('admitted', '?')} refused={r.get('refused', '?')} "
            f"stalled={self.stalled:5} (closed {r.get('closed', '?')}, slow {r.get('slow', '?')}, "
            f"gap {r.get('gapped', '?')}) cpu={self.cpu_percent:5.1f}% rss0={self.rss0_kib / 1024:.1f}MiB "
            f"rss={self.rss_kib / 1024:.1f}MiB per-viewer={self.kib_per_viewer:.1f}KiB "
            f"min/median rate={r.get('min_rate', 0) / 1000:.0f}/{r.get('median_rate', 0) / 1000:.0f} kB/s "
            f"worst gap={r.get('worst_gap_ms', '?')}ms loadgen cpu="
            f"{100 * r.get('loadgen_cpu_s', 0) / max(r.get('loadgen_wall_s', 1), 0.001):.0f}%"
        )


def loadgen_command(
    args, loadgen: Path, protocol: str, port: int, n: int, blob_path: Path, rate: float, host: str = "127.0.0.1"
) -> list[str]:
    """The load generator's command line for `n` viewers (args: --warmup, --measure, --poll-ms)."""
    return [
        str(loadgen), "--mode", protocol, "--host", host, "--port", str(port), "--n", str(n),
        "--blob", str(blob_path), "--rate", f"{rate:.0f}", "--warmup", str(args.warmup),
        "--measure", str(args.measure), "--min-fraction", str(MIN_FRACTION), "--max-gap-ms", str(MAX_GAP_MS),
        "--connect-rate", str(CONNECT_RATE_PER_S), "--poll-ms", str(args.poll_ms),
        *(["--servername", PLAY] if protocol == "https-flv" else []),
    ]  # fmt: skip


def run_step(args, workdir: Path, loadgen: Path, clip: Path, rate: float, server: str, protocol: str, n: int) -> Step:
    if server == "nginx-rtmp":
        running = start_nginx(workdir)
    else:
        running = start_livecenter(workdir, args.capacity_mbps, args.max_loop_lag_ms)
    publisher = publish(running, server, clip)
    running.extra.append(publisher)
    loadgen_proc = None
    profiler = None
    try:
        time.sleep(args.settle)  # the publisher connects and sends a GOP
        if publisher.poll() is not None:
            raise RuntimeError(f"the publisher exited ({publisher.returncode})")
        rss0 = rss_kib(running.pid)
        if protocol == "rtmp":
            stream = f"bench?domain={PLAY}" if server == "livecenter" else "bench"
            blob, port = rtmp_play_blob(running.rtmp_port, stream), running.rtmp_port
        elif protocol == "https-flv":
            # Host names the domain its certificate is for (SNI), as a browser's does.
            blob = f"GET /live/bench.flv HTTP/1.1\r\nHost: {PLAY}\r\nUser-Agent: bench-loadgen\r\n\r\n".encode()
            port = running.https_port
        else:
            blob, port = flv_get_blob(running.http_port, f"/live/bench.flv?domain={PLAY}"), running.http_port
        blob_path = workdir / f"blob-{protocol}"
        blob_path.write_bytes(blob)
        cmd = ["taskset", "-c", CLIENT_CORE, *loadgen_command(args, loadgen, protocol, port, n, blob_path, rate)]
        loadgen_proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        t_start = t_end = ticks_start = ticks_end = None
        peak_rss = [rss0]
        sampling = threading.Event()

        def sample_rss() -> None:
            while not sampling.wait(0.5):
                try:
                    peak_rss[0] = max(peak_rss[0], rss_kib(running.pid))
                except OSError:
                    return

        sampler = threading.Thread(target=sample_rss, daemon=True)
        result: dict = {}
        timeout = n / CONNECT_RATE_PER_S + args.warmup + args.measure + 30
        timer = threading.Timer(timeout, loadgen_proc.kill)  # bounded even if the generator hangs
        timer.start()
        try:
            for line in loadgen_proc.stdout:
                word = line.split(" ", 1)[0].strip()
                if word == "MEASURE_START":
                    t_start, ticks_start = time.monotonic(), cpu_ticks(running.pid)
                    sampler.start()
                    if args.profile and server == "livecenter":
                        profiler = start_profiler(running.pid, workdir, protocol, n, args.measure)
                elif word == "MEASURE_END":
                    t_end, ticks_end = time.monotonic(), cpu_ticks(running.pid)
                    peak_rss[0] = max(peak_rss[0], rss_kib(running.pid))
                    sampling.set()
                elif word == "RESULT":
                    result = json.loads(line.split(" ", 1)[1])
        finally:
            timer.cancel()
            sampling.set()
        loadgen_proc.wait()
        cpu = 100.0 * (ticks_end - ticks_start) / CLK_TCK / (t_end - t_start) if t_end and t_start else 0.0
        stalled = result.get("stalled", n)
        # A step whose viewers were all refused (the loop-lag gauge on a busy
        # machine) shows nothing kept up: not a pass.
        ok = bool(result) and stalled == 0 and result.get("admitted", n) > 0
        return Step(server, protocol, n, ok, stalled, cpu, rss0, peak_rss[0], result)
    finally:
        if loadgen_proc is not None and loadgen_proc.poll() is None:
            loadgen_proc.kill()
            loadgen_proc.wait()
        if profiler is not None:
            finish_profiler(profiler)
        running.stop()


def start_profiler(pid: int, workdir: Path, protocol: str, n: int, seconds: float):
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        log("py-spy is not installed in the venv: .venv/bin/pip install py-spy")
        return None
    out = Path(tempfile.gettempdir()) / f"fanout-profile-{protocol}-{n}.txt"
    log(f"py-spy: {out}")
    cmd = [str(py_spy), "record", "--pid", str(pid), "--duration", str(int(seconds) - 2), "--format", "raw"]
    cmd += ["--rate", "200", "--output", str(out), "--nonblocking"]
    return subprocess.Popen(["taskset", "-c", CLIENT_CORE, *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish_profiler(profiler: subprocess.Popen) -> None:
    try:
        profiler.wait(30)
    except subprocess.TimeoutExpired:
        profiler.kill()


# --- the search --------------------------------------------------------------------


def search(step, start: int, limit: int, refine: int, deadline: float) -> tuple[list[Step], int]:
    """The largest N with no viewer stalling: `step(n)` (a Step) at `start`,
    doubling until a step fails (the last step at `limit` itself, never
    past it), then `refine` bisection steps between the last pass and the
    first failure."""
    steps: list[Step] = []
    best, failed = 0, None
    n = start
    while n <= limit and time.monotonic() < deadline:
        result = step(n)
        steps.append(result)
        log(result.line())
        if not result.ok:
            failed = n
            break
        best = n
        if n >= limit:
            break
        n = min(n * 2, limit)
    # Bisect between the last pass and the first failure, to within 10 %.
    for _ in range(refine):
        if failed is None or failed - best <= max(best // 10, 10) or time.monotonic() >= deadline:
            break
        n = (best + failed) // 2 if best else failed // 2
        result = step(n)
        steps.append(result)
        log(result.line())
        if result.ok:
            best = n
        else:
            failed = n
    return steps, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="livecenter,nginx-rtmp")
    parser.add_argument("--protocols", default="rtmp,flv", help="rtmp, flv, https-flv; the FLV ones on livecenter only")
    parser.add_argument("--start", type=int, default=100, help="first number of viewers")
    parser.add_argument("--max", type=int, default=12800, help="never more viewers than this")
    parser.add_argument("--refine", type=int, default=3, help="bisection steps after the first failure")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds after all viewers stream")
    parser.add_argument("--measure", type=float, default=15.0, help="seconds of the measuring window")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds between publishing and viewers")
    parser.add_argument("--poll-ms", type=int, default=0, help="the load generator's least time between reads")
    parser.add_argument("--budget", type=float, default=900.0, help="seconds for the whole bench")
    parser.add_argument("--profile", action="store_true", help="py-spy our node in every step's window")
    parser.add_argument("--json", type=Path, help="also write every step here")
    parser.add_argument(
        "--capacity-mbps",
        type=float,
        default=0.0,
        help="our node's capacity (LIVECENTER_MEDIA_MAX_EGRESS_MBPS); 0, the default, measures it without one. "
        "Viewers it refuses are counted apart; the verdict is on those admitted",
    )
    parser.add_argument(
        "--max-loop-lag-ms",
        type=float,
        help="our node's loop-lag limit (capacity.py; 0: none); default the node's. A join burst of TLS "
        "handshakes lags the loop past it, and the node refuses the joiners",
    )
    args = parser.parse_args()
    servers = [s for s in args.servers.split(",") if s]
    protocols = [p for p in args.protocols.split(",") if p]
    require_tools(servers)
    # As many descriptors as we may have, for us and the servers (inherited).
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    args.max = min(args.max, hard - 100)

    began = time.monotonic()
    deadline = began + args.budget
    combos = [(s, p) for s in servers for p in protocols if not (s == "nginx-rtmp" and p != "rtmp")]
    all_steps: list[Step] = []
    best: dict[tuple[str, str], int] = {}
    with tempfile.TemporaryDirectory(prefix="fanout-") as tmp:
        workdir = Path(tmp)
        log("preparing the clip and the load generator ...")
        clip = workdir / "clip.flv"
        rate = make_clip(clip)
        loadgen = compile_loadgen(workdir)
        log(f"clip: {CLIP_SECONDS} s 1280x720 30 fps, {rate * 8 / 1e6:.2f} Mbit/s as FLV")
        for i, (server, protocol) in enumerate(combos):
            # Each combination gets an equal share of what is left.
            share = (deadline - time.monotonic()) / (len(combos) - i)
            steps, best[server, protocol] = search(
                lambda n, s=server, p=protocol: run_step(args, workdir, loadgen, clip, rate, s, p, n),
                args.start,
                args.max,
                args.refine,
                time.monotonic() + share,
            )
            all_steps += steps

    print()
    print(f"{'server':12} {'protocol':8} {'max viewers':>11} {'CPU % at max':>12} {'RSS/viewer':>11}  note")
    for (server, protocol), n in best.items():
        at = next((s for s in all_steps if (s.server, s.protocol, s.n) == (server, protocol, n)), None)
        cpu = f"{at.cpu_percent:.0f}" if at else "-"
        per = f"{at.kib_per_viewer:.1f} KiB" if at else "-"
        fails = [s.n for s in all_steps if (s.server, s.protocol) == (server, protocol) and not s.ok]
        note = f"stalls at {min(fails)}" if fails else "no stall up to the largest step tried"
        print(f"{server:12} {protocol:8} {n:>11} {cpu:>12} {per:>11}  {note}")
    ours, theirs = best.get(("livecenter", "rtmp")), best.get(("nginx-rtmp", "rtmp"))
    if ours is not None and theirs:
        print(f"\nRTMP viewers, livecenter / nginx-rtmp: {ours} / {theirs} = {ours / theirs:.2f}")
    print(f"(total {time.monotonic() - began:.0f} s; nginx-rtmp has no HTTP-FLV, so FLV is ours alone)")
    if args.json:
        args.json.write_text(
            json.dumps([{**s.__dict__, "kib_per_viewer": s.kib_per_viewer} for s in all_steps], indent=1)
        )


if __name__ == "__main__":
    main()
