"""`GET /_node/status` on the media HTTP port: the process's own figures
(asyncio tasks, descriptors, threads, RSS) and what the node carries, as JSON,
for bench/soak and an operator's curl on the machine. Answered to loopback
peers only: the figures are nobody else's business, and a remote peer gets
the same 404 as any unknown path."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import time

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
    viewers: dict[str, int] = {}
    live = node.hub.live_keys()
    for key in live:
        for protocol, count in node.hub.stream(key).viewers().items():
            viewers[protocol] = viewers.get(protocol, 0) + count
    return {
        "node_id": node.config.node_id,
        "pid": os.getpid(),
        "tasks": len(asyncio.all_tasks()),
        **_process_figures(),
        "connections": connections,
        "viewers": viewers,
        "streams": len(live),
        "loop_lag_ms": round(node.loop_lag.lag_s(time.monotonic()) * 1000, 1),
        "refused": {"loop_lag": node.loop_lag.refused, "egress": node.egress.refused},
    }


def node_status_body(node) -> bytes:
    return json.dumps(node_status(node)).encode()
