"""The RTMP chunk stream (Adobe RTMP 1.0, section 5.3): messages cut into
chunks on the way out, chunks joined into messages on the way in.

`RtmpChunkReader` is fed bytes and hands out whole messages. It holds one
buffer with an offset, parses headers with `struct.unpack_from`, and copies
chunk payloads straight into the message they belong to as soon as they
arrive, so what it keeps of the peer's input is at most a partial chunk
header plus the messages still incomplete -- both bounded below.

`encode_media_message` writes one message as a type-0 chunk and type-3
continuations: it depends on no state of the connection, so the same bytes
can go to every viewer of a frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from .errors import RtmpProtocolError

# RTMP 5.4.1: both directions start with 128-byte chunks.
DEFAULT_CHUNK_SIZE_BYTES = 128
# The largest Set Chunk Size we accept from a peer. The spec allows up to
# 0x7FFFFFFF, but no encoder goes past 65536 (OBS and ffmpeg use 4096; SRS
# caps here too), and a chunk is what we must hold before it is complete.
MAX_CHUNK_SIZE_BYTES = 65536
# The largest message: a 4K H.264 keyframe at a high bitrate is a few MiB.
# The message length field itself allows 16 MiB - 1.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
# Chunk streams a peer may use. Each keeps a header's worth of state for the
# whole connection; encoders use four to eight.
MAX_CHUNK_STREAMS = 64
# What we hold of the peer's input that has not become a message yet
# (unparsed bytes plus incomplete messages): one message of the largest size
# being joined, plus 1 MiB for audio and data interleaved with it.
MAX_BUFFERED_BYTES = MAX_MESSAGE_BYTES + 1024 * 1024
# The same before the peer asks to publish (it has shown no signature yet,
# and the server reads nothing more until it has checked one): connect, createStream, publish and play are a few
# hundred bytes each (a signed URL included), so 16 KiB is room for the
# longest with a chunk of the next, and 1,000 peers that never get further
# hold at most 16 MiB.
MAX_BUFFERED_BYTES_BEFORE_PUBLISH = 16 * 1024
# What all the connections of one node may hold of incomplete messages
# together: 28 publishers each in the middle of a largest message, far more
# in the middle of ordinary frames (a 2 Mbit/s keyframe is about 250 KB).
MAX_NODE_BUFFERED_BYTES = 256 * 1024 * 1024

# RTMP 5.3.1.1: ids 0 and 1 mark the two- and three-byte basic headers.
MIN_CHUNK_STREAM_ID = 2
MAX_CHUNK_STREAM_ID = 65599
MAX_MESSAGE_LENGTH_FIELD = 0xFFFFFF

_TIMESTAMP_MASK = 0xFFFFFFFF
_EXTENDED_TIMESTAMP = 0xFFFFFF  # RTMP 5.3.1.3: "the extended timestamp follows"
_HEADER_BYTES = (11, 7, 3, 0)  # message header size by chunk type (fmt), RTMP 5.3.1.2
_HEADER_0_1 = struct.Struct(">HBHBB")  # timestamp (24), length (24), type
_HEADER_2 = struct.Struct(">HB")  # timestamp delta (24)
_STREAM_ID = struct.Struct("<I")  # the message stream id is little-endian
_UINT32 = struct.Struct(">I")


class RtmpMessageType(IntEnum):
    """RTMP 5.4, 6.2, 7.1: message type ids."""

    SET_CHUNK_SIZE = 1
    ABORT = 2
    ACKNOWLEDGEMENT = 3
    USER_CONTROL = 4
    WINDOW_ACKNOWLEDGEMENT_SIZE = 5
    SET_PEER_BANDWIDTH = 6
    AUDIO = 8
    VIDEO = 9
    DATA_AMF3 = 15
    SHARED_OBJECT_AMF3 = 16
    COMMAND_AMF3 = 17
    DATA_AMF0 = 18
    SHARED_OBJECT_AMF0 = 19
    COMMAND_AMF0 = 20
    AGGREGATE = 22


@dataclass(frozen=True, slots=True)
class RtmpMessage:
    chunk_stream_id: int
    message_type: int
    message_stream_id: int
    timestamp: int  # milliseconds, absolute (deltas resolved), 32-bit
    payload: bytes


class _RtmpChunkStream:
    """What the last header on one chunk stream said (RTMP 5.3.1.2: later
    headers leave out what has not changed), and the message being joined."""

    __slots__ = (
        "timestamp",
        "delta",
        "length",
        "message_type",
        "message_stream_id",
        "extended",
        "extended_value",
        "remaining",
        "partial",
    )

    def __init__(self) -> None:
        self.timestamp = 0
        self.delta = 0
        self.length = 0
        self.message_type = 0
        self.message_stream_id = 0
        self.extended = False  # the last type 0-2 header carried an extended timestamp
        self.extended_value = 0
        self.remaining = 0  # bytes of the current message still to come
        self.partial: bytearray | None = None


class RtmpBufferBudget:
    """The bytes of incomplete messages that many readers (every connection
    of a node) may hold together. A reader charges it as its partial
    messages grow and gives back what they held when they complete, are
    aborted, or the reader is closed; a charge past `max_bytes` is refused
    with RtmpProtocolError, so the connection that would grow past it is the
    one that closes."""

    __slots__ = ("max_bytes", "used_bytes")

    def __init__(self, max_bytes: int = MAX_NODE_BUFFERED_BYTES) -> None:
        self.max_bytes = max_bytes
        self.used_bytes = 0

    def charge(self, size: int) -> None:
        if self.used_bytes + size > self.max_bytes:
            raise RtmpProtocolError(f"the node's {self.max_bytes} bytes for incomplete messages are in use")
        self.used_bytes += size

    def release(self, size: int) -> None:
        self.used_bytes -= size


class RtmpChunkReader:
    """Joins the chunks a peer sends into messages.

    `feed()` bytes, then call `next_message()` until it returns None (it needs
    more bytes). Set Chunk Size and Abort take effect from the next chunk, so
    the caller applies them (`set_chunk_size`, `abort`) between messages.

    It holds at most `max_buffered_bytes` of input that is not a message yet
    (the caller may change it, see `set_buffer_limit`), and charges what its
    incomplete messages hold to `budget` when one is given (shared by the
    readers of a node); `close()` gives that back.
    """

    def __init__(self, max_buffered_bytes: int = MAX_BUFFERED_BYTES, budget: RtmpBufferBudget | None = None) -> None:
        self.max_buffered_bytes = max_buffered_bytes
        self._limit_note = ""
        self._budget = budget
        self.chunk_size = DEFAULT_CHUNK_SIZE_BYTES
        self._buf = bytearray()
        self._offset = 0
        self._streams: dict[int, _RtmpChunkStream] = {}
        self._current: _RtmpChunkStream | None = None  # whose chunk payload comes next
        self._current_id = 0
        self._chunk_left = 0
        self._partial_bytes = 0

    @property
    def buffered_bytes(self) -> int:
        """Bytes of the peer's input held that are not part of a message yet."""
        return len(self._buf) - self._offset + self._partial_bytes

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    def set_buffer_limit(self, max_bytes: int, note: str = "") -> None:
        """Hold at most `max_bytes` from now on; `note` ends the error's
        reason (" before a publish request")."""
        self.max_buffered_bytes = max_bytes
        self._limit_note = note

    def _over_limit(self) -> RtmpProtocolError:
        return RtmpProtocolError(f"more than {self.max_buffered_bytes} bytes of incomplete messages{self._limit_note}")

    def _drop_partial(self, stream: _RtmpChunkStream) -> None:
        size = len(stream.partial)
        stream.partial = None
        self._partial_bytes -= size
        if self._budget is not None:
            self._budget.release(size)

    def close(self) -> None:
        """Drop every incomplete message and give its bytes back to the
        budget; the reader must not be fed afterwards."""
        for stream in self._streams.values():
            if stream.partial is not None:
                self._drop_partial(stream)
            stream.remaining = 0
        self._buf = bytearray()
        self._offset = 0
        self._current = None

    def set_chunk_size(self, size: int) -> None:
        """Apply a peer's Set Chunk Size (RTMP 5.4.1); `size` is the signed
        32-bit value (its top bit must be zero)."""
        if size <= 0:
            raise RtmpProtocolError(f"invalid chunk size {size}")
        if size > MAX_CHUNK_SIZE_BYTES:
            raise RtmpProtocolError(f"chunk size {size} exceeds {MAX_CHUNK_SIZE_BYTES}")
        self.chunk_size = size

    def abort(self, chunk_stream_id: int) -> None:
        """Drop the partly received message on a chunk stream (RTMP 5.4.2)."""
        stream = self._streams.get(chunk_stream_id)
        if stream is None or not stream.remaining:
            return
        if stream.partial is not None:
            self._drop_partial(stream)
        stream.remaining = 0

    def next_message(self) -> RtmpMessage | None:
        while True:
            if self._current is not None:
                message = self._read_payload()
                if message is not None:
                    return message
                if self._current is not None:
                    break  # the rest of this chunk has not arrived
            elif not self._read_header():
                break
        if self._offset:
            del self._buf[: self._offset]
            self._offset = 0
        if self.buffered_bytes > self.max_buffered_bytes:
            raise self._over_limit()
        return None

    def _read_header(self) -> bool:
        """Parse one chunk header if all of it is here; change nothing if not."""
        buf = self._buf
        pos = self._offset
        end = len(buf)
        if pos >= end:
            return False
        first = buf[pos]
        fmt = first >> 6
        csid = first & 0x3F
        pos += 1
        # RTMP 5.3.1.1: one-, two- and three-byte basic headers.
        if csid == 0:
            if pos + 1 > end:
                return False
            csid = 64 + buf[pos]
            pos += 1
        elif csid == 1:
            if pos + 2 > end:
                return False
            csid = 64 + buf[pos] + (buf[pos + 1] << 8)
            pos += 2
        stream = self._streams.get(csid)
        if stream is None:
            # A chunk stream's first header must say what the later ones
            # leave out. A type 1 header only lacks the message stream id
            # (taken as 0); SRS accepts it from some encoders, so do we.
            if fmt >= 2:
                raise RtmpProtocolError(f"chunk stream {csid} begins with a type {fmt} chunk header")
            if len(self._streams) >= MAX_CHUNK_STREAMS:
                raise RtmpProtocolError(f"more than {MAX_CHUNK_STREAMS} chunk streams")
        elif fmt < 3 and stream.remaining:
            raise RtmpProtocolError(
                f"chunk stream {csid}: a type {fmt} chunk header before the previous message was complete"
            )
        header_end = pos + _HEADER_BYTES[fmt]
        if header_end > end:
            return False

        length = message_type = message_stream_id = 0
        if fmt <= 1:
            high, low, length_high, length_low, message_type = _HEADER_0_1.unpack_from(buf, pos)
            field = high << 8 | low
            length = length_high << 8 | length_low
            if fmt == 0:
                (message_stream_id,) = _STREAM_ID.unpack_from(buf, pos + 7)
        elif fmt == 2:
            high, low = _HEADER_2.unpack_from(buf, pos)
            field = high << 8 | low
        else:
            field = 0
        continuation = fmt == 3 and stream.remaining > 0
        extended = field == _EXTENDED_TIMESTAMP if fmt < 3 else stream.extended
        extended_value = 0
        body = header_end
        if extended:
            # RTMP 5.3.1.3: the extended timestamp; a type 3 chunk repeats
            # its chunk stream's last one (FFmpeg, librtmp, Flash do).
            if header_end + 4 > end:
                return False
            (extended_value,) = _UINT32.unpack_from(buf, header_end)
            # Some encoders do not repeat it on a message's continuation
            # chunks; then these four bytes are payload (SRS reads it so).
            if not continuation or extended_value == stream.extended_value:
                body += 4
        if fmt < 3 and length > MAX_MESSAGE_BYTES:
            raise RtmpProtocolError(f"message of {length} bytes exceeds {MAX_MESSAGE_BYTES}")

        if stream is None:
            stream = self._streams[csid] = _RtmpChunkStream()
        timestamp = extended_value if extended else field
        if fmt == 0:
            # RTMP 5.3.1.2.4: after a type 0 header, a type 3 header that
            # starts a new message adds the type 0 timestamp once more.
            stream.timestamp = stream.delta = timestamp
            stream.message_stream_id = message_stream_id
        elif fmt < 3:
            stream.delta = timestamp
            stream.timestamp = (stream.timestamp + timestamp) & _TIMESTAMP_MASK
        elif not continuation:
            if extended:
                stream.delta = timestamp
            stream.timestamp = (stream.timestamp + stream.delta) & _TIMESTAMP_MASK
        if fmt < 2:
            stream.length = length
            stream.message_type = message_type
        if fmt < 3:
            stream.extended = extended
            stream.extended_value = extended_value
        elif extended and not continuation:
            stream.extended_value = extended_value
        if not continuation:
            stream.remaining = stream.length
        self._offset = body
        self._current = stream
        self._current_id = csid
        self._chunk_left = min(self.chunk_size, stream.remaining)
        return True

    def _read_payload(self) -> RtmpMessage | None:
        """Take what has arrived of the current chunk's payload; the message
        if that completed it."""
        stream = self._current
        start = self._offset
        size = min(len(self._buf) - start, self._chunk_left)
        payload = None
        if size or not stream.length:
            with memoryview(self._buf) as view:
                if stream.partial is None and size == stream.length:
                    payload = bytes(view[start : start + size])  # the whole message in one piece
                else:
                    if self._partial_bytes + size > self.max_buffered_bytes:
                        raise self._over_limit()
                    if self._budget is not None:
                        self._budget.charge(size)
                    if stream.partial is None:
                        stream.partial = bytearray()
                    stream.partial += view[start : start + size]
                    self._partial_bytes += size
        self._offset = start + size
        self._chunk_left -= size
        stream.remaining -= size
        if not self._chunk_left:
            self._current = None
        if stream.remaining:
            return None
        if payload is None:
            payload = bytes(stream.partial)
            self._drop_partial(stream)
        return RtmpMessage(self._current_id, stream.message_type, stream.message_stream_id, stream.timestamp, payload)


