"""A Redis of the test's own on a Unix socket (the scaled topology's shared
state where the nodes share a machine, or sit in network namespaces of one:
a socket file is reached from every namespace, a TCP port on loopback from
one only)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis

START_SECONDS = 10


class UnixRedis:
    """`redis-server` listening on `redis.sock` in a directory of its own
    (short, under /tmp: a socket path has at most 107 bytes), no TCP port,
    nothing saved; `url` is redis-py's form of the address."""

    def __init__(self, db: int = 0) -> None:
        self.db = db
        self.directory: Path | None = None
        self.process: subprocess.Popen | None = None

    @property
    def socket(self) -> Path:
        return self.directory / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db={self.db}"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5)

    def __enter__(self) -> UnixRedis:
        self.directory = Path(tempfile.mkdtemp(prefix="lc-redis-"))
        self.process = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                self.client().ping()
                return self
            except (redis.RedisError, OSError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"redis-server did not answer on {self.socket}") from None
                time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def unix_redis():
    """A UnixRedis for the test, or a skip where redis-server is not installed."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    with UnixRedis(db=2) as server:
        yield server
