"""The embedded topology (`make run`: `manage.py runall`) transcodes on its
own worker, and a worker killed with kill -9 mid-transcode is started again
by the runner; the rendition comes back (issue 7)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.test_runall import ROOT, STOP_SECONDS, answer, free_port, stop_with_ctrl_c
from tests.workersupport import probe, start_publisher, stop, wait_until

pytestmark = [pytest.mark.worker, pytest.mark.media]

SETUP = """
import json
from django.contrib.auth import get_user_model
from domains import services
from mediajobs import services as media_services
owner = get_user_model().objects.create_user("op", password="op-pass-123")
push = services.add_domain(owner, "push.emb.test", "ingest", "overseas", "ap-southeast-1")
play = services.add_domain(owner, "play.emb.test", "streaming", "overseas", "ap-southeast-1")
services.associate_ingest(play, push.domain_name)
media_services.add_template(owner, "play.emb.test", "live", "lld")
source = services.generate_urls(owner, "push.emb.test", "live", "cam1")
rendition = services.generate_urls(owner, "play.emb.test", "live", "cam1", template="lld")
print(json.dumps({"push": source.ingest["rtmp"], "lld": rendition.playback["flv"]}))
"""

WORKER_PID = """
from mediajobs.models import MediaJob
job = MediaJob.objects.filter(kind="transcode", state="running").first()
print(job.worker.split(":")[1] if job else "", job.attempt if job else 0)
"""


def local(url: str, port: int) -> str:
    scheme, rest = url.split("://", 1)
    host, path = rest.split("/", 1)
    return f"{scheme}://127.0.0.1:{port}/{path}&domain={host.split(':')[0]}"


def test_it_restarts_a_killed_embedded_worker_and_its_transcode(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    rtmp_port, http_port, port = free_port(), free_port(), free_port()
    env.update(LIVECENTER_DATA_DIR=str(tmp_path), LIVECENTER_MEDIA_HOST="127.0.0.1",
               LIVECENTER_MEDIA_RTMP_PORT=str(rtmp_port), LIVECENTER_MEDIA_HTTP_PORT=str(http_port),
               LIVECENTER_PLAY_WAIT_SECONDS="15", LIVECENTER_WORKER_CONCURRENCY="4")  # fmt: skip
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, cwd=ROOT, check=True, timeout=120)

    def shell(code: str) -> str:
        out = subprocess.run([*manage, "shell", "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                             timeout=60)  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out.stdout.strip().splitlines()[-1]

    urls = json.loads(shell(SETUP))
    log = open(tmp_path / "runall.log", "w+")  # noqa: SIM115 - read back after the run
    proc = subprocess.Popen([*manage, "runall", "--port", str(port)], env=env, cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    publisher = None

    def whole_log() -> str:
        return open(tmp_path / "runall.log").read()

    def output() -> str:  # for failure messages: the log's end
        return whole_log()[-6000:]

    try:
        assert wait_until(lambda: "ready." in open(tmp_path / "runall.log").read(), 90), output()
        assert answer(f"http://127.0.0.1:{port}/accounts/login/", 60)[0] == 200, output()
        publisher = start_publisher(local(urls["push"], rtmp_port), seconds=150, size="640x360")
        rendition = local(urls["lld"], http_port)
        assert probe(rendition, seconds=2)["packets"], output()
        pid, attempt = shell(WORKER_PID).split()
        assert attempt == "1"
        os.kill(int(pid), signal.SIGKILL)
        killed_at = time.monotonic()

        def restarted():
            found = shell(WORKER_PID).split()
            return len(found) == 2 and found[0] != pid and int(found[1]) >= 2

        assert wait_until(restarted, 60, interval=1), output()
        assert probe(rendition, seconds=2)["packets"], output()
        print(f"embedded: rendition back {time.monotonic() - killed_at:.1f} s after kill -9")
        assert "Celery worker exited with code -9; starting it again" in whole_log(), output()
    finally:
        if publisher is not None:
            stop(publisher)
        stop_with_ctrl_c(proc)
        # The killed worker's beat process may be left behind; end the group.
        deadline = time.monotonic() + STOP_SECONDS
        while subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split():
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.2)
    assert "LiveCenter stopped" in whole_log(), output()
