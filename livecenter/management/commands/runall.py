"""The all-in-one runner of the embedded topology (DESIGN.md, Topologies).

A small supervisor: one child process (`runall --serve`) serves the console,
the API and WebSockets and runs the media node in the same event loop; a
real Celery worker process (with the beat scheduler embedded) runs beside it
on the broker the settings name. A child that dies is started again (issue
11: kill -9 of the media node); Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand

CHILD_STOP_SECONDS = 15
# A child that dies is started again, up to this many times in the window;
# one more death and the runner gives up (a crash loop is not hidden).
MAX_RESTARTS = 3
RESTART_WINDOW_SECONDS = 60
CHILD_POLL_SECONDS = 0.2
SIGINT_GRACE_SECONDS = 3


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


async def serve_console(server: uvicorn.Server, embedded: bool) -> None:
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


@dataclass
class Child:
    """A process the runner keeps running: started again when it dies, at
    most MAX_RESTARTS times in RESTART_WINDOW_SECONDS."""

    name: str
    command: list[str]
    process: subprocess.Popen | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, env=os.environ.copy())

    def may_restart(self, now: float) -> bool:
        self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW_SECONDS] + [now]
        return len(self.restarts) <= MAX_RESTARTS

    def stop(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def wait(self, seconds: float) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


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
        # The supervised child: the console (and media node) in this process.
        parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)

    def handle(self, *args, host, port, no_worker, no_media, serve, **options):
        if serve:
            server = ConsoleServer(
                uvicorn.Config(
                    "livecenter.asgi:application",
                    host=host,
                    port=port,
                    lifespan="off",
                    log_level="info",
                    log_config=uvicorn_log_config(),
                    # The console's own certificate (LIVECENTER_CONSOLE_TLS_*), when set.
                    ssl_certfile=settings.LIVECENTER_CONSOLE_TLS_CERT_FILE or None,
                    ssl_keyfile=settings.LIVECENTER_CONSOLE_TLS_KEY_FILE or None,
                )
            )
            asyncio.run(serve_console(server, settings.LIVECENTER_MEDIA_EMBEDDED and not no_media))
            return
        server_command = [sys.executable, str(settings.BASE_DIR / "manage.py"), "runall", "--serve",
                          "--host", host, "--port", str(port), *(["--no-media"] if no_media else [])]  # fmt: skip
        children = [Child("console and media node", server_command)]
        if not no_worker:
            children.append(Child("Celery worker", worker_command()))
        self.supervise(children, host, port)

    def supervise(self, children: list[Child], host: str, port: int) -> None:
        """Run the children until a signal (or one that keeps dying) stops them.

        A child that dies (a crash, kill -9) is started again: the media node
        closes the sessions its previous life left open (nodes/bridge.py)
        and publishers reconnect; a worker's media jobs come back
        (mediajobs/tasks.py). One that dies more than MAX_RESTARTS times a
        minute is given up on, and everything stops with an error."""
        stop = threading.Event()
        received: list[int] = []

        def on_signal(sig, frame) -> None:
            received.append(sig)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
        for child in children:
            child.start()
        scheme = "https" if settings.LIVECENTER_CONSOLE_TLS_CERT_FILE else "http"
        self.stdout.write(f"LiveCenter console on {scheme}://{host}:{port}/ (Ctrl-C stops everything)")
        failure = ""
        try:
            while not stop.wait(CHILD_POLL_SECONDS):
                for child in children:
                    code = child.process.poll()
                    if code is None or stop.is_set():
                        continue
                    if not child.may_restart(time.monotonic()):
                        failure = (
                            f"LiveCenter: the {child.name} exited with code {code} "
                            f"{MAX_RESTARTS + 1} times within {RESTART_WINDOW_SECONDS} s; giving up"
                        )
                        stop.set()
                        break
                    self.stderr.write(f"LiveCenter: the {child.name} exited with code {code}; starting it again")
                    child.start()
        finally:
            # Ctrl-C in a terminal reaches the whole process group: the
            # children stop on their own; give them a moment before asking.
            if received and received[0] == signal.SIGINT:
                deadline = time.monotonic() + SIGINT_GRACE_SECONDS
                while time.monotonic() < deadline and any(c.process.poll() is None for c in children):
                    time.sleep(0.1)
            for child in children:
                child.stop(signal.SIGTERM)
            for child in children:
                child.wait(CHILD_STOP_SECONDS)
        if failure:
            self.stderr.write(failure)
            raise SystemExit(1)
        self.stdout.write("LiveCenter stopped")
