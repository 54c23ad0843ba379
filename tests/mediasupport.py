"""Running a media node and real ffmpeg peers in tests."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from livecenter.media import amf0
from livecenter.media.node import MediaNode, NodeConfig
from livecenter.media.policy import DomainConfig, MemoryPolicy, MemorySink
from livecenter.media.rtmp import RtmpChunkReader, RtmpChunkWriter
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


# A test's node shares its process (and the GIL) with the test's own peers
# (aiortc, PyAV, tracemalloc) and its two cores with the rest of a parallel
# suite and whatever else loads the machine: its loop's lateness measures the
# test run, not the viewers the node has, so its loop-lag admission
# (capacity.LoopLagGauge) would refuse viewers at random under load. Test
# nodes do not watch it; the tests of that admission turn it on
# (tests/test_media_capacity.py). The egress capacity stays as in production.
TEST_MAX_LOOP_LAG_MS = 0


class NodeThread:
    """A MediaNode on loopback in an event loop of its own thread, so tests
    can drive blocking peers (ffmpeg) from the main thread."""

    def __init__(self, policy=None, router=None, **config) -> None:
        self.policy = policy or default_policy()
        self.router = router
        self.sink = MemorySink()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="media-node", daemon=True)
        config = {"host": "127.0.0.1", "rtmp_port": 0, "http_port": 0, "node_id": "test-node",
                  "max_loop_lag_ms": TEST_MAX_LOOP_LAG_MS, **config}  # fmt: skip
        self.node: MediaNode | None = None
        self._config = NodeConfig(**config)

    def call(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> NodeThread:
        self.thread.start()

        async def start():
            self.node = MediaNode(self._config, self.policy, self.sink, router=self.router)
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

    def srt_publish_url(self, app="live", stream="cam1", key=INGEST_KEY, domain=INGEST, ts=None, **options) -> str:
        """An ffmpeg (libsrt) caller URL with DESIGN.md's stream ID; `options`
        are libsrt's (latency in microseconds, passphrase, pbkeylen)."""
        token = sign(f"/{app}/{stream}", key, int(time.time() if ts is None else ts))
        # As the URL generator writes it: ffmpeg takes the value up to the next "&" as it is.
        streamid = f"#!::h={domain},r=/{app}/{stream}?auth_key={token},m=publish"
        extra = "".join(f"&{k}={quote(str(v), safe='')}" for k, v in options.items())
        return f"srt://127.0.0.1:{self.node.srt_port}?streamid={streamid}{extra}"

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


def publisher_command(
    url: str,
    seconds: float = 10,
    size: str = "1280x720",
    rate: int = 30,
    extra=(),
    tune: str = "zerolatency",
    preset: str = "ultrafast",
    container: str = "flv",
    audio: str = "aac",
) -> list[str]:
    """ffmpeg publishing a generated H.264 + AAC stream in real time (FLV
    for RTMP, `container="mpegts"` for SRT; `audio="eac3"` for Dolby)."""
    return [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-t", str(seconds),
        "-c:v", "libx264", "-preset", preset, *(("-tune", tune) if tune else ()), "-g", str(rate),
        "-b:v", "2M", "-pix_fmt", "yuv420p", *extra,
        "-c:a", audio, "-b:a", "96k",
        "-f", container, url,
    ]  # fmt: skip


def start_publisher(url: str, seconds: float = 10, **options) -> Publisher:
    """`publisher_command` run: the options are its."""
    cmd = publisher_command(url, seconds, **options)
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


class TagPublisher:
    """An RTMP publisher of hand-made FLV tag bodies with the timestamps the
    test chooses (ffmpeg would smooth them): what a broken or hostile
    encoder sends. Blocking; `send(kind, timestamp, body)` per tag."""

    CHUNK_STREAMS = {"meta": (5, 18), "video": (6, 9), "audio": (4, 8)}  # chunk stream, message type

    def __init__(self, url: str, timeout: float = 15) -> None:
        parts = urlsplit(url)
        app, _, stream = parts.path.lstrip("/").partition("/")
        self.name = f"{stream}?{parts.query}"
        self.sock = socket.create_connection((parts.hostname, parts.port or 1935), timeout=timeout)
        self.writer = RtmpChunkWriter()
        self.reader = RtmpChunkReader()
        # RTMP 5.2: C0 C1, then C2 echoing S1.
        self.sock.sendall(b"\x03" + bytes(8) + os.urandom(1528))
        s0s1s2 = self._read_exact(1 + 1536 + 1536)
        self.sock.sendall(s0s1s2[1:1537])
        self._write(2, 1, 0, (4096).to_bytes(4, "big"))  # Set Chunk Size
        self.writer.chunk_size = 4096
        tc_url = f"rtmp://{parts.hostname}:{parts.port or 1935}/{app}"
        self._command("connect", 1, {"app": app, "tcUrl": tc_url, "flashVer": "FMLE/3.0"})
        self._command("createStream", 2, None)
        self._command("publish", 3, None, self.name, "live", stream_id=1)
        self._wait_for_status("NetStream.Publish.Start")

    def _read_exact(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            data += chunk
        return bytes(data)

    def _write(self, chunk_stream_id: int, message_type: int, stream_id: int, payload: bytes, ts: int = 0) -> None:
        self.sock.sendall(self.writer.write(chunk_stream_id, message_type, stream_id, ts, payload))

    def _command(self, name: str, transaction_id: float, *values, stream_id: int = 0) -> None:
        self._write(3 if stream_id == 0 else 8, 20, stream_id, amf0.encode(name, float(transaction_id), *values))

    def _wait_for_status(self, code: str) -> None:
        while True:
            message = self.reader.next_message()
            if message is None:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError(f"closed before {code}")
                self.reader.feed(data)
                continue
            if message.message_type == 1:
                self.reader.set_chunk_size(int.from_bytes(message.payload[:4], "big"))
            elif message.message_type == 20:
                values = amf0.decode_all(message.payload)
                if values[0] == "onStatus" and len(values) > 3 and isinstance(values[3], dict):
                    if values[3].get("code") == code:
                        return
                    raise ConnectionError(f"refused: {values[3]}")

    def send(self, kind: str, timestamp: int, body: bytes) -> None:
        chunk_stream_id, message_type = self.CHUNK_STREAMS[kind]
        self._write(chunk_stream_id, message_type, 1, body, timestamp & 0xFFFFFFFF)

    def close(self) -> None:
        self.sock.close()


def http_request(url: str, method: str = "POST", body: bytes = b"", content_type: str = "application/sdp"):
    """(status, headers, text) of one HTTP request; an error status is returned, not raised (WHEP, WHIP)."""
    req = urllib.request.Request(url, data=body or None, method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()
