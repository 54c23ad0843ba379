"""What the benches share: logging, loopback ports, child processes, Debian's nginx-rtmp."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NGINX_RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# How a load generator's viewer waits after the node refused it, as a player
# does: the node's Retry-After when it sent one (HTTP 503 at capacity), else
# an exponential back-off from BACKOFF_FIRST_SECONDS doubling up to
# BACKOFF_MAX_SECONDS. With jitter, so refused viewers do not come back
# together (retrying at once is what turned soak try 3 into a refusal storm).
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
RETRY_AFTER_JITTER = 0.2  # a Retry-After of 10 s: 10-12 s


def refusal_delay(attempt: int, retry_after: str | None = None) -> float:
    """Seconds to wait before trying again after the `attempt`-th refusal in
    a row (1 for the first). `retry_after`: the header's value, if any
    (delta-seconds; RFC 9110 10.2.3); an HTTP-date or garbage is ignored."""
    if retry_after is not None and retry_after.strip().isdigit():
        seconds = int(retry_after.strip())
        return seconds * (1 + random.uniform(0, RETRY_AFTER_JITTER))
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)  # "equal jitter": at least half the step


def build_c(source: Path, binary: Path, *libraries: str) -> Path:
    """A bench's small C program, built as the benches build theirs (`cc -O2`)."""
    subprocess.run(["cc", "-O2", "-Wall", "-o", str(binary), str(source), *libraries], check=True)
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def require_nginx_rtmp() -> None:
    """Debian's nginx and libnginx-mod-rtmp, installed when missing (root)."""
    if NGINX_RTMP_MODULE.exists() and shutil.which("nginx"):
        return
    log("installing nginx and libnginx-mod-rtmp (Debian) ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "nginx", "libnginx-mod-rtmp"], check=True, env=env, stdout=subprocess.DEVNULL
    )


class Processes:
    """Children started here, stopped by their own pids on the way out."""

    def __init__(self, workdir: Path, env: dict):
        self.workdir, self.env, self.running = workdir, env, []

    def start(self, name: str, cmd: list[str], **kw) -> subprocess.Popen:
        out = open(self.workdir / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, **kw)
        self.running.append((name, proc))
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen, timeout: float = 30) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        for _, proc in reversed(self.running):
            self.stop(proc)

    def tail(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text()[-1500:]