def _basic_header(fmt: int, chunk_stream_id: int) -> bytes:
    if chunk_stream_id < 64:
        return bytes((fmt << 6 | chunk_stream_id,))
    if chunk_stream_id < 320:
        return bytes((fmt << 6, chunk_stream_id - 64))
    rest = chunk_stream_id - 64
    return bytes((fmt << 6 | 1, rest & 0xFF, rest >> 8))


def _encode_chunks(
    fmt: int,
    chunk_stream_id: int,
    timestamp: int,
    extended: bool,
    message_type: int,
    message_stream_id: int,
    payload: bytes | bytearray | memoryview,
    chunk_size: int,
    repeat_extended: bool = True,
) -> bytes:
    """One message as chunks. `timestamp` is what the header carries: the
    absolute time for type 0, the delta for the others."""
    if not MIN_CHUNK_STREAM_ID <= chunk_stream_id <= MAX_CHUNK_STREAM_ID:
        raise ValueError(f"chunk stream id {chunk_stream_id} is outside 2..65599")
    if chunk_size < 1:
        raise ValueError(f"chunk size {chunk_size} must be positive")
    size = len(payload)
    if size > MAX_MESSAGE_LENGTH_FIELD:
        raise ValueError(f"a message of {size} bytes does not fit the 24-bit length field")
    field = _EXTENDED_TIMESTAMP if extended else timestamp
    parts = [_basic_header(fmt, chunk_stream_id)]
    if fmt <= 1:
        parts.append(_HEADER_0_1.pack(field >> 8, field & 0xFF, size >> 8, size & 0xFF, message_type))
        if fmt == 0:
            parts.append(_STREAM_ID.pack(message_stream_id))
    elif fmt == 2:
        parts.append(_HEADER_2.pack(field >> 8, field & 0xFF))
    extended_bytes = _UINT32.pack(timestamp) if extended else b""
    parts.append(extended_bytes)
    if size <= chunk_size:
        parts.append(payload)
        return b"".join(parts)
    continuation = _basic_header(3, chunk_stream_id) + (extended_bytes if repeat_extended else b"")
    view = memoryview(payload)
    parts.append(view[:chunk_size])
    for start in range(chunk_size, size, chunk_size):
        parts.append(continuation)
        parts.append(view[start : start + chunk_size])
    return b"".join(parts)


