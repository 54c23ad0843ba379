"""A callback receiver for the tests (issue 16): an http.server on loopback in
a thread, keeping every request, answering as the test says."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """`answer(received, count)` -> (status, body text), where count is how
    many requests with this one's X-LiveCenter-Delivery came before it;
    `delay_seconds` holds every answer back."""

    def __init__(self, answer=None, delay_seconds: float = 0.0) -> None:
        self.answer = answer or (lambda received, count: (200, "ok"))
        self.delay_seconds = delay_seconds
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received = Received(self.path, dict(self.headers.items()), body)
                with receiver.lock:
                    count = sum(
                        1
                        for r in receiver.requests
                        if r.headers.get("X-LiveCenter-Delivery") == received.headers.get("X-LiveCenter-Delivery")
                    )
                    receiver.requests.append(received)
                if receiver.delay_seconds:
                    time.sleep(receiver.delay_seconds)
                status, text = receiver.answer(received, count)
                data = text.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (ConnectionError, OSError):
                    pass  # the caller gave up waiting (a timeout test)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def events(self, name: str | None = None) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if name is None or r.headers.get("X-LiveCenter-Event") == name]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
