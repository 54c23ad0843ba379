"""The all-in-one runner of the embedded topology (DESIGN.md, Topologies).

One ASGI process serves the console, the API and WebSockets and runs the
media node in the same event loop; a real Celery worker process (with the
beat scheduler embedded) runs beside it on the broker the settings name.
Ctrl-C stops everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import signal
import subprocess
import sys
import threading
import time

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand

WORKER_STOP_SECONDS = 15
# A worker that dies is started again, up to this many times in the window.
MAX_WORKER_RESTARTS = 3
WORKER_RESTART_WINDOW_SECONDS = 60


def worker_command(concurrency: int | None = None) -> list[str]:
    # Media jobs (mediajobs/tasks.py) hold a thread each while their stream is live.
    concurrency = concurrency or settings.LIVECENTER_WORKER_CONCURRENCY
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "livecenter",
        "worker",
        "--beat",
        "--schedule",
        str(settings.DATA_DIR / "celerybeat-schedule"),
        "--loglevel",
        "INFO",
        "--queues",
        f"celery,{settings.LIVECENTER_MEDIA_QUEUE}",
        "--pool",
        "threads",
        "--concurrency",
        str(concurrency),
        # The filesystem broker has no broadcast; one worker needs none.
        "--without-mingle",
        "--without-gossip",
        "--hostname",
        "embedded@%h",
    ]


def uvicorn_log_config() -> dict:
    """uvicorn's own logging, with auth_key values redacted from its access
    and error lines (a player's request line carries the signed URL)."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config.setdefault("filters", {})["redact"] = {"()": "livecenter.media.redact.RedactAuthKeyFilter"}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact")
    return config


class ConsoleServer(uvicorn.Server):
    """uvicorn, with signals left to the runner so that the media node in the
    same loop stops cleanly before the process exits."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


async def serve(server: uvicorn.Server, embedded: bool) -> None:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        if server.should_exit:
            server.force_exit = True  # a second Ctrl-C: stop now
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    if not embedded:
        await server.serve()
        return
    from nodes.medianode import running_media_node

    async with running_media_node():
        await server.serve()


class Command(BaseCommand):
    help = "Start the console on ASGI and a Celery worker beside it (the embedded topology)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=settings.LIVECENTER_CONSOLE_HOST)
        parser.add_argument("--port", type=int, default=settings.LIVECENTER_CONSOLE_PORT)
        parser.add_argument("--no-worker", action="store_true", help="run without the Celery worker")
        parser.add_argument(
            "--no-media",
            action="store_true",
            help="run without the embedded media node (scaled topology: `manage.py medianode` runs it)",
        )

    def handle(self, *args, host, port, no_worker, no_media, **options):
        server = ConsoleServer(
            uvicorn.Config(
                "livecenter.asgi:application",
                host=host,
                port=port,
                lifespan="off",
                log_level="info",
                log_config=uvicorn_log_config(),
            )
        )
        self.worker: subprocess.Popen | None = None
        if not no_worker:
            self.worker = subprocess.Popen(worker_command(), env=os.environ.copy())
            threading.Thread(target=self._watch_worker, args=(server,), daemon=True).start()
        self.stdout.write(f"LiveCenter console on http://{host}:{port}/ (Ctrl-C stops everything)")
        try:
            asyncio.run(serve(server, settings.LIVECENTER_MEDIA_EMBEDDED and not no_media))
        finally:
            self.stopping = True
            if self.worker is not None:
                self._stop_worker(self.worker)

    stopping = False

    def _watch_worker(self, server: uvicorn.Server) -> None:
        """A worker that dies (a crash, kill -9) is started again, so that its
        media jobs come back (mediajobs/tasks.py); one that keeps dying stops
        the console."""
        restarts: list[float] = []
        while True:
            code = self.worker.wait()
            if server.should_exit or self.stopping:
                return
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < WORKER_RESTART_WINDOW_SECONDS] + [now]
            if len(restarts) > MAX_WORKER_RESTARTS:
                self.stderr.write(f"Celery worker exited with code {code} again; stopping the console")
                server.should_exit = True
                return
            self.stderr.write(f"Celery worker exited with code {code}; starting it again")
            self.worker = subprocess.Popen(worker_command(), env=os.environ.copy())

    def _stop_worker(self, worker: subprocess.Popen) -> None:
        if worker.poll() is None:
            # Ctrl-C in a terminal reached the worker too; otherwise ask it.
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(WORKER_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        self.stdout.write("LiveCenter stopped")
