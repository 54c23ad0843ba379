"""`GET /_node/status` on the media HTTP port: the process's own figures
(asyncio tasks, descriptors, threads, RSS) and what the node carries
(`carriage`, which its heartbeat reports too), as JSON,
for bench/soak and an operator's curl on the machine. Answered to loopback
peers only: the figures are nobody else's business, and a remote peer gets
the same 404 as any unknown path."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import time
from dataclasses import dataclass

from . import allocator
from .policy import StreamKey
from .stats import NODE_LINK_PROTOCOL

NODE_STATUS_PATH = "/_node/status"
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def is_loopback_peer(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _process_figures() -> dict[str, int]:
    figures = {"fds": len(os.listdir("/proc/self/fd")), "threads": 0, "rss_bytes": 0}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                figures["threads"] = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                figures["rss_bytes"] = int(line.split()[1]) * 1024
    return figures


@dataclass(frozen=True, slots=True)
class NodeCarriage:
    """What the node carries now: its heartbeat's figures (nodes/registry.py)
    and part of its status."""

    streams: tuple[StreamKey, ...]
    viewers: dict[str, int]  # by protocol, HLS clients seen within stats.REQUEST_VIEWER_WINDOW_SECONDS included
    bitrate_in: float  # bit/s: the hub's measure of each stream, summed
    bitrate_out: float  # bit/s: the last per-second samples' (stats.py), summed
    loop_lag_ms: float
    load: float  # the larger of egress over its limit and loop lag over its limit (capacity.py)


def carriage(node, now: float) -> NodeCarriage:
    """`now` is the monotonic clock's; on the node's event loop."""
    live = tuple(node.hub.live_keys())
    viewers: dict[str, int] = {}
    bitrate_in = 0.0
    for key in live:
        stream = node.hub.stream(key)
        for protocol, count in stream.counters.request_viewers(now, stream.viewers()).items():
            if protocol != NODE_LINK_PROTOCOL:  # another node, not a viewer
                viewers[protocol] = viewers.get(protocol, 0) + count
        bitrate_in += stream.bitrate
    lag_s = node.loop_lag.lag_s(now)
    load = 0.0
    if node.egress.limited:
        load = node.egress_load_bps() / node.egress.max_bps
    if node.loop_lag.limited:
        load = max(load, lag_s / node.loop_lag.max_lag_s)
    return NodeCarriage(
        streams=live,
        viewers=viewers,
        bitrate_in=bitrate_in,
        # Its viewers' and the other nodes' (relays, pulls): what leaves it.
        bitrate_out=sum(sum(sample.bitrate_out.values()) + sample.relay_bitrate_out for sample in node.last_samples),
        loop_lag_ms=round(lag_s * 1000, 1),
        load=load,
    )


def node_status(node) -> dict:
    """The figures, read now; on the node's event loop."""
    connections: dict[str, int] = {}
    for handler in node.connections:
        kind = {"RtmpSession": "rtmp", "MediaHttpSession": "http"}.get(type(handler).__name__, "other")
        connections[kind] = connections.get(kind, 0) + 1
    if node.rts is not None:
        connections["rts"] = len(node.rts.sessions)
    if node.srt is not None:
        connections["srt"] = len(node.srt.listener.connections)
    carried = carriage(node, time.monotonic())
    return {
        "node_id": node.config.node_id,
        "pid": os.getpid(),
        "tasks": len(asyncio.all_tasks()),
        **_process_figures(),
        "connections": connections,
        "viewers": carried.viewers,
        "streams": len(carried.streams),
        "loop_lag_ms": carried.loop_lag_ms,
        "loop_lag_worst_ms": round(node.loop_lag.worst_s(time.monotonic()) * 1000, 1),
        "loop_behind": node.loop_lag.behind,
        "refused": {"loop_lag": node.loop_lag.refused, "egress": node.egress.refused},
        # The C allocator's bytes in use and free in its heaps (glibc; None elsewhere): RSS that grows with
        # `free_bytes` is memory kept by the allocator, not objects kept by the node (allocator.py).
        "malloc": allocator.figures(),
        "malloc_trim_ms": getattr(node, "malloc_trim_ms", None),
        # The cyclic garbage collector's collections and time by generation,
        # and its recent pauses of 5 ms or more (collector.py).
        "gc": node.collector.figures(),
    }


def node_status_body(node) -> bytes:
    return json.dumps(node_status(node)).encode()
