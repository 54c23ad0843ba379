"""LL-HLS viewers (hls_viewers.py) against a node whose event loop is made
to lag: after every 100 ms of running, a hog blocks the loop for a random
--lag-min..--lag-max seconds. What a saturated node's loop does to LL-HLS,
without saturating the machine (the hog sleeps), so that the viewers' own
process is never the one starved (bench/README.md, "bench/soak", try 7).

    .venv/bin/python bench/soak/lagged_llhls.py --lag-min 0.3 --lag-max 1.0 --seconds 120 --viewers 40

One publisher (ffmpeg, 640x360 at 25 fps), the node in this process on the
test suite's in-memory policy (tests/mediasupport.py). Prints the viewers'
last STATS line and their node-loss and resync examples.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from livecenter.media.signing import sign  # noqa: E402
from tests.mediasupport import PLAY, PLAY_KEY, NodeThread, start_publisher  # noqa: E402


async def hog(lag_min: float, lag_max: float) -> None:
    while True:
        await asyncio.sleep(0.1)
        time.sleep(random.uniform(lag_min, lag_max))  # blocks the loop, as a saturated node's does


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lag-min", type=float, default=0.15)
    parser.add_argument("--lag-max", type=float, default=0.6)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--viewers", type=int, default=40)
    args = parser.parse_args()
    node = NodeThread().start()
    publisher = start_publisher(node.publish_url(), seconds=args.seconds + 40, size="640x360", rate=25)
    try:
        time.sleep(4)
        asyncio.run_coroutine_threadsafe(hog(args.lag_min, args.lag_max), node.loop)
        path = "/live/cam1.m3u8"
        url = f"{node.http}{path}?auth_key={sign(path, PLAY_KEY, int(time.time()))}&domain={PLAY}"
        with tempfile.NamedTemporaryFile("w", suffix=".json") as urls:
            urls.write(json.dumps([url]))
            urls.flush()
            out = subprocess.run(
                [sys.executable, str(ROOT / "bench" / "soak" / "hls_viewers.py"), "--urls", urls.name,
                 "--mode", "llhls", "--count", str(args.viewers), "--duration", str(args.seconds),
                 "--min-life", "20", "--max-life", "60", "--report", "10"],
                capture_output=True, text=True,
            )  # fmt: skip
        lines = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("STATS")]
        stats = json.loads(lines[-1][len("STATS") :])
        print({k: v for k, v in stats.items() if not isinstance(v, (list, dict))})
        for example in stats["node_loss_examples"][:5]:
            print("node loss:", example[:1500])
        for example in stats["resync_examples"][:3]:
            print("resync:", example[:800])
    finally:
        publisher.stop()


if __name__ == "__main__":
    main()
