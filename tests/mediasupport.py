"""Running a media node and real ffmpeg peers in tests."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from dataclasses import dataclass

from livecenter.media.node import MediaNode, NodeConfig
from livecenter.media.policy import DomainConfig, MemoryPolicy, MemorySink
from livecenter.media.signing import sign

INGEST = "push.test"
PLAY = "play.test"
INGEST_KEY = "pushKey123"
PLAY_KEY = "playKey123"
VALIDITY_SECONDS = 3600


def default_policy() -> MemoryPolicy:
    return MemoryPolicy(
        domains={
            INGEST: DomainConfig(INGEST, "ingest", True, (INGEST_KEY,), VALIDITY_SECONDS),
            PLAY: DomainConfig(PLAY, "streaming", True, (PLAY_KEY,), VALIDITY_SECONDS, ingest_domain=INGEST),
        }
    )


class NodeThread:
    """A MediaNode on loopback in an event loop of its own thread, so tests
    can drive blocking peers (ffmpeg) from the main thread."""

    def __init__(self, policy=None, **config) -> None:
        self.policy = policy or default_policy()
        self.sink = MemorySink()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="media-node", daemon=True)
        config = {"host": "127.0.0.1", "rtmp_port": 0, "http_port": 0, "node_id": "test-node", **config}
        self.node: MediaNode | None = None
        self._config = NodeConfig(**config)

    def call(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> NodeThread:
        self.thread.start()

        async def start():
            self.node = MediaNode(self._config, self.policy, self.sink)
            await self.node.start()

        self.call(start())
        return self

    def stop(self) -> None:
        self.call(self.node.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def run_sync(self, fn, *args):
        """Run a plain function on the node's loop (hub state is not thread-safe)."""

        async def wrapper():
            return fn(*args)

        return self.call(wrapper())

    @property
    def rtmp(self) -> str:
        return f"rtmp://127.0.0.1:{self.node.rtmp_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.node.http_port}"

    def publish_url(self, app="live", stream="cam1", key=INGEST_KEY, domain=INGEST, ts=None) -> str:
        token = sign(f"/{app}/{stream}", key, int(time.time() if ts is None else ts))
        return f"{self.rtmp}/{app}/{stream}?auth_key={token}&domain={domain}"

    def rtmp_play_url(self, app="live", stream="cam1", key=PLAY_KEY, domain=PLAY) -> str:
        token = sign(f"/{app}/{stream}", key, int(time.time()))
        return f"{self.rtmp}/{app}/{stream}?auth_key={token}&domain={domain}"

    def flv_url(self, app="live", stream="cam1", key=PLAY_KEY, domain=PLAY) -> str:
        token = sign(f"/{app}/{stream}.flv", key, int(time.time()))
        return f"{self.http}/{app}/{stream}.flv?auth_key={token}&domain={domain}"

    def wait_for(self, predicate, timeout: float = 15) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.run_sync(predicate):
                return True
            time.sleep(0.05)
        return False


@dataclass
class Publisher:
    process: subprocess.Popen

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.communicate(timeout=15)[1]
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.communicate()[1]


def start_publisher(
    url: str,
    seconds: float = 10,
    size: str = "1280x720",
    rate: int = 30,
    extra=(),
    tune: str = "zerolatency",
    preset: str = "ultrafast",
) -> Publisher:
    """ffmpeg publishing a generated H.264 + AAC stream in real time."""
    cmd = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-t", str(seconds),
        "-c:v", "libx264", "-preset", preset, *(("-tune", tune) if tune else ()), "-g", str(rate),
        "-b:v", "2M", "-pix_fmt", "yuv420p", *extra,
        "-c:a", "aac", "-b:a", "96k",
        "-f", "flv", url,
    ]  # fmt: skip
    return Publisher(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))


def probe_packets(url: str, seconds: float = 3, timeout: float = 30) -> list[dict]:
    """Video packets of a live URL, read for `seconds` by ffprobe."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-read_intervals", f"%+{seconds}",
         "-show_entries", "packet=pts_time,dts_time,flags", "-of", "json", url],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if out.returncode != 0:
        raise AssertionError(f"ffprobe failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout).get("packets", [])


def probe_streams(url: str, timeout: float = 30) -> list[dict]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,codec_type,width,height,profile",
         "-of", "json", url],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if out.returncode != 0:
        raise AssertionError(f"ffprobe failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)["streams"]
