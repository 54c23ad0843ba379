"""Helpers of the fault tests (tests/test_faults_*.py, issue 11): a TCP relay
the test puts in front of PostgreSQL or Redis and stops for an outage, and
`manage.py runall` in a process group of its own."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.test_runall import ROOT, STOP_SECONDS, free_port

RELAY_BUFFER_BYTES = 65536


class TcpRelay:
    """Listens on 127.0.0.1:`port` and relays each connection to `target`.

    `cut()` is the outage: every relayed connection is reset and new ones are
    refused (the listening socket closes), as when the server's machine drops
    off the network. `restore()` listens again on the same port."""

    def __init__(self, target: tuple[str, int], port: int = 0) -> None:
        self.target = target
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Lock()
        self.connections = 0

    def __enter__(self) -> TcpRelay:
        self.restore()
        return self

    def __exit__(self, *exc) -> None:
        self.cut()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            pairs, self._pairs = self._pairs, set()
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    # A reset, not a FIN: the peer learns at once that it is gone.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                    sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self._listener is not listener:
                client.close()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            self.connections += 1
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair: tuple[socket.socket, socket.socket]) -> None:
        a, b = pair
        peers = {a: b, b: a}
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 1.0)
                with self._lock:
                    if pair not in self._pairs:
                        return
                for sock in readable:
                    data = sock.recv(RELAY_BUFFER_BYTES)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            with self._lock:
                self._pairs.discard(pair)
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.close()


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


class RunAll:
    """`manage.py runall` on free ports and a data directory of its own."""

    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.tmp_path = tmp_path
        self.rtmp_port, self.http_port, self.port = free_port(), free_port(), free_port()
        self.env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        self.env.update(LIVECENTER_DATA_DIR=str(tmp_path), LIVECENTER_MEDIA_HOST="127.0.0.1",
                        LIVECENTER_MEDIA_RTMP_PORT=str(self.rtmp_port),
                        LIVECENTER_MEDIA_HTTP_PORT=str(self.http_port), PYTHONUNBUFFERED="1", **env)  # fmt: skip
        self.manage = [sys.executable, str(ROOT / "manage.py")]
        self.log_path = tmp_path / "runall.log"
        self.proc: subprocess.Popen | None = None

    def migrate(self) -> None:
        subprocess.run([*self.manage, "migrate", "--noinput", "-v0"], env=self.env, cwd=ROOT, check=True, timeout=180)

    def shell(self, code: str) -> str:
        out = subprocess.run([*self.manage, "shell", "-c", code], env=self.env, cwd=ROOT, capture_output=True,
                             text=True, timeout=90)  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""

    def start(self, *args: str) -> None:
        log = open(self.log_path, "w")  # noqa: SIM115 - the process owns it
        command = [*self.manage, "runall", "--port", str(self.port), *args]
        self.proc = subprocess.Popen(
            command, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def output(self) -> str:
        return self.log_path.read_text()[-8000:] if self.log_path.exists() else ""

    def child_pid(self, pattern: str) -> int | None:
        found = subprocess.run(["pgrep", "-P", str(self.proc.pid), "-f", pattern], capture_output=True, text=True)
        pids = found.stdout.split()
        return int(pids[0]) if pids else None

    def media_up(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.rtmp_port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + STOP_SECONDS
        while subprocess.run(["pgrep", "-g", str(self.proc.pid)], capture_output=True, text=True).stdout.split():
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                break
            time.sleep(0.2)


# --- the database outage scenario (SQLite and PostgreSQL) ---------------------------


def database_outage_scenario(owner, settings, tmp_path, outage, outage_seconds: float = 4.0) -> dict:
    """Streams live on a node with the database policy; then `outage` (a
    context manager) makes the database unreachable for `outage_seconds`.
    Checks what issue 11 asks of that window and after it; returns figures."""
    import datetime as dt
    import urllib.request

    from django.db import connection
    from django.test import Client

    from domains import services as domain_services
    from monitoring.models import StreamSample
    from streams.models import PublishSession
    from tests.streamsupport import add_pair
    from tests.workersupport import MediaNodeThread, probe, start_publisher, stop

    settings.LIVECENTER_POLICY_CACHE_SECONDS = 0.5  # so the outage outlives every fresh answer
    settings.LIVECENTER_POLICY_STALE_SECONDS = 300
    settings.LIVECENTER_DB_RETRY_SECONDS = 0.5
    push, play = add_pair(owner, "push.outage.test", "play.outage.test")
    cam1 = domain_services.generate_urls(owner, push.domain_name, "live", "cam1")
    cam2 = domain_services.generate_urls(owner, push.domain_name, "live", "cam2")
    console = Client(raise_request_exception=False)
    console.force_login(owner)
    publishers = []
    figures = {}
    with MediaNodeThread(play_wait_seconds=10) as node:
        try:
            publishers.append(
                start_publisher(node.local(cam1.ingest["rtmp"]), seconds=120 + outage_seconds, size="320x240")
            )
            flv1 = node.local(cam1.playback["flv"])
            assert probe(flv1, seconds=1)["packets"]
            assert wait_until(lambda: StreamSample.objects.filter(stream="cam1").exists(), 30)
            assert console.get("/api/v1/streams/online/?domain=push.outage.test").status_code in (200, 400, 404)
            unknown = f"http://127.0.0.1:{node.node.http_port}/live/cam1.flv?domain=nobody.outage.test"
            with outage():
                began = dt.datetime.now(dt.UTC)
                # The live stream flows, and plays for a new viewer of a known domain.
                assert probe(flv1, seconds=1)["packets"]
                # A known domain admits a new publisher; its viewers play it.
                publishers.append(
                    start_publisher(node.local(cam2.ingest["rtmp"]), seconds=120 + outage_seconds, size="320x240")
                )
                assert probe(node.local(cam2.playback["flv"]), seconds=1)["packets"]
                # An unknown domain: "policy unavailable", 503 (try again), not 403.
                try:
                    urllib.request.urlopen(unknown, timeout=10)
                    raise AssertionError("an unknown domain was admitted during the outage")
                except urllib.error.HTTPError as exc:
                    assert (exc.code, exc.read()) == (503, b"policy unavailable\n")
                # The console: a clear 503, a page and JSON.
                page = console.get("/streams/")
                assert page.status_code == 503 and b"database is unreachable" in page.content
                api = console.get("/api/v1/streams/online/", HTTP_ACCEPT="application/json")
                assert api.status_code == 503 and api.json()["code"] == "database_unavailable"
                assert page["Retry-After"]
                stop(publishers.pop())  # cam2 ends during the outage: its unpublish waits
                time.sleep(max(0.0, outage_seconds - (dt.datetime.now(dt.UTC) - began).total_seconds()))
                ended = dt.datetime.now(dt.UTC)
            figures["outage_seconds"] = (ended - began).total_seconds()
            connection.close()  # this thread's connection died with the outage; a request would drop it too
            # After: the samples of the outage are written, and the events replayed.
            assert wait_until(
                lambda: (
                    StreamSample.objects.filter(stream="cam1", at__gte=began, at__lte=ended).count()
                    >= figures["outage_seconds"] - 2
                ),
                30,
            ), StreamSample.objects.filter(stream="cam1").count()
            figures["samples_in_outage"] = StreamSample.objects.filter(
                stream="cam1", at__gte=began, at__lte=ended
            ).count()

            def cam2_closed():
                return PublishSession.objects.filter(stream="cam2", stopped_at__isnull=False).exists()

            assert wait_until(cam2_closed, 30), list(PublishSession.objects.values("stream", "stopped_at"))
            assert PublishSession.objects.filter(stream="cam1", stopped_at__isnull=True).count() == 1
            assert probe(flv1, seconds=1)["packets"]
            assert console.get("/streams/").status_code == 200
        finally:
            for publisher in publishers:
                stop(publisher)
    return figures
