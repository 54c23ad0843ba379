"""RTS (WebRTC over WHEP) figures (bench/README.md, "bench/rts"):

1. `latency`: glass-to-glass latency p50/p95 and time to first frame of the
   web player over RTS in headless Chromium, with the latency calibrator
   (1280x720, 30 fps, 2 Mbit/s, 1 s keyframes, no B-frames): bench/latency's
   set-up, processes and measuring, with `protocol=rts`. With
   `--background-viewers N` it measures again while N viewers of the light
   generator watch the same stream, and prints the difference of the p50s
   (issue 18: within 20 ms with 500). The node runs alone on core 0 and
   everything else (console, calibrator, Chromium, the background viewers)
   on core 1 (`--pin off`: wherever the scheduler puts them); each
   measurement reports where the CPU went (bench/rts/machine.py).
2. `whip`: the same latency over RTS for two ingests in one run, on the
   same calibrator frames: RTMP → WHEP (the `latency` part's path) and WHIP
   → WHEP (`bench/rts/whip_publisher.py`: the calibrator's frames encoded by
   the same code and libx264 settings, sent as they are over WebRTC by an
   aiortc WHIP client). `--rounds` alternates them (RTMP WHIP WHIP RTMP …)
   so that a machine whose load drifts favours neither; the samples are
   pooled per ingest; beside each, `bench/rts/arrival.py` times capture to
   a frame's last RTP packet at an aiortc WHEP viewer (no browser). Target
   (issue 17): WHIP → WHEP p50 no higher than RTMP → WHEP.
3. `viewers`: how many WebRTC viewers one core holds before frames drop. The
   node (`bench/rts/node_runner.py`) is pinned to core 0; the publisher (a
   720p30 2 Mbit/s clip without B-frames, `-c copy` in real time, as
   bench/fanout) and the viewers (`bench/rts/viewers.py`: peers that do
   ICE and DTLS with aiortc and then only count RTP; `--client light`, the
   default, hands each connected socket to a small C counter that also
   answers the consent checks, `--client aiortc` keeps every peer in aiortc)
   to core 1. N doubles from --start
   until a step fails, then --refine bisection steps. A step passes when every
   viewer got at least 95 % of the clip's 30 frames a second over the window
   and the node skipped no viewer. `--fast-path on|off` sets the node's
   `rts_fast_path` (issue 18; default: the node's default); each step also
   reports the server's resident memory per viewer (its RSS at the end of
   the window less its RSS before the viewers came, over the viewers) and
   the viewers' own CPU (memory_and_client).
4. `janus`: the same search, on the same cores with the same viewers,
   against Debian's Janus 1.1 (a WebRTC server in C; issue 18's reference,
   `bench/rts/janus_server.py`): its streaming plugin fed the same clip over
   RTP by ffmpeg, the viewers speaking its HTTP JSON API
   (`bench/rts/viewers.py --janus`). A step passes on the frames alone
   (Janus has no skips to count). Janus's CPU and RSS and the viewers'
   own CPU are read from /proc over the window: a step whose viewer
   process used its whole core is the client's limit, not the server's.
   With `--parts viewers,janus` the two figures are printed side by side
   with their ratio.
5. `generator`: the light viewer generator's own limit. Its counter
   (bench/rts/rtpcount.c, on core 1) reads N loopback UDP sockets that a
   stand-in server in C (bench/rts/rtpblast.c, on core 0: RTP of a
   720p30 2 Mbit/s stream's packet sizes and rate, no ICE or SRTP) feeds;
   N doubles from --start while every viewer gets 95 % of the frames and
   no socket drops a datagram. Its CPU there is its cost a viewer.

Loopback by default. With `--viewers-netns` (root; viewers and janus
parts) the viewers are a host of their own: a network namespace reached
over a veth pair whose receive work runs in a NAPI thread on core 1, and
the server listens and offers ICE on the pair's root end
(bench/rts/viewer_host.py); each step then also reports that thread's CPU
and the pair's drops. Every step reports each CPU's user/system/softirq
and the server's system CPU. Everything it starts it stops (namespaces
too, also on SIGTERM); bounded by --max and --budget.

    .venv/bin/python bench/rts/run.py [--parts latency,viewers] [--seconds 30] [--loads 5]
        [--start 10] [--max 640] [--budget 900] [--client light|aiortc]
    .venv/bin/python bench/rts/run.py --parts latency --background-viewers 500
    .venv/bin/python bench/rts/run.py --parts generator --start 500 --max 8000
    .venv/bin/python bench/rts/run.py --parts whip [--rounds 12 --loads 1 --seconds 6] [--arrival-seconds 6]
    .venv/bin/python bench/rts/run.py --parts viewers,janus [--start 10] [--max 640] [--budget 900]
    .venv/bin/python bench/rts/run.py --parts viewers,janus --viewers-netns --start 800 --max 1600
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from bench.common import build_c, free_port, log, wait_port  # noqa: E402
from bench.fanout.run import make_clip  # noqa: E402
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
    Processes,
    Result,
    log_in,
    manage,
    measure,
)
from bench.latency.run import CHROMIUM_ARGS as LATENCY_CHROMIUM_ARGS  # noqa: E402
from bench.rts import janus_server, topology  # noqa: E402
from bench.rts.machine import MachineSampler  # noqa: E402
from livecenter.media.node_status import NODE_STATUS_PATH  # noqa: E402

# WebRTC on one machine: loopback candidates, real addresses instead of mDNS names.
CHROMIUM_ARGS = [
    *LATENCY_CHROMIUM_ARGS,
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
LATENCY_TARGET_MS = 80  # DESIGN.md, RTS p50
LOADED_LATENCY_TARGET_MS = 20  # issue 18: p50 with 500 viewers within this of idle
FIRST_FRAME_TARGET_MS = 300
SERVER_CORE, CLIENT_CORE = "0", "1"
PASS_SHARE = 0.95
CLIP_FPS = 30
# A viewer process using this share of its core over the window is at its
# own limit: a failing step there says nothing about the server.
CLIENT_BOUND_CPU = 90
SAMPLE_SECONDS = 0.5


# --- 1. latency ----------------------------------------------------------------------


@dataclass
class LatencyBench:
    """The latency parts' set-up: a node and a console on loopback with the
    bench's domains, and a Chromium context signed in to the console."""

    workdir: Path
    env: dict
    procs: Processes
    context: object
    console: str
    http_port: int

    def player_url(self, stream: str) -> str:
        return f"{self.console}/player/?domain={PLAY}&app={APP}&stream={stream}&protocol=rts"

    def start_calibrator(self, name: str, ingest: str) -> subprocess.Popen:
        calibrator = self.procs.start(name, [PYTHON, "manage.py", "calibrator", "--url", ingest, *CALIBRATOR_ARGS])
        time.sleep(3)  # the encoder starts; the first, discarded, page load waits for the rest
        if calibrator.poll() is not None:
            raise RuntimeError(f"the calibrator stopped: {self.procs.tail(name)}")
        return calibrator


