"""The fan-out pump: what a viewer's transport is given, and when."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from livecenter.media.http_server import MediaHttpSession
from livecenter.media.hub import StreamHub
from livecenter.media.pump import MERGE_QUANTUM_SECONDS, PUMP_HIGH_WATER_BYTES, FramePump, MergeClock
from tests.mediasupport import NodeThread, start_publisher
from tests.test_hub import KEY, audio, push_gop, run, start, video


class RecordingTransport:
    """The part of an asyncio transport the pump uses; keeps each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.buffered = 0
        self.aborted = False

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        self.high = high

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name, default=None):
        return default

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))


class RecordingWriter:
    def __init__(self) -> None:
        self.transport = RecordingTransport()
        self.may_drain = asyncio.Event()
        self.may_drain.set()

    async def drain(self) -> None:
        await self.may_drain.wait()
        self.transport.buffered = 0


def body_of(frame) -> bytes:
    return frame.body


def pump_for(hub: StreamHub, merge_seconds: float) -> tuple[FramePump, RecordingWriter]:
    writer = RecordingWriter()
    pump = FramePump(writer, body_of, merge_seconds=merge_seconds)
    pump.attach(hub.subscribe(KEY, on_ready=pump.on_ready))
    return pump, writer


@run
async def test_it_writes_what_a_joiner_gets_at_once():
    hub = StreamHub()
    pub = hub.publish(KEY)
    start(pub)
    push_gop(pub, 0, frames=3)
    pump, writer = pump_for(hub, merge_seconds=10)
    transport = writer.transport
    assert len(transport.writes) == 1
    assert transport.writes[0].count(b"\xaf\x01") == 3  # the GOP's audio frames, in the same write


@run
async def test_it_merges_frames_that_arrive_within_the_interval_into_one_write():
    hub = StreamHub(reconnect_grace_seconds=0)
    pub = hub.publish(KEY)
    start(pub)
    pub.push("video", 0, video(True))
    pump, writer = pump_for(hub, merge_seconds=0.05)
    transport = writer.transport
    joined = len(transport.writes)
    frames = [video(size=50), audio(30), video(size=60)]
    pub.push("video", 33, frames[0])
    pub.push("audio", 34, frames[1])
    pub.push("video", 66, frames[2])
    assert len(transport.writes) == joined  # waiting for more
    await asyncio.sleep(0.1)
    assert transport.writes[joined:] == [b"".join(frames)]
    pub.close()
    await asyncio.wait_for(pump.finished.wait(), 5)


@run
async def test_it_waits_above_the_high_water_mark_until_the_buffer_drains():
    hub = StreamHub()
    pub = hub.publish(KEY)
    start(pub)
    pump, writer = pump_for(hub, merge_seconds=0)
    transport = writer.transport
    joined = len(transport.writes)
    transport.buffered = PUMP_HIGH_WATER_BYTES + 1
    writer.may_drain.clear()
    pub.push("video", 0, video(True, size=1000))
    await asyncio.sleep(0.02)
    assert len(transport.writes) == joined
    writer.may_drain.set()
    await asyncio.sleep(0.02)
    assert transport.writes[joined:] == [video(True, size=1000)]
    pump.close()


@run
async def test_it_aborts_a_viewer_the_hub_cuts_as_too_slow_without_flushing_its_buffer():
    hub = StreamHub(subscriber_max_lag_ms=1000)
    pub = hub.publish(KEY)
    start(pub)
    pump, writer = pump_for(hub, merge_seconds=0)
    transport = writer.transport
    # The client reads nothing: the transport stays above its high mark, so
    # the pump waits for a drain that never comes.
    transport.buffered = PUMP_HIGH_WATER_BYTES + 1
    writer.may_drain.clear()
    pub.push("video", 0, video(True))
    await asyncio.sleep(0)
    assert not transport.aborted
    pub.push("video", 1500, video())  # 1.5 s behind: past the lag limit
    assert pump.subscription.lagging_disconnect
    assert transport.aborted
    assert pump.finished.is_set()
    assert hub.stream(KEY).viewer_count == 0


@run
async def test_it_closes_nothing_when_the_stream_just_ends():
    hub = StreamHub(reconnect_grace_seconds=0)
    pub = hub.publish(KEY)
    start(pub)
    pump, writer = pump_for(hub, merge_seconds=0)
    pub.close()
    await asyncio.wait_for(pump.finished.wait(), 5)
    assert not writer.transport.aborted  # the server ends the response gracefully


@pytest.mark.media
def test_it_frees_the_socket_of_an_flv_viewer_that_never_reads():
    """A real HTTP-FLV client that sends its GET and never reads: once the hub
    cuts it as too slow, the node holds no connection for it (a graceful close
    would wait on the unread buffer for as long as the client stays)."""
    node = NodeThread(play_wait_seconds=5).start()
    publisher = start_publisher(node.publish_url(), seconds=60, size="640x360")
    client = socket.socket()
    try:
        node.run_sync(setattr, node.node.hub, "subscriber_max_lag_ms", 2000)
        assert node.wait_for(lambda: node.node.hub.live_keys(), timeout=30)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(("127.0.0.1", node.node.http_port))
        path = node.flv_url().split(str(node.node.http_port), 1)[1]
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())

        def flv_viewers() -> int:
            stream = node.node.hub.stream(node.node.hub.live_keys()[0])
            return stream.viewers().get("flv", 0)

        assert node.wait_for(lambda: flv_viewers() == 1, timeout=15)
        # Cut as too slow after 2 s of lag; then its connection is gone at once.
        assert node.wait_for(
            lambda: flv_viewers() == 0 and not any(isinstance(h, MediaHttpSession) for h in node.node.connections),
            timeout=30,
        )
        client.settimeout(10)
        deadline = time.monotonic() + 10
        with pytest.raises(ConnectionResetError):  # RST, not FIN: the unread bytes are dropped
            while time.monotonic() < deadline:
                if not client.recv(65536):
                    break
    finally:
        client.close()
        publisher.stop()
        node.stop()


class FakeLoop:
    """The part of a loop the merge clock uses: its time and call_at."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.timers: list[tuple[float, object, tuple]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when, callback, *args) -> None:
        self.timers.append((when, callback, args))


class MergingPump:
    def __init__(self) -> None:
        self._merging = True
        self.flushed = 0

    def _merged(self) -> None:
        self.flushed += 1


def test_it_gives_the_viewers_readied_together_one_merge_timer():
    loop = FakeLoop(100.0)
    clock = MergeClock(loop)
    pumps = [MergingPump() for _ in range(500)]
    for pump in pumps:
        clock.after(0.05, pump)
    assert len(loop.timers) == 1
    when, callback, args = loop.timers[0]
    assert 100.05 <= when < 100.05 + MERGE_QUANTUM_SECONDS + 1e-9
    loop.now += 0.02  # readied later: a timer of its own, never earlier than its merge
    late = MergingPump()
    clock.after(0.05, late)
    assert len(loop.timers) == 2 and loop.timers[1][0] >= 100.07
    callback(*args)
    assert [p.flushed for p in pumps] == [1] * 500 and late.flushed == 0
