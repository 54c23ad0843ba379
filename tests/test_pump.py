"""The fan-out pump: what a viewer's transport is given, and when."""

from __future__ import annotations

import asyncio

from livecenter.media.hub import StreamHub
from livecenter.media.pump import PUMP_HIGH_WATER_BYTES, FramePump
from tests.test_hub import KEY, audio, push_gop, run, start, video


class RecordingTransport:
    """The part of an asyncio transport the pump uses; keeps each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.buffered = 0

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        self.high = high

    def is_closing(self) -> bool:
        return False

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
