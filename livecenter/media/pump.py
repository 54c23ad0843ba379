"""Moving a viewer's frames from the hub to its socket.

The hub calls `on_ready` when a viewer's queue stops being empty; the pump
then writes what is queued straight to the transport, in the publisher's
own turn of the event loop: no task switch per frame per viewer. A viewer
whose socket does not keep up stops taking frames once its transport buffer
passes PUMP_HIGH_WATER_BYTES; its frames wait in the hub's bounded queue
(shared, not copied) until the buffer drains, or are skipped there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# What a viewer's transport may buffer beyond the kernel's socket buffer.
# With the hub holding only references to shared frames, this is most of a
# viewer's own memory (DESIGN.md: at most 64 KiB beyond the GOP cache).
PUMP_HIGH_WATER_BYTES = 64 * 1024


class FramePump:
    def __init__(self, writer: asyncio.StreamWriter, encode: Callable) -> None:
        self.writer = writer
        self.transport = writer.transport
        self.transport.set_write_buffer_limits(high=PUMP_HIGH_WATER_BYTES)
        self.encode = encode
        self.subscription = None
        self.finished = asyncio.Event()
        self._draining: asyncio.Task | None = None

    def attach(self, subscription) -> None:
        """Start pumping; frames already queued (headers, GOP) go at once."""
        self.subscription = subscription
        self._flush()

    def on_ready(self, subscription) -> None:
        if self.subscription is not None and self._draining is None:
            self._flush()

    def close(self) -> None:
        if self._draining is not None:
            self._draining.cancel()
        if self.subscription is not None:
            self.subscription.close()
        self.finished.set()

    def _flush(self) -> None:
        subscription, transport = self.subscription, self.transport
        while True:
            if transport.is_closing():
                self.finished.set()
                return
            # asyncio pauses writing when the buffer is above the high mark;
            # wait for it to drain rather than queue more in the transport.
            if transport.get_write_buffer_size() > PUMP_HIGH_WATER_BYTES:
                self._draining = asyncio.get_running_loop().create_task(self._wait_drain())
                return
            frames = subscription.drain(1)
            if not frames:
                if subscription.ended:
                    self.finished.set()
                return
            transport.write(self.encode(frames[0]))

    async def _wait_drain(self) -> None:
        try:
            await self.writer.drain()
        except (ConnectionError, OSError):
            self.finished.set()
            return
        finally:
            self._draining = None
        self._flush()
