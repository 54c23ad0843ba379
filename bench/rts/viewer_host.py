"""The RTS viewers on a host of their own (issue 18, bench/rts `viewers` and
`janus` with `--viewers-netns`).

On loopback the receive half of every datagram the node sends (IP and UDP
receive, the socket's queueing, waking the viewer generator) runs in the
node's own `sendmmsg`, on the node's core: a cost a real deployment does
not pay, where the viewers are other machines and the node's kernel work
ends when the NIC takes the packet. `ViewerHost` models that: the viewer
generator runs in a network namespace of its own, reached over a veth pair
with addresses of its own (the node listens, and offers its ICE
candidates, on the root end's address; the generator's end has the
other), and the generator's end receives with NAPI, in a thread pinned to
the viewers' core:

- GRO on the generator's veth end gives the veth device a NAPI instance
  (veth.c: without XDP or GRO it hands each packet to the backlog of the
  sending CPU, which is loopback's cost again), and TSO off on the node's
  end makes every packet eligible for it (veth_skb_is_eligible_for_gro).
  The node's transmit then ends at the veth's ring (`veth_xmit`: a
  pointer queued, the NAPI scheduled), as a NIC driver's ends at its TX
  ring.
- Threaded NAPI (`/sys/class/net/<dev>/threaded`) runs that NAPI's poll in
  a kthread (`napi/<dev>-<id>`), pinned here to `napi_cpu` and run at
  SCHED_FIFO 50 (softirq comes before a host's processes): the receive
  work runs on the viewers' core, woken once a batch, not raised per
  packet on the sender's CPU (as RPS on `lo` did: measured worse,
  bench/README.md "GSO and receive steering").

What it still does not model: a NIC's DMA and interrupts, the wire's rate,
and the node's `sendmmsg` meeting a full ring (veth drops then; counted by
`link_drops`, and a step with drops says so).

The namespace, the pair and the registration are tests/netns.py's (named
`lc-<id>…`, removed on close, and what a killed earlier run left is removed
by `cleanup_stale()` at the next start). Needs root.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.netns import NetnsUnavailable, Network, _ip  # noqa: E402

HOST = "viewers"
SIOCETHTOOL = 0x8946
ETHTOOL_GTSO, ETHTOOL_STSO = 0x1E, 0x1F
ETHTOOL_GGRO, ETHTOOL_SGRO = 0x2B, 0x2C
TASK_COMM_LEN = 16
# The node's end's queue, in packets (a GSO message is one): a NIC's
# queue holds about as many (fq_codel's 10240); see `_make`.
QDISC_LIMIT = 10000
NAPI_PRIORITY = 50  # SCHED_FIFO, as the kernel's irq/* threads


def ethtool_value(device: str, command: int, value: int = 0) -> int:
    """One SIOCETHTOOL call with a `struct ethtool_value` (the legacy
    get/set of one feature, as `ethtool -K` used to) on `device` in the
    calling thread's namespace; returns the value the kernel wrote back."""
    data = ctypes.create_string_buffer(struct.pack("II", command, value), 8)
    request = struct.pack("16sP16x", device.encode(), ctypes.addressof(data))  # struct ifreq
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, request)
    return struct.unpack("II", data.raw)[1]


def napi_threads(device: str, proc: Path = Path("/proc")) -> list[int]:
    """The pids of `device`'s threaded-NAPI kthreads (`napi/<dev>-<id>`,
    the name cut to TASK_COMM_LEN - 1 characters)."""
    prefix = f"napi/{device}-"[: TASK_COMM_LEN - 1]
    pids = []
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm.startswith(prefix):
                pids.append(int(entry.name))
    return sorted(pids)


