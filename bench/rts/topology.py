"""The viewers' receive path on the viewers' core (issue 18, bench/rts `viewers`).

On loopback a UDP datagram's receive work (ip_rcv, udp_rcv, the socket's
queueing and wake-up: NET_RX softirq) runs on the CPU that sent it: the
node's core paid for its viewers' receive path, which on a real network
runs on the viewers' machines. Receive packet steering (RPS,
Documentation/networking/scaling.rst) on `lo` queues each received packet
to the backlog of a CPU in the mask instead, so NET_RX runs there: with the
generator's core as the mask, the node's core keeps its send path (UDP
output, loopback transmit) and hands the rest to the viewers' core.

What moves with it: everything `lo` receives, including the little the node
receives (RTMP from the publisher, the viewers' RTCP and consent checks) —
a fraction of a per-cent of the traffic next to the fan-out.

`receive_on(cpus)` sets the mask for a `with` body and puts back what was
there. Where the receive work ran shows in each CPU's softirq time
(/proc/stat; `SoftirqSampler`): /proc/softirqs' NET_RX counts do not tell
it, since with RPS the sending CPU also raises NET_RX, a cheap one, to send
the other CPU its inter-processor interrupt.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

SYS_NET = Path("/sys/class/net")
PROC_SOFTIRQS = Path("/proc/softirqs")
PROC_STAT = Path("/proc/stat")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE_SECONDS = 0.5


def cpu_mask(cpus: Iterable[int]) -> str:
    """The hex mask sysfs takes for a set of CPUs: {1} -> "2", {0, 1} -> "3"."""
    mask = 0
    for cpu in cpus:
        if cpu < 0:
            raise ValueError(f"cpu must be 0 or more, not {cpu}")
        mask |= 1 << cpu
    if not mask:
        raise ValueError("cpus must name at least one CPU")
    return f"{mask:x}"


def rps_files(device: str = "lo", sys_net: Path = SYS_NET) -> list[Path]:
    """The device's per-receive-queue rps_cpus files (lo has one, rx-0)."""
    files = sorted((sys_net / device / "queues").glob("rx-*/rps_cpus"))
    if not files:
        raise RuntimeError(f"{device} has no rps_cpus file under {sys_net}: the kernel lacks RPS")
    return files


@contextlib.contextmanager
def receive_on(cpus: Iterable[int], device: str = "lo", sys_net: Path = SYS_NET) -> Iterator[str]:
    """Steer `device`'s received packets to `cpus` for the body; the masks
    that were set before are written back after, also on error. Yields the
    mask written. Needs root (sysfs)."""
    mask = cpu_mask(cpus)
    files = rps_files(device, sys_net)
    before = {path: path.read_text().strip() for path in files}
    try:
        for path in files:
            path.write_text(mask + "\n")
        yield mask
    finally:
        for path, value in before.items():
            path.write_text(value + "\n")


def parse_softirqs(text: str, kind: str = "NET_RX") -> list[int]:
    """One softirq row of /proc/softirqs as counts per CPU."""
    for line in text.splitlines():
        name, _, counts = line.strip().partition(":")
        if name == kind:
            return [int(count) for count in counts.split()]
    raise ValueError(f"/proc/softirqs has no {kind} row")


def net_rx_per_cpu(path: Path = PROC_SOFTIRQS) -> list[int]:
    return parse_softirqs(path.read_text())


def net_rx_shares(before: list[int], after: list[int]) -> list[float]:
    """Each CPU's share (0..1) of the NET_RX softirqs between two readings."""
    deltas = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(deltas)
    return [round(d / total, 3) if total else 0.0 for d in deltas]


@contextlib.contextmanager
def steering(on: bool, cpu: int) -> Iterator[str | None]:
    """`receive_on([cpu])` when `on`, else nothing changes (yields None)."""
    if not on:
        yield None
        return
    with receive_on([cpu]) as mask:
        yield mask


# /proc/stat's cpuN fields (proc(5)), in clock ticks: what `split` reports.
CPU_FIELDS = {"user": 0, "nice": 1, "system": 2, "idle": 3, "iowait": 4, "irq": 5, "softirq": 6, "steal": 7}


def parse_cpu_seconds(text: str) -> list[dict[str, float]]:
    """Each CPU's times (seconds, by CPU_FIELDS) from /proc/stat's cpuN lines."""
    cpus = []
    for line in text.splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name != "cpu":
            cpus.append({key: int(fields[i]) / CLOCK_TICKS for key, i in CPU_FIELDS.items() if i < len(fields)})
    if not cpus:
        raise ValueError("/proc/stat has no cpuN lines")
    return cpus


def parse_softirq_seconds(text: str) -> list[float]:
    """Each CPU's softirq time (seconds) from /proc/stat's cpuN lines."""
    return [cpu["softirq"] for cpu in parse_cpu_seconds(text)]


class SoftirqSampler:
    """Every CPU's times (/proc/stat) and NET_RX/NET_TX counts
    (/proc/softirqs) every SAMPLE_SECONDS from a thread, so a window known
    only afterwards (the viewers' wall-clock times) can be cut out:
    `cores(start, end)` is each CPU's softirq time over it, in % of a core;
    `split(start, end)` each CPU's user, system, softirq, irq and idle %,
    and its NET_RX and NET_TX softirqs a second."""

    def __init__(self, path: Path = PROC_STAT, softirqs: Path = PROC_SOFTIRQS) -> None:
        self._path = path
        self._softirqs = softirqs
        self._samples: list[tuple[float, list[dict[str, float]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _read(self) -> list[dict[str, float]]:
        cpus = parse_cpu_seconds(self._path.read_text())
        try:
            text = self._softirqs.read_text()
            rows = {kind: parse_softirqs(text, kind) for kind in ("NET_RX", "NET_TX")}
        except (OSError, ValueError):
            rows = {}
        for kind, counts in rows.items():
            for cpu, count in zip(cpus, counts, strict=False):
                cpu[kind] = count
        return cpus

    def _run(self) -> None:
        while True:
            self._samples.append((time.time(), self._read()))
            if self._stop.wait(SAMPLE_SECONDS):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _window(self, start: float, end: float):
        inside = [s for s in self._samples if start <= s[0] <= end]
        if len(inside) < 2:
            return None
        (t0, first), (t1, last) = inside[0], inside[-1]
        return t1 - t0, first, last

    def cores(self, start: float, end: float) -> list[float] | None:
        window = self._window(start, end)
        if window is None:
            return None
        seconds, first, last = window
        return [round((b["softirq"] - a["softirq"]) * 100 / seconds, 1) for a, b in zip(first, last, strict=True)]

    def split(self, start: float, end: float) -> list[dict[str, float]] | None:
        """Per CPU: % of the core in user (with nice), system, softirq, irq
        and idle (with iowait) over the window, and NET_RX/NET_TX a second."""
        window = self._window(start, end)
        if window is None:
            return None
        seconds, first, last = window
        out = []
        for a, b in zip(first, last, strict=True):
            d = {key: b[key] - a[key] for key in a if key in b}
            row = {
                "user": d["user"] + d.get("nice", 0), "system": d["system"], "softirq": d["softirq"],
                "irq": d.get("irq", 0), "idle": d["idle"] + d.get("iowait", 0),
            }  # fmt: skip
            out.append({key: round(value * 100 / seconds, 1) for key, value in row.items()})
            for kind in ("NET_RX", "NET_TX"):
                if kind in d:
                    out[-1][f"{kind.lower()}_per_s"] = round(d[kind] / seconds)
        return out
