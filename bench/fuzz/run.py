"""The fuzz campaign: atheris (libFuzzer) on each sans-IO parser, one
process per target, seeded from bench/fuzz/seeds/ (make_seeds.py).

    nice -n 10 .venv/bin/python bench/fuzz/run.py --all --runs 1000000
    .venv/bin/python bench/fuzz/run.py --target flv --runs 100000

Each target first runs its "at the limits" inputs (each named size limit,
exactly and one past), then fuzzes. It reports executions, exec/s, the
coverage libFuzzer counts (`cov`: edges, `ft`: features), the findings
(an exception other than the parser's protocol error, or an input whose CPU
time stays over 100 ms when re-run) and the slowest input's CPU time.
Inputs that were findings are kept in var/fuzz/findings/; the grown corpus in
var/fuzz/corpus/. The process runs at nice 10 unless --no-nice: the machine
is shared, and timing is per-input CPU time, not wall-clock.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = ROOT / "var" / "fuzz"
sys.path.insert(0, str(HERE))

_COV = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+)", re.MULTILINE)
_STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.MULTILINE)


def run_target(name: str, runs: int, max_seconds: int) -> dict:
    stats_path = WORK / f"{name}.json"
    log_path = WORK / f"{name}.log"
    corpus = WORK / "corpus" / name
    findings = WORK / "findings"
    corpus.mkdir(parents=True, exist_ok=True)
    findings.mkdir(parents=True, exist_ok=True)
    stats_path.unlink(missing_ok=True)
    command = [
        sys.executable,
        str(HERE / "targets.py"),
        name,
        str(stats_path),
        str(findings),
        f"-runs={runs}",
        f"-max_total_time={max_seconds}",
        "-print_final_stats=1",
        "-timeout=60",  # wall-clock backstop only; the 100 ms bound is checked in CPU time by the harness
        "-rss_limit_mb=3072",
        f"-artifact_prefix={findings}/{name}-crash-",
        str(corpus),
        str(HERE / "seeds" / name),
    ]
    env = {**os.environ, "LIVECENTER_FUZZ_INSTRUMENT": "1"}
    started = time.monotonic()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with log_path.open("w") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
    wall = time.monotonic() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    text = log_path.read_text(errors="replace")
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {"findings": {}}
    libfuzzer = {k: int(v) for k, v in _STAT.findall(text)}
    coverage = _COV.findall(text)
    last = coverage[-1] if coverage else ("0", "0", "0", "0", "0")
    execs = libfuzzer.get("number_of_executed_units", int(last[0]))
    if code != 0 and not stats["findings"]:
        stats["findings"]["the fuzzer stopped"] = {"count": 1, "detail": text[-2000:], "input": str(findings)}
    limits = stats.get("limits", [])
    return {
        "target": name,
        "execs": execs,
        "seconds": round(wall),
        "cpu_seconds": round(cpu),
        "exec_per_cpu_s": round(execs / cpu) if cpu else 0,
        "exec_per_s": libfuzzer.get("average_exec_per_sec", round(execs / wall) if wall else 0),
        "cov": int(last[1]),
        "ft": int(last[2]),
        "corpus": f"{last[3]}/{last[4]}",
        "findings": {k: v["count"] for k, v in stats["findings"].items()},
        "finding_inputs": {k: v["input"] for k, v in stats["findings"].items()},
        "slowest_cpu_ms": stats.get("slowest_cpu_ms"),
        "limits_ok": f"{sum(x['ok'] for x in limits)}/{len(limits)}",
        "limit_failures": [x for x in limits if not x["ok"]],
        "slowest_limit": max(limits, key=lambda x: x["cpu_ms"], default=None),
        "exit": code,
        "log": str(log_path),
    }


def main() -> int:
    from targets import TARGETS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--target", choices=sorted(TARGETS))
    which.add_argument("--all", action="store_true")
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--max-seconds", type=int, default=3600, help="per target: stop there if --runs is not reached")
    parser.add_argument("--no-nice", action="store_true")
    args = parser.parse_args()
    if not args.no_nice:
        os.nice(10)
    WORK.mkdir(parents=True, exist_ok=True)
    names = list(TARGETS) if args.all else [args.target]
    results = []
    print(
        f"{'target':16} {'execs':>9} {'s':>5} {'exec/s':>7} {'cpu s':>6} {'exec/cpu s':>10} {'cov':>5} {'ft':>6} "
        f"{'slowest ms':>10} limits findings"
    )
    for name in names:
        r = run_target(name, args.runs, args.max_seconds)
        results.append(r)
        (WORK / f"{name}.result.json").write_text(json.dumps(r, indent=1))
        print(
            f"{name:16} {r['execs']:>9} {r['seconds']:>5} {r['exec_per_s']:>7} {r['cpu_seconds']:>6} "
            f"{r['exec_per_cpu_s']:>10} {r['cov']:>5} {r['ft']:>6} "
            f"{r['slowest_cpu_ms']!s:>10} {r['limits_ok']:>6} {r['findings'] or 'none'}",
            flush=True,
        )
        for failure in r["limit_failures"]:
            print(f"  limit failed: {failure['label']}: {failure['error']}")
    if args.all:
        (WORK / "results.json").write_text(json.dumps(results, indent=1))
    return 1 if any(r["findings"] or r["limit_failures"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
