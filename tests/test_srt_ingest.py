"""SRT ingest on a real node with real libsrt callers (Debian's ffmpeg):
the signed stream ID admits the publish, the stream plays like an RTMP one,
and every refusal is an SRT rejection with its reason (issue 13)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import socket
import subprocess
import time

import pytest

from livecenter.media.admission import MAX_NAME_CHARS
from livecenter.media.liveurl import LiveUrlError
from livecenter.media.node import SRT_SOCKET_BUFFER_BYTES
from livecenter.media.policy import StreamKey
from livecenter.media.signing import sign
from livecenter.media.srt.crypto import SrtCryptoContext
from livecenter.media.srt_server import (
    MAX_DATAGRAMS_PER_READ,
    REJECT_BAD_REQUEST,
    REJECT_CONFLICT,
    REJECT_FORBIDDEN,
    REJECT_NOT_FOUND,
    REJECT_UNAUTHORIZED,
    UdpEndpoint,
    read_stream_id,
)
from tests.mediasupport import INGEST, INGEST_KEY, NodeThread, TagPublisher, default_policy, start_publisher

pytestmark = pytest.mark.media

KEY = StreamKey(INGEST, "live", "cam1")


@pytest.fixture
def node():
    node = NodeThread(srt_port=0, play_wait_seconds=10).start()
    yield node
    node.stop()


def srt_publisher(url: str, seconds: float = 30):
    return start_publisher(url, seconds=seconds, size="320x240", rate=25, container="mpegts")


def probe_frames(url: str, seconds: float = 3) -> dict:
    """What ffprobe reads of a live URL in `seconds`: packets per codec and
    the video's timestamps."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-rw_timeout", "15000000", "-read_intervals", f"%+{seconds}",
         "-show_entries", "packet=codec_type,dts_time:stream=codec_name", "-of", "json", url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    video = [float(p["dts_time"]) for p in data.get("packets", []) if p["codec_type"] == "video"]
    audio = [p for p in data.get("packets", []) if p["codec_type"] == "audio"]
    return {"codecs": sorted(s["codec_name"] for s in data["streams"]), "video": video, "audio": len(audio)}


def refused(publisher, caplog, code: int) -> str:
    """The caller's error output once it gave up, checked against the node's log line."""
    publisher.process.wait(30)
    assert publisher.process.returncode != 0
    err = publisher.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "livecenter.media.srt_server"]
    assert any("refused" in line and f"({code})" in line for line in lines), lines
    return err


def test_it_takes_an_ffmpeg_srt_publish_and_plays_it_over_flv(node):
    publisher = srt_publisher(node.srt_publish_url())
    try:
        assert node.wait_for(lambda: node.node.hub.live_keys() == [KEY], timeout=20), publisher.stop()
        got = probe_frames(node.flv_url())
        assert got["codecs"] == ["aac", "h264"]
        assert len(got["video"]) >= 25 and got["audio"] >= 25
        steps = [b - a for a, b in zip(got["video"], got["video"][1:], strict=False)]
        assert all(0 <= s <= 0.2 for s in steps), steps  # continuous, 25 fps
        published = [e for e in node.sink.events if type(e).__name__ == "StreamPublished"]
        assert published[0].protocol == "srt" and published[0].key == KEY
        assert "auth_key" not in published[0].publish_url
        info = node.run_sync(lambda: node.node.hub.stream(KEY).info())
        assert (info.video_codec, info.width, info.height, info.audio_codec) == ("H264", 320, 240, "AAC")
    finally:
        publisher.stop()
    # The caller's shutdown ends the stream.
    assert node.wait_for(lambda: not node.node.hub.live_keys(), timeout=20)
    assert [type(e).__name__ for e in node.sink.events if type(e).__name__ == "StreamUnpublished"]


