"""The cluster of issue 14 on one machine ("How it is shown"): each node a
`manage.py medianode` process in a network namespace of its own (a host
with an address of its own, tests/netns.py), a cross-border link of 150 ms
each way and 1 % loss between the edges and the centers, and the cluster's
shared state where a real one keeps it: PostgreSQL (the test database,
reached over its Unix socket, which every namespace sees) and a Redis of the
test's own on a Unix socket.

    edge-a ─┐               ┌─ wan-1 ── center-1   (kill -9 in the failover step)
            ├── bridge ─────┤
    edge-b ─┘   (root ns:   └─ wan-2 ── center-2
                 publishers, viewers, the console)

Each center advertises its link host (`--advertise`), where the TCP
impairment relay (tests/netimpair.py) listens on the RTMP port: the edges'
relays and pulls cross the link, the center's own viewers do not. The TCP
relay turns loss into what it does to TCP, a retransmission's delay with
head-of-line blocking (this kernel has no netem, and no iptables to drop
packets).

ffmpeg publishes one stream to edge-a over RTMP and one to edge-b over SRT;
ffprobe plays both from edge-b and from center-1 over HTTP-FLV and HLS, and
aiortc over RTS (WHEP), with continuous timestamps, and ffprobe over SRT
from edge-b; a second publisher of
the first stream on edge-b is refused; center-1 is killed (-9) with center-2
up: both relays move, the publishers stay connected, and the viewers on the
edges (pulled streams) play on; a forbid through the console's API kicks the
publisher on edge-a.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import os
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit

import aioice.ice
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from django.conf import settings as django_settings
from django.db import connection

from domains import services
from livecenter.media.flv import VIDEO, FlvReader, video_is_sequence_header
from livecenter.media.hub import RECONNECT_GRACE_SECONDS
from livecenter.media.policy import StreamKey
from livecenter.media.rts.session import use_ice_addresses
from monitoring.models import PublishRefusal
from tests.apisupport import client_for
from tests.clustersupport import REGION, Cluster, at
from tests.mediasupport import Publisher, probe_packets, start_publisher
from tests.redissupport import UnixRedis
from tests.test_rts_whep import make_offer, request
from tests.workersupport import wait_until

pytestmark = [
    pytest.mark.netns,
    pytest.mark.media,
    pytest.mark.postgres,
    pytest.mark.backends,
    pytest.mark.django_db(transaction=True),
]

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_KEY = "cluster-key-for-the-netns-test"
PG_SOCKET_DIR = "/var/run/postgresql"
# The cross-border link, each way.
LINK_DELAY_MS = 150
LINK_LOSS = 0.01
# Small, so that four nodes, two encoders and the viewers share two cores.
PUBLISH = {"size": "640x360", "rate": 25, "extra": ("-b:v", "600k")}


def socket_database_url() -> str:
    """The test database as the nodes reach it: PostgreSQL's Unix socket."""
    db = connection.settings_dict
    if not db["ENGINE"].endswith("postgresql"):
        pytest.skip("needs PostgreSQL at DATABASE_URL (CI's backends pass): the nodes are processes of their own")
    port = int(db["PORT"] or 5432)
    if db["HOST"] not in ("", "localhost", "127.0.0.1", "::1", PG_SOCKET_DIR) or not os.path.exists(
        f"{PG_SOCKET_DIR}/.s.PGSQL.{port}"
    ):
        pytest.skip(
            f"needs PostgreSQL on this machine, on its socket in {PG_SOCKET_DIR}: the namespaces reach it there"
        )
    credentials = quote(db["USER"] or "postgres", safe="") + (
        f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    )
    return f"postgres://{credentials}@{quote(PG_SOCKET_DIR, safe='')}:{port}/{db['NAME']}"


class FlvViewer(threading.Thread):
    """An HTTP-FLV viewer in a thread: when each video frame arrived
    (monotonic seconds) and its timestamp (ms)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True, name=f"flv {url[:40]}")
        self.url = url
        self.frames: list[tuple[float, int]] = []
        self.error = ""
        self.ended = False
        self._stopping = threading.Event()

    def run(self) -> None:
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            conn.request("GET", f"{parts.path}?{parts.query}")
            response = conn.getresponse()
            if response.status != 200:
                self.error = f"HTTP {response.status} {response.getheader('X-Error', '')}"
                return
            reader = FlvReader()
            while not self._stopping.is_set():
                data = response.read1(65536)
                if not data:
                    self.ended = True
                    return
                now = time.monotonic()
                for tag in reader.receive_data(data):
                    if tag.tag_type == VIDEO and not video_is_sequence_header(tag.body):
                        self.frames.append((now, tag.timestamp))
        except Exception as exc:  # reported by the test
            self.error = repr(exc)
        finally:
            conn.close()

    def seconds_after(self, since: float) -> float:
        """Stream time received after `since` (monotonic)."""
        stamps = [ts for arrived, ts in self.frames if arrived > since]
        return (stamps[-1] - stamps[0]) / 1000 if len(stamps) > 1 else 0.0

    def stop(self) -> None:
        self._stopping.set()
        self.join(35)


def assert_continuous(times: list[float], what: str, max_step: float = 0.1) -> None:
    assert len(times) > 20, f"{what}: only {len(times)} video frames"
    steps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(steps) > 0 and max(steps) < max_step, f"{what}: timestamps jump: {min(steps)}..{max(steps)}"


def probe(url: str, what: str) -> str:
    """ffprobe's video packets of 3 s of `url`, continuous."""
    packets = probe_packets(url, seconds=3, timeout=60)
    assert_continuous([float(p["dts_time"]) for p in packets], what)
    return what


