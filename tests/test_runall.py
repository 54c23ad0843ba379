"""`manage.py runall`, what `make run` starts: the console on ASGI with the
media node in its loop and a Celery worker beside it, stopped by Ctrl-C
(SIGINT to the process group)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
START_SECONDS = 60
STOP_SECONDS = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answer(url: str, seconds: float) -> tuple[int, bytes]:
    """GET once the server listens: a runner's children start in any order, and
    the worker's "ready." can come before the console has bound its port."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return get(url)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def stop_with_ctrl_c(proc: subprocess.Popen, seconds: float = STOP_SECONDS) -> None:
    """SIGINT to the runner's process group, as Ctrl-C in its terminal; a
    runner still there after `seconds` is killed and the caller fails."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.worker
def test_it_serves_the_console_with_a_worker_and_stops_on_ctrl_c(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["LIVECENTER_DATA_DIR"] = str(tmp_path)
    env["LIVECENTER_MEDIA_HOST"] = "127.0.0.1"
    env["LIVECENTER_MEDIA_RTMP_PORT"] = str(rtmp_port := free_port())
    env["LIVECENTER_MEDIA_HTTP_PORT"] = str(http_port := free_port())
    port = free_port()
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, cwd=ROOT, check=True, timeout=120)
    created = subprocess.run(
        [*manage, "ensure_demo_operator"], env=env, cwd=ROOT, check=True, capture_output=True, text=True
    )
    assert "Log in with: demo / " in created.stdout
    log = open(tmp_path / "runall.log", "w+")  # noqa: SIM115 - read back after the run
    proc = subprocess.Popen(
        [*manage, "runall", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a terminal gives it
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        status, body = answer(f"http://127.0.0.1:{port}/accounts/login/", START_SECONDS)
        assert status == 200, open(tmp_path / "runall.log").read()[-3000:]
        assert b"csrfmiddlewaretoken" in body
        assert get(f"http://127.0.0.1:{port}/static/vendor/bootstrap/css/bootstrap.min.css")[0] == 200
        # The media node runs in the same process: RTMP accepts, HTTP-FLV answers.
        socket.create_connection(("127.0.0.1", rtmp_port), timeout=5).close()
        status, body = get(f"http://127.0.0.1:{http_port}/live/cam1.flv")
        assert (status, body) == (403, b"non-existent domain\n")
        # The worker is up when it says so in the shared log.
        while time.monotonic() < deadline and "ready." not in open(tmp_path / "runall.log").read():
            time.sleep(0.2)
        worker_pids = subprocess.run(
            ["pgrep", "-g", str(proc.pid), "-f", "celery"], capture_output=True, text=True
        ).stdout.split()
        assert worker_pids, "no Celery worker in the runner's process group"
    finally:
        stop_with_ctrl_c(proc)
    output = open(tmp_path / "runall.log").read()
    assert "LiveCenter stopped" in output, output[-3000:]
    # The worker's embedded beat process may take a moment longer.
    deadline = time.monotonic() + STOP_SECONDS
    while left := subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split():
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"processes left {STOP_SECONDS} s after Ctrl-C: {left}")
        time.sleep(0.2)


@pytest.mark.worker
def test_it_runs_the_media_node_alone_and_stops_on_sigterm(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["LIVECENTER_DATA_DIR"] = str(tmp_path)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, cwd=ROOT, check=True, timeout=120)
    rtmp_port, http_port = free_port(), free_port()
    proc = subprocess.Popen(
        [*manage, "medianode", "--host", "127.0.0.1", "--rtmp-port", str(rtmp_port), "--http-port", str(http_port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", rtmp_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        status, body = get(f"http://127.0.0.1:{http_port}/live/cam1.flv?domain=nobody.example")
        assert (status, body) == (403, b"non-existent domain\n")
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=STOP_SECONDS)[0]
    assert proc.returncode == 0, output
    assert "Media node stopped" in output
