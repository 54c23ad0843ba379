"""The cluster bench (issue 14, bench/README.md "bench/cluster"):

1. `latency`: glass-to-glass latency of the web player in headless Chromium
   (bench/latency's calibrator, player and measuring; bench/rts's WebRTC
   flags) over HTTP-FLV and RTS, for one stream pushed to edge-a, relayed to
   the center, pulled by edge-b and played there, with the edge↔center link
   at each --delays one-way delay; and the single-node figure in the same
   run: the calibrator pushing to the center and the player playing from it.
   The added latency is the cluster's p50 minus the single node's p50 minus
   the link's own delay on the path (the push crosses the link once, the
   pull once: twice the one-way delay).
2. `viewers`: how many HTTP-FLV viewers of one stream (bench/fanout's clip
   and C load generator, its verdict and search) edge-a and edge-b hold
   together against the center alone. Each serving node is pinned to a core
   of its own (the center to core 0; edge-a to 0, edge-b to 1); the load
   generators are not pinned. The nodes run without a capacity (as
   bench/fanout's): a step passes when every viewer was admitted and none
   stalled (fanout's verdict: 90 % of the clip's byte rate over the window,
   no gap over 2 s, not closed).

The cluster is tests/test_cluster_netns.py's (tests/clustersupport.py): each
node a `manage.py medianode` process in a network namespace of its own, the
center advertising the "wan" host where the TCP impairment relay
(tests/netimpair.py) stands in front of its RTMP port, so the edge's relay
and the edge's pull cross the link; PostgreSQL (a database made for the run
over the local socket, dropped after) and a Redis of its own on a Unix socket.
The consoles (one per node played from) and Chromium run in the root
namespace. Root only (namespaces). Run under the bench lock:

    flock /tmp/livecenter-bench.lock .venv/bin/python bench/cluster/run.py [--parts latency,viewers]
        [--delays 0,150] [--seconds 15] [--loads 3] [--budget 900]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.common import Processes, free_port, log, wait_port  # noqa: E402
from bench.fanout.run import (  # noqa: E402
    CLK_TCK,
    Step,
    compile_loadgen,
    cpu_ticks,
    flv_get_blob,
    loadgen_command,
    make_clip,
    rss_kib,
    search,
)
from bench.latency.run import (  # noqa: E402
    APP,
    CALIBRATOR_ARGS,
    CHROMIUM,
    PLAY,
    PYTHON,
    SETUP_SCRIPT,
    STREAM,
    USERNAME,
    log_in,
    manage,
    measure,
    percentile,
    signed_ingest_url,
)
from bench.rts.run import CHROMIUM_ARGS  # noqa: E402

PG_SOCKET_DIR = "/var/run/postgresql"
REGION = "ap-southeast-1"  # bench/latency's domains' live center
RTS_ADDED_TARGET_MS = 100
LABELS = {"flv": "HTTP-FLV", "rts": "RTS"}
HOSTS = ("center", "edge-a", "edge-b", "wan")


def make_database() -> tuple[str, str]:
    """A PostgreSQL database of the run's own, over the local socket."""
    name = f"lc_bench_cluster_{secrets.token_hex(4)}"
    subprocess.run(["psql", "-h", PG_SOCKET_DIR, "-U", "postgres", "-q", "-c", f"CREATE DATABASE {name}"],
                   check=True, capture_output=True)  # fmt: skip
    return name, f"postgres://postgres@{PG_SOCKET_DIR.replace('/', '%2F')}:5432/{name}"


def drop_database(name: str) -> None:
    subprocess.run(["psql", "-h", PG_SOCKET_DIR, "-U", "postgres", "-q", "-c",
                    f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], capture_output=True)  # fmt: skip