def encode_media_message(
    chunk_stream_id: int,
    message_type: int,
    message_stream_id: int,
    timestamp: int,
    payload: bytes | bytearray | memoryview,
    chunk_size: int,
) -> bytes:
    """One message as a type 0 chunk and type 3 continuations, with the
    extended timestamp (RTMP 5.3.1.3) when the time is 0xFFFFFF or more,
    repeated on every continuation chunk as FFmpeg and Flash expect.

    Nothing here depends on the connection but `chunk_size` (its
    `out_chunk_size`), so the bytes can be shared by every connection with
    the same message stream id and chunk size."""
    timestamp &= _TIMESTAMP_MASK
    return _encode_chunks(
        0,
        chunk_stream_id,
        timestamp,
        timestamp >= _EXTENDED_TIMESTAMP,
        message_type,
        message_stream_id,
        payload,
        chunk_size,
    )


def take_output(out: list[bytes]) -> bytes:
    """What a connection has queued to send, joined, and the queue emptied."""
    if not out:
        return b""
    data = out[0] if len(out) == 1 else b"".join(out)
    out.clear()
    return data


class RtmpChunkWriter:
    """Writes messages with the smallest header each chunk stream's previous
    message allows (types 0 to 3, RTMP 5.3.1.2), as a client does.

    Our server writes type 0 headers only (`encode_media_message`), so its
    bytes do not depend on what it sent before; this is the writer for the
    client side: tests, and pushing a stream to another server.
    """

    def __init__(self, chunk_size: int = DEFAULT_CHUNK_SIZE_BYTES, repeat_extended_timestamp: bool = True) -> None:
        self.chunk_size = chunk_size
        self.repeat_extended_timestamp = repeat_extended_timestamp
        # chunk stream id -> (message stream id, timestamp, delta, length, type)
        self._last: dict[int, tuple[int, int, int, int, int]] = {}

    def write(
        self,
        chunk_stream_id: int,
        message_type: int,
        message_stream_id: int,
        timestamp: int,
        payload: bytes,
        fmt: int | None = None,
    ) -> bytes:
        """Encode one message; `fmt` forces a header type (for tests)."""
        timestamp &= _TIMESTAMP_MASK
        last = self._last.get(chunk_stream_id)
        if last is None:
            if fmt not in (None, 0, 1):
                raise ValueError("the first message on a chunk stream needs a type 0 or 1 header")
            last = (0, 0, 0, -1, -1)
        last_stream_id, last_timestamp, last_delta, last_length, last_type = last
        delta = (timestamp - last_timestamp) & _TIMESTAMP_MASK
        if fmt is None:
            if chunk_stream_id not in self._last or message_stream_id != last_stream_id or timestamp < last_timestamp:
                fmt = 0
            elif len(payload) != last_length or message_type != last_type:
                fmt = 1
            elif delta != last_delta:
                fmt = 2
            else:
                fmt = 3
        if fmt == 0:
            value = delta = timestamp
        else:
            if fmt >= 2 and (len(payload) != last_length or message_type != last_type):
                raise ValueError(f"a type {fmt} header needs the same length and type as before")
            if fmt == 3 and delta != last_delta:
                raise ValueError("a type 3 header needs the same delta as before")
            value = delta
        if fmt == 3:
            # The extended timestamp's presence on a type 3 chunk follows the
            # chunk stream's last type 0-2 header, whose delta this repeats.
            extended = delta >= _EXTENDED_TIMESTAMP
        else:
            extended = value >= _EXTENDED_TIMESTAMP
        data = _encode_chunks(
            fmt,
            chunk_stream_id,
            value,
            extended,
            message_type,
            message_stream_id,
            payload,
            self.chunk_size,
            self.repeat_extended_timestamp,
        )
        if fmt != 0:
            message_stream_id = last_stream_id
        self._last[chunk_stream_id] = (message_stream_id, timestamp, delta, len(payload), message_type)
        return data
