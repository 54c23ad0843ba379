"""HLS or LL-HLS viewers that join and leave, each checking that it missed
nothing, for bench/soak/run.py.

One asyncio process holds `--count` viewer slots over the playlist URLs given
(slot i plays URL i % len). A session lasts a random time in [--min-life,
--max-life] seconds, then a new one of the same slot starts at once.

- hls: the playlist is reloaded every half target duration (RFC 8216 6.3.4
  allows as often as that) and every segment not fetched yet is fetched in
  order, from three segments before the end (RFC 8216 6.3.3).
- llhls: blocking playlist reloads (`_HLS_msn`/`_HLS_part`, RFC 8216bis
  6.2.5.2) for the part after the newest one listed, and every new part is
  fetched in order, beside the next reload (as hls.js loads parts). When the
  part after the last one fetched is no longer listed but its segment is,
  the segments from there are fetched whole, as a player does.

Each fetch must be 200 and MPEG-TS (sync byte 0x47).

Whether a viewer kept up, and whose fault a loss is (the rule run.py judges by):

- The *retention* of a part is PARTS_LISTED_TARGET_DURATIONS target
  durations (the node lists parts that long; RFC 8216bis 4.4.3.7 lets a
  server drop older ones); of a segment, the playlist's duration plus one
  target duration (RFC 8216 6.2.2).
- **A node loss**: a 404 for a part or segment the node listed in a playlist
  this viewer received less than its retention before it asked; or media the
  viewer needs next (the successor of the last part or segment fetched) not
  listed any more while what it fetched last was listed less than a
  retention ago (the node dropped or skipped media). A session with a node
  loss fails the soak.
- **Fell behind** (did not keep up): the media it needs next is not listed
  any more and what it fetched last was last listed more than a retention
  ago. It was listed; the viewer was too slow to take it in time. A player
  resyncs to the live edge then (hls.js: its live sync position), and so
  does this viewer: the session counts one *resync*, and goes on from three
  parts (segments) before the end. A 404 on media last listed more than a
  retention before the viewer asked is the same, counted as `late_404`.

Why a viewer fell behind is measured beside it: every request's latency by
kind (an immediate one, a part or segment listed or a playlist without
_HLS_msn, is the node's response time plus this process's own lateness; a
blocking reload waits for the next part by design), and this process's own
event-loop lateness (a 50 ms timer, LOOP_PROBE_SECONDS). A resync is put down
to a starved client when this process's loop ran more than
STARVED_CLIENT_LAG_SECONDS late within RECENT_SECONDS before it, else to
slow responses.

A refusal (503 on a session's first playlist: the node at capacity) ends the
session before it plays; the slot waits (the node's Retry-After, else an
exponential back-off with jitter, bench/common.py refusal_delay) and starts
a new one. Refusals are counted apart.

Every --report seconds one line: STATS {...}.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import random
import re
import sys
import time
from collections import deque
from pathlib import Path
from urllib.parse import urljoin, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import refusal_delay  # noqa: E402

# Request latency buckets (upper bounds, ms) for the histograms.
LATENCY_BUCKETS_MS = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)
REQUEST_KINDS = ("playlist", "blocking", "part", "segment")
STATS = {"sessions": 0, "open": 0, "fetched": 0, "bytes": 0, "errors": 0, "playlists": 0,
         "refused": 0, "never_played": 0,
         "node_losses": 0, "sessions_with_node_losses": 0, "node_loss_examples": [],
         "resyncs": 0, "sessions_resynced": 0, "resyncs_client_starved": 0, "resync_examples": [],
         "resyncs_by_stream": {},
         "late_404": 0, "catch_up_segments": 0,
         "slow_requests": 0, "max_request_s": 0.0,
         "latency_ms": {kind: [0] * (len(LATENCY_BUCKETS_MS) + 1) for kind in REQUEST_KINDS},
         "client_loop_lag_ms": [0] * (len(LATENCY_BUCKETS_MS) + 1), "client_loop_lag_max_ms": 0.0,
         "error_examples": []}  # fmt: skip
# A request slower than this is counted.
SLOW_REQUEST_SECONDS = 2.0
REQUEST_TIMEOUT_SECONDS = 20
# livecenter/media/hls.py PARTS_LISTED_TARGET_DURATIONS: how long the node lists a part.
PARTS_LISTED_TARGET_DURATIONS = 3
# The process's own loop lateness: probed this often; a resync is the
# client's fault when the loop ran this late within RECENT_SECONDS before it.
LOOP_PROBE_SECONDS = 0.05
STARVED_CLIENT_LAG_SECONDS = 0.5
RECENT_SECONDS = 5.0
EXAMPLES = 8
# Listings remembered per session (a few windows' worth).
MAX_LISTED = 2000
# Plans kept per session and shown with the first resyncs (what led to them).
TRACE_STEPS = 8
TRACE_EXAMPLES = 3
# The part index that stands for "the whole segment" (fetched whole while catching up).
WHOLE = 1 << 30


def bucket(hist: list[int], seconds: float) -> None:
    hist[bisect.bisect_left(LATENCY_BUCKETS_MS, seconds * 1000)] += 1


class LoopWatch:
    """This process's event-loop lateness, for telling a starved client from a slow node."""

    def __init__(self) -> None:
        self.recent: deque[tuple[float, float]] = deque()  # (when, lateness) of late probes

    async def run(self) -> None:
        while True:
            due = time.monotonic() + LOOP_PROBE_SECONDS
            await asyncio.sleep(LOOP_PROBE_SECONDS)
            now = time.monotonic()
            late = now - due
            bucket(STATS["client_loop_lag_ms"], late)
            STATS["client_loop_lag_max_ms"] = round(max(STATS["client_loop_lag_max_ms"], late * 1000), 1)
            if late > STARVED_CLIENT_LAG_SECONDS:
                self.recent.append((now, late))
            while self.recent and now - self.recent[0][0] > RECENT_SECONDS:
                self.recent.popleft()

    def starved(self, now: float) -> float:
        """The worst lateness over RECENT_SECONDS past STARVED_CLIENT_LAG_SECONDS, else 0."""
        return max((late for at, late in self.recent if now - at <= RECENT_SECONDS), default=0.0)


