"""Glass-to-glass latency and time to first frame of the web player in
headless Chromium, for HTTP-FLV, LL-HLS and HLS from the media node, and for
nginx-rtmp's HLS played by the same player code (bench/README.md,
"bench/latency").

Everything runs on loopback in a temporary directory: a fresh data dir
(SQLite) with an operator, an ingest domain and a streaming domain; the media
node (`manage.py medianode`) and the console (`manage.py runall --no-media
--no-worker`) as processes of their own; the latency calibrator
(`manage.py calibrator`, 1280x720, 30 fps, 2 Mbit/s, 1 s keyframes, no
B-frames) as a process of its own, one at a time, pushing to the node or to
nginx-rtmp.

    .venv/bin/python bench/latency/run.py [--seconds 30] [--loads 5]

`https-flv` and `https-llhls` play the same stream over HTTPS (issue 15)
from a second streaming domain with a certificate of a CA made in the run;
Chromium trusts that CA by its key's hash and resolves the domain to
loopback, so it asks the node for the name (SNI) as on the Internet.

`llhls-aes` and `hls-aes` play the same stream from a third streaming domain
with HLS encryption on (issue 16: AES-128, a new key every 10 segments, the
default), for LL-HLS and HLS with encryption against without:

    .venv/bin/python bench/latency/run.py --protocols llhls,llhls-aes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from bench.common import Processes, free_port, log, require_nginx_rtmp, wait_port  # noqa: E402

PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# tests/test_browser_console.py's flags, plus autoplay as tests/test_browser_player.py.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
# DESIGN.md's conditions for the latency figures.
CALIBRATOR_ARGS = ["--size", "1280x720", "--fps", "30", "--bitrate", "2M", "--gop-seconds", "1", "--bframes", "0"]
USERNAME, PASSWORD = "bench", "bench-pass-123"
PUSH, PLAY, APP, STREAM = "push.bench.test", "play.bench.test", "live", "calib"
PLAY_HTTPS = "tls.play.bench.test"  # the streaming domain with HTTPS on
PLAY_AES = "aes.play.bench.test"  # the streaming domain with HLS encryption on
# DESIGN.md, "The numbers we hold ourselves to" (p50s).
TARGETS = {"flv": 500, "llhls": 1000, "hls": 3500}
FIRST_FRAME_TARGET = {"flv": 300}
LABELS = {"flv": "HTTP-FLV", "llhls": "LL-HLS", "hls": "HLS", "nginx-hls": "HLS, nginx-rtmp"}
HTTPS = "https-"  # a protocol name's prefix: the same player protocol over HTTPS
LABELS |= {HTTPS + name: f"{LABELS[name]} over HTTPS" for name in ("flv", "llhls", "hls")}
AES = "-aes"  # a protocol name's suffix: the same player protocol from the encrypted domain
LABELS |= {name + AES: f"{LABELS[name]}, AES-128" for name in ("llhls", "hls")}

SETUP_SCRIPT = f"""
from django.contrib.auth import get_user_model
from domains import services
owner = get_user_model().objects.create_user({USERNAME!r}, password={PASSWORD!r})
services.add_domain(owner, {PUSH!r}, "ingest", "overseas", "ap-southeast-1")
play = services.add_domain(owner, {PLAY!r}, "streaming", "overseas", "ap-southeast-1")
services.associate_ingest(play, {PUSH!r})
"""
# The encrypted streaming domain: a sub-streaming domain of PLAY, so the same ingest's streams.
AES_SETUP_SCRIPT = f"""
from django.contrib.auth import get_user_model
from domains import services
owner = get_user_model().objects.get(username={USERNAME!r})
play = services.add_domain(owner, {PLAY_AES!r}, "streaming", "overseas", "ap-southeast-1")
play = services.bind_main_domain(play, {PLAY!r})
services.configure_hls_encryption(play, enabled=True)
"""
# The HTTPS streaming domain: its certificate (files named by argv) turns HTTPS on.
HTTPS_SETUP_SCRIPT = f"""
import os
from django.contrib.auth import get_user_model
from domains import services
owner = get_user_model().objects.get(username={USERNAME!r})
play = services.add_domain(owner, {PLAY_HTTPS!r}, "streaming", "overseas", "ap-southeast-1")
play = services.bind_main_domain(play, {PLAY!r})  # a sub-streaming domain: the same ingest's streams
with open(os.environ["BENCH_TLS_CHAIN"]) as chain, open(os.environ["BENCH_TLS_KEY"]) as key:
    services.upload_certificate(play, chain.read(), key.read())
