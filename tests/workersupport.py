"""Real Celery workers for the media job tests (tests/test_media_*.py): worker
processes and a beat process on a queue of their own (so no other worker on
this machine takes the jobs), on the test database, and a media node with
the database policy in a thread of the test process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from asgiref.sync import sync_to_async
from django.db import connection, connections

from livecenter.media.node import NodeConfig
from nodes.medianode import running_media_node
from tests.mediasupport import TEST_MAX_LOOP_LAG_MS

ROOT = Path(__file__).resolve().parent.parent
# A Celery worker's start (Django and Celery imported) on a loaded two-core machine.
WORKER_READY_SECONDS = 120


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


class MediaNodeThread:
    """running_media_node in a thread of its own, as the console runs it,
    with a play wait long enough for an on-demand transcode to start."""

    def __init__(self, netns: str | None = None, **config) -> None:
        self.config = {"host": "127.0.0.1", "rtmp_port": 0, "http_port": 0, "node_id": "media-test",
                       "play_wait_seconds": 15, "update_interval_seconds": 1,
                       "max_loop_lag_ms": TEST_MAX_LOOP_LAG_MS, **config}  # fmt: skip
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.stop_event: asyncio.Event | None = None
        self.node = None
        # A network namespace (tests/netns.py) for the node's thread, so every
        # socket it makes lives there; the threads it starts inherit it.
        self.netns = netns
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        if self.netns is not None:
            from tests.netns import enter_netns

            enter_netns(self.netns)
        self.loop.run_until_complete(self._run())

    async def _run(self) -> None:
        self.stop_event = asyncio.Event()
        try:
            async with running_media_node(NodeConfig(**self.config)) as node:
                self.node = node
                self.started.set()
                await self.stop_event.wait()
        finally:
            self.started.set()
            await sync_to_async(connections.close_all, thread_sensitive=True)()

    def __enter__(self) -> MediaNodeThread:
        self.thread.start()
        assert self.started.wait(20) and self.node is not None
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)

    def local(self, url: str) -> str:
        """A generated URL sent to this node, the domain in the `domain=` fallback."""
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme == "srt":  # the stream ID names the domain; its "#!::" is no fragment
            return f"srt://127.0.0.1:{self.node.srt_port}?{url.partition('?')[2]}"
        port = self.node.rtmp_port if parts.scheme == "rtmp" else self.node.http_port
        return f"{parts.scheme}://127.0.0.1:{port}{parts.path}?{parts.query}&domain={parts.hostname}"


def database_env(**extra: str) -> dict[str, str]:
    """This process's environment with `extra`, pointing another process at
    this test's database."""
    env = dict(os.environ, **extra)
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        env.pop("DATABASE_URL", None)
        env["LIVECENTER_SQLITE_PATH"] = str(db["NAME"])
    else:
        env["DATABASE_URL"] = (
            f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"
        )
    return env


def worker_env(queue: str, data_dir: Path) -> dict[str, str]:
    return database_env(LIVECENTER_MEDIA_QUEUE=queue, LIVECENTER_RECORDINGS_DIR=str(data_dir / "recordings"),
                        LIVECENTER_SNAPSHOTS_DIR=str(data_dir / "snapshots"), PYTHONUNBUFFERED="1")  # fmt: skip


class Workers:
    """Celery worker processes and one beat on a fresh queue. Use as a
    context manager; `start_worker()` adds one, `kill(pid)` is kill -9."""

    def __init__(self, tmp_path: Path, settings, **env: str) -> None:
        self.queue = f"media-test-{uuid.uuid4().hex[:10]}"
        settings.LIVECENTER_MEDIA_QUEUE = self.queue
        settings.LIVECENTER_RECORDINGS_DIR = tmp_path / "recordings"
        settings.LIVECENTER_SNAPSHOTS_DIR = tmp_path / "snapshots"
        self.tmp_path = tmp_path
        self.env = {**worker_env(self.queue, tmp_path), **env}
        self.processes: list[subprocess.Popen] = []
        self.logs: list[Path] = []

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen:
        log = self.tmp_path / f"{name}.log"
        self.logs.append(log)
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "livecenter", *args],
            env=self.env,
            cwd=ROOT,
            stdout=open(log, "w"),  # noqa: SIM115 - the process owns it
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        return process

    def start_worker(self, concurrency: int = 4) -> subprocess.Popen:
        """A worker that consumes the queue: returns once it says it is ready
        (a loaded machine takes seconds to import Django and Celery), so a
        test's clock starts with a worker there to take its jobs."""
        index = len(self.processes)
        process = self._spawn(
            ["worker", "-Q", self.queue, "--pool", "threads", "--concurrency", str(concurrency), "--without-mingle",
             "--without-gossip", "--loglevel", "INFO", "--hostname", f"{self.queue}-{index}@%h"],
            f"worker-{index}",
        )  # fmt: skip
        log = self.logs[-1]
        ready = wait_until(lambda: " ready." in log.read_text() or process.poll() is not None, WORKER_READY_SECONDS)
        assert ready and process.poll() is None, self.output()
        return process

    def start_beat(self) -> subprocess.Popen:
        return self._spawn(["beat", "--schedule", str(self.tmp_path / "beat-schedule"), "--loglevel", "INFO"], "beat")

    def kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)

    def output(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-4000:]}" for log in self.logs if log.exists())

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def probe(url: str, seconds: float, entries: str = "packet=pts_time,size,flags", timeout: float = 60) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-read_intervals", f"%+{seconds}", "-show_entries",
         f"{entries}:stream=index,codec_type,width,height,profile", "-of", "json", url],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if out.returncode != 0:
        raise AssertionError(f"ffprobe failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def start_publisher(
    url: str, seconds: float, size: str = "1280x720", rate: int = 15, container: str = "flv"
) -> subprocess.Popen:
    """ffmpeg publishing testsrc2 + a tone in real time, a keyframe a second
    (`container="mpegts"` for an SRT URL)."""
    cmd = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-t", str(seconds),
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(rate),
        "-b:v", "2M", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "96k",
        "-f", container, url,
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def jobs_ended(timeout: float) -> bool:
    """Whether every media job has ended (none queued or running) within `timeout` s."""
    from mediajobs.models import JobState, MediaJob

    active = MediaJob.objects.filter(state__in=[JobState.QUEUED, JobState.RUNNING])
    return bool(wait_until(lambda: not active.exists(), timeout))


def stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.terminate()
    try:
        return process.communicate(timeout=15)[1] or ""
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()[1] or ""
