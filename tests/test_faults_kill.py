"""kill -9 of the media node under `make run` (issue 11, Faults): the runner
(`manage.py runall`) starts the console and media node again, a publisher
that reconnects goes on, and the online list has no ghost of the stream the
killed node carried."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from livecenter.management.commands.runall import MAX_RESTARTS, Child
from tests.faultsupport import RunAll, wait_until
from tests.test_runall import get
from tests.workersupport import probe, start_publisher, stop

SETUP = """
import json
from django.contrib.auth import get_user_model
from domains import services
owner = get_user_model().objects.create_user("op", password="op-pass-123")
push = services.add_domain(owner, "push.kill.test", "ingest", "overseas", "ap-southeast-1")
play = services.add_domain(owner, "play.kill.test", "streaming", "overseas", "ap-southeast-1")
services.associate_ingest(play, push.domain_name)
urls = services.generate_urls(owner, "push.kill.test", "live", "cam1")
print(json.dumps({"push": urls.ingest["rtmp"], "flv": urls.playback["flv"]}))
"""

ONLINE = """
import json
from streams.models import PublishSession
rows = PublishSession.objects.filter(stream="cam1").order_by("started_at")
print(json.dumps([[r.session_id, r.stopped_at is None, r.stop_reason] for r in rows]))
"""


def local(url: str, port: int) -> str:
    scheme, rest = url.split("://", 1)
    host, path = rest.split("/", 1)
    return f"{scheme}://127.0.0.1:{port}/{path}&domain={host.split(':')[0]}"


def test_it_gives_up_on_a_child_that_keeps_dying():
    child = Child("console and media node", ["true"])
    assert all(child.may_restart(t) for t in range(MAX_RESTARTS))
    assert not child.may_restart(MAX_RESTARTS)
    assert child.may_restart(1000.0)  # a minute later it may die again


@pytest.mark.media
def test_it_restarts_a_killed_media_node_without_ghosts(tmp_path):
    runall = RunAll(tmp_path, LIVECENTER_PLAY_WAIT_SECONDS="10")
    runall.migrate()
    urls = json.loads(runall.shell(SETUP))
    push = local(urls["push"], runall.rtmp_port)
    flv = local(urls["flv"], runall.http_port)
    publishers = []
    try:
        runall.start("--no-worker")
        assert wait_until(runall.media_up, 90), runall.output()
        publishers.append(start_publisher(push, seconds=120, size="320x240"))
        assert probe(flv, seconds=1)["packets"], runall.output()

        def online() -> list:
            return [row for row in json.loads(runall.shell(ONLINE)) if row[1]]

        assert wait_until(lambda: len(online()) == 1, 30), runall.shell(ONLINE)
        server = runall.child_pid("runall --serve")
        assert server, runall.output()
        os.kill(server, signal.SIGKILL)
        killed_at = time.monotonic()
        assert wait_until(lambda: runall.child_pid("runall --serve") not in (None, server), 30), runall.output()
        assert wait_until(runall.media_up, 60), runall.output()
        back = time.monotonic() - killed_at
        # The killed node's session is closed, not left online.
        rows = json.loads(runall.shell(ONLINE))
        assert [r for r in rows if r[1]] == [], rows
        assert rows[0][2] == "node restarted"
        # The publisher reconnects (ffmpeg lost its connection: a new one, as OBS would).
        stop(publishers[0])
        publishers.append(start_publisher(push, seconds=120, size="320x240"))
        assert probe(flv, seconds=1)["packets"], runall.output()
        assert wait_until(lambda: len(online()) == 1, 30), runall.shell(ONLINE)
        rows = json.loads(runall.shell(ONLINE))
        assert len(rows) == 2 and rows[1][1] and not rows[0][1], rows
        assert wait_until(lambda: get(f"http://127.0.0.1:{runall.port}/accounts/login/")[0] == 200, 30)
        assert "console and media node exited with code -9; starting it again" in runall.output()
        print(f"media node back {back:.1f} s after kill -9")
    finally:
        for publisher in publishers:
            stop(publisher)
        runall.stop()
    assert "LiveCenter stopped" in runall.output()
