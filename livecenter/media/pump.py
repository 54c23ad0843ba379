"""Moving a viewer's frames from the hub to its socket.

The hub calls `on_ready` when a viewer's queue stops being empty. The pump
does not write at once: it waits PUMP_MERGE_SECONDS for more frames and then
writes everything queued in one `transport.write`, so a viewer costs one
send per merge interval instead of one per audio or video frame (SRS's
"merged write", `mw_latency`; nginx-rtmp gets the same by posting its write
event until the publisher's read is done). The wait is no task and no timer
of its own: viewers whose merge ends within the same MERGE_QUANTUM_SECONDS
share one timer (`MergeClock`), and a publisher's frame readies all its
viewers in the same turn of the loop, so a stream's viewers cost the loop
one timer per merge, not one each. What a viewer joins with (headers, the
GOP) goes at once.

A viewer whose socket does not keep up stops taking frames once its
transport buffer passes PUMP_HIGH_WATER_BYTES; its frames wait in the hub's
bounded queue (shared, not copied) until the buffer drains, or are skipped
there. One the hub cuts as too slow (`lagging_disconnect`) is aborted at
once with a TCP RST: a graceful close would wait for the very buffer that
client never reads, and keep its descriptor (and the kernel its socket
buffer) for as long (issue 11, item 5).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import weakref
from collections.abc import Callable

# What a viewer's transport may buffer beyond the kernel's socket buffer.
# With the hub holding only references to shared frames, this is most of a
# viewer's own memory (DESIGN.md: at most 64 KiB beyond the GOP cache).
PUMP_HIGH_WATER_BYTES = 64 * 1024
# How long frames wait to be written together. At 30 fps video and AAC audio
# (73 frames a second) 50 ms merges about four frames into a send; it adds at
# most 50 ms to HTTP-FLV and RTMP latency (DESIGN.md: 500 ms p50 for FLV),
# nothing to the first frame. bench/README.md has what it is worth.
PUMP_MERGE_SECONDS = 0.05
# Merges ending within this of each other are flushed by the same timer: a
# viewer waits between merge_seconds and that plus this.
MERGE_QUANTUM_SECONDS = 0.01
# SO_LINGER on, 0 s: close() resets the connection (TCP RST) at once.
_LINGER_RESET = struct.pack("ii", 1, 0)


class MergeClock:
    """The loop's merge timers: one per MERGE_QUANTUM_SECONDS bucket of due
    times, each flushing every pump due in it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._buckets: dict[int, list[FramePump]] = {}

    def after(self, seconds: float, pump: FramePump) -> None:
        bucket = -int(-(self.loop.time() + seconds) // MERGE_QUANTUM_SECONDS)  # the quantum at or after
        due = self._buckets.get(bucket)
        if due is None:
            due = self._buckets[bucket] = []
            self.loop.call_at(bucket * MERGE_QUANTUM_SECONDS, self._fire, bucket)
        due.append(pump)

    def _fire(self, bucket: int) -> None:
        for pump in self._buckets.pop(bucket, ()):
            pump._merged()


_clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MergeClock] = weakref.WeakKeyDictionary()


def merge_clock() -> MergeClock:
    loop = asyncio.get_running_loop()
    clock = _clocks.get(loop)
    if clock is None:
        clock = _clocks[loop] = MergeClock(loop)
    return clock


class FramePump:
    def __init__(self, writer: asyncio.StreamWriter, encode: Callable, merge_seconds: float = PUMP_MERGE_SECONDS):
        self.writer = writer
        self.transport = writer.transport
        self.transport.set_write_buffer_limits(high=PUMP_HIGH_WATER_BYTES)
        self.encode = encode
        self.merge_seconds = merge_seconds
        self.subscription = None
        self.finished = asyncio.Event()
        self._draining: asyncio.Task | None = None
        self._merging = False  # waiting on the merge clock

    def attach(self, subscription) -> None:
        """Start pumping; frames already queued (headers, GOP) go at once."""
        self.subscription = subscription
        self._flush()

    def on_ready(self, subscription) -> None:
        if self.subscription is None:
            return
        if subscription.lagging_disconnect:
            self.abort()
            return
        if self._draining is not None or self._merging:
            return
        if subscription.ended:
            self._flush()
        else:
            self._merging = True
            merge_clock().after(self.merge_seconds, self)

    def close(self) -> None:
        if self._draining is not None:
            self._draining.cancel()
        self._merging = False
        if self.subscription is not None:
            self.subscription.close()
        self.finished.set()

    def abort(self) -> None:
        """Drop the connection with a TCP RST: neither the transport's buffer
        nor the kernel's is flushed (a plain close would leave the kernel
        sending that client its megabytes as an orphan socket)."""
        self.close()
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        self.transport.abort()

    def _merged(self) -> None:
        if not self._merging:
            return  # closed meanwhile
        self._merging = False
        if self._draining is None:
            self._flush()

    def _flush(self) -> None:
        subscription, transport, encode = self.subscription, self.transport, self.encode
        while True:
            if transport.is_closing():
                self.finished.set()
                return
            # asyncio pauses writing when the buffer is above the high mark;
            # wait for it to drain rather than queue more in the transport.
            room = PUMP_HIGH_WATER_BYTES - transport.get_write_buffer_size()
            if room < 0:
                self._draining = asyncio.get_running_loop().create_task(self._wait_drain())
                return
            chunks = []
            while room >= 0 and subscription.queued_frames:
                data = encode(subscription.drain(1)[0])
                chunks.append(data)
                room -= len(data)
            if not chunks:
                if subscription.ended:
                    self.finished.set()
                return
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            transport.write(data)
            subscription.count_sent(len(data))

    async def _wait_drain(self) -> None:
        try:
            await self.writer.drain()
        except (ConnectionError, OSError):
            self.finished.set()
            return
        finally:
            self._draining = None
        self._flush()