async def watch_rts(url: str, frames: int = 40, timeout: float = 60) -> list[float]:
    """An RTS (WHEP) viewer with aiortc: the times of `frames` decoded video frames."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    tracks = []
    pc.on("track", tracks.append)
    times: list[float] = []
    status, headers, answer = await asyncio.to_thread(request, url, "POST", (await make_offer(pc)).encode())
    try:
        assert status == 201, (status, headers, answer)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        video = next(t for t in tracks if t.kind == "video")
        async with asyncio.timeout(timeout):
            while len(times) < frames:
                frame = await video.recv()
                times.append(float(frame.pts * frame.time_base))
    finally:
        if status == 201:
            await asyncio.to_thread(request, url.split("/live/")[0] + headers["Location"], "DELETE")
        await pc.close()
    return times


def probe_rts(urls: dict[str, str]) -> list[str]:
    async def all_of_them():
        return await asyncio.gather(*(watch_rts(url) for url in urls.values()))

    for what, times in zip(urls, asyncio.run(all_of_them()), strict=True):
        # A frame the decoder drops shows as a step of two frames; a jump is more.
        assert_continuous(times, what, max_step=0.25)
    return list(urls)


def node_env(database_url: str) -> dict:
    """What each node gets: the test database and the console's keys."""
    return {
        "DATABASE_URL": database_url,
        "LIVECENTER_CLUSTER_KEY": CLUSTER_KEY,
        # The domains' keys are stored encrypted: the nodes read them as the console does.
        "DJANGO_SECRET_KEY": django_settings.SECRET_KEY,
        "LIVECENTER_ENCRYPTION_KEY": django_settings.LIVECENTER_ENCRYPTION_KEY,
        "LIVECENTER_PLAY_WAIT_SECONDS": "10",
    }


def stream_of(owner, name: str) -> tuple[StreamKey, object]:
    push = services.add_domain(owner, f"push.{name}", "ingest", "overseas", REGION)
    play = services.add_domain(owner, f"play.{name}", "streaming", "overseas", REGION)
    services.associate_ingest(play, push.domain_name)
    key = StreamKey(push.domain_name, "live", f"cam-{uuid.uuid4().hex[:6]}")
    return key, services.generate_urls(owner, push.domain_name, key.app, key.stream)


def play_anywhere(streams: dict, nodes: dict[str, str]) -> None:
    """Each stream from each node over HTTP-FLV, HLS and RTS, all at once."""
    probes = {
        f"{proto} of {name} from {host}": at(urls.playback[proto], address)
        for name, urls in streams.items()
        for host, address in nodes.items()
        for proto in ("flv", "m3u8")
    }
    rts = {
        f"rts of {name} from {host}": at(urls.playback["whep"], address)
        for name, urls in streams.items()
        for host, address in nodes.items()
    }
    with concurrent.futures.ThreadPoolExecutor(len(probes) + 1) as pool:
        done = [pool.submit(probe, url, what) for what, url in probes.items()]
        done.append(pool.submit(probe_rts, rts))
        for future in done:
            future.result()


def refusals(key: StreamKey) -> list[str]:
    return list(PublishRefusal.objects.filter(stream=key.stream).values_list("reason", flat=True))


def watch_failover(cluster: Cluster, viewers: list[FlvViewer], keys: list[StreamKey]) -> None:
    """kill -9 of center-1 while `viewers` play on the edges: the streams
    move to center-2 and the viewers play on, continuous."""
    for viewer in viewers:
        viewer.start()
    playing = wait_until(lambda: all(v.seconds_after(0) > 1 or v.error for v in viewers), 30)
    assert playing and not any(v.error for v in viewers), [v.error for v in viewers]
    killed = time.monotonic()
    cluster.kill("center-1")
    moved = wait_until(lambda: all(cluster.carries("center-2", key) for key in keys), 30)
    assert moved, cluster.output()
    resumed = wait_until(lambda: all(v.seconds_after(killed) > 3 or v.error or v.ended for v in viewers), 30)
    for viewer in viewers:
        assert resumed and not viewer.error and not viewer.ended, (viewer.url, viewer.error, viewer.ended)
        viewer.stop()
        assert_continuous([ts / 1000 for _, ts in viewer.frames], f"flv of {viewer.url} across the failover")
        waited = max(b - a for (a, _), (b, _) in zip(viewer.frames, viewer.frames[1:], strict=False))
        print(f"{viewer.url.split('?')[0]}: longest wait across the failover {waited:.2f} s")
        # Within the hub's grace: the viewer waited for the stream, it did not end.
        assert waited < RECONNECT_GRACE_SECONDS


