"""The engine's publish and unpublish events as callbacks: nodes.bridge
tells this sink once the database has them, in order, after an outage too
(nodes/apps.py adds it `once_written`). It only
queues a Delivery row and a task message; the node never waits on a receiver."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connection

from livecenter.media.policy import StreamPublished, StreamUnpublished

from . import services


def _fresh(fn, event) -> None:
    # A long-lived engine sees no request boundaries (nodes/bridge.py's _db does the same).
    if not connection.in_atomic_block:
        close_old_connections()
    fn(event)


class CallbackSink:
    async def published(self, event: StreamPublished) -> None:
        await sync_to_async(_fresh, thread_sensitive=True)(services.stream_published, event)

    async def unpublished(self, event: StreamUnpublished) -> None:
        await sync_to_async(_fresh, thread_sensitive=True)(services.stream_unpublished, event)
