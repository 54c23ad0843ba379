"""The cluster of issue 14 on one machine, shared by tests/test_cluster_netns.py
and bench/cluster/run.py: `manage.py medianode` processes in network
namespaces of their own (tests/netns.py), the impaired edge↔center link
(tests/netimpair.py, TCP, in front of a center's RTMP port on a "wan" host
the center advertises), and the registry's view of the nodes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from livecenter.media.policy import StreamKey
from nodes import registry
from tests.workersupport import wait_until

ROOT = Path(__file__).resolve().parent.parent
REGION = "eu-central-1"
RTMP_PORT, HTTP_PORT, SRT_PORT = 1935, 8080, 1105
# A node's start (Django imported) on a loaded two-core machine.
NODE_START_SECONDS = 60


def at(url: str, address: str) -> str:
    """A URL the console generated, sent to the node at `address`: its host
    named in `domain=` (SRT names it in its stream ID)."""
    host = re.match(r"^\w+://([^:/?]+)", url).group(1)
    moved = url.replace(f"://{host}", f"://{address}", 1)
    return moved if url.startswith("srt:") else f"{moved}&domain={host}"


class Cluster:
    """The hosts' processes: the TCP links, the nodes. Stopped together.

    `env`: what every node gets besides its id and data dir (the database,
    Redis, the cluster key, the secret and encryption keys the console's
    data was made with)."""

    def __init__(self, net, redis_url: str, env: dict, tmp_path: Path) -> None:
        self.net = net
        self.store = registry.RedisBeats(redis_url)
        self.tmp_path = tmp_path
        self.nodes: dict[str, subprocess.Popen] = {}
        self.links: dict[str, subprocess.Popen] = {}
        self.node_ids: dict[str, str] = {}
        self.logs: dict[str, Path] = {}
        self.started: dict[str, tuple] = {}  # host: start()'s arguments, for restart()
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
            "REDIS_URL": redis_url,
            "LIVECENTER_MEDIA_SRT_PORT": str(SRT_PORT),  # a host of its own: the product's ports
            "LIVECENTER_MEDIA_QUEUE": f"netns-{net.id}",  # jobs nobody takes, in this Redis
            "PYTHONUNBUFFERED": "1",
            **env,
        }

    def link(self, host: str, to: str, delay_ms: float, loss: float = 0.0, seed: int = 14) -> subprocess.Popen:
        """The impaired link in front of host `to`'s RTMP port, on `host`
        (`delay_ms` each way); a link already on `host` is stopped first."""
        old = self.links.pop(host, None)
        if old is not None and old.poll() is None:
            os.killpg(old.pid, signal.SIGTERM)
            old.wait(10)
        argv = [sys.executable, "-m", "tests.netimpair", "--tcp", "--listen", f"0.0.0.0:{RTMP_PORT}",
                "--to", f"{self.net.address(to)}:{RTMP_PORT}", "--delay-ms", str(delay_ms),
                "--loss", str(loss), "--seed", str(seed)]  # fmt: skip
        proc = self.net.popen(host, argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = proc.stdout.readline()
        assert line.startswith("listening on "), f"the link on {host} did not start: {line!r}"
        self.links[host] = proc
        return proc

    def start(self, host: str, role: str, advertise: str, region: str = REGION, **env: str) -> subprocess.Popen:
        self.started[host] = (role, advertise, region, env)
        node_id = f"{host}-{self.net.id}"
        log = self.tmp_path / f"{host}.log"
        env = {**self.env, "LIVECENTER_NODE_ID": node_id, "LIVECENTER_DATA_DIR": str(self.tmp_path / host), **env}
        argv = [sys.executable, "manage.py", "medianode", "--role", role, "--region", region,
                "--advertise", self.net.address(advertise)]  # fmt: skip
        with open(log, "a") as out:
            self.nodes[host] = self.net.popen(host, argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.node_ids[host] = node_id
        self.logs[host] = log
        return self.nodes[host]

    def beats(self) -> dict:
        """Every node's beat in the registry, by host."""
        found = self.store.beats(self.node_ids.values())
        return {host: found[node_id] for host, node_id in self.node_ids.items() if node_id in found}

    def carries(self, host: str, key: StreamKey) -> bool:
        beat = self.beats().get(host)
        return beat is not None and str(key) in beat.streams

    def wait_beating(self, *hosts: str) -> None:
        up = wait_until(lambda: set(hosts) <= set(self.beats()), NODE_START_SECONDS)
        assert up, self.output()

    def kill(self, host: str) -> None:
        """kill -9 of the node's process (and its children)."""
        os.killpg(self.nodes[host].pid, signal.SIGKILL)
        self.nodes[host].wait(10)

    def restart(self, *hosts: str) -> None:
        """SIGTERM to the nodes, then start them again as they were started;
        returns once each new process beats."""
        self._terminate([self.nodes[host] for host in hosts])
        began = time.time()
        for host in hosts:
            role, advertise, region, env = self.started[host]
            self.start(host, role, advertise, region, **env)
        anew = wait_until(
            lambda: all(getattr(self.beats().get(h), "started_at", 0) >= began - 1 for h in hosts), NODE_START_SECONDS
        )
        assert anew, self.output()

    def output(self) -> str:
        return "\n".join(f"--- {host}\n{log.read_text()[-3000:]}" for host, log in self.logs.items() if log.exists())

    def stop(self) -> None:
        """SIGTERM to every node at once, then wait (the network stops what is left)."""
        self._terminate(list(self.nodes.values()))

    @staticmethod
    def _terminate(procs: list[subprocess.Popen]) -> None:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
