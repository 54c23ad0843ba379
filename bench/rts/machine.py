"""Where the CPU goes while bench/rts's latency part measures (issue 18,
"latency under load").

`MachineSampler` reads /proc every SAMPLE_SECONDS in a thread: the CPU time
of every process below the bench (run.py's descendants), each thread's last
CPU, each CPU's busy and softirq time, the load average, and the media
node's own view of its event loop (`GET /_node/status`: the median lateness
of its 100 ms probe timer over 3 s, the latest probe of those 3 s, and
the garbage collector's pauses).
`window(start, end)` sums a measurement's stretch into one dict: % of one
core per role (the roles are the bench's children, named by the caller;
anything else below run.py is its browser, Playwright's driver and
Chromium), how much of each role ran on which CPU, the CPUs' busy and
softirq shares, and the node's loop lag.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from pathlib import Path

from bench.rts import topology

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE_SECONDS = 0.5
BROWSER = "browser"  # what is below run.py and no named role's: Playwright's driver and Chromium
BENCH = "bench"  # run.py itself


def _tasks(pid: int) -> list[tuple[float, int]]:
    """(CPU seconds, last CPU) of each thread of `pid`."""
    out = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out.append(((int(fields[11]) + int(fields[12])) / CLOCK_TICKS, int(fields[36])))
    return out


def _parents() -> dict[int, int]:
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            parents[int(name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def _cpu_times() -> list[tuple[float, float, float]]:
    """(total, idle + iowait, softirq) seconds of each CPU (topology.py reads /proc/stat)."""
    return [
        (sum(cpu.values()), cpu["idle"] + cpu["iowait"], cpu["softirq"])
        for cpu in topology.parse_cpu_seconds(topology.PROC_STAT.read_text())
    ]


class MachineSampler:
    """`roles`: {name: pid} of the bench's children to tell apart (their
    descendants count as theirs); `status_url`: the node's /_node/status."""

    def __init__(self, roles: dict[str, int], status_url: str | None = None) -> None:
        self.roles = dict(roles)
        self.status_url = status_url
        # (wall time, {role: {cpu: CPU seconds}}, per-CPU times, load average, node status or None)
        self.samples: list[tuple[float, dict, list, float, dict | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def add(self, name: str, pid: int) -> None:
        self.roles[name] = pid

    @staticmethod
    def _role_of(pid: int, parents: dict[int, int], me: int, by_pid: dict[int, str]) -> str | None:
        seen = 0
        while pid and seen < 64:
            if pid in by_pid:
                return by_pid[pid]
            if pid == me:
                return BENCH
            parent = parents.get(pid, 0)
            if parent == me:
                return BROWSER
            pid, seen = parent, seen + 1
        return None

    def _read(self) -> tuple[float, dict, list, float, dict | None]:
        parents, me = _parents(), os.getpid()
        by_pid = {pid: name for name, pid in self.roles.items()}
        by_role: dict[str, dict[int, float]] = {}
        for pid in parents:
            role = self._role_of(pid, parents, me, by_pid)
            if role is None:
                continue
            cores = by_role.setdefault(role, {})
            for seconds, cpu in _tasks(pid):
                cores[cpu] = cores.get(cpu, 0.0) + seconds
        status = None
        if self.status_url:
            try:
                with urllib.request.urlopen(self.status_url, timeout=2) as response:
                    status = json.loads(response.read())
            except (OSError, ValueError):
                status = None
        return time.time(), by_role, _cpu_times(), os.getloadavg()[0], status

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self._read())
            self._stop.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self._stop.set()

    def window(self, start: float, end: float) -> dict:
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return {}
        first, last = inside[0], inside[-1]
        seconds = last[0] - first[0]
        roles = {}
        for role, cores in last[1].items():
            before = first[1].get(role, {})
            # A thread's CPU time is booked on the CPU it last ran on: right
            # for a thread that stays on one CPU (pinned), an approximation else.
            spent = {cpu: total - before.get(cpu, 0.0) for cpu, total in cores.items()}
            total = sum(spent.values())
            if total <= 0:
                continue
            roles[role] = {
                "cpu": round(100 * total / seconds, 1),
                "on": {str(cpu): round(100 * s / seconds, 1) for cpu, s in sorted(spent.items()) if s > 0.005},
            }
        cores = []
        for a, b in zip(first[2], last[2], strict=False):
            total = b[0] - a[0]
            cores.append({
                "busy": round(100 * (total - (b[1] - a[1])) / total, 1) if total else None,
                "softirq": round(100 * (b[2] - a[2]) / total, 1) if total else None,
            })  # fmt: skip
        statuses = [s[4] for s in inside if s[4] and "gc" in s[4]]
        collector = None
        if len(statuses) >= 2:
            before, after = statuses[0]["gc"], statuses[-1]["gc"]
            collector = {
                "collections": [b - a for a, b in zip(before["collections"], after["collections"], strict=True)],
                "total_ms": [round(b - a, 1) for a, b in zip(before["total_ms"], after["total_ms"], strict=True)],
                # The long pauses in the window: [generation, ms, the thread that collected].
                "pauses": [[g, ms, *thread] for at, g, ms, *thread in after["recent"] if start <= at <= end],
            }
        lags = [s[4]["loop_lag_ms"] for s in inside if s[4] and "loop_lag_ms" in s[4]]
        worsts = [s[4]["loop_lag_worst_ms"] for s in inside if s[4] and "loop_lag_worst_ms" in s[4]]
        return {
            "seconds": round(seconds, 1),
            "roles": dict(sorted(roles.items(), key=lambda item: -item[1]["cpu"])),
            "cores": cores,
            "load": [round(first[3], 2), round(last[3], 2)],
            "loop_lag_ms": sorted(lags)[len(lags) // 2] if lags else None,
            "loop_lag_worst_ms": max(worsts) if worsts else None,
            "gc": collector,
        }