@contextlib.contextmanager
def latency_bench(args, node_id: str = "bench-rts"):
    from playwright.sync_api import sync_playwright

    workdir = Path(tempfile.mkdtemp(prefix="bench-rts-"))
    rtmp_port, http_port, console_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "LIVECENTER_DATA_DIR": str(workdir / "data"),
        "DJANGO_SETTINGS_MODULE": "livecenter.settings",
        "LIVECENTER_RTMP_PORT": str(rtmp_port),
        "LIVECENTER_HTTP_PORT": str(http_port),
        "LIVECENTER_MEDIA_HOST": "127.0.0.1",
        "LIVECENTER_PLAYER_MEDIA_HOST": "127.0.0.1",
        "LIVECENTER_NODE_ID": node_id,
        "LIVECENTER_LOG_LEVEL": "WARNING",
    }
    if args.background_viewers:
        # The node's admission limits off: the figure is the latency while it
        # carries that many viewers, not whether it would admit them.
        env |= {"LIVECENTER_MEDIA_MAX_EGRESS_MBPS": "0", "LIVECENTER_MEDIA_MAX_LOOP_LAG_MS": "0"}
    procs = Processes(workdir, env)
    affinity = os.sched_getaffinity(0)
    node_prefix = []
    if args.pin == "on":
        # The node alone on its core; this process and everything else it
        # starts (console, calibrator, browser, background viewers) on the other.
        node_prefix = ["taskset", "-c", SERVER_CORE]
        os.sched_setaffinity(0, {int(CLIENT_CORE)})
    try:
        log(f"setting up in {workdir} ...")
        manage(env, "migrate", "--noinput")
        manage(env, "shell", "-c", SETUP_SCRIPT)
        procs.start("medianode", [*node_prefix, PYTHON, "manage.py", "medianode", "--host", "127.0.0.1",
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
            yield LatencyBench(workdir, env, procs, context, console, http_port)
            browser.close()
    finally:
        procs.stop_all()
        os.sched_setaffinity(0, affinity)
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run_latency(args) -> dict:
    """The latency part: idle, and with --background-viewers N also while N
    viewers (the light generator) watch the same stream, on the same node,
    calibrator and browser: {"idle": row, "loaded": row}."""
    rows = {}
    with latency_bench(args) as bench:
        urls = signed_urls(bench.env, STREAM, bench.http_port)
        calibrator = bench.start_calibrator("calibrator", urls["rtmp"])
        roles = {name: proc.pid for name, proc in bench.procs.running if proc.poll() is None}
        sampler = MachineSampler(roles, f"http://127.0.0.1:{bench.http_port}{NODE_STATUS_PATH}")
        try:
            began = time.time()
            result = measure(bench.context, "rts", bench.player_url(STREAM), args.seconds, args.settle, args.loads)
            rows["idle"] = {**result.row(), "machine": sampler.window(began, time.time())}
            if args.background_viewers:
                try:
                    with background_viewers(bench.workdir, urls["whep"], args.background_viewers, sampler) as watched:
                        name = f"rts-{args.background_viewers}-viewers"
                        began = time.time()
                        result = measure(bench.context, name, bench.player_url(STREAM), args.seconds, args.settle,
                                         args.loads)  # fmt: skip
                        machine = sampler.window(began, time.time())
                    rows["loaded"] = {**result.row(), "background": watched, "machine": machine}
                except RuntimeError as exc:  # the viewers could not open: reported in the table
                    rows["loaded"] = {"error": str(exc), "background": {"count": args.background_viewers}}
        finally:
            sampler.stop()
            bench.procs.stop(calibrator)
    return rows


# How long the background viewers may take to open (the light client opens
# 50 a second), and the longest the loaded measurement may take.
BACKGROUND_OPEN_SECONDS = 180
BACKGROUND_WINDOW_SECONDS = 900


@contextlib.contextmanager
def background_viewers(workdir: Path, whep: str, count: int, sampler: MachineSampler | None = None):
    """`count` light-generator viewers of `whep` for the body's duration;
    yields a dict that, after the body, holds their window's figures (how
    many were connected, the worst viewer's frame rate, the generator's CPU):
    evidence that the load was real while the browser measured."""
    log(f"latency: opening {count} background viewers ...")
    stderr_path = workdir / "background-viewers.log"
    viewers = subprocess.Popen(
        [PYTHON, str(HERE / "viewers.py"), "--url", whep, "--count", str(count), "--warmup", "2",
         "--window", str(BACKGROUND_WINDOW_SECONDS)],
        stdout=subprocess.PIPE, stderr=open(stderr_path, "w"), text=True,
    )  # fmt: skip
    if sampler is not None:
        sampler.add("generator", viewers.pid)
    watched: dict = {"count": count}
    try:
        deadline = time.monotonic() + BACKGROUND_OPEN_SECONDS
        while "opened " not in stderr_path.read_text():
            if viewers.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the background viewers did not open: {stderr_path.read_text()[-400:]}")
            time.sleep(0.5)
        time.sleep(3)  # their warm-up: the node is carrying them when the measuring starts
        log(f"  {stderr_path.read_text().strip().splitlines()[-1]}")
        yield watched
    finally:
        if viewers.poll() is None:
            viewers.terminate()  # ends their window: the JSON line follows
        try:
            out, _ = viewers.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            viewers.kill()
            out, _ = viewers.communicate()
        lines = out.strip().splitlines()
        if lines:
            result = json.loads(lines[-1])
            start, end = result["window"]
            frames = result["video_frames"]
            watched.update(
                connected=result["connected"],
                seconds=round(end - start, 1),
                worst_fps=round(min(frames) / (end - start), 1) if frames and end > start else 0,
                median_fps=round(sorted(frames)[len(frames) // 2] / (end - start), 1) if frames and end > start else 0,
                client_cpu=result.get("client_cpu"),
                socket_drops=result.get("socket_drops"),
            )


def machine_line(machine: dict) -> str:
    """A measurement's MachineSampler.window() in a line: CPU per role (% of
    one core, by CPU), the CPUs' busy (softirq) shares, the node's loop lag."""
    roles = ", ".join(
        f"{role} {figures['cpu']:.0f} % ({' '.join(f'cpu{c} {p:.0f}' for c, p in figures['on'].items())})"
        for role, figures in machine["roles"].items()
        if figures["cpu"] >= 0.5
    )
    cores = ", ".join(
        f"cpu{i} {c['busy']:.0f} % ({c['softirq']:.0f} % softirq)" for i, c in enumerate(machine["cores"])
    )
    collector = machine.get("gc") or {}
    pauses = (
        ", ".join(f"gen{g} {ms:.0f} ms{f' ({t[0]})' if t else ''}" for g, ms, *t in collector.get("pauses", []))
        or "none ≥ 5 ms"
    )
    return (f"CPU {roles}; CPUs {cores}; node loop lag median {machine['loop_lag_ms']} ms, worst"
            f" {machine['loop_lag_worst_ms']} ms; collector pauses: {pauses};"
            f" load {machine['load'][0]} → {machine['load'][1]}")  # fmt: skip


def latency_table(rows: dict) -> str:
    lines = [
        "| RTS (WebRTC) | latency p50 | latency p95 | samples | first frame p50 (loads) | stalls | target | met? |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    target = f"≤ {LATENCY_TARGET_MS} ms; first frame ≤ {FIRST_FRAME_TARGET_MS} ms"
    for key, row in rows.items():
        label = "idle" if key == "idle" else f"{row['background']['count']} viewers watching"
        if "p50" not in row:
            lines.append(f"| {label} | failed: {row.get('error')} | | | | | | |")
            continue
        ffs = ", ".join(str(f) for f in row["first_frames"])
        met = "yes" if row["p50"] <= LATENCY_TARGET_MS else "no"
        ff_met = "yes" if row["ff_p50"] <= FIRST_FRAME_TARGET_MS else "no"
        lines.append(f"| {label} | {row['p50']} ms | {row['p95']} ms | {row['samples']} |"
                     f" {row['ff_p50']:.0f} ms ({ffs}) | {row['stalls']} | {target} | {met}; {ff_met} |")  # fmt: skip
    for key, row in rows.items():
        if row.get("machine"):
            lines.append(f"\n{'idle' if key == 'idle' else 'loaded'}: {machine_line(row['machine'])}")
    idle, loaded = rows.get("idle", {}), rows.get("loaded")
    if loaded is not None:
        watched = loaded["background"]
        lines.append(f"\nbackground viewers: {watched}")
        if "p50" in idle and "p50" in loaded:
            difference = loaded["p50"] - idle["p50"]
            met = "yes" if difference <= LOADED_LATENCY_TARGET_MS else "no"
            lines.append(f"latency p50 with {watched['count']} viewers − idle: {loaded['p50']} − {idle['p50']} ="
                         f" {difference:+} ms (target ≤ {LOADED_LATENCY_TARGET_MS} ms: {met})")  # fmt: skip
    return "\n".join(lines)


# --- 2. WHIP → WHEP against RTMP → WHEP ----------------------------------------------

WHIP_STREAM = "calibwhip"  # a stream of its own: the RTMP one may still be in its reconnect grace
INGESTS = {"rtmp": "RTMP → WHEP", "whip": "WHIP → WHEP"}
# The WHIP publisher's wait for the node's answer, ICE and DTLS (its own
# timeouts are shorter): past it, the round fails with its log.
WHIP_START_SECONDS = 30


def signed_urls(env: dict, stream: str, http_port: int) -> dict[str, str]:
    """The RTMP ingest URL the URL generator signs for `stream`, sent to
    127.0.0.1 (bench/latency's `signed_ingest_url`, for any stream), the
    WHIP URL with the same auth_key (issue 17: WHIP is signed over
    `/{app}/{stream}`, as RTMP), naming the ingest domain with `domain=` as
    the RTMP URL does, and the streaming domain's WHEP URL."""
    script = (
        "from django.contrib.auth import get_user_model\n"
        "from domains import services\n"
        "from streams.player import via_media_host\n"
        f"owner = get_user_model().objects.get(username={USERNAME!r})\n"
        f"urls = services.generate_urls(owner, {PUSH!r}, {APP!r}, {stream!r})\n"
        "print(via_media_host(urls.ingest['rtmp'], '127.0.0.1', urls.ingest_domain))\n"
        f"play = services.generate_urls(owner, {PLAY!r}, {APP!r}, {stream!r})\n"
        f"print(via_media_host(play.playback['whep'], '127.0.0.1', {PLAY!r}))\n"
    )
    out = subprocess.run([PYTHON, "manage.py", "shell", "-c", script], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True)  # fmt: skip
    rtmp, whep = out.stdout.strip().splitlines()[-2:]
    query = parse_qs(urlsplit(rtmp).query)
    auth_key, domain = query["auth_key"][0], query.get("domain", [PUSH])[0]
    whip = f"http://127.0.0.1:{http_port}/{APP}/{stream}.whip?auth_key={auth_key}&domain={domain}"
    return {"rtmp": rtmp, "whip": whip, "whep": whep}


def start_whip_publisher(bench: LatencyBench, name: str, url: str) -> subprocess.Popen:
    """bench/rts/whip_publisher.py publishing the calibrator's frames
    (CALIBRATOR_ARGS' size, rate, bitrate and keyframes) until stopped;
    returns once it says it is publishing."""
    size, fps, bitrate, gop = (CALIBRATOR_ARGS[CALIBRATOR_ARGS.index(o) + 1]
                               for o in ("--size", "--fps", "--bitrate", "--gop-seconds"))  # fmt: skip
    cmd = [PYTHON, str(HERE / "whip_publisher.py"), url, "--source", "calibrator",
           "--size", size, "--fps", fps, "--bitrate", bitrate, "--gop-seconds", gop]  # fmt: skip
    publisher = bench.procs.start(name, cmd)
    deadline = time.monotonic() + WHIP_START_SECONDS
    while time.monotonic() < deadline:
        if publisher.poll() is not None:
            raise RuntimeError(f"the WHIP publisher stopped: {bench.procs.tail(name)}")
        if "publishing:" in (bench.workdir / f"{name}.log").read_text():
            time.sleep(1)  # as the RTMP calibrator's: the first frames reach the node
            return publisher
        time.sleep(0.2)
    raise RuntimeError(f"the WHIP publisher did not connect in {WHIP_START_SECONDS} s: {bench.procs.tail(name)}")


def run_whip(args) -> dict:
    """RTMP → WHEP and WHIP → WHEP, `args.rounds` times each in the order
    RTMP WHIP WHIP RTMP …, one publisher at a time, the samples pooled."""
    pooled = {ingest: Result(ingest) for ingest in INGESTS}
    arrivals: dict[str, list[dict]] = {ingest: [] for ingest in INGESTS}
    order = [("rtmp", "whip") if i % 2 == 0 else ("whip", "rtmp") for i in range(args.rounds)]
    with latency_bench(args, "bench-rts-whip") as bench:
        urls = {"rtmp": signed_urls(bench.env, STREAM, bench.http_port),
                "whip": signed_urls(bench.env, WHIP_STREAM, bench.http_port)}  # fmt: skip
        for i, pair in enumerate(order):
            for ingest in pair:
                name = f"{ingest}-{i}"
                log(f"{INGESTS[ingest]}, round {i + 1}/{args.rounds} ...")
                if ingest == "rtmp":
                    publisher, stream = bench.start_calibrator(name, urls["rtmp"]["rtmp"]), STREAM
                else:
                    publisher, stream = start_whip_publisher(bench, name, urls["whip"]["whip"]), WHIP_STREAM
                try:
                    result = measure(bench.context, name, bench.player_url(stream), args.seconds, args.settle,
                                     args.loads)  # fmt: skip
                    if args.arrival_seconds > 0:
                        arrival = measure_arrival(urls[ingest]["whep"], args.arrival_seconds)
                        arrivals[ingest].append(arrival)
                        log(f"  {name}: capture to arrival at an aiortc WHEP viewer: {arrival}")
                finally:
                    bench.procs.stop(publisher)
                if ingest == "whip":
                    log(f"  WHIP publisher: {bench.procs.tail(name).strip().splitlines()[-1]}")
                into = pooled[ingest]
                into.latency += result.latency
                into.first_frames += result.first_frames
                into.stalls += result.stalls
                into.protocol_seen = result.protocol_seen or into.protocol_seen
                if result.error:
                    into.error = f"round {i + 1}: {result.error}"
    rows = {ingest: result.row() for ingest, result in pooled.items()}
    for ingest, runs in arrivals.items():
        rows[ingest]["arrival"] = runs
    return rows


def measure_arrival(whep_url: str, seconds: float) -> dict:
    """bench/rts/arrival.py: capture to the whole frame at an aiortc WHEP
    viewer, no browser (its JSON line)."""
    run = subprocess.run([PYTHON, str(HERE / "arrival.py"), whep_url, "--seconds", str(seconds)], cwd=ROOT,
                         capture_output=True, text=True, timeout=seconds + 60)  # fmt: skip
    if run.returncode != 0:
        return {"error": (run.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(run.stdout.strip().splitlines()[-1])


def whip_table(rows: dict) -> str:
    lines = [
        "| ingest → play | latency p50 | latency p95 | samples | first frame p50 (loads) | stalls |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for ingest, label in INGESTS.items():
        row = rows[ingest]
        if "p50" not in row:
            lines.append(f"| {label} | failed: {row.get('error')} | | | | |")
            continue
        ffs = ", ".join(str(f) for f in row["first_frames"])
        error = f" ({row['error']})" if row.get("error") else ""
        lines.append(f"| {label} | {row['p50']} ms | {row['p95']} ms | {row['samples']} |"
                     f" {row['ff_p50']:.0f} ms ({ffs}) | {row['stalls']}{error} |")  # fmt: skip
    if any(rows[ingest].get("arrival") for ingest in INGESTS):
        lines += [
            "",
            "| ingest → aiortc WHEP viewer, no browser | capture → last packet p50 (rounds) | p95 (rounds) | samples |",
            "| --- | ---: | ---: | ---: |",
        ]
        for ingest, label in INGESTS.items():
            runs = [r for r in rows[ingest].get("arrival", []) if "p50" in r]
            p50s = ", ".join(f"{r['p50']:.0f}" for r in runs)
            p95s = ", ".join(f"{r['p95']:.0f}" for r in runs)
            lines.append(f"| {label} | {p50s} ms | {p95s} ms | {sum(r['samples'] for r in runs)} |")
    rtmp, whip = rows["rtmp"], rows["whip"]
    if "p50" in rtmp and "p50" in whip:
        ratio = whip["p50"] / rtmp["p50"] if rtmp["p50"] else float("inf")
        met = "yes" if whip["p50"] <= rtmp["p50"] else "no"
        lines.append(f"\nlatency p50, WHIP → WHEP / RTMP → WHEP: {whip['p50']} / {rtmp['p50']} ms = {ratio:.2f}"
                     f" (p95 {whip['p95']} / {rtmp['p95']} ms); target WHIP p50 ≤ RTMP p50: {met}")  # fmt: skip
    return "\n".join(lines)


# --- 3. viewers on one core --------------------------------------------------------------


class NodeStats:
    """The node runner's per-second JSON lines, read in a thread."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[dict] = []
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process) -> None:
        for line in process.stdout:
            if line.startswith("READY"):
                self.ready.set()
            elif line.startswith("{"):
                self.lines.append(json.loads(line))

    def latest(self) -> dict:
        return self.lines[-1] if self.lines else {}


class ProcSampler:
    """A process's CPU time and RSS from /proc every SAMPLE_SECONDS, read
    in a thread: what `ps` shows, for a process (Janus) that reports nothing
    itself, and for the viewers' own process (where its limit is)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        # (time, CPU seconds, RSS bytes, the machine's UDP receive-buffer drops, system CPU seconds)
        self.samples: list[tuple[float, float, int, int, float]] = []
        self._stop = threading.Event()
        self._tick = os.sysconf("SC_CLK_TCK")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _read(self) -> tuple[float, float, int, int, float] | None:
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
            status = Path(f"/proc/{self.pid}/status").read_text()
            snmp = Path("/proc/net/snmp").read_text().splitlines()
        except OSError:
            return None
        udp = [line.split()[1:] for line in snmp if line.startswith("Udp:")]
        drops = int(dict(zip(udp[0], udp[1], strict=True)).get("RcvbufErrors", 0)) if len(udp) == 2 else 0
        fields = stat.rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / self._tick  # utime + stime
        rss = next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        return time.time(), cpu, rss, drops, int(fields[12]) / self._tick

    def _run(self) -> None:
        while not self._stop.is_set():
            sample = self._read()
            if sample is None:
                return
            self.samples.append(sample)
            self._stop.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self._stop.set()

    def cpu(self, start: float, end: float) -> float | None:
        """% of one core between `start` and `end` (wall-clock times)."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return None
        return 100 * (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])

    def system(self, start: float, end: float) -> float | None:
        """The kernel's part of `cpu` (stime: system calls, and the softirqs
        that ran in them), % of one core."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return None
        return 100 * (inside[-1][4] - inside[0][4]) / (inside[-1][0] - inside[0][0])

    def drops(self, start: float, end: float) -> int | None:
        """UDP datagrams the machine dropped for a full receive buffer in
        the window (all sockets: on loopback, a receiver that fell behind)."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        return inside[-1][3] - inside[0][3] if len(inside) >= 2 else None

    def rss(self, before: float | None = None) -> int | None:
        """The RSS last read before `before` (or the last read)."""
        inside = [s for s in self.samples if before is None or s[0] <= before]
        return inside[-1][2] if inside else None


def step(workdir: Path, clip: Path, count: int, args) -> dict:
    rtmp_port, http_port = free_port(), free_port()
    fast_path = ["--fast-path", args.fast_path] if args.fast_path else []
    fast_path += ["--udp-gso", args.udp_gso] if args.udp_gso else []
    fast_path += ["--timings"] if args.timings else []
    address = server_address(args)
    node = subprocess.Popen(
        ["taskset", "-c", SERVER_CORE, PYTHON, str(HERE / "node_runner.py"), "--host", address,
         "--rtmp-port", str(rtmp_port), "--http-port", str(http_port), *fast_path],
        stdout=subprocess.PIPE, stderr=open(workdir / f"node-{count}.log", "w"), text=True,
    )  # fmt: skip
    stats = NodeStats(node)
    node_sampler = ProcSampler(node.pid)
    publisher = viewers = viewer_sampler = softirq = where = None
    try:
        if not stats.ready.wait(30):
            raise RuntimeError("the node did not start")
        url = f"rtmp://{address}:{rtmp_port}/live/bench?domain=push.bench"
        publisher = subprocess.Popen(
            ["taskset", "-c", CLIENT_CORE, "nice", "-n", "-10", "ffmpeg", "-hide_banner", "-loglevel", "error",
             "-re", "-stream_loop", "-1", "-i", str(clip), "-c", "copy", "-f", "flv", url],
            stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(3)
        whep = f"http://{address}:{http_port}/live/bench.whep?domain=play.bench"
        rss_before = time.time()
        viewers = subprocess.Popen(
            viewer_command(args, ["taskset", "-c", CLIENT_CORE, PYTHON, str(HERE / "viewers.py"), "--url", whep,
                                  "--count", str(count), "--warmup", str(args.warmup), "--window", str(args.window),
                                  *viewer_options(args)]),
            stdout=subprocess.PIPE, stderr=open(workdir / f"viewers-{count}.log", "w"), text=True,
        )  # fmt: skip
        viewer_sampler = ProcSampler(viewers.pid)
        softirq = topology.SoftirqSampler()
        where = WhereSampler(args)
        try:
            out, _ = viewers.communicate(timeout=count / 2 + args.warmup + args.window + 120)
        except subprocess.TimeoutExpired:
            # The viewers' own process (one core, with the publisher) could
            # not open and hold them all: a limit of the client, not a verdict
            # on the node.
            return {**no_verdict(count), "skips": 0}
        result = json.loads(out.strip().splitlines()[-1])
        # The node's per-second lines from within the viewers' window: the
        # frames the source made there, scaled to the window's length.
        start, end = result["window"]
        window = [s for s in stats.lines if start - 0.5 <= s["t"] <= end + 0.5]
        source_frames = window[-1]["units"] - window[0]["units"] if len(window) > 1 else 0
        seconds = window[-1]["t"] - window[0]["t"] if len(window) > 1 else 0
        source = source_frames * (end - start) / seconds if seconds else 0
        # Against the clip's rate, not the source's: a saturated node slows
        # the publisher's socket, and then the whole stream runs slow.
        expected = CLIP_FPS * (end - start)
        frames = result["video_frames"]
        cpus = [s["cpu"] for s in window[1:]]
        worst = min(frames) if frames else 0
        skips = window[-1]["skips"] - window[0]["skips"] if len(window) > 1 else 0
        ok = result["connected"] == count and expected > 0 and worst >= PASS_SHARE * expected and skips == 0
        return {
            "n": count,
            "ok": ok,
            "connected": result["connected"],
            "worst_frames": worst,
            "expected_frames": round(expected),
            "source_frames": round(source),
            "median_frames": sorted(frames)[len(frames) // 2] if frames else 0,
            "skips": skips,
            "open_seconds": result["open_seconds"],
            "cpu": sum(cpus) / len(cpus) if cpus else None,
            **memory_and_client(node_sampler, viewer_sampler, rss_before, start, end, count),
            **generator_figures(result),
            "softirq_cores": softirq.cores(start, end),
            "node_system_cpu": node_sampler.system(start, end),
            **where.figures(softirq, start, end),
            **({"timings": window_timings(window)} if args.timings else {}),
        }
    finally:
        stop_all((node_sampler, viewer_sampler, softirq, where), (viewers, publisher, node))


def window_timings(lines: list[dict]) -> dict:
    """The node runner's `--timings` over a window's per-second lines:
    {label: {calls, mean_ms, longest_ms}}, and its loop lag (the median of
    its per-second medians, the worst probe)."""
    spans: dict[str, list[float]] = {}
    for line in lines[1:]:
        for label, (calls, mean_ms, longest_ms) in line.get("timings", {}).items():
            span = spans.setdefault(label, [0, 0.0, 0.0])
            span[0] += calls
            span[1] += calls * mean_ms
            span[2] = max(span[2], longest_ms)
    lags = sorted(line["loop_lag_ms"] for line in lines if "loop_lag_ms" in line)
    return {
        **{label: {"calls": int(c), "mean_ms": round(t / c, 2), "longest_ms": m} for label, (c, t, m) in spans.items()},
        "loop_lag_ms": lags[len(lags) // 2] if lags else None,
        "loop_lag_worst_ms": max((line.get("loop_lag_worst_ms", 0) for line in lines), default=None),
    }


def no_verdict(count: int) -> dict:
    """A step whose viewers' process could not open or report them all: a
    limit of the client, not a verdict on the server."""
    return {"n": count, "ok": None, "connected": 0, "worst_frames": 0, "expected_frames": 0,
            "median_frames": 0, "open_seconds": None, "cpu": None}  # fmt: skip


def stop_all(samplers, procs) -> None:
    """End a step: its /proc samplers, then its processes (terminate, then kill)."""
    for sampler in samplers:
        if sampler is not None:
            sampler.stop()
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def server_address(args) -> str:
    """Where the server listens and offers ICE: loopback, or with
    --viewers-netns the root end of the viewers' veth pair."""
    return args.viewer_host.node_address if args.viewer_host is not None else "127.0.0.1"


def viewer_command(args, argv: list[str]) -> list[str]:
    """The viewers' process: here, or with --viewers-netns in their namespace."""
    return args.viewer_host.viewer_command(argv) if args.viewer_host is not None else argv


class WhereSampler:
    """Where a step's kernel work went: with --viewers-netns, the CPU of
    the viewers' NAPI kthread and the datagrams the veth pair and its
    queue dropped (read every DROPS_SECONDS in a thread, so that the
    window's are told from the opening's); per CPU, from the step's
    SoftirqSampler, user/system/softirq and NET_RX/NET_TX."""

    DROPS_SECONDS = 1.0

    def __init__(self, args) -> None:
        self.host = args.viewer_host
        self.napi = [ProcSampler(pid) for pid in self.host.napi_pids] if self.host is not None else []
        self.drops: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = None
        if self.host is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with contextlib.suppress(subprocess.SubprocessError, OSError, ValueError):
                self.drops.append((time.time(), self.host.link_drops()))
            if self._stop.wait(self.DROPS_SECONDS):
                return

    def stop(self) -> None:
        for sampler in self.napi:
            sampler.stop()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _drops(self, start: float, end: float) -> dict[str, int] | None:
        inside = [d for t, d in self.drops if start <= t <= end]
        if len(inside) < 2:
            return None
        return {key: inside[-1][key] - inside[0][key] for key in inside[-1]}

    def figures(self, cpus: topology.SoftirqSampler, start: float, end: float) -> dict:
        out: dict = {"topology": "netns" if self.host is not None else "loopback", "cpus": cpus.split(start, end)}
        if self.host is not None:
            napi = [sampler.cpu(start, end) for sampler in self.napi]
            out["napi_cpu"] = round(sum(c for c in napi if c is not None), 1)
            out["veth_drops"] = self._drops(start, end)  # the window's
            out["veth_drops_step"] = self._drops(0, time.time())  # the opening's too
        return out


def viewer_options(args) -> list[str]:
    """The viewers' process's options, the same for the node and Janus."""
    return ["--client", args.client, *(["--uvloop"] if args.viewer_loop == "uvloop" else [])]


def generator_figures(result: dict) -> dict:
    """The light generator's own figures from its JSON line: its CPU (the
    C counter and its Python parent, over the window: /proc's sample of
    the parent alone would miss the counter) and the datagrams its sockets
    dropped because it read too late."""
    if result.get("client") != "light":
        return {}
    return {"client_cpu": result["client_cpu"], "counter_cpu": result["counter_cpu"],
            "client_socket_drops": result["socket_drops"]}  # fmt: skip


def memory_and_client(
    server: ProcSampler, client: ProcSampler | None, rss_before: float, start: float, end: float, count: int
) -> dict:
    """The server's RSS per viewer (at the window's end, over its RSS with
    the stream on and no viewer yet) and the viewers' process's CPU over
    the window."""
    base, loaded = server.rss(rss_before), server.rss(end)
    per_viewer = (loaded - base) / count if base is not None and loaded is not None and count else None
    return {
        "rss_mb": round(loaded / 2**20, 1) if loaded is not None else None,
        "rss_per_viewer_kb": round(per_viewer / 1024) if per_viewer is not None else None,
        "client_cpu": client.cpu(start, end) if client is not None else None,
        "udp_drops": server.drops(start, end),
    }


def janus_step(workdir: Path, clip: Path, count: int, args) -> dict:
    """`count` viewers of Janus's mountpoint: Janus on SERVER_CORE, its
    ffmpeg feed and the viewers on CLIENT_CORE, as the node's step."""
    http_port, video_port, audio_port = free_port(), free_port(), free_port()
    janus_dir = workdir / f"janus-{count}"
    address = server_address(args)
    janus = janus_server.start(janus_dir, http_port, video_port, audio_port, SERVER_CORE, args.janus_event_loops,
                               address)  # fmt: skip
    janus_sampler = ProcSampler(janus.pid)
    feed = viewers = viewer_sampler = softirq = where = None
    try:
        feed = janus_server.feed(clip, video_port, audio_port, CLIENT_CORE)
        time.sleep(3)
        rss_before = time.time()
        viewers = subprocess.Popen(
            viewer_command(args, ["taskset", "-c", CLIENT_CORE, PYTHON, str(HERE / "viewers.py"), "--janus",
                                  "--url", f"http://{address}:{http_port}/janus", "--count", str(count),
                                  "--warmup", str(args.warmup), "--window", str(args.window),
                                  *viewer_options(args)]),
            stdout=subprocess.PIPE, stderr=open(workdir / f"janus-viewers-{count}.log", "w"), text=True,
        )  # fmt: skip
        viewer_sampler = ProcSampler(viewers.pid)
        softirq = topology.SoftirqSampler()
        where = WhereSampler(args)
        try:
            out, _ = viewers.communicate(timeout=count / 2 + args.warmup + args.window + 120)
        except subprocess.TimeoutExpired:
            return no_verdict(count)
        lines = out.strip().splitlines()
        if viewers.returncode != 0 or not lines:
            log(f"  the Janus viewers failed: {(workdir / f'janus-viewers-{count}.log').read_text()[-400:]}")
            return no_verdict(count)
        result = json.loads(lines[-1])
        start, end = result["window"]
        expected = CLIP_FPS * (end - start)
        frames = result["video_frames"]
        worst = min(frames) if frames else 0
        ok = result["connected"] == count and expected > 0 and worst >= PASS_SHARE * expected
        return {
            "n": count,
            "ok": ok,
            "connected": result["connected"],
            "worst_frames": worst,
            "expected_frames": round(expected),
            "median_frames": sorted(frames)[len(frames) // 2] if frames else 0,
            "open_seconds": result["open_seconds"],
            "cpu": janus_sampler.cpu(start, end),
            "node_system_cpu": janus_sampler.system(start, end),
            **memory_and_client(janus_sampler, viewer_sampler, rss_before, start, end, count),
            **generator_figures(result),
            "softirq_cores": softirq.cores(start, end),
            **where.figures(softirq, start, end),
        }
    finally:
        stop_all((janus_sampler, viewer_sampler, softirq, where), (viewers, feed, janus))


def run_viewers(args, step_function=None, label: str = "viewers", prepare=None) -> list[dict]:
    """Doubling from --start until a step fails, then --refine bisections,
    within --max and --budget; `step_function` is `step` (the node) or
    `janus_step`; `prepare` turns the FLV clip into what the step feeds."""
    step_function = step_function or step
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-rts-{label}-"))
    clip = workdir / "clip.flv"
    log(f"{label}: making the 720p30 2 Mbit/s clip ...")
    make_clip(clip)
    if prepare is not None:
        clip = prepare(clip)
    began = time.monotonic()
    steps: list[dict] = []
    good, bad = 0, None
    n = args.start
    try:
        while n <= args.max and time.monotonic() - began < args.budget:
            result = step_function(workdir, clip, n, args)
            steps.append(result)
            log(f"  {label}, {n} viewers: {'ok' if result['ok'] else 'FRAMES DROPPED'} {result}")
            if result["ok"] is None:
                log("  the viewers' process could not open them all: stopping (client-bound)")
                break
            if result["ok"]:
                good = n
                n *= 2
            else:
                bad = n
                break
        for _ in range(args.refine if bad else 0):
            if time.monotonic() - began > args.budget or bad - good <= max(2, good // 10):
                break
            n = (good + bad) // 2
            result = step_function(workdir, clip, n, args)
            steps.append(result)
            log(f"  {label}, {n} viewers: {'ok' if result['ok'] else 'FRAMES DROPPED'} {result}")
            if result["ok"] is None:
                break
            good, bad = (n, bad) if result["ok"] else (good, n)
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return steps


def run_janus(args) -> list[dict]:
    missing = janus_server.available()
    if missing:
        sys.exit(f"janus part: {missing}")
    return run_viewers(args, janus_step, "janus", janus_server.annex_b_copy)


# --- 5. the light viewer generator's own limit -------------------------------------------


def generator_step(workdir: Path, count: int, args) -> dict:
    """`count` viewers of the light generator's counter (bench/rts/rtpcount.c,
    on CLIENT_CORE), each a loopback UDP socket that bench/rts/rtpblast.c
    (on SERVER_CORE: no ICE, no SRTP) sends a 720p30 2 Mbit/s-sized RTP
    stream to. The counter does what it does for a real server's viewers;
    only the server is a stand-in that costs little, so the counter's limit
    shows: its CPU, its sockets' drops, its frames."""
    counter_ours, counter_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    blast_ours, blast_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    counter = subprocess.Popen(
        ["taskset", "-c", CLIENT_CORE, str(workdir / "rtpcount"), "--control-fd", str(counter_theirs.fileno())],
        pass_fds=(counter_theirs.fileno(),), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    blaster = subprocess.Popen(
        ["taskset", "-c", SERVER_CORE, str(workdir / "rtpblast"), "--control-fd", str(blast_theirs.fileno()),
         "--seconds", str(args.warmup + args.window + 60)],
        pass_fds=(blast_theirs.fileno(),), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    counter_theirs.close()
    blast_theirs.close()
    try:
        for _ in range(count):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as viewer:
                viewer.bind(("127.0.0.1", 0))
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                    sender.connect(viewer.getsockname())
                    socket.send_fds(counter_ours, [b"P " + b"p" * 22 + b" 96"], [viewer.fileno()])
                    socket.send_fds(blast_ours, [b"S"], [sender.fileno()])
        blast_ours.send(b"G")
        time.sleep(args.warmup)
        counter_ours.send(b"B")
        time.sleep(args.window)
        counter_ours.send(b"E")
        result = json.loads(counter.stdout.readline())
    finally:
        counter_ours.close()
        blast_ours.close()  # the blaster stops and prints its line
        blasted, _ = blaster.communicate(timeout=30)
        counter.wait(30)
    start, end = result["window"]
    expected = CLIP_FPS * (end - start)
    frames = result["video_frames"]
    worst = min(frames) if frames else 0
    sender = json.loads(blasted.strip().splitlines()[-1]) if blasted.strip() else {}
    return {
        "n": count,
        "ok": len(frames) == count and worst >= PASS_SHARE * expected and result["socket_drops"] == 0,
        "worst_frames": worst,
        "expected_frames": round(expected),
        "median_frames": sorted(frames)[len(frames) // 2] if frames else 0,
        "counter_cpu": result["counter_cpu"],
        "socket_drops": result["socket_drops"],
        "sender_cpu": sender.get("cpu"),
    }


def run_generator(args) -> list[dict]:
    """Doubling from --start while the counter keeps up, within --max and --budget."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-rts-generator-"))
    steps: list[dict] = []
    try:
        build_c(HERE / "rtpcount.c", workdir / "rtpcount", "-lcrypto")
        build_c(HERE / "rtpblast.c", workdir / "rtpblast")
        began, n = time.monotonic(), args.start
        while n <= args.max and time.monotonic() - began < args.budget:
            result = generator_step(workdir, n, args)
            steps.append(result)
            log(f"  generator, {n} viewers: {'ok' if result['ok'] else 'FRAMES OR DATAGRAMS LOST'} {result}")
            if not result["ok"]:
                break
            n *= 2
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return steps


def generator_table(steps: list[dict]) -> str:
    lines = [
        "| viewers | verdict | worst viewer's frames / the clip's | median | counter's CPU (core 1)"
        " | its sockets' drops | stand-in sender's CPU (core 0) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in steps:
        verdict = "ok" if s["ok"] else "frames or datagrams lost"
        if not s["ok"] and (s["sender_cpu"] or 0) >= CLIENT_BOUND_CPU:
            verdict += " (the sender's core full)"
        lines.append(f"| {s['n']} | {verdict} | {s['worst_frames']} / {s['expected_frames']} | {s['median_frames']} |"
                     f" {s['counter_cpu']:.0f} % | {s['socket_drops']} | {s['sender_cpu']} % |")  # fmt: skip
    passed = [s for s in steps if s["ok"]]
    if passed:
        top = max(passed, key=lambda s: s["n"])
        full = round(top["n"] * 100 / top["counter_cpu"]) if top["counter_cpu"] else 0
        lines.append(f"\nthe light generator's counter carried {top['n']} viewers on one core at"
                     f" {top['counter_cpu']:.0f} % of it, no datagram dropped (about {full} at 100 %)")  # fmt: skip
    return "\n".join(lines)


def viewers_table(steps: list[dict], server: str = "the node") -> str:
    lines = [
        f"| viewers | verdict | worst viewer's frames / the clip's | median | source's | skips | {server}'s CPU"
        f" | {server}'s RSS (per viewer) | viewer generator's CPU (its sockets' drops)"
        " | UDP receive-buffer drops (machine) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in sorted(steps, key=lambda s: s["n"]):
        cpu = f"{s['cpu']:.0f} % ({s['cpu'] / s['n']:.2f} a viewer)" if s.get("cpu") is not None else "—"
        client = f"{s['client_cpu']:.0f} %" if s.get("client_cpu") is not None else "—"
        if s.get("client_socket_drops") is not None:
            client += f" ({s['client_socket_drops']} dropped)"
        rss = f"{s['rss_mb']} MB ({s['rss_per_viewer_kb']} KB)" if s.get("rss_per_viewer_kb") is not None else "—"
        verdict = {True: "ok", False: "frames dropped", None: "client could not open them"}[s["ok"]]
        if s["ok"] is False and client_bound(s):
            verdict += " (viewers' core full)"
        if link_drops(s):
            verdict += f" ({link_drops(s)} datagrams dropped on the viewers' link)"
        lines.append(
            f"| {s['n']} | {verdict} | {s['worst_frames']} / {s['expected_frames']} |"
            f" {s['median_frames']} | {s.get('source_frames', '—')} | {s.get('skips', '—')} | {cpu} | {rss}"
            f" | {client} | {s.get('udp_drops', '—')} |"
        )
    for s in sorted(steps, key=lambda s: s["n"]):
        if s.get("timings"):
            lines.append(f"{s['n']} viewers, the node's loop: {s['timings']}")
    for s in sorted(steps, key=lambda s: s["n"]):
        if s.get("cpus"):
            lines.append(where_line(s, server))
    lines.append(f"\nmost WebRTC viewers on one core with no frame dropped ({server}): {most_viewers(steps)}")
    return "\n".join(lines)


def where_line(s: dict, server: str) -> str:
    """A step's CPU by kind: the server's user/system split, each CPU's
    user/system/softirq and NET_RX a second, and with --viewers-netns the
    viewers' NAPI thread and the veth pair's drops."""
    cpu, system = s.get("cpu"), s.get("node_system_cpu")
    split = f"{cpu - system:.0f} % user, {system:.0f} % system" if cpu is not None and system is not None else "—"
    cores = "; ".join(
        f"cpu{i} {c['user']:.0f} user / {c['system']:.0f} sys / {c['softirq']:.0f} softirq / {c['idle']:.0f} idle"
        f" ({c.get('net_rx_per_s', '—')} NET_RX/s)"
        for i, c in enumerate(s["cpus"])
    )
    napi = (f"; NAPI thread {s['napi_cpu']:.0f} %, veth pair's drops in the window {s['veth_drops']}"
            f" (with the opening {s.get('veth_drops_step')})" if "napi_cpu" in s else "")  # fmt: skip
    return f"{s['n']} viewers ({s['topology']}): {server} {split}; {cores}{napi}"


def client_bound(step_result: dict) -> bool:
    """The viewers' process at its own limit: its core full, or with
    --viewers-netns their host's link dropping in the window (its NAPI
    thread, on the viewers' core, not draining the ring: the viewers'
    side's receive, not the server). (The light generator's socket drops
    are shown beside, not taken as its limit: a server past its core
    sends what it had queued in bursts that overflow a socket's buffer
    between two of the counter's turns, 5 ms apart.)"""
    return (step_result.get("client_cpu") or 0) >= CLIENT_BOUND_CPU or link_drops(step_result) > 0


def link_drops(step_result: dict) -> int:
    """With --viewers-netns, the datagrams the viewers' veth pair and its
    queue dropped in the window (0 on loopback)."""
    return sum((step_result.get("veth_drops") or {}).values())


def most_viewers(steps: list[dict]) -> int:
    passed = [s["n"] for s in steps if s["ok"]]
    return max(passed) if passed else 0


def client_limit(steps: list[dict]) -> str:
    """Where the viewer generator's own limit showed, if it did."""
    bound = [s for s in steps if s["ok"] is None or (s["ok"] is False and client_bound(s))]
    if not bound:
        # The busiest passing step (a server that collapsed leaves its viewers idle).
        measured = [s for s in steps if s.get("client_cpu") and s["ok"]]
        busiest = max(measured, key=lambda s: s["client_cpu"], default=None)
        if busiest is None:
            return "the viewers' process: no CPU figure"
        full = round(busiest["n"] * 100 / busiest["client_cpu"])
        return (f"the viewers' process did not reach its limit: {busiest['client_cpu']:.0f} % of its core"
                f" (with the publisher beside it) at {busiest['n']} viewers, so about {full} at 100 %")  # fmt: skip
    first = min(bound, key=lambda s: s["n"])
    return (f"the viewers' process reached its core ({first.get('client_cpu') or 0:.0f} %) at {first['n']} viewers:"
            " the server's figure there is a lower bound")  # fmt: skip


def comparison(node_steps: list[dict], janus_steps: list[dict]) -> str:
    ours, theirs = most_viewers(node_steps), most_viewers(janus_steps)
    ratio = f"{ours / theirs:.2f}" if theirs else "—"
    return (
        f"viewers on one core, LiveCenter / Janus 1.1 (C): {ours} / {theirs} = {ratio}"
        f"\n  LiveCenter: {client_limit(node_steps)}\n  Janus: {client_limit(janus_steps)}"
    )


@contextlib.contextmanager
def viewer_topology(args, parts: set[str]):
    """Sets `args.viewer_host`: None (loopback), or with --viewers-netns
    for the viewers and janus parts a ViewerHost, removed after the body
    (on error too; what a killed run left, at the next start)."""
    args.viewer_host = None
    if not (args.viewers_netns and parts & {"viewers", "janus"}):
        yield
        return
    from bench.rts.viewer_host import ViewerHost

    with ViewerHost(int(CLIENT_CORE)) as host:
        log(f"viewers in namespace {host.netns('viewers')}: {host.viewer_address} ({host.device}, NAPI thread"
            f" {host.napi_pids} on core {CLIENT_CORE}); the server on {host.node_address}")  # fmt: skip
        args.viewer_host = host
        try:
            yield
        finally:
            args.viewer_host = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="latency,viewers")
    parser.add_argument("--seconds", type=float, default=30, help="latency samples, split over the loads")
    parser.add_argument("--settle", type=float, default=5, help="play this long after the first frame")
    parser.add_argument("--loads", type=int, default=5, help="fresh page loads for the first frame")
    parser.add_argument(
        "--background-viewers", type=int, default=0,
        help="latency: measure again while this many light-generator viewers watch the same stream",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=1, help="whip: rounds of RTMP and WHIP, alternating")
    parser.add_argument(
        "--arrival-seconds", type=float, default=10, help="whip: capture to arrival at an aiortc viewer (0: off)"
    )
    parser.add_argument("--start", type=int, default=10, help="viewers in the first step")
    parser.add_argument("--max", type=int, default=640, help="never more viewers than this")
    parser.add_argument("--refine", type=int, default=2, help="bisection steps after the first failing one")
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--window", type=float, default=10)
    parser.add_argument("--budget", type=float, default=900, help="seconds for the viewer steps")
    parser.add_argument(
        "--janus-event-loops", type=int, default=1,
        help="janus: Janus's event_loops (0: its default, a thread per viewer)",
    )  # fmt: skip
    parser.add_argument(
        "--client", choices=("light", "aiortc"), default="light",
        help="viewers, janus: the viewer generator (bench/rts/viewers.py --client)",
    )  # fmt: skip
    parser.add_argument(
        "--viewer-loop", choices=("asyncio", "uvloop"), default="asyncio",
        help="viewers, janus: the aiortc client's event loop (uvloop: a lighter client)",
    )  # fmt: skip
    parser.add_argument(
        "--pin", choices=("on", "off"), default="on",
        help=f"latency: the node alone on core {SERVER_CORE}, everything else on core {CLIENT_CORE} (off: unpinned)",
    )  # fmt: skip
    parser.add_argument(
        "--timings", action="store_true",
        help="viewers: the node's fan-out per frame, collector pauses and loop lag (node_runner.py --timings)",
    )  # fmt: skip
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories (logs)")
    parser.add_argument("--fast-path", choices=("on", "off"), help="viewers: the node's rts_fast_path (issue 18)")
    parser.add_argument("--udp-gso", choices=("on", "off"), help="viewers: the native sender's UDP GSO (default on)")
    parser.add_argument(
        "--receive-steering", choices=("on", "off"), default="off",
        help="viewers, janus: loopback's receive work on the viewers' core (RPS, bench/rts/topology.py)",
    )  # fmt: skip
    parser.add_argument(
        "--viewers-netns", action="store_true",
        help="viewers, janus: the viewers on a host of their own, a network namespace over a veth pair whose"
             f" receive work runs in a NAPI thread on core {CLIENT_CORE} (bench/rts/viewer_host.py; root)",
    )  # fmt: skip
    args = parser.parse_args()
    # A SIGTERM unwinds (namespaces, RPS masks and processes are put back) instead of ending here.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    began = time.monotonic()
    figures: dict = {}
    if "latency" in parts:
        figures["latency"] = run_latency(args)
    if "whip" in parts:
        figures["whip"] = run_whip(args)
    if args.viewers_netns and args.receive_steering == "on":
        sys.exit("--viewers-netns and --receive-steering on: one topology at a time")
    with (
        topology.steering(args.receive_steering == "on" and parts & {"viewers", "janus"}, int(CLIENT_CORE)),
        viewer_topology(args, parts),
    ):
        if "viewers" in parts:
            if shutil.which("taskset") is None:
                sys.exit("taskset is needed (apt-get install util-linux)")
            figures["viewers"] = run_viewers(args)
        if "janus" in parts:
            if shutil.which("taskset") is None:
                sys.exit("taskset is needed (apt-get install util-linux)")
            figures["janus"] = run_janus(args)
    if "generator" in parts:
        if shutil.which("taskset") is None:
            sys.exit("taskset is needed (apt-get install util-linux)")
        figures["generator"] = run_generator(args)
    print()
    print(f"machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}")
    if "latency" in figures:
        print(latency_table(figures["latency"]))
        print("(p50 of the pooled per-frame samples)")
    if "whip" in figures:
        print(whip_table(figures["whip"]))
        print(f"(p50 of the pooled per-frame samples, {args.rounds} round(s) of {args.loads} loads each)")
    if "viewers" in figures:
        print(viewers_table(figures["viewers"]))
    if "janus" in figures:
        print(viewers_table(figures["janus"], "Janus"))
        if "viewers" in figures:
            print(comparison(figures["viewers"], figures["janus"]))
        else:
            print(f"Janus: {client_limit(figures['janus'])}")
    if "generator" in figures:
        print(generator_table(figures["generator"]))
    print(f"(total {time.monotonic() - began:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
