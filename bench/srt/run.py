"""SRT ingest figures (bench/README.md, "bench/srt"):

1. `cpu`: CPU per ingested Mbit/s of our media node taking N concurrent
   2 Mbit/s SRT publishers (N = 1 and 20 by default), side by side with
   `srt-live-transmit` (Debian's srt-tools, libsrt) relaying the same
   streams. Each step starts the server afresh pinned to core 0
   (`taskset -c 0`): our node (bench/srt/node_runner.py, one UDP port for
   every publisher, each stream demuxed into the hub), or one
   `srt-live-transmit srt://:PORT?mode=listener udp://127.0.0.1:SINK` per
   stream (their CPU summed; the UDP sink is a thread of this process). The
   publishers are `ffmpeg -re -stream_loop -1 -c copy -f mpegts srt://…`
   (120 ms latency) of one prepared 720p30 H.264 + AAC MPEG-TS clip
   (1 s GOP, no B-frames, CBR 2 Mbit/s), on core 1 with this process.
   After --warmup seconds, the server's utime + stime (/proc) and the bytes
   it took in (our node: SRT payload bytes over its connections; the
   reference: what its relays delivered to the sink) are read over
   --window seconds. The figure is the server's CPU (in % of one core)
   divided by the ingested Mbit/s; DESIGN.md's target is ours ≤ 3× the
   reference's.
2. `latency`: glass-to-glass latency SRT in → RTS out. bench/latency's set-up
   (console, `manage.py medianode` with an SRT port, headless Chromium on the
   web player at protocol=rts, bench/latency's measure()), with the latency
   calibrator (`manage.py calibrator --url srt://…`, 1280x720, 30 fps,
   2 Mbit/s, 1 s keyframes, no B-frames) publishing MPEG-TS over SRT
   (through srt-live-transmit, a libsrt caller) to the URL the URL
   generator signs, the ingest domain's SRT latency set to --srt-latency.
   Target: p50 ≤ the configured latency + 60 ms. bench/srt/stages.py says
   where the time goes inside the node.

Loopback only; everything it starts it stops.

    .venv/bin/python bench/srt/run.py [--parts cpu,latency] [--counts 1,20] [--window 20]
        [--seconds 30] [--loads 5] [--srt-latency 120] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from bench.common import Processes, free_port, log, wait_port  # noqa: E402
from bench.fanout.run import CLK_TCK, cpu_ticks, make_clip  # noqa: E402
from bench.latency.run import (  # noqa: E402
    APP,
    CALIBRATOR_ARGS,
    CHROMIUM,
    PLAY,
    PUSH,
    PYTHON,
    SETUP_SCRIPT,
    STREAM,
    USERNAME,
    log_in,
    manage,
    measure,
    signed_ingest_url,
)
from bench.rts.run import CHROMIUM_ARGS  # noqa: E402

SERVER_CORE, CLIENT_CORE = "0", "1"
INGEST = "push.bench"  # bench/fanout/node_runner.py's ingest domain
SRT_LATENCY_MS = 120
RATIO_TARGET = 3.0  # DESIGN.md: ours ≤ 3× srt-live-transmit per Mbit/s
LATENCY_MARGIN_MS = 60  # issue 13: the configured latency plus at most this


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def udp_drops(ports: list[int]) -> int:
    """Datagrams the kernel dropped on the UDP sockets bound to `ports`
    (/proc/net/udp's last column: the socket's receive buffer was full)."""
    wanted, total = {f"{p:04X}" for p in ports}, 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].rsplit(":", 1)[1] in wanted:
            total += int(fields[-1])
    return total


def require_tools(parts: set[str]) -> None:
    for tool in ("ffmpeg", "ffprobe", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed (apt-get install ffmpeg util-linux)")
    if shutil.which("srt-live-transmit") is None:  # the reference (cpu), the calibrator's relay (latency)
        log("installing srt-tools (Debian) for srt-live-transmit ...")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", "srt-tools"], check=True, env=env, stdout=subprocess.DEVNULL)


# --- 1. CPU per ingested Mbit/s --------------------------------------------------------


class UdpSink:
    """Where the reference relays send: counts the bytes, drops them."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buf = bytearray(65536)
        while not self._stop.is_set():
            try:
                self.bytes += self.sock.recv_into(buf)
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class NodeStats:
    """bench/srt/node_runner.py's per-second JSON lines, read in a thread."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[dict] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, args=(process,), daemon=True).start()

    def _read(self, process) -> None:
        for line in process.stdout:
            if line.startswith("READY"):
                self.ready.set()
            elif line.startswith("{"):
                self.lines.append(json.loads(line))

    def between(self, start: float, end: float) -> list[dict]:
        return [s for s in self.lines if start <= s["t"] <= end]


def publisher(clip: Path, url: str, log_path: Path) -> subprocess.Popen:
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1", "-i", str(clip),
           "-c", "copy", "-f", "mpegts", url]  # fmt: skip
    # Beside this process on core 1, ahead of it: a late publisher would make the server look cheap.
    with open(log_path, "a") as out:
        return subprocess.Popen(["taskset", "-c", CLIENT_CORE, "nice", "-n", "-10", *cmd], stdout=out, stderr=out)


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def step_ours(workdir: Path, clip: Path, n: int, args) -> dict:
    srt_port = free_udp_port()
    cmd = [PYTHON, str(HERE / "node_runner.py"), "--rtmp-port", str(free_port()), "--http-port", str(free_port()),
           "--srt-port", str(srt_port)]  # fmt: skip
    with open(workdir / f"node-{n}.log", "w") as err:
        node = subprocess.Popen(["taskset", "-c", SERVER_CORE, *cmd], stdout=subprocess.PIPE, stderr=err, text=True)
    stats = NodeStats(node)
    publishers: list[subprocess.Popen] = []
    try:
        if not stats.ready.wait(30):
            raise RuntimeError(f"the node did not start: {(workdir / f'node-{n}.log').read_text()[-1500:]}")
        for i in range(n):
            streamid = f"#!::h={INGEST},r=/live/s{i},m=publish"
            url = f"srt://127.0.0.1:{srt_port}?streamid={streamid}&latency={SRT_LATENCY_MS * 1000}"
            publishers.append(publisher(clip, url, workdir / f"publishers-ours-{n}.log"))
        time.sleep(args.warmup)
        t0, ticks0, drops0 = time.time(), cpu_ticks(node.pid), udp_drops([srt_port])
        time.sleep(args.window)
        t1, ticks1, drops1 = time.time(), cpu_ticks(node.pid), udp_drops([srt_port])
        time.sleep(1.2)  # the node's line for the window's last second
        window = stats.between(t0 - 1, t1 + 1)
        if len(window) < 2:
            raise RuntimeError("no statistics from the node over the window")
        first, last = window[0], window[-1]
        mbps = (last["srt_bytes"] - first["srt_bytes"]) * 8 / 1e6 / (last["t"] - first["t"])
        healthy = min(s["live"] for s in window) == n and all(p.poll() is None for p in publishers)
        return result("livecenter", n, (ticks1 - ticks0) / CLK_TCK / (t1 - t0), mbps, healthy,
                      {"connections": last["connections"], "live": last["live"],
                       "packets_lost": last["packets_lost"] - first["packets_lost"],
                       "packets_dropped": last["packets_dropped"] - first["packets_dropped"],
                       "udp_drops": drops1 - drops0})  # fmt: skip
    finally:
        stop([*publishers, node])


def step_reference(workdir: Path, clip: Path, n: int, args) -> dict:
    sink = UdpSink()
    relays: list[subprocess.Popen] = []
    publishers: list[subprocess.Popen] = []
    try:
        ports = [free_udp_port() for _ in range(n)]
        with open(workdir / f"relays-{n}.log", "a") as out:
            for port in ports:
                relays.append(
                    subprocess.Popen(
                        [
                            "taskset",
                            "-c",
                            SERVER_CORE,
                            "srt-live-transmit",
                            f"srt://:{port}?mode=listener&adapter=127.0.0.1&latency={SRT_LATENCY_MS}",
                            f"udp://127.0.0.1:{sink.port}",
                        ],
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=out,
                    )  # fmt: skip
                )
        time.sleep(1)  # listening
        if any(r.poll() is not None for r in relays):
            raise RuntimeError(f"srt-live-transmit stopped: {(workdir / f'relays-{n}.log').read_text()[-1500:]}")
        for port in ports:
            url = f"srt://127.0.0.1:{port}?latency={SRT_LATENCY_MS * 1000}"
            publishers.append(publisher(clip, url, workdir / f"publishers-ref-{n}.log"))
        time.sleep(args.warmup)
        t0, ticks0, bytes0 = time.time(), sum(cpu_ticks(r.pid) for r in relays), sink.bytes
        drops0 = udp_drops(ports)
        time.sleep(args.window)
        t1, ticks1, bytes1 = time.time(), sum(cpu_ticks(r.pid) for r in relays), sink.bytes
        drops1 = udp_drops(ports)
        mbps = (bytes1 - bytes0) * 8 / 1e6 / (t1 - t0)
        healthy = all(p.poll() is None for p in [*relays, *publishers])
        cores = (ticks1 - ticks0) / CLK_TCK / (t1 - t0)
        return result("srt-live-transmit", n, cores, mbps, healthy, {"udp_drops": drops1 - drops0})
    finally:
        stop([*publishers, *relays])
        sink.close()


def result(server: str, n: int, cores: float, mbps: float, healthy: bool, extra: dict) -> dict:
    per = 100 * cores / mbps if mbps else None
    return {"server": server, "n": n, "cpu_percent": round(100 * cores, 2), "mbps": round(mbps, 2),
            "cpu_percent_per_mbps": round(per, 3) if per is not None else None, "healthy": healthy,
            **extra}  # fmt: skip


def run_cpu(args) -> list[dict]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-srt-cpu-"))
    # This process (the reference's UDP sink) shares core 1 with the publishers.
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(CLIENT_CORE)})
    rows: list[dict] = []
    try:
        clip = workdir / "clip.ts"
        log("cpu: making the 720p30 2 Mbit/s MPEG-TS clip ...")
        rate = make_clip(clip, "mpegts")
        log(f"  clip: {rate * 8 / 1e6:.2f} Mbit/s as MPEG-TS")
        for n in args.counts:
            for server, step in (("livecenter", step_ours), ("srt-live-transmit", step_reference)):
                row = step(workdir, clip, n, args)
                row["expected_mbps"] = round(n * rate * 8 / 1e6, 2)
                rows.append(row)
                log(f"  {server:18} N={n:3}: {row}")
    finally:
        os.sched_setaffinity(0, affinity)
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return rows


def cpu_table(rows: list[dict]) -> str:
    lines = [
        "| publishers | server | ingested | expected | server CPU | CPU per Mbit/s | ours / reference | healthy"
        " | UDP drops | SRT lost / dropped |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    by = {(r["server"], r["n"]): r for r in rows}
    for r in rows:
        ratio = ""
        ref = by.get(("srt-live-transmit", r["n"]))
        if r["server"] == "livecenter" and ref and ref["cpu_percent_per_mbps"] and r["cpu_percent_per_mbps"]:
            x = r["cpu_percent_per_mbps"] / ref["cpu_percent_per_mbps"]
            ratio = f"{x:.1f}× ({'meets' if x <= RATIO_TARGET else 'misses'} ≤ {RATIO_TARGET:.0f}×)"
        per = f"{r['cpu_percent_per_mbps']:.2f} %" if r["cpu_percent_per_mbps"] is not None else "—"
        lines.append(
            f"| {r['n']} | {r['server']} | {r['mbps']:.1f} Mbit/s | {r['expected_mbps']:.1f} Mbit/s |"
            f" {r['cpu_percent']:.1f} % | {per} | {ratio} | {'yes' if r['healthy'] else 'NO'} |"
            f" {r.get('udp_drops', '—')} | {r.get('packets_lost', '—')} / {r.get('packets_dropped', '—')} |"
        )
    lines.append(
        "(CPU in % of one core; CPU per Mbit/s = server CPU / ingested Mbit/s. UDP drops: datagrams the kernel"
        " dropped at the server's sockets (full receive buffer); SRT lost / dropped: our node's counters, packets"
        " found missing (then retransmitted) / never delivered, over the window)"
    )
    return "\n".join(lines)


# --- 2. glass-to-glass latency, SRT in, RTS out ---------------------------------------------


def srt_ingest_url(env: dict, latency_ms: int) -> str:
    """The ingest domain's SRT latency set, and the SRT URL the URL
    generator signs, sent to 127.0.0.1 with the caller's latency equal to
    it (srt-live-transmit's option, in milliseconds: the calibrator's relay)."""
    script = (
        "from django.contrib.auth import get_user_model\n"
        "from domains import services\n"
        "from domains.models import Domain\n"
        f"services.configure_srt(Domain.objects.get(domain_name={PUSH!r}), srt_latency_ms={latency_ms})\n"
        f"owner = get_user_model().objects.get(username={USERNAME!r})\n"
        f"urls = services.generate_urls(owner, {PUSH!r}, {APP!r}, {STREAM!r})\n"
        "print(urls.ingest['srt'])\n"
    )
    url = manage(env, "shell", "-c", script)
    return url.replace(f"srt://{PUSH}:", "srt://127.0.0.1:", 1) + f"&latency={latency_ms}"


def run_latency(args) -> dict:
    from playwright.sync_api import sync_playwright

    workdir = Path(tempfile.mkdtemp(prefix="bench-srt-latency-"))
    rtmp_port, http_port, console_port, srt_port = free_port(), free_port(), free_port(), free_udp_port()
    env = {
        **os.environ,
        "LIVECENTER_DATA_DIR": str(workdir / "data"),
        "DJANGO_SETTINGS_MODULE": "livecenter.settings",
        "LIVECENTER_RTMP_PORT": str(rtmp_port),
        "LIVECENTER_HTTP_PORT": str(http_port),
        "LIVECENTER_SRT_PORT": str(srt_port),
        "LIVECENTER_MEDIA_SRT_PORT": str(srt_port),
        "LIVECENTER_MEDIA_HOST": "127.0.0.1",
        "LIVECENTER_PLAYER_MEDIA_HOST": "127.0.0.1",
        "LIVECENTER_NODE_ID": "bench-srt",
        "LIVECENTER_LOG_LEVEL": "WARNING",
    }
    procs = Processes(workdir, env)
    try:
        log(f"latency: setting up in {workdir} ...")
        manage(env, "migrate", "--noinput")
        manage(env, "shell", "-c", SETUP_SCRIPT)
        ingest = srt_ingest_url(env, args.srt_latency)
        procs.start("medianode", [PYTHON, "manage.py", "medianode", "--host", "127.0.0.1",
                                  "--rtmp-port", str(rtmp_port), "--http-port", str(http_port)])  # fmt: skip
        procs.start("console", [PYTHON, "manage.py", "runall", "--no-media", "--no-worker",
                                "--host", "127.0.0.1", "--port", str(console_port)])  # fmt: skip
        for port in (rtmp_port, http_port, console_port):
            wait_port(port)
        console = f"http://127.0.0.1:{console_port}"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            log_in(context, console)
            url = f"{console}/player/?domain={PLAY}&app={APP}&stream={STREAM}&protocol=rts"
            results = {}
            # The same path with RTMP in, on the same machine in the same run: what SRT adds.
            ingests = [("srt", ingest)] + ([] if args.no_rtmp_reference else [("rtmp", signed_ingest_url(env))])
            for name, ingest_url in ingests:
                log(f"{name} in, RTS out ...")
                calibrator = procs.start(f"calibrator-{name}", [PYTHON, "manage.py", "calibrator", "--url",
                                                                ingest_url, *CALIBRATOR_ARGS])  # fmt: skip
                time.sleep(3)  # the encoder starts; the first, discarded, page load waits for the rest
                if calibrator.poll() is not None:
                    raise RuntimeError(f"the calibrator stopped: {procs.tail(f'calibrator-{name}')}")
                result = measure(context, f"{name}-rts", url, args.seconds, args.settle, args.loads)
                results[name] = {**result.row(), "srt_latency_ms": args.srt_latency}
                procs.stop(calibrator)
                time.sleep(1)  # the stream ends before the next publisher takes it
            browser.close()
    finally:
        procs.stop_all()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return results


def latency_table(results: dict) -> str:
    lines = [
        "| path | SRT latency | latency p50 | latency p95 | samples | first frame p50 | stalls | target | met? |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for name, row in results.items():
        label = "SRT in → RTS out" if name == "srt" else "RTMP in → RTS out (reference, same run)"
        if "p50" not in row:
            lines.append(f"| {label} | failed: {row.get('error')} | | | | | | | |")
            continue
        configured = f"{row['srt_latency_ms']} ms" if name == "srt" else "—"
        target = row["srt_latency_ms"] + LATENCY_MARGIN_MS
        target_text, met = ("", "")
        if name == "srt":
            target_text, met = f"p50 ≤ {target} ms", "yes" if row["p50"] <= target else "no"
        lines.append(
            f"| {label} | {configured} | {row['p50']} ms | {row['p95']} ms | {row['samples']} |"
            f" {row['ff_p50']:.0f} ms | {row['stalls']} | {target_text} | {met} |"
        )
    srt, rtmp = results.get("srt", {}), results.get("rtmp", {})
    if "p50" in srt and "p50" in rtmp:
        extra = srt["p50"] - rtmp["p50"]
        lines.append(
            f"\nSRT ingest adds {extra} ms p50 over RTMP ingest on the same path, of which {srt['srt_latency_ms']} ms"
            f" is the configured SRT latency: {extra - srt['srt_latency_ms']} ms more"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="cpu,latency")
    parser.add_argument("--counts", default="1,20", help="concurrent SRT publishers, one step each")
    parser.add_argument("--warmup", type=float, default=5, help="seconds after the publishers start")
    parser.add_argument("--window", type=float, default=20, help="seconds of CPU and bytes measured")
    parser.add_argument("--seconds", type=float, default=30, help="latency samples, split over the loads")
    parser.add_argument("--settle", type=float, default=5, help="play this long after the first frame")
    parser.add_argument("--loads", type=int, default=5, help="fresh page loads")
    parser.add_argument("--srt-latency", type=int, default=SRT_LATENCY_MS, help="the ingest domain's SRT latency, ms")
    parser.add_argument(
        "--no-rtmp-reference", action="store_true", help="skip the same path with RTMP in (the latency reference)"
    )
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories (logs)")
    args = parser.parse_args()
    args.counts = [int(c) for c in args.counts.split(",") if c.strip()]
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    require_tools(parts)
    began = time.monotonic()
    figures: dict = {}
    if "cpu" in parts:
        figures["cpu"] = run_cpu(args)
    if "latency" in parts:
        figures["latency"] = run_latency(args)
    print()
    print(f"machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}")
    if "cpu" in figures:
        print(cpu_table(figures["cpu"]))
    if "latency" in figures:
        print(latency_table(figures["latency"]))
    print(f"(total {time.monotonic() - began:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