"""


def https_setup(env: dict, workdir: Path) -> list[str]:
    """A CA and a leaf for PLAY_HTTPS (tests/tlssupport.py), uploaded to the
    console; the Chromium flags that trust the CA and resolve the name."""
    from tests.tlssupport import TestCa, spki_hash

    ca = TestCa(workdir)
    leaf = ca.issue([PLAY_HTTPS])
    chain, key = workdir / "leaf.pem", workdir / "leaf.key"
    chain.write_text(leaf.chain_pem)
    key.write_text(leaf.key_pem)
    key.chmod(0o600)
    manage({**env, "BENCH_TLS_CHAIN": str(chain), "BENCH_TLS_KEY": str(key)}, "shell", "-c", HTTPS_SETUP_SCRIPT)
    key.unlink()
    trust = f"--ignore-certificate-errors-spki-list={spki_hash(ca)}"
    return [trust, f"--host-resolver-rules=MAP {PLAY_HTTPS} 127.0.0.1"]


NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
user root;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
events {{ worker_connections 1024; }}
rtmp {{
    server {{
        listen 127.0.0.1:{rtmp_port};
        application hls {{
            live on;
            hls on;
            hls_path {prefix}/hls;
            hls_fragment 1s;
            hls_playlist_length 4s;
        }}
    }}
}}
http {{
    access_log off;
    types {{
        application/vnd.apple.mpegurl m3u8;
        video/mp2t ts;
        text/html html;
        application/javascript js;
    }}
    server {{
        listen 127.0.0.1:{hls_port};
        location /hls/ {{
            alias {prefix}/hls/;
            add_header Access-Control-Allow-Origin * always;
            add_header Cache-Control no-cache always;
        }}
    }}
    server {{
        listen 127.0.0.1:{page_port};
        root {prefix}/www;
    }}
}}
"""


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


@dataclass
class Result:
    name: str
    latency: list[int] = field(default_factory=list)
    first_frames: list[int] = field(default_factory=list)
    stalls: int = 0
    protocol_seen: str = ""
    error: str = ""
    # Per load: the player's buffer at its end (ms; RTS: WebRTC's jitter
    # buffer, getStats), and for RTS its receive counters (packets lost, NACKs, ...).
    buffers: list[int] = field(default_factory=list)
    rtc: list[dict] = field(default_factory=list)

    def row(self) -> dict:
        out = {"name": self.name, "samples": len(self.latency), "first_frames": self.first_frames}
        if self.buffers:
            out["buffer_ms"] = self.buffers
        if self.rtc:
            out["rtc"] = self.rtc
        out["stalls"], out["protocol_seen"], out["error"] = self.stalls, self.protocol_seen, self.error
        if self.latency:
            out["p50"], out["p95"] = percentile(self.latency, 50), percentile(self.latency, 95)
        if self.first_frames:
            out["ff_p50"] = statistics.median(self.first_frames)
        return out


def manage(env: dict, *args: str) -> str:
    """`manage.py *args` in the bench's environment; the last line it printed."""
    out = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    lines = out.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def start_nginx(procs: Processes, workdir: Path) -> tuple[subprocess.Popen, int, int, int]:
    prefix = workdir / "nginx"
    for sub in ("logs", "hls", "www/vendor"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    rtmp_port, hls_port, page_port = free_port(), free_port(), free_port()
    page = (HERE / "nginx_player.html").read_text()
    page = page.replace("__HLS_URL__", f"http://127.0.0.1:{hls_port}/hls/stream.m3u8")
    (prefix / "www" / "index.html").write_text(page)
    # The same player code the console serves, and hls.js from node_modules.
    shutil.copy(ROOT / "static" / "js" / "player.js", prefix / "www" / "player.js")
    shutil.copy(ROOT / "node_modules" / "hls.js" / "dist" / "hls.min.js", prefix / "www" / "vendor" / "hls.min.js")
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, rtmp_port=rtmp_port, hls_port=hls_port, page_port=page_port))
    proc = procs.start("nginx", ["nginx", "-p", str(prefix), "-c", str(conf)])
    for port in (rtmp_port, hls_port, page_port):
        wait_port(port)
    return proc, rtmp_port, hls_port, page_port