def test_it_takes_several_publishers_at_once_on_its_one_port(node):
    keys = [StreamKey(INGEST, "live", f"cam{i}") for i in (1, 2, 3)]
    publishers = [srt_publisher(node.srt_publish_url(stream=key.stream)) for key in keys]
    try:
        assert node.wait_for(lambda: set(node.node.hub.live_keys()) == set(keys), timeout=30), [
            p.stop() for p in publishers
        ]
        assert len(node.run_sync(lambda: dict(node.node.srt.publishers))) == 3
        for key in keys:
            got = probe_frames(node.flv_url(stream=key.stream))
            assert got["codecs"] == ["aac", "h264"] and len(got["video"]) >= 25, key
        # One leaves; the others go on.
        publishers[0].stop()
        assert node.wait_for(lambda: set(node.node.hub.live_keys()) == set(keys[1:]), timeout=20)
        assert len(probe_frames(node.flv_url(stream="cam3"))["video"]) >= 25
    finally:
        for publisher in publishers:
            publisher.stop()


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("bad signature", REJECT_UNAUTHORIZED),
        ("expired", REJECT_UNAUTHORIZED),
        ("unknown domain", REJECT_NOT_FOUND),
        ("forbidden", REJECT_FORBIDDEN),
        ("disabled domain", REJECT_FORBIDDEN),
        ("no stream id", REJECT_BAD_REQUEST),
    ],
)
def test_it_refuses_a_caller_with_an_srt_rejection_reason(node, caplog, case, code):
    caplog.set_level(logging.INFO, logger="livecenter.media.srt_server")
    url = {
        "bad signature": lambda: node.srt_publish_url(key="wrongKey"),
        "expired": lambda: node.srt_publish_url(ts=time.time() - 7200),
        "unknown domain": lambda: node.srt_publish_url(domain="nowhere.test"),
        "forbidden": lambda: node.srt_publish_url(),
        "disabled domain": lambda: node.srt_publish_url(),
        "no stream id": lambda: f"srt://127.0.0.1:{node.node.srt_port}",
    }[case]()
    if case == "forbidden":
        node.policy.forbidden.add(KEY)
    if case == "disabled domain":  # the domain's switch, as over RTMP
        node.policy.domains[INGEST] = dataclasses.replace(node.policy.domains[INGEST], enabled=False)
    err = refused(srt_publisher(url, seconds=10), caplog, code)
    assert "reject" in err.lower() or "error" in err.lower(), err
    assert not node.run_sync(node.node.hub.live_keys)


def test_it_refuses_a_second_publisher_of_a_live_stream(node, caplog):
    caplog.set_level(logging.INFO, logger="livecenter.media.srt_server")
    first = srt_publisher(node.srt_publish_url())
    try:
        assert node.wait_for(lambda: node.node.hub.live_keys() == [KEY], timeout=20), first.stop()
        refused(srt_publisher(node.srt_publish_url(), seconds=10), caplog, REJECT_CONFLICT)
        assert first.process.poll() is None  # the first one goes on
    finally:
        first.stop()


def test_a_forbid_ends_a_live_srt_publish(node):
    publisher = srt_publisher(node.srt_publish_url(), seconds=60)
    try:
        assert node.wait_for(lambda: node.node.hub.live_keys() == [KEY], timeout=20), publisher.stop()
        assert node.run_sync(node.node.kick, KEY)
        assert node.wait_for(lambda: not node.node.hub.live_keys(), timeout=20)
        assert node.wait_for(lambda: not node.node.srt.publishers, timeout=20)
    finally:
        publisher.stop()


def test_it_takes_the_audio_of_an_h265_publish_and_says_why_it_leaves_the_video_out(node, caplog):
    caplog.set_level(logging.INFO, logger="livecenter.media.srt_server")
    publisher = start_publisher(node.srt_publish_url(), seconds=30, size="320x240", rate=25, container="mpegts",
                                extra=("-c:v", "libx265", "-x265-params", "log-level=error"))  # fmt: skip
    try:
        assert node.wait_for(lambda: node.node.hub.live_keys() == [KEY], timeout=20), publisher.stop()
        assert node.wait_for(lambda: "H.265 stream on PID" in caplog.text, timeout=20), caplog.text
        line = next(r.getMessage() for r in caplog.records if "H.265 stream on PID" in r.getMessage())
        assert "not taken" in line and "H.264 only" in line, line
        assert len([r for r in caplog.records if "H.265" in r.getMessage()]) == 1  # said once, not per packet
        got = probe_frames(node.flv_url())
        assert got["codecs"] == ["aac"] and got["audio"] >= 25 and not got["video"]
    finally:
        publisher.stop()


def test_it_takes_the_short_stream_id_form_too(node):
    token = sign("/live/cam1", INGEST_KEY, int(time.time()))
    url = f"srt://127.0.0.1:{node.node.srt_port}?streamid=live/cam1?auth_key={token}%26domain={INGEST}"
    publisher = srt_publisher(url)
    try:
        assert node.wait_for(lambda: node.node.hub.live_keys() == [KEY], timeout=20), publisher.stop()
    finally:
        publisher.stop()