def test_the_cluster_across_namespaces(owner, netns, settings, tmp_path, monkeypatch):
    database_url = socket_database_url()
    # The RTS viewers (aiortc, in this process) offer every interface, as
    # aioice does by default: an in-process node of an earlier test left its
    # ICE addresses (loopback) set for the whole process, from which the
    # namespaces' addresses cannot be reached. Restored after the test.
    monkeypatch.setattr(aioice.ice, "get_host_addresses", aioice.ice.get_host_addresses)
    use_ice_addresses(())
    started = time.monotonic()
    net = netns("center-1", "center-2", "edge-a", "edge-b", "wan-1", "wan-2")
    rtmp_key, rtmp_urls = stream_of(owner, "netns-rtmp.test")
    srt_key, srt_urls = stream_of(owner, "netns-srt.test")
    a, b, c1 = (net.address(host) for host in ("edge-a", "edge-b", "center-1"))
    publishers: list[Publisher] = []
    viewers: list[FlvViewer] = []
    with UnixRedis() as redis_server:
        # The console's forbid reaches the nodes on this Redis, as theirs does.
        layer = {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": redis_server.url}]},
        }
        settings.CHANNEL_LAYERS = {"default": layer}
        cluster = Cluster(net, redis_server.url, node_env(database_url), tmp_path)
        try:
            cluster.link("wan-1", "center-1", LINK_DELAY_MS, LINK_LOSS)
            cluster.link("wan-2", "center-2", LINK_DELAY_MS, LINK_LOSS)
            cluster.start("center-1", "center", advertise="wan-1")
            cluster.start("edge-a", "edge", advertise="edge-a")
            cluster.start("edge-b", "edge", advertise="edge-b")
            cluster.wait_beating("center-1", "edge-a", "edge-b")

            # Edge ingest: RTMP on edge-a, SRT on edge-b; both relayed over the link to center-1.
            publishers.append(start_publisher(at(rtmp_urls.ingest["rtmp"], a), seconds=300, **PUBLISH))
            srt_url = at(srt_urls.ingest["srt"], b)
            publishers.append(start_publisher(srt_url, seconds=300, container="mpegts", **PUBLISH))
            live = wait_until(lambda: cluster.carries("center-1", rtmp_key) and cluster.carries("center-1", srt_key))
            assert live, f"{[p.stop() for p in publishers]}\n{cluster.output()}"
            # The failover's second center: up from now on; the streams stay where they are (sticky).
            cluster.start("center-2", "center", advertise="wan-2")

            # Play anywhere: both from edge-b (the RTMP one pulled over the link) and from center-1.
            play_anywhere({"rtmp": rtmp_urls, "srt": srt_urls}, {"edge-b": b, "center-1": c1})
            # SRT playback too; a caller waits at most SRT_PLAY_WAIT_SECONDS (2 s) for a
            # stream to go live, so it is asked of edge-b while the pull is still up.
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                srt_plays = [
                    pool.submit(probe, at(urls.playback["srt"], b), f"srt of {name} from edge-b")
                    for name, urls in (("rtmp", rtmp_urls), ("srt", srt_urls))
                ]
                for future in srt_plays:
                    future.result()
            assert not cluster.carries("center-2", rtmp_key)

            # One publisher per stream across the cluster.
            second = start_publisher(at(rtmp_urls.ingest["rtmp"], b), seconds=10, **PUBLISH)
            assert second.process.wait(60) != 0
            taken = f"stream is already being published on {cluster.node_ids['edge-a']}"
            assert wait_until(lambda: refusals(rtmp_key)) == [taken]

            # Failover, while viewers on the edges play streams pulled from center-1.
            cluster.wait_beating("center-2")
            viewers += [FlvViewer(at(rtmp_urls.playback["flv"], b)), FlvViewer(at(srt_urls.playback["flv"], a))]
            watch_failover(cluster, viewers, [rtmp_key, srt_key])
            assert all(p.process.poll() is None for p in publishers), "a publisher was dropped in the failover"
            beats = cluster.beats()
            assert not beats["edge-a"].relay_errors and not beats["edge-b"].relay_errors

            # A forbid through the console's API reaches the edge holding the publisher.
            stream = {"domain": rtmp_key.domain, "app": rtmp_key.app, "stream": rtmp_key.stream}
            assert client_for(owner).post("/api/v1/streams/forbid/", stream, format="json").status_code == 200
            publishers[0].process.wait(30)
            assert wait_until(lambda: not cluster.carries("edge-a", rtmp_key), 15)
            assert publishers[1].process.poll() is None and cluster.carries("center-2", srt_key)
            print(f"cluster test: {time.monotonic() - started:.1f} s")
        finally:
            for viewer in viewers:
                viewer.stop()
            for publisher in publishers:
                publisher.stop()
            cluster.stop()