def signed_ingest_url(env: dict) -> str:
    """The RTMP URL the URL generator signs, sent to 127.0.0.1 (the calibrator
    command's own --domain path does the same; --url keeps one code path)."""
    script = (
        "from django.contrib.auth import get_user_model\n"
        "from django.conf import settings\n"
        "from domains import services\n"
        "from streams.player import via_media_host\n"
        f"owner = get_user_model().objects.get(username={USERNAME!r})\n"
        f"urls = services.generate_urls(owner, {PUSH!r}, {APP!r}, {STREAM!r})\n"
        "print(via_media_host(urls.ingest['rtmp'], '127.0.0.1', urls.ingest_domain))\n"
    )
    return manage(env, "shell", "-c", script)


PLAYER_STATE = "() => ({...window.livecenterPlayer.stats, latencySamples: undefined, attempts: undefined})"
# hls.js's own view of a load (its latency controller): the target it aims
# for, where it is, and what the playlist told it. None for other engines.
HLS_JS_STATE = """() => {
  const hls = window.livecenterPlayer.engine;
  if (!hls || typeof hls.targetLatency === "undefined") return null;
  const details = hls.latestLevelDetails, video = document.querySelector("video");
  const buffered = video.buffered.length ? video.buffered.end(video.buffered.length - 1) - video.currentTime : 0;
  return {target: hls.targetLatency, latency: hls.latency, partHoldBack: details && details.partHoldBack,
          holdBack: details && details.holdBack, buffer: buffered, rate: video.playbackRate};
}"""
STARTED = "window.livecenterPlayer && ['playing', 'failed'].includes(window.livecenterPlayer.stats.state)"


def log_in(context, console: str) -> None:
    """Sign the browser context in to the console as the bench's operator."""
    page = context.new_page()
    page.goto(f"{console}/accounts/login/")
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("#login-button")
    page.wait_for_url("**/domains/")
    page.close()


def open_player(context, url: str, timeout_ms: int = 20_000, trace: list | None = None) -> tuple[object, dict]:
    page = context.new_page()
    if trace is not None:
        # The page's console (hls.js logs with ?debug=1) and its requests, timed from the load.
        began = time.monotonic()
        stamp = lambda: f"{time.monotonic() - began:7.3f}"  # noqa: E731
        page.on("console", lambda m: trace.append(f"{stamp()} {m.type}: {m.text}"))
        page.on("request", lambda r: trace.append(f"{stamp()} request {r.url}"))
        page.on("requestfinished", lambda r: trace.append(f"{stamp()} finished {r.url}"))
        page.on("requestfailed", lambda r: trace.append(f"{stamp()} failed {r.url} {r.failure}"))
    page.set_default_timeout(timeout_ms)
    page.goto(url)
    page.wait_for_function(STARTED)
    state = page.evaluate(PLAYER_STATE)
    if state["state"] != "playing":
        attempts = page.evaluate("window.livecenterPlayer.stats.attempts")
        page.close()
        raise RuntimeError(f"the player did not play: {state.get('error')} {attempts}")
    return page, state