class ViewerHost(Network):
    """The viewers' namespace and its veth pair; see the module docstring.
    `node_address` is the root end's (the node's side), `viewer_address`
    the generator's; `command(argv)` runs argv in the viewers' namespace."""

    def __init__(self, napi_cpu: int) -> None:
        super().__init__([HOST])
        self.napi_cpu = napi_cpu
        self.device = f"v{self.id}"  # the generator's end; its NAPI thread is named after it
        self.napi_pids: list[int] = []

    @property
    def node_address(self) -> str:
        return self.gateway

    @property
    def viewer_address(self) -> str:
        return self.address(HOST)

    def viewer_command(self, argv: Sequence[str]) -> list[str]:
        return self.command(HOST, argv)

    def _make(self) -> None:
        ns = self.netns(HOST)
        result = _ip("netns", "add", ns, check=False)
        if result.returncode != 0:
            raise NetnsUnavailable(f"`ip netns add` failed: {result.stderr.strip()}")
        self.subnet = self._pick_subnet()
        prefix = self.subnet.prefixlen
        root_end = self.veth(HOST)
        _ip("link", "add", root_end, "type", "veth", "peer", "name", self.device, "netns", ns)
        _ip("addr", "add", f"{self.node_address}/{prefix}", "dev", root_end)
        # veth_xmit hands a packet to the peer's NAPI only when it "is
        # eligible for GRO": the sending end has no TSO, or the peer forwards
        # UDP GRO (veth_skb_is_eligible_for_gro); else netif_rx, on the
        # sender's CPU. TSO off on the node's end (its TCP, the signalling,
        # is cut in software; the UDP GSO the media uses is another feature).
        ethtool_value(root_end, ETHTOOL_STSO, 0)
        if ethtool_value(root_end, ETHTOOL_GTSO):
            raise NetnsUnavailable(f"TSO would not turn off on {root_end}")
        _ip("link", "set", root_end, "up")
        # A veth has no queue (noqueue): with the peer's ring (256) full, veth_xmit
        # drops. With a qdisc it stops the queue instead and the peer's NAPI wakes
        # it when the ring drains (Linux 6.16, "veth: apply qdisc backpressure on
        # full ptr_ring"): a NIC's TX ring and queue, the sender's socket buffer
        # filling when they are full. Drops left over are counted (link_drops).
        subprocess.run(["tc", "qdisc", "replace", "dev", root_end, "root", "pfifo", "limit", str(QDISC_LIMIT)],
                       check=True, capture_output=True, timeout=10)  # fmt: skip
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "addr", "add", f"{self.viewer_address}/{prefix}", "dev", self.device)
        _ip("-n", ns, "link", "set", self.device, "up")
        with self.enter(HOST):
            ethtool_value(self.device, ETHTOOL_SGRO, 1)
            if not ethtool_value(self.device, ETHTOOL_GGRO):
                raise NetnsUnavailable(f"GRO would not turn on on {self.device}")
        # sysfs shows a namespace's devices to a process that mounted it there: `ip netns exec` does.
        threaded = self.run(HOST, ["sh", "-c", f"echo 1 > /sys/class/net/{self.device}/threaded"], check=False)
        if threaded.returncode != 0:
            raise NetnsUnavailable(f"threaded NAPI on {self.device}: {threaded.stderr.strip()}")
        self.napi_pids = napi_threads(self.device)
        if not self.napi_pids:
            raise NetnsUnavailable(f"no napi/{self.device}-* kthread after enabling threaded NAPI")
        for pid in self.napi_pids:
            os.sched_setaffinity(pid, {self.napi_cpu})
            # Softirq, where a host's receive work runs, comes before its
            # processes; a kthread at nice 0 would wait behind the bench's
            # (nice -20) viewer processes, and the node's queue overflow.
            # The priority of the kernel's threaded interrupt handlers.
            os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(NAPI_PRIORITY))

    def link_drops(self) -> dict[str, int]:
        """What the node's end of the pair dropped so far: its receive and
        transmit counters (sysfs: the root namespace's view; veth counts a
        full peer ring there) and its queue's drops (`tc -s`). One `tc`
        process a call: cheap enough to sample every second."""
        statistics = Path("/sys/class/net") / self.veth(HOST) / "statistics"
        qdisc = subprocess.run(["tc", "-j", "-s", "qdisc", "show", "dev", self.veth(HOST)], capture_output=True,
                               text=True, timeout=10, check=True).stdout  # fmt: skip
        return {
            "rx": int((statistics / "rx_dropped").read_text()),
            "tx": int((statistics / "tx_dropped").read_text()),
            "qdisc": sum(q.get("drops", 0) for q in json.loads(qdisc)),
        }
