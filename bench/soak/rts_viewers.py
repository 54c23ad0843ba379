"""RTS (WHEP) viewers that join and leave, for bench/soak/run.py: the
counting aiortc viewers of bench/rts/viewers.py, in slots over the WHEP URLs
given (slot i plays URL i % len). A session lasts a random time in
[--min-life, --max-life] seconds; it counts the video frames that arrived
after its first one and compares them with the frames the source sent over
that time (--fps): a session that got less than --min-fraction of them
lost frames. A WHEP offer the node refuses (HTTP 503: at capacity) is not a
session: the slot waits as a player does (the node's Retry-After, else an
exponential back-off with jitter, bench/common.py refusal_delay), counted as
`refused`. Every --report seconds one line: STATS {...}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import urllib.error
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import refusal_delay  # noqa: E402
from bench.rts.viewers import COUNTERS, VIDEO_TYPES, ice_connection, open_viewer  # noqa: E402

STATS = {"sessions": 0, "open": 0, "refused": 0, "never_played": 0, "short_sessions": 0, "video_frames": 0,
         "expected_frames": 0, "errors": 0, "error_examples": []}  # fmt: skip


async def session(url: str, life: float, fps: float, min_fraction: float) -> None:
    pc = await asyncio.wait_for(open_viewer(url), 60)
    key = id(ice_connection(pc))
    try:
        deadline = time.monotonic() + life
        first = None
        while time.monotonic() < deadline:
            frames = COUNTERS.get(key, [0, 0])[0]
            if first is None and frames:
                first = (time.monotonic(), frames)
            await asyncio.sleep(0.5)
        frames = COUNTERS.get(key, [0, 0])[0]
        if first is None:
            STATS["never_played"] += 1
            return
        got = frames - first[1]
        expected = (time.monotonic() - first[0]) * fps
        STATS["video_frames"] += got
        STATS["expected_frames"] += int(expected)
        if got < min_fraction * expected:
            STATS["short_sessions"] += 1
    finally:
        await pc.close()
        COUNTERS.pop(key, None)
        VIDEO_TYPES.pop(key, None)


async def slot(url: str, args: argparse.Namespace, stop_at: float) -> None:
    refusals = 0  # in a row
    while time.monotonic() < stop_at - 5:
        life = min(random.uniform(args.min_life, args.max_life), stop_at - time.monotonic())
        STATS["open"] += 1
        wait, refused = 0.0, False
        try:
            await session(url, life, args.fps, args.min_fraction)
            refusals = 0
        except urllib.error.HTTPError as exc:
            refused = exc.code == 503
            if refused:  # not a session
                refusals += 1
                STATS["refused"] += 1
                wait = refusal_delay(refusals, exc.headers.get("Retry-After"))
            else:
                error(exc)
                wait = 1.0
        except Exception as exc:  # noqa: BLE001 (counted and reported)
            error(exc)
            wait = 1.0
        finally:
            STATS["open"] -= 1
        STATS["sessions"] += not refused
        if wait:
            await asyncio.sleep(min(wait, max(0.0, stop_at - time.monotonic())))


def error(exc: Exception) -> None:
    STATS["errors"] += 1
    if len(STATS["error_examples"]) < 5:
        STATS["error_examples"].append(f"{type(exc).__name__}: {exc}"[:200])


async def main(args: argparse.Namespace) -> None:
    urls = json.loads(Path(args.urls).read_text())
    stop_at = time.monotonic() + args.duration
    tasks = []
    for i in range(args.count):
        tasks.append(asyncio.create_task(slot(urls[i % len(urls)], args, stop_at)))
        await asyncio.sleep(1 / args.rate)

    async def reporter() -> None:
        while True:
            await asyncio.sleep(args.report)
            print("STATS " + json.dumps(STATS), flush=True)

    ticker = asyncio.create_task(reporter())
    await asyncio.gather(*tasks)
    ticker.cancel()
    print("STATS " + json.dumps(STATS), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--urls", required=True, help="a JSON file: a list of WHEP URLs")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--fps", type=float, required=True, help="the source's frame rate")
    parser.add_argument("--min-fraction", type=float, default=0.9)
    parser.add_argument("--min-life", type=float, default=20)
    parser.add_argument("--max-life", type=float, default=120)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--rate", type=float, default=5, help="slots started per second")
    parser.add_argument("--report", type=float, default=10)
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