def signed_flv_path(env: dict) -> str:
    """The streaming domain's signed HTTP-FLV path and query (`domain=` added)."""
    script = (
        "from django.contrib.auth import get_user_model\n"
        "from domains import services\n"
        f"owner = get_user_model().objects.get(username={USERNAME!r})\n"
        f"urls = services.generate_urls(owner, 'push.bench.test', {APP!r}, {STREAM!r})\n"
        "print(urls.playback['flv'])\n"
    )
    url = manage(env, "shell", "-c", script)
    path = "/" + url.split("://", 1)[1].split("/", 1)[1]
    return f"{path}&domain={PLAY}"


def pin(pid: int, cores: str) -> None:
    """Every thread of `pid` on `cores`."""
    subprocess.run(["taskset", "-a", "-p", "-c", cores, str(pid)], check=True, capture_output=True)


class Bench:
    def __init__(self, args, workdir: Path) -> None:
        self.args, self.workdir = args, workdir
        self.env: dict = {}
        self.cluster = None
        self.procs: Processes | None = None
        self.consoles: dict[str, str] = {}

    # --- set-up

    def setup(self, net, redis_url: str, database_url: str) -> None:
        from tests.clustersupport import Cluster

        self.net = net
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "livecenter.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
            "LIVECENTER_DATA_DIR": str(self.workdir / "console"),
            "LIVECENTER_LOG_LEVEL": "WARNING",
        }
        self.procs = Processes(self.workdir, self.env)
        log("migrating and adding the operator and the domains ...")
        manage(self.env, "migrate", "--noinput")
        manage(self.env, "shell", "-c", SETUP_SCRIPT)
        # 127.0.0.1:1935 in the signed URL: sent to a node's address below.
        self.ingest = signed_ingest_url(self.env)
        self.flv_path = signed_flv_path(self.env)
        node_env = {
            "DATABASE_URL": database_url,
            "DJANGO_SECRET_KEY": self.env["DJANGO_SECRET_KEY"],
            "LIVECENTER_CLUSTER_KEY": secrets.token_urlsafe(24),
            "LIVECENTER_LOG_LEVEL": "WARNING",
            "LIVECENTER_PLAY_WAIT_SECONDS": "10",
            "LIVECENTER_EDGE_PULL_IDLE_SECONDS": "2",
            # Measured without a capacity, as bench/fanout: a viewer refused is a failed step.
            "LIVECENTER_MEDIA_MAX_EGRESS_MBPS": "0",
            "LIVECENTER_MEDIA_MAX_LOOP_LAG_MS": "0",
            # Every load generator's viewer comes from the one bridge address.
            "LIVECENTER_MEDIA_MAX_CONNECTIONS_PER_ADDRESS": "1000000",
        }
        self.cluster = Cluster(net, redis_url, node_env, self.workdir)
        self.cluster.link("wan", "center", delay_ms=0)
        self.cluster.start("center", "center", advertise="wan", region=REGION)
        self.cluster.start("edge-a", "edge", advertise="edge-a", region=REGION)
        self.cluster.start("edge-b", "edge", advertise="edge-b", region=REGION)
        # One console per node the player plays from (LIVECENTER_PLAYER_MEDIA_HOST).
        for host in ("center", "edge-b"):
            port = free_port()
            env = {**self.env, "LIVECENTER_PLAYER_MEDIA_HOST": net.address(host)}
            self.procs.env = env
            self.procs.start(f"console-{host}", [PYTHON, "manage.py", "runall", "--no-media", "--no-worker",
                                                 "--host", "127.0.0.1", "--port", str(port)])  # fmt: skip
            self.consoles[host] = f"http://127.0.0.1:{port}"
        self.procs.env = self.env
        log("waiting for the nodes and the consoles ...")
        self.cluster.wait_beating("center", "edge-a", "edge-b")
        for console in self.consoles.values():
            wait_port(int(console.rsplit(":", 1)[1]), timeout=120)

    def key(self):
        from livecenter.media.policy import StreamKey

        return StreamKey("push.bench.test", APP, STREAM)

    def live_on(self, host: str | None) -> bool:
        """Whether `host` carries the stream (None: whether no node does)."""
        carriers = [h for h in ("center", "edge-a", "edge-b") if self.cluster.carries(h, self.key())]
        return host in carriers if host else not carriers

    def publish(self, name: str, host: str, cmd_head: list[str]) -> subprocess.Popen:
        """A publisher of the stream to `host` once no node carries it (the
        one-publisher rule holds until the last one's beat is gone)."""
        from tests.workersupport import wait_until

        if not wait_until(lambda: self.live_on(None), 30):
            raise RuntimeError("the previous publisher's stream is still carried")
        url = self.ingest.replace("://127.0.0.1", f"://{self.net.address(host)}", 1)
        proc = self.procs.start(name, [*cmd_head, url])
        if not wait_until(lambda: self.live_on("center") or proc.poll() is not None, 60) or proc.poll() is not None:
            raise RuntimeError(f"{name}: the stream did not reach the center: {self.procs.tail(name)}")
        return proc

    # --- 1. latency

    def latency(self, context) -> list[dict]:
        rows = []
        phases = [("single node (center)", "center", "center", None)]
        phases += [(f"edge-a → center → edge-b, {d:g} ms", "edge-a", "edge-b", d) for d in self.args.delays]
        calibrator_cmd = [PYTHON, "manage.py", "calibrator", *CALIBRATOR_ARGS, "--url"]
        for i, (label, push_to, play_from, delay) in enumerate(phases):
            if delay is not None:
                self.cluster.link("wan", "center", delay_ms=delay)
            log(f"{label} ...")
            calibrator = self.publish(f"calibrator-{i}", push_to, calibrator_cmd)
            time.sleep(2)  # the encoder's first GOPs; the first, discarded, page load waits for the rest
            for protocol in self.args.protocols:
                url = (f"{self.consoles[play_from]}/player/?domain={PLAY}&app={APP}&stream={STREAM}"
                       f"&protocol={protocol}")  # fmt: skip
                result = measure(context, protocol, url, self.args.seconds, self.args.settle, self.args.loads)
                rows.append({"path": label, "delay_ms": delay, "protocol": protocol, **result.row()})
            self.procs.stop(calibrator)
        return rows

    # --- 2. viewers

    def viewers(self, deadline: float) -> list[dict]:
        loadgen = compile_loadgen(self.workdir)
        clip = self.workdir / "clip.flv"
        self.rate = make_clip(clip)
        self.cluster.link("wan", "center", delay_ms=0)
        ffmpeg = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip)]
        self.clip_cmd, self.clip = [*ffmpeg, "-c", "copy", "-f", "flv"], None
        blob = self.workdir / "blob-flv"
        out = []
        try:
            setups = [("center", {"center": "0"}), ("edge-a + edge-b", {"edge-a": "0", "edge-b": "1"})]
            share = (deadline - time.monotonic()) / len(setups)
            for name, pins in setups:
                step_deadline = time.monotonic() + share
                steps, best = search(
                    lambda n, pins=pins, name=name: self.viewer_step(name, pins, n, loadgen, blob),
                    self.args.start,
                    self.args.max,
                    self.args.refine,
                    step_deadline,
                )
                out.append({"serving": name, "best": best, "steps": [s.__dict__ for s in steps]})
        finally:
            self.procs.stop(self.clip) if self.clip else None
        return out

    def drained(self, pins: dict[str, str]) -> None:
        """Every node started afresh before a step (as bench/fanout starts
        its server for each): a step after an overload must not run on
        processes still draining its backlog. The center's restart ends the
        publisher's session: the clip is published to it again."""
        self.procs.stop(self.clip) if self.clip else None
        self.cluster.restart("center", "edge-a", "edge-b")
        self.clip = self.publish("clip", "center", self.clip_cmd)
        for host, proc in self.cluster.nodes.items():
            pin(proc.pid, pins.get(host, "0,1"))

    def viewer_step(self, name: str, pins: dict[str, str], n: int, loadgen: Path, blob: Path) -> Step:
        """`n` viewers split evenly over the hosts in `pins`, one load
        generator each, all at once, on nodes started afresh."""
        self.drained(pins)
        hosts, rate = list(pins), self.rate
        pids = [self.cluster.nodes[h].pid for h in hosts]
        rss0 = sum(rss_kib(pid) for pid in pids)
        gens = []
        # Written once, before any generator starts: one that reads it while
        # it is written again for the next host sends an empty request, and
        # every viewer of its host waits for the node's idle timeout to close.
        blob.write_bytes(flv_get_blob(8080, self.flv_path))
        for i, host in enumerate(hosts):
            share = n // len(hosts) + (1 if i < n % len(hosts) else 0)
            cmd = loadgen_command(self.args, loadgen, "flv", 8080, share, blob, rate, host=self.net.address(host))
            gens.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
        results: list[dict] = [{} for _ in gens]
        marks: dict[str, tuple[float, int]] = {}
        peak = [rss0]
        done = threading.Event()

        def read(i: int, proc: subprocess.Popen) -> None:
            for line in proc.stdout:
                word = line.split(" ", 1)[0].strip()
                if i == 0 and word in ("MEASURE_START", "MEASURE_END"):
                    marks[word] = (time.monotonic(), sum(cpu_ticks(pid) for pid in pids))
                elif word == "RESULT":
                    results[i] = json.loads(line.split(" ", 1)[1])

        def sample() -> None:
            while not done.wait(0.5):
                peak[0] = max(peak[0], sum(rss_kib(pid) for pid in pids))

        readers = [threading.Thread(target=read, args=(i, g), daemon=True) for i, g in enumerate(gens)]
        sampler = threading.Thread(target=sample, daemon=True)
        for t in [*readers, sampler]:
            t.start()
        timeout = n / 1000 + self.args.warmup + self.args.measure + 30
        for g in gens:
            try:
                g.wait(max(1.0, timeout))
            except subprocess.TimeoutExpired:
                g.kill()
                g.wait()
        for t in readers:
            t.join(5)
        done.set()
        merged: dict = {}
        for key in ("admitted", "refused", "closed", "slow", "gapped", "stalled", "loadgen_cpu_s", "loadgen_wall_s"):
            merged[key] = sum(r.get(key, 0) for r in results)
        merged["worst_gap_ms"] = max((r.get("worst_gap_ms", 0) for r in results), default=0)
        merged["min_rate"] = min((r.get("min_rate", 0) for r in results), default=0)
        merged["median_rate"] = percentile([r.get("median_rate", 0) for r in results], 50)
        stalled = merged["stalled"] if all(results) else n
        cpu = 0.0
        if "MEASURE_START" in marks and "MEASURE_END" in marks:
            (t0, c0), (t1, c1) = marks["MEASURE_START"], marks["MEASURE_END"]
            cpu = 100.0 * (c1 - c0) / CLK_TCK / (t1 - t0)
        ok = all(results) and stalled == 0 and merged["refused"] == 0  # every viewer held, none refused
        return Step(name, "flv", n, ok, stalled, cpu, rss0, peak[0], merged)


