"""`manage.py medianode --role --region --advertise`: a node's place in the
cluster, checked, and registered with its heartbeat."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from django.core.management import CommandError, call_command

from nodes.medianode import node_config
from tests.test_runall import ROOT, STOP_SECONDS, free_port


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "edge"], "--region: a node with the edge role serves one live center region: one of cn-beijing"),
        (["--region", "eu-central-1"], "--role: a node with a region must say its role: center or edge"),
    ],
)
def test_it_refuses_a_role_without_a_region_and_the_other_way_round(args, message, settings):
    settings.LIVECENTER_NODE_ROLE = settings.LIVECENTER_NODE_REGION = ""
    with pytest.raises(CommandError) as caught:
        call_command("medianode", *args)
    assert str(caught.value).startswith(message)


def test_an_edges_pull_idle_time_comes_from_the_settings(settings):
    settings.LIVECENTER_EDGE_PULL_IDLE_SECONDS = 2.5
    assert node_config().pull_idle_seconds == 2.5


def test_an_edges_relay_protocol_and_srt_latency_come_from_the_settings(settings):
    assert (node_config().relay_protocol, node_config().relay_srt_latency_ms) == ("rtmp", 1000)
    settings.LIVECENTER_RELAY_PROTOCOL, settings.LIVECENTER_RELAY_SRT_LATENCY_MS = "srt", 450
    assert (node_config().relay_protocol, node_config().relay_srt_latency_ms) == ("srt", 450)
    settings.LIVECENTER_RELAY_PROTOCOL = "udp"
    with pytest.raises(ValueError, match="relay_protocol must be rtmp or srt, not 'udp'"):
        node_config()


@pytest.mark.worker
def test_a_center_node_registers_with_its_region_and_address_and_beats(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["LIVECENTER_DATA_DIR"] = str(tmp_path)
    env["LIVECENTER_NODE_ID"] = "center-fra-1"
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, cwd=ROOT, check=True, timeout=120)
    rtmp_port, http_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            *manage,
            "medianode",
            "--host",
            "127.0.0.1",
            "--rtmp-port",
            str(rtmp_port),
            "--http-port",
            str(http_port),
            "--role",
            "center",
            "--region",
            "eu-central-1",
            "--advertise",
            "10.9.8.7",
        ],  # fmt: skip
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    database = sqlite3.connect(tmp_path / "db.sqlite3", timeout=20)
    query = "SELECT role, region, host, rtmp_port, http_port, last_beat FROM nodes_node WHERE node_id = 'center-fra-1'"
    try:
        beats = []
        deadline = time.monotonic() + 60
        while len({b["at"] for b in beats}) < 2 and time.monotonic() < deadline and proc.poll() is None:
            row = database.execute(query).fetchone()
            if row is not None and row[5] is not None:
                beats.append(json.loads(row[5]))
            time.sleep(0.3)
        assert len({b["at"] for b in beats}) >= 2, "no two beats"
        assert row[:5] == ("center", "eu-central-1", "10.9.8.7", rtmp_port, http_port)
        assert (beats[-1]["roles"], beats[-1]["host"]) == (["center"], "10.9.8.7")
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=STOP_SECONDS)[0]
    assert proc.returncode == 0, output
    assert "center of eu-central-1, reached at 10.9.8.7" in output
    assert database.execute(query).fetchone()[5] is None  # withdrawn on the way out
