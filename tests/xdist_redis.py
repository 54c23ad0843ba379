"""A Redis database of its own for each pytest-xdist worker (loaded with `-p`
in pyproject's addopts, so before pytest-django imports the settings).

The suite's passes spread tests over several xdist workers on one machine and
one Redis. Nodes beat into Redis and kicks go to a group there: in one shared
database a node of one worker's test is a center of every region to another
worker's edge, and a kick reaches every worker's listeners. So worker `gwN`
uses database B−N (mod 16), B being REDIS_URL's (CI: 15, 14, 13); REDIS_URL
is rewritten in the environment, so the media nodes a test starts as
processes land in the same database."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

REDIS_DATABASES = 16  # Redis's default `databases`


def worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0


def worker_redis_url(url: str, index: int | None = None) -> str:
    """`url` with its database moved down by the worker's index: redis-py's
    TCP form keeps it in the path (`redis://host:port/15`), the Unix socket
    form in the query (`unix:///run/redis.sock?db=15`)."""
    index = worker_index() if index is None else index
    if not index:
        return url
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = parse_qs(parts.query)
        base = int(query.get("db", ["0"])[0])
        query["db"] = [str((base - index) % REDIS_DATABASES)]
        # (urlunsplit would drop the empty authority: `unix:/run/…`)
        return url.split("?", 1)[0] + "?" + urlencode(query, doseq=True)
    path = parts.path.strip("/")
    base = int(path) if path.isdigit() else 0
    return urlunsplit(parts._replace(path=f"/{(base - index) % REDIS_DATABASES}"))


if os.environ.get("REDIS_URL"):
    os.environ["REDIS_URL"] = worker_redis_url(os.environ["REDIS_URL"])