def measure(
    context, name: str, url: str, seconds: float, settle: float, loads: int, trace_dir: Path | None = None
) -> Result:
    """`loads` fresh page loads (after one warm-up load, not counted, which
    waits for the stream to be live): each gives a time to first frame, then
    settles and collects `seconds / loads` of per-frame latency samples. Once
    playing, latency hardly moves within one load (a millisecond of jitter);
    it changes with where in the keyframe and segment cycle a viewer joins,
    so the samples are pooled over the loads."""
    result = Result(name)
    window = seconds / loads
    try:
        for i in range(loads + 1):
            trace = [] if trace_dir is not None else None
            page, state = open_player(context, url + ("&debug=1" if trace is not None else ""), trace=trace)
            if i == 0:
                log(f"  {name}: warm-up load: first frame {state['firstFrameMs']} ms")
                page.close()
                continue
            result.first_frames.append(state["firstFrameMs"])
            page.wait_for_timeout(settle * 1000)
            page.evaluate("window.livecenterPlayer.stats.latencySamples.length = 0")
            stalls_before = page.evaluate(PLAYER_STATE)["stalls"]
            page.wait_for_timeout(window * 1000)
            samples = page.evaluate("window.livecenterPlayer.stats.latencySamples.slice()")
            end = page.evaluate(PLAYER_STATE)
            hls_js = page.evaluate(HLS_JS_STATE)
            page.close()
            if trace is not None:
                (trace_dir / f"{name}-load{i}.log").write_text("\n".join(trace) + "\n")
            result.latency += samples
            result.stalls += end["stalls"] - stalls_before
            if end.get("bufferSeconds") is not None:
                result.buffers.append(round(end["bufferSeconds"] * 1000))
            if end.get("rtc"):
                result.rtc.append(end["rtc"])
            result.protocol_seen = end["protocol"]
            median = percentile(samples, 50) if samples else None
            log(f"  {name}: load {i}/{loads}: first frame {state['firstFrameMs']} ms, latency p50 {median} ms"
                f" over {len(samples)} frames, {end['protocol']}, {end['fps']:.1f} fps"
                + (f", buffer {result.buffers[-1]} ms" if result.buffers else "")
                + (f", rtc {end['rtc']}" if end.get("rtc") else "")
                + (" (hls.js: target {target:.2f} s, latency {latency:.2f} s, part hold back {partHoldBack},"
                   " buffer {buffer:.2f} s, rate {rate})".format(**hls_js) if hls_js else ""))  # fmt: skip
    except Exception as exc:  # noqa: BLE001 (reported in the table)
        result.error = str(exc).splitlines()[0][:200]
        log(f"  {name}: FAILED: {result.error}")
    return result