def test_srt_and_rtmp_take_the_same_longest_stream_name_and_say_why_one_longer_is_refused(node, caplog):
    caplog.set_level(logging.INFO, logger="livecenter.media.srt_server")
    rtmp_name, srt_name = "r" * MAX_NAME_CHARS, "s" * MAX_NAME_CHARS
    TagPublisher(node.publish_url(stream=rtmp_name)).close()
    with pytest.raises(ConnectionError, match=f"BadName.*longer than {MAX_NAME_CHARS} characters"):
        TagPublisher(node.publish_url(stream=rtmp_name + "r"))

    def short_form(stream: str) -> str:
        token = sign(f"/live/{stream}", INGEST_KEY, int(time.time()))
        return f"srt://127.0.0.1:{node.node.srt_port}?streamid=live/{stream}?auth_key={token}%26domain={INGEST}"

    publisher = srt_publisher(short_form(srt_name))
    try:
        assert node.wait_for(lambda: StreamKey(INGEST, "live", srt_name) in node.node.hub.live_keys(), timeout=20), (
            publisher.stop()
        )
    finally:
        publisher.stop()
    refused(srt_publisher(short_form(srt_name + "s"), seconds=10), caplog, REJECT_BAD_REQUEST)
    refused(srt_publisher(node.srt_publish_url(stream=srt_name + "s"), seconds=10), caplog, REJECT_BAD_REQUEST)
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert f"longer than {MAX_NAME_CHARS} characters" in lines[0], lines  # the short form: admission's reason
    assert f"must be 1-{MAX_NAME_CHARS} letters" in lines[-1], lines  # the #!:: form: the stream ID's


def test_it_reads_each_stream_id_form():
    full = read_stream_id("#!::h=push.test,r=/live/cam1?auth_key=1-0-0-ab,m=publish")
    assert (full.host, full.app, full.stream, full.auth_key, full.mode) == ("push.test", "live", "cam1", "1-0-0-ab",
                                                                            "publish")  # fmt: skip
    encoded = read_stream_id("%23%21%3A%3Ah%3Dpush.test%2Cr%3D%2Flive%2Fcam1%2Cm%3Dpublish")
    assert (encoded.host, encoded.app, encoded.stream, encoded.auth_key) == ("push.test", "live", "cam1", None)
    short = read_stream_id("live/cam1?auth_key=1-0-0-ab&domain=Push.Test")
    assert (short.host, short.app, short.stream, short.auth_key, short.mode) == ("push.test", "live", "cam1",
                                                                                 "1-0-0-ab", "publish")  # fmt: skip
    for bad, reason in [
        (None, "no stream ID"),
        ("", "no stream ID"),
        ("live?auth_key=x&domain=push.test", "{app}/{stream}"),
        ("live/cam1?auth_key=x", "names its domain"),
        ("#!::h=push.test", "no r="),
        ("#!::h=push.test,r=/live/cam1,m=watch", "publish or request"),
    ]:
        with pytest.raises(LiveUrlError, match=re.escape(reason)):
            read_stream_id(bad)


@pytest.fixture
def secured():
    """A node whose ingest domain has a passphrase and a latency of its own."""
    policy = default_policy()
    domain = policy.domains[INGEST]
    policy.domains[INGEST] = dataclasses.replace(domain, srt_passphrase=PASSPHRASE, srt_latency_ms=300)
    node = NodeThread(policy, srt_port=0, play_wait_seconds=10).start()
    yield node
    node.stop()


PASSPHRASE = "Correct-Horse-Battery-9"


@pytest.mark.parametrize("pbkeylen", [16, 24, 32])
def test_it_takes_an_encrypted_publish_with_the_domains_passphrase_and_latency(secured, caplog, pbkeylen):
    caplog.set_level(logging.INFO, logger="livecenter.media.srt_server")
    publisher = srt_publisher(secured.srt_publish_url(passphrase=PASSPHRASE, pbkeylen=pbkeylen))
    try:
        assert secured.wait_for(lambda: secured.node.hub.live_keys() == [KEY], timeout=20), publisher.stop()
        got = probe_frames(secured.flv_url())
        assert got["codecs"] == ["aac", "h264"] and len(got["video"]) >= 25
        line = next(r.getMessage() for r in caplog.records if "publishing" in r.getMessage())
        assert "latency 300 ms, encrypted" in line
        assert PASSPHRASE not in caplog.text
    finally:
        publisher.stop()