LOOP = LoopWatch()


class Connection:
    """One keep-alive HTTP/1.1 connection, reused for a viewer's requests as a
    player's browser does (the node keeps connections open: idle timeout and
    a request cap, livecenter/media/http_server.py). A connection the node
    closed while idle is opened again once for the request that found it."""

    def __init__(self) -> None:
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.netloc = ""
        self.headers: dict[str, str] = {}  # of the last response

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def get(self, url: str) -> tuple[int, bytes]:
        parts = urlsplit(url)
        reused = self.writer is not None and self.netloc == parts.netloc and not self.writer.is_closing()
        if not reused:
            self.close()
            self.reader, self.writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
            self.netloc = parts.netloc
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            self.writer.write(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            self.close()
            if reused and not getattr(exc, "partial", b""):
                return await self.get(url)  # closed while idle: once more on a new connection
            raise
        try:
            return await self.response(head)
        except BaseException:
            self.close()
            raise

    async def response(self, head: bytes) -> tuple[int, bytes]:
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1]) if lines[0].startswith("HTTP/") else 0
        headers = self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                body += (await self.reader.readexactly(size + 2))[:-2]
            await self.reader.readuntil(b"\r\n")
        else:
            body = await self.reader.read()
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, body


class Playlist:
    """What a viewer reads of a media playlist."""

    __slots__ = ("sequence", "target", "duration", "segments", "parts")

    def __init__(self, text: str) -> None:
        self.sequence, self.target, self.duration = 0, 1.0, 0.0
        self.segments: list[tuple[int, str]] = []  # (msn, uri)
        self.parts: list[tuple[int, int, str]] = []  # (msn, index, uri)
        msn, index = None, 0
        for line in text.splitlines():
            if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
                self.sequence = msn = int(line.split(":", 1)[1])
            elif line.startswith("#EXT-X-TARGETDURATION:"):
                self.target = float(line.split(":", 1)[1])
            elif line.startswith("#EXTINF:"):
                self.duration += float(line[8:].split(",", 1)[0])
            elif line.startswith("#EXT-X-PART:"):
                self.parts.append((msn, index, re.search(r'URI="([^"]+)"', line)[1]))
                index += 1
            elif line and not line.startswith("#"):
                self.segments.append((msn, line))
                msn, index = msn + 1, 0

    @property
    def part_retention(self) -> float:
        return PARTS_LISTED_TARGET_DURATIONS * self.target

    @property
    def segment_retention(self) -> float:
        return self.duration + self.target


