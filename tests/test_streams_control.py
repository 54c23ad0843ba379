"""nodes.control: a forbid reaches the engine, embedded or over the channel
layer (in memory here, Redis when REDIS_URL is set)."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from livecenter.media.policy import StreamKey
from nodes import control
from streams import signals
from tests.streamsupport import FakeEngine

KEY = StreamKey("push.example.com", "live", "cam1")
WAIT_SECONDS = 5

# The channel layer and the broker are this module's subject.
pytestmark = [pytest.mark.backends]


@pytest.fixture(autouse=True)
def _no_engine():
    control.register_engine(None)
    yield
    control.register_engine(None)


@pytest.fixture(autouse=True)
def _fresh_channel_layer(settings):
    # Each test runs its own event loop; a media node has one for its life.
    # The Redis layer's receive state belongs to one loop, so each test gets
    # its own layer (setting CHANNEL_LAYERS makes Channels build a new one).
    settings.CHANNEL_LAYERS = dict(settings.CHANNEL_LAYERS)


async def start_listener(engine: FakeEngine) -> asyncio.Task:
    ready = asyncio.Event()
    task = asyncio.create_task(control.listen_for_control(engine, ready=ready))
    await asyncio.wait_for(ready.wait(), WAIT_SECONDS)
    return task


async def stop(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_it_kicks_through_the_channel_layer():
    engine = FakeEngine(live={KEY})

    async def scenario():
        listener = await start_listener(engine)
        try:
            # From a worker thread, as a console view calls it.
            await sync_to_async(control.request_kick)(KEY)
            return await engine.next_kick(WAIT_SECONDS)
        finally:
            await stop(listener)

    assert asyncio.run(scenario()) == KEY
    assert engine.kicked == [KEY]


def test_it_kicks_every_listening_node():
    nodes = [FakeEngine(), FakeEngine()]

    async def scenario():
        listeners = [await start_listener(node) for node in nodes]
        try:
            await sync_to_async(control.request_kick)(KEY)
            return [await node.next_kick(WAIT_SECONDS) for node in nodes]
        finally:
            for listener in listeners:
                await stop(listener)

    assert asyncio.run(scenario()) == [KEY, KEY]


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="crosses event loops: needs a layer between processes")
def test_it_kicks_from_a_thread_without_an_event_loop_over_redis():
    # A Celery task or a management command: request_kick runs its own loop.
    engine = FakeEngine()

    async def scenario():
        listener = await start_listener(engine)
        try:
            await asyncio.to_thread(control.request_kick, KEY)
            return await engine.next_kick(WAIT_SECONDS)
        finally:
            await stop(listener)

    assert asyncio.run(scenario()) == KEY


def test_it_kicks_the_embedded_engine_on_its_own_loop():
    engine = FakeEngine(live={KEY})

    async def scenario():
        control.register_engine(engine)  # from the engine's loop
        loop_thread = threading.get_ident()
        await asyncio.to_thread(control.request_kick, KEY)  # a view's thread
        await engine.next_kick(WAIT_SECONDS)
        return loop_thread

    loop_thread = asyncio.run(scenario())
    assert engine.kicked == [KEY]
    assert engine.threads == [loop_thread]


def test_it_kicks_an_embedded_engine_that_also_listens_once():
    engine = FakeEngine()
    other_node = FakeEngine()
    marker = StreamKey("push.example.com", "live", "marker")

    async def scenario():
        control.register_engine(engine)
        listeners = [await start_listener(engine), await start_listener(other_node)]
        try:
            await sync_to_async(control.request_kick)(KEY)
            assert await other_node.next_kick(WAIT_SECONDS) == KEY
            # A channel delivers in order: once the marker is handled, so was
            # the message about KEY.
            await get_channel_layer().group_send(control.GROUP, {"type": control.KICK, "key": str(marker)})
            while (await engine.next_kick(WAIT_SECONDS)) != marker:
                pass
        finally:
            for listener in listeners:
                await stop(listener)

    asyncio.run(scenario())
    assert engine.kicked == [KEY, marker]


def test_it_stops_kicking_an_engine_that_is_unregistered():
    engine = FakeEngine()

    async def scenario():
        control.register_engine(engine)
        control.register_engine(None)
        await asyncio.to_thread(control.request_kick, KEY)

    asyncio.run(scenario())
    assert engine.kicked == []


def test_it_survives_bad_messages_and_a_failing_engine(caplog):
    class BrokenEngine(FakeEngine):
        def kick(self, key):
            result = super().kick(key)
            if len(self.kicked) == 1:
                raise RuntimeError("engine bug")
            return result

    engine = BrokenEngine()
    layer = get_channel_layer()

    async def scenario():
        listener = await start_listener(engine)
        try:
            await layer.group_send(control.GROUP, {"type": "media.other", "key": str(KEY)})
            await layer.group_send(control.GROUP, {"type": control.KICK, "key": "no-slashes"})
            await layer.group_send(control.GROUP, {"type": control.KICK})
            await layer.group_send(control.GROUP, {"type": control.KICK, "key": str(KEY)})  # raises in the engine
            await layer.group_send(control.GROUP, {"type": control.KICK, "key": "push.example.com/live/cam2"})
            await engine.next_kick(WAIT_SECONDS)
            return await engine.next_kick(WAIT_SECONDS)
        finally:
            await stop(listener)

    assert asyncio.run(scenario()) == StreamKey("push.example.com", "live", "cam2")
    assert engine.kicked == [KEY, StreamKey("push.example.com", "live", "cam2")]
    assert "malformed key" in caplog.text
    assert "engine bug" in caplog.text


def test_a_resume_makes_every_listening_node_forget_the_block_and_kicks_nothing(monkeypatch):
    # A node's policy caches a stream's block (nodes/bridge.py); a resume
    # reaches each node over the layer, as a kick does, and drops it there.
    nodes = [FakeEngine(live={KEY}), FakeEngine(live={KEY})]
    forgotten: list[tuple[StreamKey, int]] = []
    monkeypatch.setattr(control.bridge, "forget_stream", lambda key: forgotten.append((key, threading.get_ident())))

    async def scenario():
        listeners = [await start_listener(node) for node in nodes]
        try:
            # As the console's resume does (streams.services.resume_stream).
            await sync_to_async(signals.stream_resumed.send)(sender=None, key=KEY)
            async with asyncio.timeout(WAIT_SECONDS):
                while len(forgotten) < 1 + len(nodes):
                    await asyncio.sleep(0.05)
            return threading.get_ident()
        finally:
            for listener in listeners:
                await stop(listener)

    loop_thread = asyncio.run(scenario())
    # Once in the console's thread, once on each node's loop.
    assert [key for key, _ in forgotten] == [KEY] * 3
    assert [thread for _, thread in forgotten].count(loop_thread) == len(nodes)
    assert all(node.kicked == [] for node in nodes)