def latency_table(rows: list[dict], delays: list[float]) -> str:
    lines = [
        "| path | protocol | latency p50 | p95 | samples | first frame p50 | stalls | added over single node"
        " and link | target |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    single = {r["protocol"]: r.get("p50") for r in rows if r["delay_ms"] is None}
    for r in rows:
        if "p50" not in r:
            lines.append(f"| {r['path']} | {LABELS[r['protocol']]} | failed: {r.get('error')} | | | | | | |")
            continue
        added, target = "", ""
        base = single.get(r["protocol"])
        if r["delay_ms"] is not None and base is not None:
            link = 2 * r["delay_ms"]
            value = r["p50"] - base - link
            added = f"{value:+.0f} ms (p50 − {base} − {link:g})"
            if r["protocol"] == "rts":
                target = f"< {RTS_ADDED_TARGET_MS} ms: {'yes' if value < RTS_ADDED_TARGET_MS else 'no'}"
        lines.append(
            f"| {r['path']} | {LABELS[r['protocol']]} | {r['p50']} ms | {r['p95']} ms | {r['samples']} |"
            f" {r['ff_p50']:.0f} ms | {r['stalls']} | {added} | {target} |"
        )
    return "\n".join(lines)


def viewers_table(rows: list[dict]) -> str:
    lines = ["| serving | max FLV viewers, none stalling | first failing step | CPU at max (serving nodes) |",
             "| --- | ---: | ---: | ---: |"]  # fmt: skip
    for r in rows:
        at = next((s for s in r["steps"] if s["n"] == r["best"]), None)
        fails = [s["n"] for s in r["steps"] if not s["ok"]]
        cpu = f"{at['cpu_percent']:.0f} %" if at else "-"
        lines.append(f"| {r['serving']} | {r['best']} | {min(fails) if fails else 'none'} | {cpu} |")
    if len(rows) == 2 and rows[0]["best"]:
        lines.append(f"\ntwo edges / one node: {rows[1]['best']} / {rows[0]['best']} = "
                     f"{rows[1]['best'] / rows[0]['best']:.2f}")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="latency,viewers")
    parser.add_argument("--delays", default="0,150", help="one-way delays of the edge↔center link, ms")
    parser.add_argument("--protocols", default="flv,rts")
    parser.add_argument("--seconds", type=float, default=15, help="latency samples per measurement, over the loads")
    parser.add_argument("--settle", type=float, default=4, help="play this long after the first frame")
    parser.add_argument("--loads", type=int, default=3, help="fresh page loads per measurement")
    parser.add_argument("--start", type=int, default=250, help="viewers: first step")
    parser.add_argument("--max", type=int, default=8000, help="viewers: never more than this")
    parser.add_argument("--refine", type=int, default=2, help="viewers: bisection steps")
    parser.add_argument("--warmup", type=float, default=4.0, help="viewers: seconds after all stream")
    parser.add_argument("--measure", type=float, default=10.0, help="viewers: seconds of the window")
    parser.add_argument("--poll-ms", type=int, default=0)
    parser.add_argument("--budget", type=float, default=900, help="seconds for the whole bench")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()
    args.delays = [float(d) for d in args.delays.split(",") if d]
    args.protocols = [p for p in args.protocols.split(",") if p]
    parts = [p for p in args.parts.split(",") if p]
    began = time.monotonic()
    deadline = began + args.budget

    from tests.netns import Network
    from tests.redissupport import UnixRedis

    workdir = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    db_name, database_url = make_database()
    os.environ.update(DJANGO_SETTINGS_MODULE="livecenter.settings", DATABASE_URL=database_url,
                      LIVECENTER_DATA_DIR=str(workdir / "console"))  # fmt: skip
    import django

    django.setup()
    bench = Bench(args, workdir)
    report: dict = {}
    try:
        with Network(HOSTS) as net, UnixRedis() as redis_server:
            try:
                bench.setup(net, redis_server.url, database_url)
                log(f"set up in {time.monotonic() - began:.0f} s")
                if "latency" in parts:
                    from playwright.sync_api import sync_playwright

                    with sync_playwright() as p:
                        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                        context = browser.new_context(viewport={"width": 1400, "height": 900})
                        log_in(context, bench.consoles["center"])  # one session: both consoles' cookie
                        report["latency"] = bench.latency(context)
                        browser.close()
                if "viewers" in parts:
                    report["viewers"] = bench.viewers(deadline - 20)
            finally:
                bench.procs.stop_all() if bench.procs else None
                bench.cluster.stop() if bench.cluster else None
    finally:
        drop_database(db_name)
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}")
    if "latency" in report:
        print(latency_table(report["latency"], args.delays))
    if "viewers" in report:
        print()
        print(viewers_table(report["viewers"]))
    print(f"(total {time.monotonic() - began:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