class Refused(Exception):
    def __init__(self, retry_after: str | None) -> None:
        super().__init__("refused")
        self.retry_after = retry_after


class Session:
    def __init__(self, url: str, mode: str, life: float) -> None:
        self.url, self.mode, self.deadline = url, mode, time.monotonic() + life
        self.last_msn: int | None = None  # hls: the last segment fetched
        self.last_part: tuple[int, int] | None = None  # llhls: the last part fetched
        self.parts_per_segment: dict[int, int] = {}
        # When this session last received a playlist listing a part (msn, index) or a segment (msn, None).
        self.listed: dict[tuple[int, int | None], float] = {}
        self.retention: dict[tuple[int, int | None], float] = {}
        self.name = urlsplit(url).path.rsplit("/", 1)[-1]
        self.node_losses = 0
        self.resyncs = 0
        self.trace: deque[str] = deque(maxlen=TRACE_STEPS)  # the last playlists' plans, for a resync's example
        self.reload_s = 0.0  # how long the last playlist request took
        self.planned_late_s = 0.0  # LL-HLS: how long the playlist last planned from had waited for the fetcher
        self.played = False
        self.latest: tuple[Playlist, float] | None = None  # LL-HLS: the newest playlist and when it came
        self.fresh = asyncio.Event()  # set when a newer one came
        self.connection = Connection()  # playlists
        self.media = Connection()  # segments and parts

    async def request(self, url: str, kind: str, connection: Connection | None = None) -> tuple[int, bytes]:
        connection = connection or self.connection
        began = time.monotonic()
        try:
            return await asyncio.wait_for(connection.get(url), REQUEST_TIMEOUT_SECONDS)
        except BaseException:
            connection.close()
            raise
        finally:
            took = time.monotonic() - began
            bucket(STATS["latency_ms"][kind], took)
            STATS["slow_requests"] += took > SLOW_REQUEST_SECONDS
            STATS["max_request_s"] = round(max(STATS["max_request_s"], took), 2)

    def error(self, text: str) -> None:
        STATS["errors"] += 1
        if len(STATS["error_examples"]) < EXAMPLES:
            STATS["error_examples"].append(text[:200])

    def node_loss(self, text: str) -> None:
        self.node_losses += 1
        STATS["node_losses"] += 1
        if len(STATS["node_loss_examples"]) < EXAMPLES:
            trace = f" | trace: {' ; '.join(self.trace)}" if len(STATS["node_loss_examples"]) < TRACE_EXAMPLES else ""
            STATS["node_loss_examples"].append(f"{self.name}: {text}; {self.context()}{trace}")

    def resync(self, text: str, now: float) -> None:
        """Fell out of the window: a player goes to the live edge."""
        self.resyncs += 1
        STATS["resyncs"] += 1
        starved = LOOP.starved(now)
        STATS["resyncs_client_starved"] += starved > 0
        by_stream = STATS["resyncs_by_stream"]
        by_stream[self.name] = by_stream.get(self.name, 0) + 1
        if len(STATS["resync_examples"]) < EXAMPLES:
            trace = f" | trace: {' ; '.join(self.trace)}" if len(STATS["resync_examples"]) < TRACE_EXAMPLES else ""
            STATS["resync_examples"].append(
                f"{self.name}: {text}; {self.context()}, loop up to {starved:.2f} s late{trace}"
            )

    def context(self) -> str:
        return f"last reload took {self.reload_s:.2f} s, planned {self.planned_late_s:.2f} s after it came"

    def remember(self, playlist: Playlist, received: float) -> None:
        for msn, _uri in playlist.segments:
            self.listed[msn, None] = received
            self.retention[msn, None] = playlist.segment_retention
        for msn, index, _uri in playlist.parts:
            self.listed[msn, index] = received
            self.retention[msn, index] = playlist.part_retention
        if len(self.listed) > MAX_LISTED:
            for key in sorted(self.listed, key=lambda k: k[0])[: len(self.listed) - MAX_LISTED // 2]:
                del self.listed[key], self.retention[key]

    def listed_ago(self, key: tuple[int, int | None], now: float) -> tuple[float, float]:
        """(seconds since a playlist listing `key` was received, its retention)."""
        return now - self.listed.get(key, float("-inf")), self.retention.get(key, 0.0)

    async def fetch(self, uri: str, key: tuple[int, int | None]) -> bool:
        asked = time.monotonic()
        status, body = await self.request(urljoin(self.url, uri), "segment" if key[1] is None else "part", self.media)
        if status == 200 and body.startswith(b"\x47"):
            STATS["fetched"] += 1
            STATS["bytes"] += len(body)
            self.played = True
            return True
        ago, retention = self.listed_ago(key, asked)
        what = f"{'segment' if key[1] is None else 'part'} {key}"
        if status == 404 and ago >= retention:
            STATS["late_404"] += 1  # it was listed; the viewer asked too late
        elif status == 404:
            self.node_loss(f"{what}: 404 {body[:40]!r}, listed {ago:.2f} s before asked (retention {retention} s)")
        else:
            self.error(f"{uri}: {status} {body[:60]!r}")
        return False

    async def run(self) -> None:
        """Playlists in this loop (blocking reloads for LL-HLS); LL-HLS media
        in another that plans from the newest playlist each time, as hls.js's
        playlist loader and stream controller work side by side."""
        url = self.url
        fetcher = asyncio.create_task(self.fetch_loop()) if self.mode == "llhls" else None
        try:
            while time.monotonic() < self.deadline:
                if fetcher is not None and fetcher.done():
                    fetcher.result()  # its error ends the session
                asked = time.monotonic()
                status, body = await self.request(url, "blocking" if url != self.url else "playlist")
                received = time.monotonic()
                self.reload_s = received - asked
                STATS["playlists"] += 1
                if status == 503 and not self.played and url == self.url:
                    raise Refused(self.connection.headers.get("retry-after"))
                if status != 200:
                    self.error(f"playlist: {status} {body[:60]!r}")
                    await asyncio.sleep(1)
                    url = self.url
                    continue
                playlist = Playlist(body.decode())
                self.remember(playlist, received)
                if self.mode == "hls":
                    await self.hls_step(playlist, received)
                    await asyncio.sleep(playlist.target / 2)
                    continue
                self.latest = (playlist, received)
                self.fresh.set()
                if not playlist.parts:
                    await asyncio.sleep(0.2)
                    url = self.url
                else:
                    url = f"{self.url}&_HLS_msn={playlist.parts[-1][0]}&_HLS_part={playlist.parts[-1][1] + 1}"
        finally:
            if fetcher is not None:
                fetcher.cancel()

    async def fetch_loop(self) -> None:
        """LL-HLS media, on its own connection: what the newest playlist adds
        after the last part fetched, one request at a time."""
        while True:
            await self.fresh.wait()
            self.fresh.clear()
            playlist, received = self.latest
            now = time.monotonic()
            self.planned_late_s = now - received
            await self.llhls_fetch(*self.llhls_plan(playlist, now))

    def out_of_window(self, last: tuple[int, int | None], needed: str, now: float) -> None:
        """What the viewer needs next is not listed: a node loss if what it
        fetched last was listed within its retention, else it fell behind."""
        ago, retention = self.listed_ago((last[0], None) if last[1] == WHOLE else last, now)
        if ago < retention:
            self.node_loss(f"{needed} not listed; {last} was listed {ago:.2f} s ago (retention {retention} s)")
        else:
            self.resync(f"{needed} not listed; {last} was last listed {ago:.2f} s ago", now)

    async def hls_step(self, playlist: Playlist, now: float) -> None:
        segments = playlist.segments
        if self.last_msn is None:
            segments = segments[-3:]  # a player starts three segments from the end (RFC 8216 6.3.3)
        else:
            segments = [s for s in segments if s[0] > self.last_msn]
            if segments and segments[0][0] != self.last_msn + 1:
                self.out_of_window((self.last_msn, None), f"segment {self.last_msn + 1}", now)
                segments = segments[-3:]
        for msn, uri in segments:
            if not await self.fetch(uri, (msn, None)):
                break  # the next reload shows whether it can still be had
            self.last_msn = msn

    def successor(self, last: tuple[int, int]) -> tuple[int, int]:
        """The part after `last`: part 0 of the next segment after a segment's last part."""
        msn, index = last
        complete = index == WHOLE or self.parts_per_segment.get(msn) == index + 1
        return (msn + 1, 0) if complete else (msn, index + 1)

    def llhls_plan(self, playlist: Playlist, now: float) -> tuple[list[tuple[int, str]], list[tuple[int, int, str]]]:
        """What to fetch of a playlist: (whole segments to catch up with, new parts)."""
        segments, parts = playlist.segments, playlist.parts
        for msn, _uri in segments:
            self.parts_per_segment[msn] = sum(1 for p in parts if p[0] == msn) or self.parts_per_segment.get(msn, 0)
        if parts:
            self.trace.append(
                f"t={now % 1000:.2f} got {parts[0][:2]}..{parts[-1][:2]} segs {segments[0][0] if segments else '-'}"
                f"..{segments[-1][0] if segments else '-'} at {self.last_part} (reload {self.reload_s:.2f} s,"
                f" planned {self.planned_late_s:.2f} s after)"
            )
        if self.last_part is None:
            return [], parts[-3:]
        new = [p for p in parts if (p[0], p[1]) > self.last_part]
        needed = self.successor(self.last_part)
        if not new or new[0][:2] == needed:
            return [], new
        # Not listed as a part any more: the segments from the one it is in, whole, as a player does.
        listed = dict(segments)
        catch_up = [(msn, listed[msn]) for msn in range(needed[0], new[0][0]) if msn in listed]
        if len(catch_up) == new[0][0] - needed[0] and new[0][1] == 0:
            STATS["catch_up_segments"] += len(catch_up)
            return catch_up, new
        self.out_of_window(self.last_part, f"part {needed}", now)
        self.last_part = None
        return [], parts[-3:]

    async def llhls_fetch(self, segments: list[tuple[int, str]], parts: list[tuple[int, int, str]]) -> None:
        for msn, uri in segments:
            if not await self.fetch(uri, (msn, None)):
                return  # the next reload shows whether it can still be had
            self.last_part = (msn, WHOLE)
        for msn, index, uri in parts:
            if not await self.fetch(uri, (msn, index)):
                return
            self.last_part = (msn, index)


async def slot(url: str, mode: str, min_life: float, max_life: float, stop_at: float) -> None:
    refusals = 0  # in a row
    while time.monotonic() < stop_at:
        session = Session(url, mode, min(random.uniform(min_life, max_life), stop_at - time.monotonic()))
        STATS["open"] += 1
        wait = 0.0
        try:
            await session.run()
        except Refused as refused:
            # Not a session: the viewer waits as a player does and tries again.
            refusals += 1
            STATS["refused"] += 1
            wait = refusal_delay(refusals, refused.retry_after)
        except (
            OSError,
            TimeoutError,
            ValueError,
            IndexError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ) as exc:
            session.error(f"{type(exc).__name__}: {exc}")
            wait = 1.0
        finally:
            session.connection.close()
            session.media.close()
            STATS["open"] -= 1
        if not refusals or session.played:
            refusals = 0
            STATS["sessions"] += 1
            STATS["never_played"] += not session.played
            STATS["sessions_with_node_losses"] += bool(session.node_losses)
            STATS["sessions_resynced"] += bool(session.resyncs)
        if wait:
            await asyncio.sleep(min(wait, max(0.0, stop_at - time.monotonic())))


def report() -> None:
    print("STATS " + json.dumps(STATS), flush=True)


async def main(args: argparse.Namespace) -> None:
    urls = json.loads(open(args.urls).read())
    stop_at = time.monotonic() + args.duration
    watch = asyncio.create_task(LOOP.run())
    tasks = []
    for i in range(args.count):
        tasks.append(asyncio.create_task(slot(urls[i % len(urls)], args.mode, args.min_life, args.max_life, stop_at)))
        await asyncio.sleep(1 / args.rate)

    async def reporter() -> None:
        while True:
            await asyncio.sleep(args.report)
            report()

    ticker = asyncio.create_task(reporter())
    await asyncio.gather(*tasks)
    ticker.cancel()
    watch.cancel()
    report()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--urls", required=True, help="a JSON file: a list of playlist URLs")
    parser.add_argument("--mode", choices=("hls", "llhls"), required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--min-life", type=float, default=20)
    parser.add_argument("--max-life", type=float, default=120)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--rate", type=float, default=20, help="slots started per second")
    parser.add_argument("--report", type=float, default=10)
    main_args = parser.parse_args()
    asyncio.run(main(main_args))
    sys.exit(0)
