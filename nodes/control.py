"""Telling the engine to cut a live publisher (a forbid, issue 3).

Two paths, because the engine runs in either topology (DESIGN.md):

- embedded: the process that serves the console also runs the engine, which
  calls `register_engine(engine)` from its event loop; `request_kick` then
  calls `engine.kick(key)` on that loop directly.
- scaled: each media node runs `listen_for_control(engine)`, which joins the
  channel-layer group "livecenter.media" and kicks what it is told;
  `request_kick` sends {"type": "media.kick", "key": "domain/app/stream"} to
  that group. Every node receives it; a node without the stream does nothing.

`request_kick` does both. A message that comes back to the process that sent
it, to the engine it already kicked directly, is skipped, so an embedded
engine that also listens is kicked once.

A resume lifts a block: `request_forget` sends {"type": "media.forget", …}
to the same group, and every node drops its cached forbidden-or-not answer
for the stream (nodes/bridge.py), so that the next publish on any node,
an edge's or a center's, asks the database rather than meeting the block
its cache still holds.

The engine's side is one method, `kick(key: StreamKey) -> bool` (True if a
publisher was cut); it is called on the engine's event loop and must not block.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Protocol

from asgiref.sync import async_to_sync
from channels.layers import DEFAULT_CHANNEL_LAYER, InMemoryChannelLayer, channel_layers, get_channel_layer

from livecenter.media.policy import StreamKey

from . import bridge

log = logging.getLogger(__name__)

GROUP = "livecenter.media"
KICK = "media.kick"
FORGET = "media.forget"
# A node that heard nothing for this long joins the group again; after a
# failure it retries this often (listen_for_control).
CONTROL_REJOIN_SECONDS = 30.0
CONTROL_RETRY_SECONDS = 1.0
# Marks this process's messages (see the module docstring).
PROCESS_ID = uuid.uuid4().hex


class KickableEngine(Protocol):
    def kick(self, key: StreamKey) -> bool: ...


_engine: KickableEngine | None = None
_engine_loop: asyncio.AbstractEventLoop | None = None


def register_engine(engine: KickableEngine | None, loop: asyncio.AbstractEventLoop | None = None) -> None:
    """The engine embedded in this process, or None when it stops. Call it
    from the engine's event loop (or pass that loop): kicks requested from
    other threads, such as the console's views, are handed to that loop."""
    global _engine, _engine_loop
    if engine is not None and loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
    _engine, _engine_loop = engine, loop if engine is not None else None


def _kick(engine: KickableEngine, key: StreamKey) -> None:
    try:
        if engine.kick(key):
            log.info("kicked the publisher of %s", key)
    except Exception:
        log.exception("the engine failed to kick %s", key)


def _kick_in_process(key: StreamKey) -> None:
    engine, loop = _engine, _engine_loop
    if engine is None:
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if loop is None or running is loop:
        _kick(engine, key)
        return
    try:
        loop.call_soon_threadsafe(_kick, engine, key)
    except RuntimeError:  # the loop is closed: the engine has stopped
        log.warning("the embedded engine's loop is closed; %s not kicked in process", key)


def request_kick(key: StreamKey) -> None:
    """Cut the live publisher of `key`, wherever it is. Call from sync code
    (the services); never from a running event loop."""
    bridge.forget_stream(key)
    _kick_in_process(key)
    _send(KICK, key, "the kick of %s to the media nodes; the block (if any) refuses the next publish")


def request_forget(key: StreamKey) -> None:
    """Have every node forget its cached block of `key` (a resume). Call
    from sync code, as request_kick."""
    bridge.forget_stream(key)
    _send(FORGET, key, "the resume of %s to the media nodes; they see it within their policy cache's time")


def _send(kind: str, key: StreamKey, lost: str) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(GROUP, {"type": kind, "key": str(key), "origin": PROCESS_ID})
    except Exception:
        log.exception("could not send " + lost, key)


async def listen_for_control(engine: KickableEngine, *, ready: asyncio.Event | None = None) -> None:
    """Run on a media node: kick what the console asks, until cancelled.
    `ready` is set once the node has joined the group (messages sent before
    then are not received). On Redis a cancel can take up to the layer's
    receive timeout (channels_redis: BZPOPMIN, 5 s) to land.

    Redis may go away (issue 11): a failed receive, or none within
    CONTROL_REJOIN_SECONDS, joins the group again on a fresh channel (a
    restarted Redis has forgotten the membership), retrying every
    CONTROL_RETRY_SECONDS while it is unreachable; the streams never notice."""
    layer = _listening_layer()
    channel = None
    down_since: float | None = None
    try:
        while True:
            try:
                if channel is None:
                    channel = await layer.new_channel()
                await layer.group_add(GROUP, channel)
                if down_since is not None:
                    log.warning("control channel is back after %.1f s", time.monotonic() - down_since)
                    down_since = None
                if ready is not None:
                    ready.set()
                while True:
                    try:
                        async with asyncio.timeout(CONTROL_REJOIN_SECONDS):
                            message = await layer.receive(channel)
                    except TimeoutError:
                        break  # refresh the membership
                    _handle(engine, message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("control channel unreachable (%s); kicks wait for it, streams go on", exc)
                channel = None
                await asyncio.sleep(CONTROL_RETRY_SECONDS)
    finally:
        if channel is not None:
            try:
                await layer.group_discard(GROUP, channel)
            except Exception:  # shutting down; the layer expires the membership itself
                log.debug("could not leave %s", GROUP, exc_info=True)
        if layer is not get_channel_layer():
            try:
                await layer.close_pools()
            except Exception:
                log.debug("could not close the control layer's connections", exc_info=True)


def _listening_layer():
    """The layer a listener receives on: a Redis layer of its own, because
    channels_redis binds an instance's receive state to one event loop and
    serialises its receivers behind one lock (two listeners sharing the
    process's instance, an embedded engine's and a test's, or two in one loop,
    would wait on each other or fail with "Two event loops …"); the in-memory
    layer is the process's own, since its groups live in that instance."""
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer is configured (CHANNEL_LAYERS)")
    if isinstance(layer, InMemoryChannelLayer):
        return layer
    return channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)


def _handle(engine: KickableEngine, message: dict) -> None:
    kind = message.get("type")
    if kind not in (KICK, FORGET):
        log.debug("ignored control message %r", kind)
        return
    try:
        key = StreamKey.parse(str(message["key"]))
    except (KeyError, ValueError):
        log.warning("ignored a %s with a malformed key: %r", kind, message.get("key"))
        return
    bridge.forget_stream(key)
    if kind == FORGET:
        return
    if message.get("origin") == PROCESS_ID and engine is _engine:
        return  # request_kick already kicked it directly
    _kick(engine, key)
