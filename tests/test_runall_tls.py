"""`make run` (runall) with TLS configured (issue 15): the console over
HTTPS with its own certificate, and the embedded media node's HTTPS port
serving a domain's uploaded certificate by SNI."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.test_runall import ROOT, START_SECONDS, STOP_SECONDS, free_port
from tests.tlssupport import TestCa, served_certificate

pytestmark = pytest.mark.media

SETUP = """
import os, pathlib
from django.contrib.auth import get_user_model
from domains import services
directory = pathlib.Path(os.environ["TLS_TEST_DIR"])
owner = get_user_model().objects.create_user("op", password="op-pass-123")
play = services.add_domain(owner, "play.tls.test", "streaming", "overseas", "ap-southeast-1")
services.upload_certificate(play, (directory / "play.pem").read_text(), (directory / "play.key").read_text())
"""


def test_it_serves_the_console_and_the_media_node_over_https(tmp_path):
    ca = TestCa(tmp_path)
    console, play = ca.issue(["console.tls.test"]), ca.issue(["play.tls.test"])
    for name, leaf in (("console", console), ("play", play)):
        (tmp_path / f"{name}.pem").write_text(leaf.chain_pem)
        (tmp_path / f"{name}.key").write_text(leaf.key_pem)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    https_port, port = free_port(), free_port()
    env.update(LIVECENTER_DATA_DIR=str(tmp_path), LIVECENTER_MEDIA_HOST="127.0.0.1",
               LIVECENTER_MEDIA_RTMP_PORT=str(free_port()), LIVECENTER_MEDIA_HTTP_PORT=str(free_port()),
               LIVECENTER_MEDIA_HTTPS_PORT=str(https_port), DJANGO_ALLOWED_HOSTS="console.tls.test",
               LIVECENTER_CONSOLE_TLS_CERT_FILE=str(tmp_path / "console.pem"),
               LIVECENTER_CONSOLE_TLS_KEY_FILE=str(tmp_path / "console.key"))  # fmt: skip
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, cwd=ROOT, check=True, timeout=120)
    setup = subprocess.run([*manage, "shell", "-c", SETUP], env={**env, "TLS_TEST_DIR": str(tmp_path)}, cwd=ROOT,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert setup.returncode == 0, setup.stderr
    log = open(tmp_path / "runall.log", "w+")  # noqa: SIM115 - read back after the run
    proc = subprocess.Popen([*manage, "runall", "--no-worker", "--port", str(port)], env=env, cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    def output() -> str:
        return open(tmp_path / "runall.log").read()[-3000:]

    try:
        deadline, login = time.monotonic() + START_SECONDS, None
        while time.monotonic() < deadline:
            login = subprocess.run(
                ["curl", "-sS", "-i", "--cacert", str(ca.path), "--resolve", f"console.tls.test:{port}:127.0.0.1",
                 f"https://console.tls.test:{port}/accounts/login/"],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            if login.returncode == 0:
                break
            time.sleep(0.3)
        assert login.returncode == 0, (login.stderr, output())
        head = login.stdout.split("\n\n", 1)[0].lower()  # text mode: lines end in \n
        assert head.startswith("http/1.1 200") and "csrftoken=" in head and "; secure" in head, head
        fingerprint, report = served_certificate(https_port, "play.tls.test", ca)
        assert fingerprint == play.fingerprint_sha256, (report, output())
        assert "alert number 112" in served_certificate(https_port, "other.tls.test", ca)[1]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(STOP_SECONDS)


PROXY_SETUP = """
from django.contrib.auth import get_user_model
from domains import services
owner = get_user_model().objects.create_user("op", password="op-pass-123")
for n in range(51):  # a page and one more: the API's next link is an absolute URL
    services.add_domain(owner, f"play{n}.proxy.test", "streaming", "overseas", "ap-southeast-1")
"""


def test_the_console_behind_a_reverse_proxy_trusts_its_forwarded_proto_only(tmp_path):
    """LIVECENTER_CONSOLE_BEHIND_PROXY: a request the proxy (an address in
    FORWARDED_ALLOW_IPS) forwards with X-Forwarded-Proto: https is served as
    HTTPS (https:// links, Secure cookies, no redirect, so no loop); the
    same header from any other address is ignored."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    port = free_port()
    env.update(LIVECENTER_DATA_DIR=str(tmp_path), LIVECENTER_CONSOLE_BEHIND_PROXY="1",
               FORWARDED_ALLOW_IPS="127.0.0.1", DJANGO_ALLOWED_HOSTS="console.proxy.test",
               LIVECENTER_MAX_DOMAINS_PER_OPERATOR="51")  # fmt: skip
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, cwd=ROOT, check=True, timeout=120)
    setup = subprocess.run([*manage, "shell", "-c", PROXY_SETUP], env=env, cwd=ROOT, capture_output=True, text=True,
                           timeout=120)  # fmt: skip
    assert setup.returncode == 0, setup.stderr
    token = subprocess.run([*manage, "drf_create_token", "op"], env=env, cwd=ROOT, capture_output=True, text=True,
                           timeout=60)  # fmt: skip
    assert token.returncode == 0, token.stderr
    key = re.search(r"Generated token (\S+) for user op", token.stdout)
    assert key, token.stdout
    log = open(tmp_path / "runall.log", "w+")  # noqa: SIM115 - read back after the run
    proc = subprocess.Popen([*manage, "runall", "--no-worker", "--no-media", "--host", "127.0.0.1", "--port",
                             str(port)], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip

    def get(path: str, proto: str, source: str = "127.0.0.1", *headers: str) -> tuple[str, str]:
        """(head, body) of GET `path` from `source` as a proxy forwarding `proto`."""
        cmd = ["curl", "-sS", "-i", "--interface", source, "-H", "Host: console.proxy.test",
               "-H", f"X-Forwarded-Proto: {proto}", "-H", "X-Forwarded-For: 203.0.113.9"]  # fmt: skip
        for header in headers:
            cmd += ["-H", header]
        run = subprocess.run([*cmd, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=30)
        assert run.returncode == 0, run.stderr
        head, _, body = run.stdout.replace("\r\n", "\n").partition("\n\n")
        return head.lower(), body

    try:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.3)
        api = ("/api/v1/domains/", f"Authorization: Token {key.group(1)}")
        head, body = get(api[0], "https", "127.0.0.1", api[1])
        assert head.startswith("http/1.1 200"), (head, open(tmp_path / "runall.log").read()[-3000:])
        assert json.loads(body)["next"] == "https://console.proxy.test/api/v1/domains/?page=2"
        head, _ = get("/accounts/login/", "https")
        assert head.startswith("http/1.1 200") and "; secure" in head, head  # served, not redirected
        # The proxy's plain side: http links, and still no redirect of its own.
        head, body = get(api[0], "http", "127.0.0.1", api[1])
        assert json.loads(body)["next"] == "http://console.proxy.test/api/v1/domains/?page=2"
        # Not the proxy (another loopback address): its claim is ignored.
        head, body = get(api[0], "https", "127.0.0.2", api[1])
        assert head.startswith("http/1.1 200"), head
        assert json.loads(body)["next"] == "http://console.proxy.test/api/v1/domains/?page=2"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(STOP_SECONDS)
