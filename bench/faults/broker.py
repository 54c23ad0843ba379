"""A Celery worker on Redis through a TCP relay that is cut for an outage
(issue 11, Faults): does the worker live through it, and how soon after
Redis is back does it answer again?

    python bench/faults/broker.py --redis 127.0.0.1:6379 --outage 60
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.faultsupport import TcpRelay  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis", default="127.0.0.1:6379", help="host:port of Redis")
    parser.add_argument("--outage", type=float, default=60, help="seconds Redis is unreachable")
    args = parser.parse_args()
    host, port = args.redis.rsplit(":", 1)
    data = tempfile.mkdtemp(prefix="livecenter-broker-")
    with TcpRelay((host, int(port))) as relay:
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env.update(REDIS_URL=f"redis://127.0.0.1:{relay.port}/0", LIVECENTER_DATA_DIR=data)
        direct = dict(env, REDIS_URL=f"redis://{host}:{port}/0")
        log = open(Path(data) / "worker.log", "w")  # noqa: SIM115 - the worker owns it
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "livecenter", "worker", "--pool", "threads", "-c", "2",
             "--without-mingle", "--without-gossip", "-Q", "celery", "--loglevel", "INFO"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

        def ping() -> bool:
            out = subprocess.run([sys.executable, "-m", "celery", "-A", "livecenter", "inspect", "ping", "-t", "5"],
                                 cwd=ROOT, env=direct, capture_output=True, text=True)  # fmt: skip
            return "pong" in out.stdout

        try:
            deadline = time.monotonic() + 60
            while not ping():
                if time.monotonic() > deadline:
                    sys.exit(f"the worker never answered; see {log.name}")
            relay.cut()
            time.sleep(args.outage)
            print(f"outage {args.outage:.0f} s: worker alive {worker.poll() is None}")
            relay.restore()
            back = time.monotonic()
            while not ping() and time.monotonic() - back < 120:
                time.sleep(1)
            print(f"worker answers {time.monotonic() - back:.1f} s after Redis is back; alive {worker.poll() is None}")
        finally:
            worker.terminate()
            worker.wait(30)
    print(f"worker log: {log.name}")


if __name__ == "__main__":
    main()
