"""Graceful overload on a real node (issue 11): with its capacity reached, new
viewers are refused on every protocol (HTTP-FLV, HLS and WHEP with 503,
RTMP play with NetStream.Play.Failed), the viewer it has keeps playing, a
media worker presenting its token is still admitted, and publishers are not
viewers."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from livecenter.media.capacity import REFUSAL_AT_CAPACITY, WORKER_TOKEN_PARAM, worker_token
from livecenter.media.signing import sign
from tests.mediasupport import PLAY_KEY, NodeThread, start_publisher
from tests.test_rts_whep import browser_like_offer, policy, whep_url

WORKER_KEY = b"test-worker-key"
pytestmark = pytest.mark.media


class FlvReader:
    """An HTTP-FLV viewer on a raw socket, counting what it receives."""

    def __init__(self, url: str) -> None:
        host_port, _, path = url.removeprefix("http://").partition("/")
        host, _, port = host_port.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.sock.sendall(f"GET /{path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        self.head = b""
        self.received = 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while data := self.sock.recv(65536):
                if b"\r\n\r\n" not in self.head:
                    self.head += data
                self.received += len(data)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


def get(url: str, method: str = "GET", body: bytes | None = None, content_type: str = ""):
    headers = {"Content-Type": content_type} if content_type else {}
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def wait_until(predicate, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_it_refuses_new_viewers_at_capacity_and_keeps_the_ones_it_has():
    # Room for one viewer: it is admitted while the load is 0, and it takes the node past 1 kbit/s.
    node = NodeThread(policy(), play_wait_seconds=5, max_egress_mbps=0.001, worker_key=WORKER_KEY).start()
    publisher = start_publisher(node.publish_url(), seconds=90, size="320x240")
    readers: list[FlvReader] = []
    try:
        assert node.wait_for(lambda: node.node.hub.live_keys(), timeout=30)
        first = FlvReader(node.flv_url())
        readers.append(first)
        assert wait_until(lambda: first.received > 50_000), first.head
        assert first.head.startswith(b"HTTP/1.1 200 ")

        # HTTP-FLV: 503 with the reason.
        status, headers = get(node.flv_url())
        assert (status, headers.get("X-LiveCenter-Error"), headers.get("Retry-After")) == (
            503,
            REFUSAL_AT_CAPACITY,
            "10",
        )
        # HLS: a client the stream does not serve yet is refused its playlist.
        token = sign("/live/cam1.m3u8", PLAY_KEY, int(time.time()))
        status, headers = get(f"{node.http}/live/cam1.m3u8?auth_key={token}&domain=play.test")
        assert (status, headers.get("X-LiveCenter-Error"), headers.get("Retry-After")) == (
            503,
            REFUSAL_AT_CAPACITY,
            "10",
        )
        # WHEP: refused before the offer is read.
        status, headers = get(whep_url(node), "POST", browser_like_offer().encode(), "application/sdp")
        assert (status, headers.get("X-LiveCenter-Error"), headers.get("Retry-After")) == (
            503,
            REFUSAL_AT_CAPACITY,
            "10",
        )
        assert not node.node.rts.sessions
        # RTMP play: NetStream.Play.Failed with the reason, then the close.
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-rw_timeout", "15000000", node.rtmp_play_url()],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert probe.returncode != 0
        assert REFUSAL_AT_CAPACITY in probe.stderr, probe.stderr
        assert node.node.egress.refused >= 4

        # A media worker (recording, snapshots, transcoding) is admitted all the same.
        token = worker_token(WORKER_KEY, "/live/cam1.flv", int(time.time()) + 60)
        worker = FlvReader(f"{node.flv_url()}&{WORKER_TOKEN_PARAM}={token}")
        readers.append(worker)
        assert wait_until(lambda: worker.received > 50_000), worker.head
        assert worker.head.startswith(b"HTTP/1.1 200 ")
        # ... but not with a forged token.
        forged = f"{int(time.time()) + 60}-{'0' * 32}"
        assert get(f"{node.flv_url()}&{WORKER_TOKEN_PARAM}={forged}")[0] == 503

        # Publishers are not viewers: a second stream goes live at capacity.
        second = start_publisher(node.publish_url(stream="cam2"), seconds=30, size="160x120")
        try:
            assert node.wait_for(lambda: len(node.node.hub.live_keys()) == 2, timeout=30)
        finally:
            second.stop()

        # The viewer it had kept playing throughout, and still does.
        before = first.received
        assert wait_until(lambda: first.received > before + 50_000)
        stream = node.run_sync(lambda: node.node.hub.stream(node.node.hub.live_keys()[0]).viewers())
        assert stream.get("flv") == 2  # the first viewer and the worker; no refused one got in
    finally:
        for reader in readers:
            reader.close()
        publisher.stop()
        node.stop()


def test_a_viewer_leaving_makes_room_again():
    node = NodeThread(policy(), play_wait_seconds=5, max_egress_mbps=0.001).start()
    publisher = start_publisher(node.publish_url(), seconds=60, size="320x240")
    try:
        assert node.wait_for(lambda: node.node.hub.live_keys(), timeout=30)
        first = FlvReader(node.flv_url())
        assert wait_until(lambda: first.received > 20_000)
        assert get(node.flv_url())[0] == 503
        first.close()
        key = node.run_sync(lambda: node.node.hub.live_keys()[0])
        assert node.wait_for(lambda: not node.node.hub.stream(key).viewers(), timeout=15)
        time.sleep(1.1)  # LOAD_RECHECK_SECONDS: the gauge measures the node again
        second = FlvReader(node.flv_url())
        try:
            assert wait_until(lambda: second.received > 20_000), second.head
        finally:
            second.close()
    finally:
        publisher.stop()
        node.stop()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_media_worker_reads_the_stream_from_a_node_at_capacity(owner, settings, tmp_path):
    """The node's own work (here a snapshot job on a real Celery worker, with
    the source URL mediajobs/jobs.source_url signs for it) is not a
    viewer to refuse: it starts reading only once a viewer has filled the node."""
    from domains import services
    from mediajobs import services as media_services
    from mediajobs.models import Snapshot
    from tests.test_media_transcode import PUSH, add_domains
    from tests.workersupport import MediaNodeThread, Workers

    add_domains(owner)
    media_services.set_snapshot_config(owner, PUSH, "*", interval_seconds=5)
    worker_key = settings.LIVECENTER_MEDIA_WORKER_KEY.encode()
    with MediaNodeThread(max_egress_mbps=0.001, worker_key=worker_key) as media, Workers(tmp_path, settings) as workers:
        urls = services.generate_urls(owner, PUSH, "live", "cam1")
        publisher = start_publisher(media.local(urls.ingest["rtmp"]), seconds=60, size="320x240")
        viewer = None
        try:
            assert wait_until(lambda: media.node.hub.live_keys())
            viewer = FlvReader(media.local(urls.playback["flv"]))
            assert wait_until(lambda: viewer.received > 20_000), viewer.head
            assert get(media.local(urls.playback["flv"]))[0] == 503  # full
            workers.start_worker()
            assert wait_until(lambda: Snapshot.objects.exists(), 90), workers.output()
            assert viewer.head.startswith(b"HTTP/1.1 200 ")
        finally:
            if viewer is not None:
                viewer.close()
            publisher.stop()


def test_it_refuses_new_viewers_while_its_loop_is_behind_and_admits_them_once_it_caught_up():
    # Egress is far from the limit; the loop itself is what runs late.
    node = NodeThread(policy(), play_wait_seconds=5, max_loop_lag_ms=100).start()
    publisher = start_publisher(node.publish_url(), seconds=90, size="320x240")
    first = None
    hogging = threading.Event()

    def hog() -> None:  # holds the node's loop 300 ms in every 350 ms
        if hogging.is_set():
            time.sleep(0.3)
            node.loop.call_later(0.05, hog)

    try:
        assert node.wait_for(lambda: node.node.hub.live_keys(), timeout=30)
        first = FlvReader(node.flv_url())
        assert wait_until(lambda: first.received > 50_000), first.head
        hogging.set()
        node.loop.call_soon_threadsafe(hog)
        assert wait_until(lambda: node.run_sync(lambda: node.node.loop_lag.lag_s(time.monotonic())) > 0.1)
        status, headers = get(node.flv_url())
        # Retry-After, so players wait rather than retry at once into the same lag (bench/README.md, soak try 3).
        assert (status, headers.get("X-LiveCenter-Error"), headers.get("Retry-After")) == (
            503,
            REFUSAL_AT_CAPACITY,
            "10",
        )
        assert node.node.loop_lag.refused >= 1
        assert node.node.egress.refused == 0
        before = first.received
        assert wait_until(lambda: first.received > before + 20_000)  # the viewer it has goes on

        hogging.clear()
        assert wait_until(lambda: get(node.flv_url())[0] == 200)
    finally:
        hogging.clear()
        if first is not None:
            first.close()
        publisher.stop()
        node.stop()