def wait_live(procs: Processes, calibrator: subprocess.Popen, name: str, check, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if calibrator.poll() is not None:
            raise RuntimeError(f"the calibrator stopped: {procs.tail(name)}")
        if check():
            return
        time.sleep(0.2)
    raise RuntimeError(f"the stream did not go live: {procs.tail(name)}")


def table(results: list[Result]) -> str:
    lines = [
        "| protocol | latency p50 | latency p95 | max | samples | first frame p50 (loads) | stalls | target | met? |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    by_name = {r.name: r for r in results}
    for r in results:
        row = r.row()
        if r.error and not r.latency:
            lines.append(f"| {LABELS[r.name]} | failed: {r.error} | | | | | | | |")
            continue
        key = "hls" if r.name == "nginx-hls" else r.name.removeprefix(HTTPS).removesuffix(AES)
        target = TARGETS[key]
        met = row["p50"] <= target
        ff_target = FIRST_FRAME_TARGET.get(key)
        target_text = f"≤ {target} ms" + (f"; first frame ≤ {ff_target} ms" if ff_target else "")
        if ff_target:
            met_text = f"{'yes' if met else 'no'}; {'yes' if row['ff_p50'] <= ff_target else 'no'}"
        else:
            met_text = "yes" if met else "no"
        if r.name == "nginx-hls":
            target_text, met_text = "reference: 4.6 s", "(reference)"
        ffs = ", ".join(str(f) for f in r.first_frames)
        lines.append(
            f"| {LABELS[r.name]} | {row['p50']} ms | {row['p95']} ms | {max(r.latency)} ms | {row['samples']} |"
            f" {row['ff_p50']:.0f} ms ({ffs}) | {r.stalls} | {target_text} | {met_text} |"
        )
    ours, theirs = by_name.get("hls"), by_name.get("nginx-hls")
    if ours and theirs and ours.latency and theirs.latency:
        a, b = percentile(ours.latency, 50), percentile(theirs.latency, 50)
        lines.append(f"\nHLS latency p50, livecenter / nginx-rtmp: {a} / {b} ms = {a / b:.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--seconds", type=float, default=30, help="latency samples per protocol, split over the loads (default 30)"
    )
    parser.add_argument(
        "--settle", type=float, default=5, help="play this long after the first frame before sampling (default 5)"
    )
    parser.add_argument("--loads", type=int, default=5, help="fresh page loads for first frame (default 5)")
    parser.add_argument("--protocols", default="flv,llhls,hls,nginx-hls")
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    parser.add_argument(
        "--trace", type=Path, help="write each load's console (hls.js debug log) and requests here, one file per load"
    )
    args = parser.parse_args()
    if args.trace is not None:
        args.trace.mkdir(parents=True, exist_ok=True)
    names = [p.strip() for p in args.protocols.split(",") if p.strip()]
    unknown = set(names) - set(LABELS)
    if unknown:
        sys.exit(f"--protocols: unknown {sorted(unknown)}")
    from playwright.sync_api import sync_playwright

    began = time.monotonic()
    if "nginx-hls" in names:
        require_nginx_rtmp()
    workdir = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    rtmp_port, http_port, https_port, console_port = free_port(), free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "LIVECENTER_DATA_DIR": str(workdir / "data"),
        "DJANGO_SETTINGS_MODULE": "livecenter.settings",
        "LIVECENTER_RTMP_PORT": str(rtmp_port),
        "LIVECENTER_HTTP_PORT": str(http_port),
        "LIVECENTER_HTTPS_PORT": str(https_port),
        "LIVECENTER_MEDIA_HTTPS_PORT": str(https_port),
        "LIVECENTER_MEDIA_HOST": "127.0.0.1",
        "LIVECENTER_PLAYER_MEDIA_HOST": "127.0.0.1",
        "LIVECENTER_NODE_ID": "bench-latency",
        "LIVECENTER_LOG_LEVEL": "WARNING",
    }
    procs = Processes(workdir, env)
    results: list[Result] = []
    try:
        log(f"setting up in {workdir} ...")
        manage(env, "migrate", "--noinput")
        manage(env, "shell", "-c", SETUP_SCRIPT)
        chromium_args = list(CHROMIUM_ARGS)
        if any(n.startswith(HTTPS) for n in names):
            chromium_args += https_setup(env, workdir)
        if any(n.endswith(AES) for n in names):
            manage(env, "shell", "-c", AES_SETUP_SCRIPT)
        ingest = signed_ingest_url(env)
        procs.start("medianode", [PYTHON, "manage.py", "medianode", "--host", "127.0.0.1",
                                  "--rtmp-port", str(rtmp_port), "--http-port", str(http_port)])  # fmt: skip
        procs.start("console", [PYTHON, "manage.py", "runall", "--no-media", "--no-worker",
                                "--host", "127.0.0.1", "--port", str(console_port)])  # fmt: skip
        wait_port(rtmp_port)
        wait_port(http_port)
        wait_port(https_port)
        wait_port(console_port)
        nginx = None
        if "nginx-hls" in names:
            nginx, nginx_rtmp, nginx_hls, nginx_page = start_nginx(procs, workdir)
        console = f"http://127.0.0.1:{console_port}"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=chromium_args)
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            log_in(context, console)
            ours = [n for n in names if n != "nginx-hls"]
            if ours:
                calibrator = procs.start("calibrator", [PYTHON, "manage.py", "calibrator", "--url", ingest,
                                                        *CALIBRATOR_ARGS])  # fmt: skip
                time.sleep(3)  # the encoder starts; the first, discarded, page load waits for the rest
                if calibrator.poll() is not None:
                    raise RuntimeError(f"the calibrator stopped: {procs.tail('calibrator')}")
                for name in ours:
                    log(f"{LABELS[name]} ...")
                    domain, protocol = (PLAY_HTTPS, name[len(HTTPS) :]) if name.startswith(HTTPS) else (PLAY, name)
                    if name.endswith(AES):
                        domain, protocol = PLAY_AES, name.removesuffix(AES)
                    url = f"{console}/player/?domain={domain}&app={APP}&stream={STREAM}&protocol={protocol}"
                    results.append(measure(context, name, url, args.seconds, args.settle, args.loads, args.trace))
                procs.stop(calibrator)
            if nginx is not None:
                log(f"{LABELS['nginx-hls']} ...")
                calibrator = procs.start("calibrator-nginx", [PYTHON, "manage.py", "calibrator", "--url",
                                         f"rtmp://127.0.0.1:{nginx_rtmp}/hls/stream", *CALIBRATOR_ARGS])  # fmt: skip
                playlist = workdir / "nginx" / "hls" / "stream.m3u8"
                wait_live(procs, calibrator, "calibrator-nginx", playlist.exists)
                time.sleep(4)  # a full playlist (hls_playlist_length 4s), as a viewer joining a running stream
                results.append(
                    measure(context, "nginx-hls", f"http://127.0.0.1:{nginx_page}/", args.seconds, args.settle,
                            args.loads)
                )  # fmt: skip
                procs.stop(calibrator)
            browser.close()
    finally:
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"kept {workdir}")
    print()
    print(f"machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}")
    print(table(results))
    print(f"(total {time.monotonic() - began:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps([r.row() for r in results], indent=1))


if __name__ == "__main__":
    main()
