"""Payloads of the RTMP messages a server sends and reads besides media:
protocol control (RTMP 5.4), user control (RTMP 6.2, 7.1.7) and the
NetConnection/NetStream commands (RTMP 7.2), and the chunk stream ids we
send them on."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from enum import IntEnum
from urllib.parse import parse_qsl

from .. import amf0
from ..flv import PREVIOUS_TAG_SIZE_BYTES, TAG_HEADER_BYTES, parse_tag_header
from .chunk import RtmpMessage, RtmpMessageType
from .errors import RtmpProtocolError

# Chunk stream ids for what we send. RTMP 5.4 puts protocol control on 2;
# the rest follow nginx-rtmp and SRS so captures read familiarly. Every
# message we send has a type 0 header, so sharing one id is harmless.
PROTOCOL_CONTROL_CHUNK_STREAM_ID = 2
COMMAND_CHUNK_STREAM_ID = 3  # NetConnection commands, message stream 0
AUDIO_CHUNK_STREAM_ID = 4
DATA_CHUNK_STREAM_ID = 5  # NetStream commands (onStatus) and data (metadata)
VIDEO_CHUNK_STREAM_ID = 6

_UINT32 = struct.Struct(">I")


class RtmpUserControlEvent(IntEnum):
    """RTMP 7.1.7: User Control event types."""

    STREAM_BEGIN = 0
    STREAM_EOF = 1
    STREAM_DRY = 2
    SET_BUFFER_LENGTH = 3
    STREAM_IS_RECORDED = 4
    PING_REQUEST = 6
    PING_RESPONSE = 7


class RtmpPeerBandwidthLimit(IntEnum):
    """RTMP 5.4.5: Set Peer Bandwidth limit types."""

    HARD = 0
    SOFT = 1
    DYNAMIC = 2


def uint32_payload(value: int) -> bytes:
    """Set Chunk Size, Abort, Acknowledgement, Window Acknowledgement Size."""
    return _UINT32.pack(value & 0xFFFFFFFF)


def set_peer_bandwidth_payload(window_bytes: int, limit: RtmpPeerBandwidthLimit) -> bytes:
    return struct.pack(">IB", window_bytes, limit)


def user_control_payload(event: RtmpUserControlEvent, value: int) -> bytes:
    """Stream Begin/EOF/Dry/Is Recorded carry a stream id, pings a timestamp."""
    return struct.pack(">HI", event, value & 0xFFFFFFFF)


def command_payload(name: str, transaction_id: float, *values: object) -> bytes:
    return amf0.encode(name, float(transaction_id), *values)


def status_info(level: str, code: str, description: str, details: str | None = None) -> dict:
    """The info object of `onStatus`, `_result` and `_error` (RTMP 7.2)."""
    info = {"level": level, "code": code, "description": description}
    if details is not None:
        info["details"] = details
    return info


def split_stream_name(name: str) -> tuple[str, dict[str, str]]:
    """`s?auth_key=1-0-0-ab&domain=x` -> ("s", {"auth_key": "1-0-0-ab", "domain": "x"})."""
    stream_name, _, query = name.partition("?")
    return stream_name, dict(parse_qsl(query, keep_blank_values=True))


_TIMESTAMP_MASK = 0xFFFFFFFF
_AGGREGATED_TYPES = (RtmpMessageType.AUDIO, RtmpMessageType.VIDEO, RtmpMessageType.DATA_AMF0)


def split_aggregate(message: RtmpMessage) -> Iterator[RtmpMessage]:
    """RTMP 7.1.6: the audio, video and data messages in an aggregate (FLV
    tags whose times are relative to the first one's, which the message's
    own timestamp replaces); other tag types are left out. Raises
    RtmpProtocolError when a tag runs past the end."""
    data = message.payload
    end = len(data)
    pos = 0
    first = None
    while pos < end:
        if end - pos < TAG_HEADER_BYTES:
            raise RtmpProtocolError("truncated aggregate message")
        kind, size, tag_time = parse_tag_header(data, pos)
        body = pos + TAG_HEADER_BYTES
        body_end = body + size
        if body_end + PREVIOUS_TAG_SIZE_BYTES > end:
            raise RtmpProtocolError("truncated aggregate message")
        if first is None:
            first = tag_time
        if kind in _AGGREGATED_TYPES:
            timestamp = (message.timestamp + tag_time - first) & _TIMESTAMP_MASK
            yield RtmpMessage(message.chunk_stream_id, kind, message.message_stream_id, timestamp, data[body:body_end])
        pos = body_end + PREVIOUS_TAG_SIZE_BYTES


def decode_command(message: RtmpMessage) -> list | None:
    """The AMF0 values of a command message, name first; None for an AMF3
    command that is not AMF0 inside (its format byte is not 0: nobody
    sends those). Raises RtmpProtocolError for bad AMF0 or no name."""
    body = message.payload
    if message.message_type in (RtmpMessageType.DATA_AMF3, RtmpMessageType.COMMAND_AMF3):
        if not body or body[0] != 0:
            return None
        body = memoryview(body)[1:]
    try:
        values = amf0.decode_all(body)
    except amf0.AmfError as exc:
        raise RtmpProtocolError(f"bad AMF0 in a command: {exc}") from None
    if not values or not isinstance(values[0], str):
        raise RtmpProtocolError("a command message without a command name")
    return values
