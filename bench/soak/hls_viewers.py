"""HLS or LL-HLS viewers that join and leave, each checking that it missed
nothing, for bench/soak/run.py.

One asyncio process holds `--count` viewer slots over the playlist URLs given
(slot i plays URL i % len). A session lasts a random time in [--min-life,
--max-life] seconds, then a new one of the same slot starts at once.

- hls: the playlist is reloaded every half target duration (RFC 8216 6.3.4
  allows as often as that) and every segment not fetched yet is fetched in
  order. A gap is a reload whose first new segment is not the one after the
  last fetched (the viewer fell out of the window: media lost).
- llhls: blocking playlist reloads (`_HLS_msn`/`_HLS_part`, RFC 8216bis
  6.2.5.2) for the part after the newest one listed, and every new part is
  fetched in order. A gap is a new part that is not the successor of the
  last fetched one.

Each fetch must be 200 and MPEG-TS (sync byte 0x47). Every --report seconds
one line: STATS {...} (sessions finished and open, media fetched, gaps, errors).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import time
from urllib.parse import urljoin, urlsplit

STATS = {"sessions": 0, "open": 0, "fetched": 0, "bytes": 0, "gaps": 0, "sessions_with_gaps": 0, "errors": 0,
         "playlists": 0, "slow_requests": 0, "max_request_s": 0.0, "gaps_after_slow_requests": 0,
         "error_examples": [], "gap_examples": []}  # fmt: skip
# A request slower than this is counted (a blocking reload waits up to about 3 part durations).
SLOW_REQUEST_SECONDS = 2.0
REQUEST_TIMEOUT_SECONDS = 20


class Connection:
    """One keep-alive HTTP/1.1 connection, reused for a viewer's requests as a
    player's browser does (the node keeps connections open: idle timeout and
    a request cap, livecenter/media/http_server.py). A connection the node
    closed while idle is opened again once for the request that found it."""

    def __init__(self) -> None:
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.netloc = ""

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
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                body += (await self.reader.readexactly(size + 2))[:-2]
            await self.reader.readuntil(b"\r\n")
        else:
            body = await self.reader.read()
            headers["connection"] = "close"
        if headers.get("connection") == "close":
            self.close()
        return status, body


def parse_playlist(text: str) -> tuple[int, float, list[tuple[int, str]], list[tuple[int, int, str]]]:
    """(media sequence, target duration, [(msn, uri)], [(msn, part index, uri)])."""
    sequence, target = 0, 1.0
    segments, parts = [], []
    msn, index = None, 0
    for line in text.splitlines():
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            sequence = int(line.split(":", 1)[1])
            msn = sequence
        elif line.startswith("#EXT-X-TARGETDURATION:"):
            target = float(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-PART:"):
            uri = re.search(r'URI="([^"]+)"', line)[1]
            parts.append((msn, index, uri))
            index += 1
        elif line and not line.startswith("#"):
            segments.append((msn, line))
            msn, index = msn + 1, 0
    return sequence, target, segments, parts


class Session:
    def __init__(self, url: str, mode: str, life: float) -> None:
        self.url, self.mode, self.deadline = url, mode, time.monotonic() + life
        self.last_msn: int | None = None
        self.last_part: tuple[int, int] | None = None
        self.parts_per_segment: dict[int, int] = {}
        self.gaps = 0
        self.slow = 0  # requests over SLOW_REQUEST_SECONDS
        self.connection = Connection()  # playlists
        self.media = Connection()  # segments and parts

    async def request(self, url: str, connection: Connection | None = None) -> tuple[int, bytes]:
        connection = connection or self.connection
        began = time.monotonic()
        try:
            return await asyncio.wait_for(connection.get(url), REQUEST_TIMEOUT_SECONDS)
        except BaseException:
            connection.close()
            raise
        finally:
            took = time.monotonic() - began
            self.slow += took > SLOW_REQUEST_SECONDS
            STATS["slow_requests"] += took > SLOW_REQUEST_SECONDS
            STATS["max_request_s"] = round(max(STATS["max_request_s"], took), 2)

    def error(self, text: str) -> None:
        STATS["errors"] += 1
        if len(STATS["error_examples"]) < 5:
            STATS["error_examples"].append(text[:200])

    def gap(self, text: str) -> None:
        self.gaps += 1
        if len(STATS["gap_examples"]) < 5:
            STATS["gap_examples"].append(text)

    async def fetch(self, uri: str) -> bool:
        status, body = await self.request(urljoin(self.url, uri), self.media)
        if status != 200 or not body.startswith(b"\x47"):
            self.error(f"{uri}: {status} {body[:60]!r}")
            return False
        STATS["fetched"] += 1
        STATS["bytes"] += len(body)
        return True

    async def run(self) -> None:
        url = self.url
        fetching: asyncio.Task | None = None
        try:
            while time.monotonic() < self.deadline:
                status, body = await self.request(url)
                STATS["playlists"] += 1
                if status != 200:
                    self.error(f"playlist: {status} {body[:60]!r}")
                    await asyncio.sleep(1)
                    url = self.url
                    continue
                sequence, target, segments, parts = parse_playlist(body.decode())
                if self.mode == "hls":
                    await self.hls_step(segments)
                    await asyncio.sleep(target / 2)
                    continue
                if fetching is not None:
                    await fetching  # where the last playlist's parts ended decides what this one adds
                fetching = asyncio.create_task(self.llhls_fetch(*self.llhls_plan(segments, parts)))
                if not parts:
                    await asyncio.sleep(0.2)
                    url = self.url
                else:
                    url = f"{self.url}&_HLS_msn={parts[-1][0]}&_HLS_part={parts[-1][1] + 1}"
            if fetching is not None:
                await fetching
        finally:
            if fetching is not None:
                fetching.cancel()

    async def hls_step(self, segments: list[tuple[int, str]]) -> None:
        if self.last_msn is None:
            segments = segments[-3:]  # a player starts three segments from the end (RFC 8216 6.3.3)
        else:
            segments = [s for s in segments if s[0] > self.last_msn]
            if segments and segments[0][0] != self.last_msn + 1:
                self.gap(f"after segment {self.last_msn} came {segments[0][0]}")
        for msn, uri in segments:
            if not await self.fetch(uri):
                break  # the next reload shows whether it can still be had
            self.last_msn = msn

    def catch_up(self, last_msn: int, first: tuple[int, int], listed: dict[int, str]) -> list[str]:
        """The parts after the last one fetched are no longer listed (the
        playlist keeps parts for its last segments only): as a player does,
        fetch the segments in between whole, from the one the last part
        belongs to. Media is lost only where such a segment is gone too."""
        uris = []
        for msn in range(last_msn, first[0]):
            if msn not in listed:
                self.gap(f"after part {self.last_part} came {first}; segment {msn} is not listed")
                return uris
            uris.append(listed[msn])
        if first[1] != 0:
            self.gap(f"after part {self.last_part} came {first}")
        return uris

    def llhls_plan(
        self, segments: list[tuple[int, str]], parts: list[tuple[int, int, str]]
    ) -> tuple[list[str], list[tuple[int, int, str]]]:
        """What to fetch of a playlist: (whole segments to catch up with, new parts)."""
        for msn, _uri in segments:
            self.parts_per_segment[msn] = sum(1 for p in parts if p[0] == msn) or self.parts_per_segment.get(msn, 0)
        if self.last_part is None:
            return [], parts[-3:]
        last_msn, last_index = self.last_part
        new = [p for p in parts if (p[0], p[1]) > self.last_part]
        catch_up = []
        if new:
            first = new[0][:2]
            successor = (last_msn, last_index + 1)
            # The part after the last one of a complete segment is part 0 of the next.
            complete = any(m == last_msn for m, _ in segments)
            closed = complete and self.parts_per_segment.get(last_msn) == last_index + 1
            if first != successor and not (closed and first == (last_msn + 1, 0)):
                catch_up = self.catch_up(last_msn, first, dict(segments))
        return catch_up, new

    async def llhls_fetch(self, segments: list[str], parts: list[tuple[int, int, str]]) -> None:
        """Fetch on the media connection while the next blocking reload waits
        on the playlist one, as hls.js does (its part loads and its playlist
        loads are separate requests in flight together)."""
        for uri in segments:
            await self.fetch(uri)
        for msn, index, uri in parts:
            if not await self.fetch(uri):
                break  # the next reload shows whether it can still be had
            self.last_part = (msn, index)


async def slot(url: str, mode: str, min_life: float, max_life: float, stop_at: float) -> None:
    while time.monotonic() < stop_at:
        session = Session(url, mode, min(random.uniform(min_life, max_life), stop_at - time.monotonic()))
        STATS["open"] += 1
        try:
            await session.run()
        except (
            OSError,
            TimeoutError,
            ValueError,
            IndexError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ) as exc:
            session.error(f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(1)
        finally:
            session.connection.close()
            session.media.close()
            STATS["open"] -= 1
            STATS["sessions"] += 1
            STATS["gaps"] += session.gaps
            STATS["sessions_with_gaps"] += bool(session.gaps)
            # Gaps in a session that waited on a request over SLOW_REQUEST_SECONDS: the viewer did not keep up
            # (a slow node or a starved client; the soak's CPU figures tell which).
            STATS["gaps_after_slow_requests"] += bool(session.gaps and session.slow)


def report() -> None:
    print("STATS " + json.dumps(STATS), flush=True)


async def main(args: argparse.Namespace) -> None:
    urls = json.loads(open(args.urls).read())
    stop_at = time.monotonic() + args.duration
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
    report()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
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