def test_it_follows_libsrts_key_refresh_from_even_to_odd_and_back(secured, monkeypatch):
    # libsrt announces its next key (a KMREQ with both keys) kmpreannounce
    # packets before it switches to it, every kmrefreshrate packets.
    keys_used = []
    decrypt = SrtCryptoContext.decrypt

    def counting(self, key, seq, payload):
        if not keys_used or keys_used[-1] != key:
            keys_used.append(key)
        return decrypt(self, key, seq, payload)

    monkeypatch.setattr(SrtCryptoContext, "decrypt", counting)
    url = secured.srt_publish_url(passphrase=PASSPHRASE, kmrefreshrate=200, kmpreannounce=50)
    publisher = srt_publisher(url, seconds=20)
    try:
        assert secured.wait_for(lambda: secured.node.hub.live_keys() == [KEY], timeout=20), publisher.stop()
        got = probe_frames(secured.flv_url(), seconds=8)
        assert len(got["video"]) >= 8 * 20 and got["audio"] >= 8 * 20
        steps = [b - a for a, b in zip(got["video"], got["video"][1:], strict=False)]
        assert all(0 <= s <= 0.2 for s in steps), steps  # no frame lost at a switch
        stats = secured.run_sync(secured.node.srt.session_stats)[KEY]
        assert stats.encrypted and stats.packets_received > 3 * 200
        connection = secured.run_sync(lambda: next(iter(secured.node.srt.listener.connections.values())))
        assert connection.stats.packets_undecrypted == 0
    finally:
        publisher.stop()
    # Even, odd, even, ...: each key refreshed at least once.
    assert len(keys_used) >= 3, keys_used


@pytest.mark.parametrize(
    ("options", "detail"),
    [
        ({"passphrase": "not the right one"}, "wrong passphrase"),
        ({}, "caller sent no passphrase"),
    ],
    ids=["wrong", "none"],
)
def test_it_refuses_a_caller_without_the_domains_passphrase(secured, caplog, options, detail):
    caplog.set_level(logging.INFO, logger="livecenter.media.srt_server")
    publisher = srt_publisher(secured.srt_publish_url(**options), seconds=10)
    publisher.process.wait(30)
    assert publisher.process.returncode != 0
    publisher.stop()
    assert detail in caplog.text
    assert not secured.run_sync(secured.node.hub.live_keys)


def test_it_refuses_a_passphrase_where_the_domain_has_none(node, caplog):
    caplog.set_level(logging.INFO, logger="livecenter.media.srt_server")
    publisher = srt_publisher(node.srt_publish_url(passphrase=PASSPHRASE), seconds=10)
    publisher.process.wait(30)
    assert publisher.process.returncode != 0
    publisher.stop()
    assert "caller sent a passphrase we have none for" in caplog.text


def test_its_udp_socket_has_room_for_every_publishers_datagrams(node):
    sock = node.node.srt.transport.get_extra_info("socket")
    received = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    if os.geteuid() == 0:  # past net.core.rmem_max (SO_RCVBUFFORCE); Linux reports twice what was set
        assert received >= SRT_SOCKET_BUFFER_BYTES
    else:
        assert received > 0


class Batches:
    """A protocol that keeps what the endpoint hands it."""

    def __init__(self) -> None:
        self.batches: list[list] = []

    def datagrams_received(self, batch) -> None:
        self.batches.append(batch)

    def error_received(self, exc) -> None:
        raise AssertionError(exc)


@pytest.fixture
def udp():
    """(endpoint, protocol, send): a UdpEndpoint on a bound socket with room
    for a burst, its recording protocol, and a sender to it."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    server.setblocking(False)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    protocol = Batches()
    yield UdpEndpoint(None, server, protocol), protocol, lambda data: client.sendto(data, server.getsockname())
    server.close()
    client.close()


def test_its_socket_is_read_empty_in_one_turn_of_the_loop(udp):
    # asyncio's datagram transport reads one datagram per turn: behind a busy
    # loop the kernel queue grew and SRT's round trips reached tens of seconds.
    endpoint, protocol, send = udp
    for i in range(300):
        send(i.to_bytes(2, "big") * 100)
    endpoint._read_ready()
    assert len(protocol.batches) == 1
    assert [int.from_bytes(d[:2], "big") for d, _ in protocol.batches[0]] == list(range(300))
    endpoint._read_ready()  # nothing left: no empty batch
    assert len(protocol.batches) == 1


def test_it_reads_at_most_a_bounded_batch_per_turn(udp):
    endpoint, protocol, send = udp
    for _ in range(MAX_DATAGRAMS_PER_READ + 5):
        send(b"x" * 64)
    endpoint._read_ready()
    endpoint._read_ready()
    assert [len(b) for b in protocol.batches] == [MAX_DATAGRAMS_PER_READ, 5]
