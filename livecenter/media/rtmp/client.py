"""An RTMP client connection, sans-IO: the other end of `RtmpServerConnection`.

    conn = RtmpClientConnection("live", "rtmp://center:1935/live", "s?k=v", publish=True)
    transport.write(conn.data_to_send())           # C0 + C1
    events = conn.receive_data(data)               # b"" at end of input
    ... PublishStarted -> conn.send_video(ts, body) / send_audio / send_metadata
    ... PlayStarted    -> VideoReceived / AudioReceived / MetadataReceived follow
    conn.close_stream(); transport.write(conn.data_to_send())

It is what a node uses to push a stream to another node (edge ingest
relayed to the live center) and to pull one from it. It runs the simple
handshake (RTMP 5.2), `connect`, then `releaseStream`/`FCPublish`/
`createStream`/`publish` as OBS and FFmpeg do, or `createStream`/`play`;
it answers pings, acknowledges by the server's window, and follows the
server's chunk size. A refusal (`_error`, or an `onStatus` of level
"error") is a `Refused` event naming the server's code and description.
Bad input raises `RtmpProtocolError`, and from then on every call but
`data_to_send` raises it again. It never touches a socket or a clock.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from .. import amf0
from .chunk import MAX_BUFFERED_BYTES, RtmpChunkReader, RtmpChunkWriter, RtmpMessage, RtmpMessageType
from .errors import RtmpProtocolError, RtmpUsageError
from .events import AudioReceived, MetadataReceived, PeerClosed, VideoReceived
from .handshake import HANDSHAKE_PACKET_BYTES, RTMP_VERSION
from .messages import (
    AUDIO_CHUNK_STREAM_ID,
    COMMAND_CHUNK_STREAM_ID,
    DATA_CHUNK_STREAM_ID,
    PROTOCOL_CONTROL_CHUNK_STREAM_ID,
    VIDEO_CHUNK_STREAM_ID,
    RtmpUserControlEvent,
    command_payload,
    decode_command,
    split_aggregate,
    uint32_payload,
    user_control_payload,
)

# What we announce with Set Chunk Size once connected: a frame in a few chunks.
CLIENT_CHUNK_SIZE_BYTES = 4096
# Until it has answered `connect`, the server has only commands to send.
MAX_BUFFERED_BYTES_BEFORE_CONNECTED = 64 * 1024
_TIMESTAMP_MASK = 0xFFFFFFFF
# The message stream we ask to play or publish on, from createStream's answer.
_MAX_STREAM_ID = 0xFFFFFF

_START_CODE = {True: "NetStream.Publish.Start", False: "NetStream.Play.Start"}
_PLAY_END_CODES = ("NetStream.Play.UnpublishNotify", "NetStream.Play.Stop")
_CONNECT_TRANSACTION = 1.0
_CREATE_STREAM_TRANSACTION = 4.0


class _State(Enum):
    HANDSHAKE = "handshake"
    CONNECTING = "connecting"  # connect sent, waiting for its _result
    CREATING = "creating"  # createStream sent
    STARTING = "starting"  # publish or play sent, waiting for onStatus
    STARTED = "started"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Connected:
    """The server accepted `connect`."""

    properties: dict


@dataclass(frozen=True, slots=True)
class PublishStarted:
    """NetStream.Publish.Start: send media from now on."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class PlayStarted:
    """NetStream.Play.Start: media events follow."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class Refused:
    """The server refused `connect`, `createStream`, `publish` or `play`,
    or ended what it had started (NetStream.Play.Stop, UnpublishNotify,
    NetStream.Publish.BadName …): `code` and `description` are its words."""

    code: str
    description: str


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """A played stream ended (NetStream.Play.UnpublishNotify or
    NetStream.Play.Stop, or User Control Stream EOF)."""

    code: str


ClientEvent = (
    Connected | PublishStarted | PlayStarted | Refused | StreamEnded | MetadataReceived | VideoReceived
    | AudioReceived | PeerClosed
)  # fmt: skip


class RtmpClientConnection:
    """One connection to a server, to publish (`publish=True`) or to play
    `stream` (the name with its query, e.g. "s?auth_key=…") in `app`."""

    def __init__(
        self,
        app: str,
        tc_url: str,
        stream: str,
        *,
        publish: bool,
        random_bytes: Callable[[int], bytes] = os.urandom,
        max_buffered_bytes: int = MAX_BUFFERED_BYTES,
        flash_version: str = "FMLE/3.0 (compatible; LiveCenter)",
    ) -> None:
        self.app = app
        self.tc_url = tc_url
        self.stream = stream
        self.publish = publish
        self._flash_version = flash_version
        self._state = _State.HANDSHAKE
        self._handshake_buf = bytearray()
        self._max_buffered_bytes = max_buffered_bytes
        self._reader = RtmpChunkReader(min(MAX_BUFFERED_BYTES_BEFORE_CONNECTED, max_buffered_bytes))
        self._writer = RtmpChunkWriter()
        self._out: list[bytes] = []
        self._error: RtmpProtocolError | None = None
        self._ended = False
        self._stream_id = 0
        self._bytes_received = 0
        self._bytes_acknowledged = 0
        self._window_bytes = 0  # 0 until the server sets one: no acknowledgements
        # RTMP 5.2.2, 5.2.3: C0 (version) and C1 (time, zero, random).
        noise = random_bytes(HANDSHAKE_PACKET_BYTES - 8)
        if len(noise) != HANDSHAKE_PACKET_BYTES - 8:
            raise ValueError(f"random_bytes({HANDSHAKE_PACKET_BYTES - 8}) returned {len(noise)} bytes")
        self._out.append(bytes((RTMP_VERSION,)) + bytes(8) + noise)

    # --- state ---------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Publishing or playing."""
        return self._state is _State.STARTED

    @property
    def stream_id(self) -> int:
        return self._stream_id

    @property
    def bytes_received(self) -> int:
        return self._bytes_received

    @property
    def buffered_bytes(self) -> int:
        return len(self._handshake_buf) + self._reader.buffered_bytes

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    # --- input ---------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[ClientEvent]:
        """Take the server's bytes (b"" at end of input); return what they caused."""
        self._check()
        if self._ended:
            raise RtmpUsageError("receive_data after the end of input")
        if not data:
            self._ended = True
            self._state = _State.CLOSED
            self._reader.close()
            return [PeerClosed()]
        events: list[ClientEvent] = []
        try:
            self._bytes_received += len(data)
            if self._state is _State.HANDSHAKE:
                data = self._receive_handshake(data)
            if data:
                self._reader.feed(data)
                while (message := self._reader.next_message()) is not None:
                    self._on_message(message, events)
            self._acknowledge()
        except RtmpProtocolError as exc:
            self._error = exc
            self._reader.close()
            raise
        return events

    def _receive_handshake(self, data: bytes | bytearray | memoryview) -> bytes:
        """S0, S1 and S2; then C2 (S1 echoed), Set Chunk Size and connect go out."""
        buf = self._handshake_buf
        buf += data
        need = 1 + 2 * HANDSHAKE_PACKET_BYTES
        if len(buf) < need:
            return b""
        if buf[0] != RTMP_VERSION:
            raise RtmpProtocolError(f"the server answered RTMP version {buf[0]}")
        s1 = bytes(buf[1 : 1 + HANDSHAKE_PACKET_BYTES])
        rest = bytes(buf[need:])
        buf.clear()
        self._out.append(s1)  # C2
        self._send_control(RtmpMessageType.SET_CHUNK_SIZE, uint32_payload(CLIENT_CHUNK_SIZE_BYTES))
        self._writer.chunk_size = CLIENT_CHUNK_SIZE_BYTES
        command_object = {
            "app": self.app,
            "type": "nonprivate",
            "flashVer": self._flash_version,
            "tcUrl": self.tc_url,
        }
        if not self.publish:
            command_object.update({"fpad": False, "capabilities": 15.0, "audioCodecs": 4071.0, "videoCodecs": 252.0})
        self._send_command(0, "connect", _CONNECT_TRANSACTION, command_object)
        self._state = _State.CONNECTING
        return rest

    def _acknowledge(self) -> None:
        """RTMP 5.4.3: tell the server what we have received, each window."""
        if self._window_bytes and self._bytes_received - self._bytes_acknowledged >= self._window_bytes:
            self._bytes_acknowledged = self._bytes_received
            self._send_control(RtmpMessageType.ACKNOWLEDGEMENT, uint32_payload(self._bytes_received))

    def _on_message(self, message: RtmpMessage, events: list[ClientEvent]) -> None:
        kind = message.message_type
        if kind == RtmpMessageType.SET_CHUNK_SIZE:
            size = _uint32(message, "Set Chunk Size") & 0x7FFFFFFF
            try:
                self._reader.set_chunk_size(size)
            except ValueError as exc:
                raise RtmpProtocolError(str(exc)) from None
        elif kind == RtmpMessageType.ABORT:
            self._reader.abort(_uint32(message, "Abort"))
        elif kind == RtmpMessageType.WINDOW_ACKNOWLEDGEMENT_SIZE:
            self._window_bytes = _uint32(message, "Window Acknowledgement Size")
        elif kind == RtmpMessageType.SET_PEER_BANDWIDTH:
            # 5.4.5: a client answers with its own window when it changes.
            window = _uint32(message, "Set Peer Bandwidth")
            self._send_control(RtmpMessageType.WINDOW_ACKNOWLEDGEMENT_SIZE, uint32_payload(window))
        elif kind == RtmpMessageType.USER_CONTROL:
            self._on_user_control(message, events)
        elif kind in (RtmpMessageType.COMMAND_AMF0, RtmpMessageType.COMMAND_AMF3):
            self._on_command(message, events)
        elif kind in (RtmpMessageType.AUDIO, RtmpMessageType.VIDEO, RtmpMessageType.DATA_AMF0):
            self._on_media(message, events)
        elif kind == RtmpMessageType.AGGREGATE:
            for part in split_aggregate(message):
                self._on_media(part, events)
        # Acknowledgements and shared objects need nothing from a client.

    def _on_user_control(self, message: RtmpMessage, events: list[ClientEvent]) -> None:
        if len(message.payload) < 6:
            raise RtmpProtocolError(f"truncated User Control message ({len(message.payload)} bytes)")
        event, value = struct.unpack_from(">HI", message.payload)
        if event == RtmpUserControlEvent.PING_REQUEST:
            pong = user_control_payload(RtmpUserControlEvent.PING_RESPONSE, value)
            self._send_control(RtmpMessageType.USER_CONTROL, pong)
        elif event == RtmpUserControlEvent.STREAM_EOF and not self.publish and value == self._stream_id:
            if self._state is _State.STARTED:
                self._state = _State.CLOSED
                events.append(StreamEnded("StreamEOF"))

    def _on_media(self, message: RtmpMessage, events: list[ClientEvent]) -> None:
        if self.publish or self._state is not _State.STARTED or message.message_stream_id != self._stream_id:
            return
        if not message.payload:
            return
        if message.message_type == RtmpMessageType.VIDEO:
            events.append(VideoReceived(message.message_stream_id, message.timestamp, message.payload))
        elif message.message_type == RtmpMessageType.AUDIO:
            events.append(AudioReceived(message.message_stream_id, message.timestamp, message.payload))
        else:
            try:
                values = amf0.decode_all(message.payload)
            except amf0.AmfError:
                return
            if values and values[0] == "@setDataFrame":
                values = values[1:]
            if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
                payload = amf0.encode("onMetaData", values[1])
                events.append(MetadataReceived(message.message_stream_id, message.timestamp, values[1], payload))

    def _on_command(self, message: RtmpMessage, events: list[ClientEvent]) -> None:
        values = decode_command(message)
        if values is None:
            return
        name = values[0]
        transaction = values[1] if len(values) > 1 and isinstance(values[1], float) else 0.0
        info = next((v for v in reversed(values[2:]) if isinstance(v, dict)), {})
        if name == "_result":
            self._on_result(transaction, values, info, events)
        elif name == "_error":
            self._refuse(info, events, "_error")
        elif name == "onStatus":
            self._on_status(info, events)
        # onBWDone, onFCPublish, |RtmpSampleAccess …: nothing to do.

    def _on_result(self, transaction: float, values: list, info: dict, events: list[ClientEvent]) -> None:
        if transaction == _CONNECT_TRANSACTION and self._state is _State.CONNECTING:
            properties = values[2] if len(values) > 2 and isinstance(values[2], dict) else {}
            events.append(Connected(properties))
            self._reader.set_buffer_limit(self._max_buffered_bytes)
            if self.publish:
                name = self.stream
                self._send_command(0, "releaseStream", 2.0, None, name)
                self._send_command(0, "FCPublish", 3.0, None, name)
            self._send_command(0, "createStream", _CREATE_STREAM_TRANSACTION, None)
            self._state = _State.CREATING
        elif transaction == _CREATE_STREAM_TRANSACTION and self._state is _State.CREATING:
            stream_id = values[3] if len(values) > 3 else None
            if not isinstance(stream_id, float) or not 0 < stream_id <= _MAX_STREAM_ID or stream_id != int(stream_id):
                raise RtmpProtocolError(f"createStream answered with stream id {stream_id!r}")
            self._stream_id = int(stream_id)
            if self.publish:
                self._send_command(self._stream_id, "publish", 5.0, None, self.stream, "live")
            else:
                self._send_command(self._stream_id, "play", 5.0, None, self.stream, -2000.0)
                self._send_control(
                    RtmpMessageType.USER_CONTROL,
                    struct.pack(">HII", RtmpUserControlEvent.SET_BUFFER_LENGTH, self._stream_id, 0),
                )
            self._state = _State.STARTING

    def _on_status(self, info: dict, events: list[ClientEvent]) -> None:
        code = str(info.get("code", ""))
        level = str(info.get("level", ""))
        if level == "error":
            self._refuse(info, events, "onStatus")
        elif self._state is _State.STARTING and code == _START_CODE[self.publish]:
            self._state = _State.STARTED
            events.append(PublishStarted(self._stream_id) if self.publish else PlayStarted(self._stream_id))
        elif self._state is _State.STARTED and not self.publish and code in _PLAY_END_CODES:
            self._state = _State.CLOSED
            events.append(StreamEnded(code))

    def _refuse(self, info: dict, events: list[ClientEvent], default_code: str) -> None:
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        code = info.get("code")
        description = info.get("description")
        events.append(
            Refused(
                code if isinstance(code, str) else default_code,
                description[:512] if isinstance(description, str) else "",
            )
        )

    # --- output --------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """The bytes to write to the server, once each; works after an error too."""
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def _send(self, chunk_stream_id: int, message_type: int, stream_id: int, timestamp: int, payload: bytes) -> None:
        chunks = self._writer.write(chunk_stream_id, message_type, stream_id, timestamp & _TIMESTAMP_MASK, payload)
        self._out.append(chunks)

    def _send_control(self, message_type: int, payload: bytes) -> None:
        self._send(PROTOCOL_CONTROL_CHUNK_STREAM_ID, message_type, 0, 0, payload)

    def _send_command(self, stream_id: int, name: str, transaction_id: float, *values: object) -> None:
        chunk_stream_id = COMMAND_CHUNK_STREAM_ID if stream_id == 0 else DATA_CHUNK_STREAM_ID
        payload = command_payload(name, transaction_id, *values)
        self._send(chunk_stream_id, RtmpMessageType.COMMAND_AMF0, stream_id, 0, payload)

    def _media(self, chunk_stream_id: int, message_type: int, timestamp: int, body: bytes) -> None:
        self._check()
        if not self.publish or self._state is not _State.STARTED:
            raise RtmpUsageError("media before NetStream.Publish.Start (or on a playing connection)")
        self._send(chunk_stream_id, message_type, self._stream_id, timestamp, body)

    def send_video(self, timestamp: int, body: bytes) -> None:
        """An FLV video tag body at `timestamp` milliseconds."""
        self._media(VIDEO_CHUNK_STREAM_ID, RtmpMessageType.VIDEO, timestamp, body)

    def send_audio(self, timestamp: int, body: bytes) -> None:
        self._media(AUDIO_CHUNK_STREAM_ID, RtmpMessageType.AUDIO, timestamp, body)

    def send_metadata(self, timestamp: int, payload: bytes) -> None:
        """`payload` is AMF0 ("onMetaData", {...}), an FLV script tag body;
        it goes out as @setDataFrame as encoders send it."""
        self._media(DATA_CHUNK_STREAM_ID, RtmpMessageType.DATA_AMF0, timestamp, amf0.encode("@setDataFrame") + payload)

    def close_stream(self) -> None:
        """Say goodbye as OBS does (FCUnpublish, deleteStream); close the socket after."""
        self._check()
        if self._stream_id and self._state in (_State.STARTING, _State.STARTED):
            if self.publish:
                self._send_command(0, "FCUnpublish", 6.0, None, self.stream)
            self._send_command(0, "deleteStream", 7.0, None, float(self._stream_id))
        self._state = _State.CLOSED


def _uint32(message: RtmpMessage, what: str) -> int:
    if len(message.payload) < 4:
        raise RtmpProtocolError(f"truncated {what} message ({len(message.payload)} bytes)")
    return int.from_bytes(message.payload[:4], "big")
