"""What 100 RTMP peers cost the node when each tries to hold an 8 MiB
message it never finishes (issue 11: +716 MB before the budgets).

    flock /tmp/livecenter-bench.lock .venv/bin/python bench/limits/memory.py

Runs the node alone in a process (tests/limits_node.py) and reads its RSS
from /proc: once with peers that never ask to publish (no signature), once
with peers that publish with a valid signature; prints the growth and why
the node closed the peers it closed.
"""

from __future__ import annotations

import collections
import re
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.test_media_limits import LimitedNode, RawPeer, closed_by_peer  # noqa: E402

PEERS = 100
MESSAGE_BYTES = 8 * 1024 * 1024


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def run(publish: bool) -> None:
    node = LimitedNode(nofile=20000, reserve=256)
    target = types.SimpleNamespace(node=types.SimpleNamespace(rtmp_port=node.rtmp_port))
    time.sleep(0.5)
    before = rss_mb(node.process.pid)
    peers = []
    for n in range(PEERS):
        peer = RawPeer(target)
        if publish:
            peer.publish(f"hog{n}")
            time.sleep(0.05)
        frame = peer.frame(MESSAGE_BYTES)
        try:
            peer.sock.sendall(frame[: peer.offset(MESSAGE_BYTES - 65536)])
        except (BrokenPipeError, ConnectionResetError):
            pass
        peers.append(peer)
    time.sleep(3)
    closed = sum(closed_by_peer(peer.sock, 0) for peer in peers)
    peak = rss_mb(node.process.pid)
    for peer in peers:
        peer.close()
    log = node.stop()
    reasons = collections.Counter(
        re.sub(r"^rtmp \S+ stream=\S+: ", "", line.split(": ", 1)[1]) for line in log.splitlines() if "closing" in line
    )
    label = "signed publish" if publish else "no publish"
    print(f"{label}: node RSS {before:.0f} -> {peak:.0f} MB (+{peak - before:.0f}); closed {closed}/{PEERS}")
    for reason, count in reasons.most_common():
        print(f"    {count} x {reason}")


if __name__ == "__main__":
    run(publish=False)
    run(publish=True)
