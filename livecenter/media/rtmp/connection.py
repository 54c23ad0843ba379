"""An RTMP server connection, sans-IO (in the manner of h11 and aioquic).

    conn = RtmpServerConnection()
    events = conn.receive_data(data)     # b"" at end of input
    ... conn.accept_connect(event) / accept_publish(...) / send_video(...)
    transport.write(conn.data_to_send())

It never touches a socket or a clock. It answers what needs no decision by
itself (handshake, pings, acknowledgements, releaseStream, FCPublish,
FCUnpublish, createStream) and leaves connect, publish and play to its
caller, who answers after asking the policy. Bad input raises
`RtmpProtocolError`; from then on every call but `data_to_send` raises it
again.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Callable
from enum import Enum

from .. import amf0
from .chunk import (
    DEFAULT_CHUNK_SIZE_BYTES,
    MAX_BUFFERED_BYTES,
    MAX_BUFFERED_BYTES_BEFORE_PUBLISH,
    RtmpBufferBudget,
    RtmpChunkReader,
    RtmpMessage,
    RtmpMessageType,
    encode_media_message,
)
from .errors import RtmpProtocolError, RtmpUsageError
from .events import (
    AcknowledgementReceived,
    AudioReceived,
    CloseStreamRequested,
    ConnectRequested,
    DeleteStreamRequested,
    Event,
    FCPublishRequested,
    FCUnpublishRequested,
    HandshakeCompleted,
    MetadataReceived,
    PeerClosed,
    PingResponded,
    PlayRequested,
    PublishRequested,
    ReleaseStreamRequested,
    StreamCreated,
    UnpublishRequested,
    VideoReceived,
)
from .handshake import HANDSHAKE_PACKET_BYTES, check_client_version, server_handshake_reply
from .messages import (
    AUDIO_CHUNK_STREAM_ID,
    COMMAND_CHUNK_STREAM_ID,
    DATA_CHUNK_STREAM_ID,
    PROTOCOL_CONTROL_CHUNK_STREAM_ID,
    VIDEO_CHUNK_STREAM_ID,
    RtmpPeerBandwidthLimit,
    RtmpUserControlEvent,
    command_payload,
    decode_command,
    set_peer_bandwidth_payload,
    split_aggregate,
    split_stream_name,
    status_info,
    uint32_payload,
    user_control_payload,
)

# What we announce with Set Chunk Size when we accept a connect: large enough
# that a frame is a few chunks, what OBS and FFmpeg use themselves.
OUR_CHUNK_SIZE_BYTES = 4096
# RTMP 5.4.4, 5.4.5: the window after which the peer should acknowledge, and
# the bandwidth we grant it; the values FMS and SRS send.
OUR_WINDOW_ACKNOWLEDGEMENT_SIZE_BYTES = 2_500_000
OUR_PEER_BANDWIDTH_BYTES = 2_500_000
# Message streams (createStream) open at once on one connection: a publisher
# or a player uses one; each costs a little state.
MAX_OPEN_STREAMS = 16

# What the connect `_result` says about the server (FMS's values, which
# clients that look at them understand).
_SERVER_PROPERTIES = {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0}
_TIMESTAMP_MASK = 0xFFFFFFFF


class _StreamState(Enum):
    IDLE = "idle"
    PUBLISH_REQUESTED = "waiting for a publish answer"
    PUBLISHING = "publishing"
    PLAY_REQUESTED = "waiting for a play answer"
    PLAYING = "playing"


# Media and UnpublishRequested follow a publish request whether or not it has
# been answered yet, so that the events depend on the peer's bytes alone, not
# on when the caller answered; the caller drops media it has not accepted.
_PUBLISH_STATES = frozenset((_StreamState.PUBLISH_REQUESTED, _StreamState.PUBLISHING))


class _ConnectState(Enum):
    WAITING = "waiting for connect"
    REQUESTED = "waiting for a connect answer"
    ACCEPTED = "connected"
    REJECTED = "rejected"


class _RtmpStream:
    """A message stream the peer created (createStream)."""

    __slots__ = ("state", "name", "stream_name")

    def __init__(self) -> None:
        self.state = _StreamState.IDLE
        self.name = ""
        self.stream_name = ""


def _stream_id_value(value: object) -> int | None:
    """A message stream id sent as an AMF0 number, or None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value != int(value) or not 0 < value <= _TIMESTAMP_MASK:
        return None
    return int(value)


_BEFORE_PUBLISH = " before a publish request"


class RtmpServerConnection:
    """One peer's connection. Until the peer asks to publish it holds at
    most `max_buffered_bytes_before_publish` of incomplete messages (it has
    shown no signature: commands are small), then `max_buffered_bytes`;
    with a `budget`
    (shared by a node's connections) it also holds no more than the budget
    has left. `close()` gives back what it holds."""

    def __init__(
        self,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
        max_buffered_bytes: int = MAX_BUFFERED_BYTES,
        max_buffered_bytes_before_publish: int = MAX_BUFFERED_BYTES_BEFORE_PUBLISH,
        budget: RtmpBufferBudget | None = None,
    ) -> None:
        self._random_bytes = random_bytes
        self._handshake_stage = 0  # 0: waiting for C0+C1, 1: for C2, 2: done
        self._handshake_buf = bytearray()
        self._max_buffered_bytes = max_buffered_bytes
        self._reader = RtmpChunkReader(min(max_buffered_bytes_before_publish, max_buffered_bytes), budget)
        self._reader.set_buffer_limit(self._reader.max_buffered_bytes, _BEFORE_PUBLISH)
        self._out: list[bytes] = []
        self._out_chunk_size = DEFAULT_CHUNK_SIZE_BYTES
        self._error: RtmpProtocolError | None = None
        self._ended = False
        self._connect = _ConnectState.WAITING
        self._streams: dict[int, _RtmpStream] = {}
        self._last_stream_id = 0
        self._bytes_received = 0
        self._bytes_acknowledged = 0
        self._peer_window_bytes = 0  # 0 until the peer sets one: no acknowledgements
        self.dropped_messages = 0  # messages we had no use for (unknown types, media of no stream)

    # --- state the caller may read ---------------------------------------------------

    @property
    def out_chunk_size(self) -> int:
        """The chunk size of what we send; pass it to `encode_media_message`
        for bytes to hand to `send_raw`."""
        return self._out_chunk_size

    @property
    def peer_chunk_size(self) -> int:
        return self._reader.chunk_size

    @property
    def buffered_bytes(self) -> int:
        """Bytes of the peer's input held that are not events yet; past the
        handshake, at most `max_buffered_bytes` (before a publish request,
        `max_buffered_bytes_before_publish`)."""
        return len(self._handshake_buf) + self._reader.buffered_bytes

    @property
    def handshake_complete(self) -> bool:
        return self._handshake_stage == 2

    def close(self) -> None:
        """Drop what is held of incomplete messages and give it back to the
        budget. Call it when the socket closes, however it closed."""
        self._reader.close()

    @property
    def bytes_received(self) -> int:
        return self._bytes_received

    # --- input -------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Take bytes from the peer (b"" at end of input); return what they
        caused. Raises RtmpProtocolError on bad input; the events of that
        call before the bad bytes are not returned."""
        self._check()
        if self._ended:
            raise RtmpUsageError("receive_data after the end of input")
        if not data:
            self._ended = True
            self._reader.close()
            return [PeerClosed()]
        events: list[Event] = []
        try:
            self._bytes_received += len(data)
            if self._handshake_stage < 2:
                data = self._receive_handshake(data, events)
            if data:
                self._reader.feed(data)
                while (message := self._reader.next_message()) is not None:
                    handler = self._MESSAGE_HANDLERS.get(message.message_type)
                    if handler is None:
                        self.dropped_messages += 1
                    else:
                        handler(self, message, events)
            self._acknowledge()
        except RtmpProtocolError as exc:
            self._error = exc
            self._reader.close()
            raise
        return events

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def _receive_handshake(self, data: bytes | bytearray | memoryview, events: list[Event]) -> bytes:
        """Consume C0, C1 and C2; return the input that follows them."""
        buf = self._handshake_buf
        buf += data
        if self._handshake_stage == 0:
            check_client_version(buf[0])
            if len(buf) < 1 + HANDSHAKE_PACKET_BYTES:
                return b""
            c1 = bytes(buf[1 : 1 + HANDSHAKE_PACKET_BYTES])
            self._out.append(server_handshake_reply(c1, self._random_bytes))
            del buf[: 1 + HANDSHAKE_PACKET_BYTES]
            self._handshake_stage = 1
        if len(buf) < HANDSHAKE_PACKET_BYTES:
            return b""
        # C2 echoes our S1 (or, from complex-handshake clients, carries a
        # digest of it); nothing in it matters to us.
        rest = bytes(buf[HANDSHAKE_PACKET_BYTES:])
        self._handshake_buf = bytearray()
        self._handshake_stage = 2
        events.append(HandshakeCompleted())
        return rest

    def _acknowledge(self) -> None:
        # RTMP 5.4.3: acknowledge once the peer's window has been received.
        window = self._peer_window_bytes
        if window and self._bytes_received - self._bytes_acknowledged >= window:
            self._bytes_acknowledged = self._bytes_received
            self._send_control(RtmpMessageType.ACKNOWLEDGEMENT, uint32_payload(self._bytes_received))

    # --- protocol control and user control -------------------------------------------

    @staticmethod
    def _uint32(message: RtmpMessage, what: str, offset: int = 0) -> int:
        if len(message.payload) < offset + 4:
            raise RtmpProtocolError(f"truncated {what} message ({len(message.payload)} bytes)")
        return struct.unpack_from(">I", message.payload, offset)[0]

    def _on_set_chunk_size(self, message: RtmpMessage, events: list[Event]) -> None:
        size = self._uint32(message, "Set Chunk Size")
        # RTMP 5.4.1: the top bit must be zero; as a signed value it is < 0.
        self._reader.set_chunk_size(size - (1 << 32) if size & 0x80000000 else size)

    def _on_abort(self, message: RtmpMessage, events: list[Event]) -> None:
        self._reader.abort(self._uint32(message, "Abort"))

    def _on_acknowledgement(self, message: RtmpMessage, events: list[Event]) -> None:
        events.append(AcknowledgementReceived(self._uint32(message, "Acknowledgement")))

    def _on_window_acknowledgement_size(self, message: RtmpMessage, events: list[Event]) -> None:
        self._peer_window_bytes = self._uint32(message, "Window Acknowledgement Size")

    def _on_set_peer_bandwidth(self, message: RtmpMessage, events: list[Event]) -> None:
        pass  # we do not limit our output by what a client grants

    def _on_user_control(self, message: RtmpMessage, events: list[Event]) -> None:
        if len(message.payload) < 2:
            raise RtmpProtocolError(f"truncated User Control message ({len(message.payload)} bytes)")
        (kind,) = struct.unpack_from(">H", message.payload)
        if kind == RtmpUserControlEvent.PING_REQUEST:
            timestamp = self._uint32(message, "User Control PingRequest", 2)
            payload = user_control_payload(RtmpUserControlEvent.PING_RESPONSE, timestamp)
            self._send_control(RtmpMessageType.USER_CONTROL, payload)
        elif kind == RtmpUserControlEvent.PING_RESPONSE:
            events.append(PingResponded(self._uint32(message, "User Control PingResponse", 2)))
        # SetBufferLength and the stream events need nothing from a live server.

    # --- media and data ----------------------------------------------------------------

    def _publishing(self, message: RtmpMessage) -> bool:
        stream = self._streams.get(message.message_stream_id)
        if stream is not None and stream.state in _PUBLISH_STATES and message.payload:
            return True
        # Media on a stream nobody asked to publish: there is no one to give
        # it to.
        self.dropped_messages += 1
        return False

    def _on_audio(self, message: RtmpMessage, events: list[Event]) -> None:
        if self._publishing(message):
            events.append(AudioReceived(message.message_stream_id, message.timestamp, message.payload))

    def _on_video(self, message: RtmpMessage, events: list[Event]) -> None:
        if self._publishing(message):
            events.append(VideoReceived(message.message_stream_id, message.timestamp, message.payload))

    def _on_data(self, message: RtmpMessage, events: list[Event]) -> None:
        if not self._publishing(message):
            return
        body = self._amf0_body(message)
        try:
            values = amf0.decode_all(body) if body is not None else []
        except amf0.AmfError:
            values = []  # a data message we cannot read is dropped, as FFmpeg does
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
            data = values[1]
            payload = amf0.encode("onMetaData", data)
            events.append(MetadataReceived(message.message_stream_id, message.timestamp, data, payload))
        else:
            self.dropped_messages += 1

    def _on_aggregate(self, message: RtmpMessage, events: list[Event]) -> None:
        """RTMP 7.1.6: FLV tags in one message (`split_aggregate`)."""
        for part in split_aggregate(message):
            self._MESSAGE_HANDLERS[part.message_type](self, part, events)

    @staticmethod
    def _amf0_body(message: RtmpMessage) -> memoryview | bytes | None:
        """The AMF0 in a message. The AMF3 variants (types 15, 17) start with
        a format byte; 0 means AMF0 follows, which is all clients send."""
        if message.message_type in (RtmpMessageType.DATA_AMF3, RtmpMessageType.COMMAND_AMF3):
            if not message.payload or message.payload[0] != 0:
                return None
            return memoryview(message.payload)[1:]
        return message.payload

    # --- commands ----------------------------------------------------------------------

    def _on_command(self, message: RtmpMessage, events: list[Event]) -> None:
        values = decode_command(message)
        if values is None:
            self.dropped_messages += 1
            return
        name = values[0]
        transaction_id = values[1] if len(values) > 1 and isinstance(values[1], float) else 0.0
        command_object = values[2] if len(values) > 2 else None
        arguments = values[3:]
        if self._connect is _ConnectState.WAITING and name != "connect":
            raise RtmpProtocolError(f"command {name[:64]!r} before connect")
        if self._connect is _ConnectState.REJECTED:
            self.dropped_messages += 1
            return
        handler = self._COMMAND_HANDLERS.get(name)
        if handler is None:
            # getStreamLength, _checkbw, receiveAudio, pause, ...: nothing a
            # live server must answer.
            self.dropped_messages += 1
            return
        handler(self, message, transaction_id, command_object, arguments, events)

    def _on_connect(self, message, transaction_id, command_object, arguments, events) -> None:
        if self._connect is not _ConnectState.WAITING:
            raise RtmpProtocolError("a second connect on one connection")
        if not isinstance(command_object, dict):
            raise RtmpProtocolError("connect without a command object")
        app = command_object.get("app")
        tc_url = command_object.get("tcUrl")
        self._connect = _ConnectState.REQUESTED
        events.append(
            ConnectRequested(
                transaction_id,
                app if isinstance(app, str) else "",
                tc_url if isinstance(tc_url, str) else "",
                command_object,
            )
        )

    @staticmethod
    def _name_argument(arguments: list) -> str:
        return arguments[0] if arguments and isinstance(arguments[0], str) else ""

    def _on_release_stream(self, message, transaction_id, command_object, arguments, events) -> None:
        self._send_command(0, "_result", transaction_id, None, amf0.AmfUndefined)
        events.append(ReleaseStreamRequested(transaction_id, self._name_argument(arguments)))

    def _on_fc_publish(self, message, transaction_id, command_object, arguments, events) -> None:
        name = self._name_argument(arguments)
        self._send_command(0, "onFCPublish", 0, None, status_info("status", "NetStream.Publish.Start", name))
        events.append(FCPublishRequested(transaction_id, name))

    def _on_fc_unpublish(self, message, transaction_id, command_object, arguments, events) -> None:
        name = self._name_argument(arguments)
        stream_name = split_stream_name(name)[0]
        for stream_id, stream in self._streams.items():
            if stream.state in _PUBLISH_STATES and stream.stream_name == stream_name:
                self._stop(stream_id, stream, events)
        self._send_command(0, "_result", transaction_id, None, amf0.AmfUndefined)
        events.append(FCUnpublishRequested(transaction_id, name))

    def _on_create_stream(self, message, transaction_id, command_object, arguments, events) -> None:
        if len(self._streams) >= MAX_OPEN_STREAMS:
            raise RtmpProtocolError(f"more than {MAX_OPEN_STREAMS} open streams")
        self._last_stream_id += 1
        stream_id = self._last_stream_id
        self._streams[stream_id] = _RtmpStream()
        self._send_command(0, "_result", transaction_id, None, float(stream_id))
        events.append(StreamCreated(transaction_id, stream_id))

    def _request_stream(self, message: RtmpMessage, command: str) -> _RtmpStream:
        stream_id = message.message_stream_id
        stream = self._streams.get(stream_id)
        if stream is None:
            raise RtmpProtocolError(f"{command} on stream {stream_id}, which was not created")
        if stream.state is not _StreamState.IDLE:
            raise RtmpProtocolError(f"{command} on stream {stream_id}, which is {stream.state.value}")
        return stream

    def _on_publish(self, message, transaction_id, command_object, arguments, events) -> None:
        stream_id = message.message_stream_id
        if arguments and arguments[0] is False:
            # NetStream.publish(false) ends publishing.
            stream = self._streams.get(stream_id)
            if stream is not None:
                self._stop(stream_id, stream, events)
            return
        stream = self._request_stream(message, "publish")
        name = self._name_argument(arguments)
        kind = arguments[1] if len(arguments) > 1 and isinstance(arguments[1], str) else "live"
        stream.name = name
        stream.stream_name, query = split_stream_name(name)
        stream.state = _StreamState.PUBLISH_REQUESTED
        # Frames of any size may follow from here. The limit rises with the
        # request, not with our answer, so that what is refused depends on
        # the bytes alone; the caller reads nothing more until it answers,
        # and closes a publisher it refuses.
        self._reader.set_buffer_limit(self._max_buffered_bytes)
        events.append(PublishRequested(stream_id, name, stream.stream_name, query, kind))

    def _on_play(self, message, transaction_id, command_object, arguments, events) -> None:
        stream = self._request_stream(message, "play")
        name = self._name_argument(arguments)
        start = arguments[1] if len(arguments) > 1 and isinstance(arguments[1], float) else -2.0
        stream.name = name
        stream.stream_name, query = split_stream_name(name)
        stream.state = _StreamState.PLAY_REQUESTED
        events.append(PlayRequested(message.message_stream_id, name, stream.stream_name, query, start))

    def _stop(self, stream_id: int, stream: _RtmpStream, events: list[Event]) -> None:
        if stream.state in _PUBLISH_STATES:
            events.append(UnpublishRequested(stream_id))
        stream.state = _StreamState.IDLE

    def _on_delete_stream(self, message, transaction_id, command_object, arguments, events) -> None:
        stream_id = _stream_id_value(arguments[0]) if arguments else None
        stream = self._streams.pop(stream_id, None) if stream_id is not None else None
        if stream is None:
            self.dropped_messages += 1
            return
        self._stop(stream_id, stream, events)
        events.append(DeleteStreamRequested(stream_id))

    def _on_close_stream(self, message, transaction_id, command_object, arguments, events) -> None:
        stream_id = message.message_stream_id
        stream = self._streams.get(stream_id)
        if stream is None:
            self.dropped_messages += 1
            return
        self._stop(stream_id, stream, events)
        events.append(CloseStreamRequested(stream_id))

    # --- output ------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """The bytes to write to the peer, once each. This one call still
        works after a protocol error."""
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def _send(self, chunk_stream_id: int, message_type: int, stream_id: int, timestamp: int, payload: bytes) -> None:
        self._out.append(
            encode_media_message(chunk_stream_id, message_type, stream_id, timestamp, payload, self._out_chunk_size)
        )

    def _send_control(self, message_type: int, payload: bytes) -> None:
        self._send(PROTOCOL_CONTROL_CHUNK_STREAM_ID, message_type, 0, 0, payload)

    def _send_command(self, stream_id: int, name: str, transaction_id: float, *values: object) -> None:
        chunk_stream_id = COMMAND_CHUNK_STREAM_ID if stream_id == 0 else DATA_CHUNK_STREAM_ID
        payload = command_payload(name, transaction_id, *values)
        self._send(chunk_stream_id, RtmpMessageType.COMMAND_AMF0, stream_id, 0, payload)

    def _send_status(self, stream_id: int, level: str, code: str, description: str, details: str) -> None:
        self._send_command(stream_id, "onStatus", 0, None, status_info(level, code, description, details))

    def _send_user_control(self, event: RtmpUserControlEvent, value: int) -> None:
        self._send_control(RtmpMessageType.USER_CONTROL, user_control_payload(event, value))

    def send_raw(self, encoded: bytes) -> None:
        """Queue bytes made by `encode_media_message` with `out_chunk_size`
        (shared between connections)."""
        self._check()
        self._out.append(encoded)

    def send_ping(self, timestamp: int) -> None:
        self._check()
        self._send_user_control(RtmpUserControlEvent.PING_REQUEST, timestamp)

    # --- answers -----------------------------------------------------------------------

    def _pending_connect(self, event: ConnectRequested, method: str) -> None:
        self._check()
        if not isinstance(event, ConnectRequested):
            raise RtmpUsageError(f"{method} takes a ConnectRequested event")
        if self._connect is not _ConnectState.REQUESTED:
            raise RtmpUsageError(f"{method}: no connect is waiting for an answer ({self._connect.value})")

    def accept_connect(self, event: ConnectRequested) -> None:
        """`_result` NetConnection.Connect.Success, after Window Acknowledgement
        Size, Set Peer Bandwidth and Set Chunk Size (as FMS, nginx-rtmp, SRS)."""
        self._pending_connect(event, "accept_connect")
        self._connect = _ConnectState.ACCEPTED
        self._send_control(
            RtmpMessageType.WINDOW_ACKNOWLEDGEMENT_SIZE, uint32_payload(OUR_WINDOW_ACKNOWLEDGEMENT_SIZE_BYTES)
        )
        self._send_control(
            RtmpMessageType.SET_PEER_BANDWIDTH,
            set_peer_bandwidth_payload(OUR_PEER_BANDWIDTH_BYTES, RtmpPeerBandwidthLimit.DYNAMIC),
        )
        self._send_control(RtmpMessageType.SET_CHUNK_SIZE, uint32_payload(OUR_CHUNK_SIZE_BYTES))
        self._out_chunk_size = OUR_CHUNK_SIZE_BYTES
        info = status_info("status", "NetConnection.Connect.Success", "Connection succeeded.")
        info["objectEncoding"] = 0.0  # AMF0
        self._send_command(0, "_result", event.transaction_id, _SERVER_PROPERTIES, info)

    def reject_connect(self, event: ConnectRequested, description: str) -> None:
        """`_error` NetConnection.Connect.Rejected; then close the connection."""
        self._pending_connect(event, "reject_connect")
        self._connect = _ConnectState.REJECTED
        info = status_info("error", "NetConnection.Connect.Rejected", description)
        self._send_command(0, "_error", event.transaction_id, None, info)

    def _answerable(self, stream_id: int, wanted: _StreamState, method: str) -> _RtmpStream | None:
        """The stream if it still waits for the answer `method` gives. None if
        the peer closed or deleted it meanwhile (the events saying so come
        after the request's): then the answer is moot and nothing is sent."""
        self._check()
        if not isinstance(stream_id, int) or not 0 < stream_id <= self._last_stream_id:
            raise RtmpUsageError(f"{method}: stream {stream_id!r} was never created on this connection")
        stream = self._streams.get(stream_id)
        if stream is None or stream.state is not wanted:
            return None
        return stream

    def accept_publish(self, stream_id: int, name: str) -> bool:
        """Stream Begin and onStatus NetStream.Publish.Start; media events
        follow. False (nothing sent) if the request is no longer pending."""
        stream = self._answerable(stream_id, _StreamState.PUBLISH_REQUESTED, "accept_publish")
        if stream is None:
            return False
        stream.state = _StreamState.PUBLISHING
        self._send_user_control(RtmpUserControlEvent.STREAM_BEGIN, stream_id)
        self._send_status(stream_id, "status", "NetStream.Publish.Start", f"{name} is now published.", name)
        return True

    def reject_publish(self, stream_id: int, code: str, description: str) -> bool:
        """onStatus with `code` (NetStream.Publish.BadName, .Rejected, ...)."""
        stream = self._answerable(stream_id, _StreamState.PUBLISH_REQUESTED, "reject_publish")
        if stream is None:
            return False
        stream.state = _StreamState.IDLE
        self._send_status(stream_id, "error", code, description, stream.name)
        return True

    def accept_play(self, stream_id: int, name: str) -> bool:
        """Stream Begin, onStatus NetStream.Play.Reset and .Start, and
        |RtmpSampleAccess; then `send_video` etc. deliver to this stream."""
        stream = self._answerable(stream_id, _StreamState.PLAY_REQUESTED, "accept_play")
        if stream is None:
            return False
        stream.state = _StreamState.PLAYING
        self._send_user_control(RtmpUserControlEvent.STREAM_BEGIN, stream_id)
        self._send_status(stream_id, "status", "NetStream.Play.Reset", f"Playing and resetting {name}.", name)
        self._send_status(stream_id, "status", "NetStream.Play.Start", f"Started playing {name}.", name)
        self._send(
            DATA_CHUNK_STREAM_ID,
            RtmpMessageType.DATA_AMF0,
            stream_id,
            0,
            amf0.encode("|RtmpSampleAccess", True, True),
        )
        return True

    def reject_play(self, stream_id: int, code: str, description: str) -> bool:
        """onStatus with `code` (NetStream.Play.StreamNotFound, .Failed, ...)."""
        stream = self._answerable(stream_id, _StreamState.PLAY_REQUESTED, "reject_play")
        if stream is None:
            return False
        stream.state = _StreamState.IDLE
        self._send_status(stream_id, "error", code, description, stream.name)
        return True

    def _playing(self, stream_id: int, method: str) -> _RtmpStream | None:
        return self._answerable(stream_id, _StreamState.PLAYING, method)

    def send_unpublish_notify(self, stream_id: int) -> bool:
        """onStatus NetStream.Play.UnpublishNotify and Stream EOF: the
        publisher of what this player plays has left."""
        stream = self._playing(stream_id, "send_unpublish_notify")
        if stream is None:
            return False
        description = f"{stream.name} is now unpublished."
        self._send_status(stream_id, "status", "NetStream.Play.UnpublishNotify", description, stream.name)
        self._send_user_control(RtmpUserControlEvent.STREAM_EOF, stream_id)
        return True

    def send_publish_notify(self, stream_id: int) -> bool:
        """Stream Begin and onStatus NetStream.Play.PublishNotify: a publisher
        is back for a player still waiting."""
        stream = self._playing(stream_id, "send_publish_notify")
        if stream is None:
            return False
        self._send_user_control(RtmpUserControlEvent.STREAM_BEGIN, stream_id)
        description = f"{stream.name} is now published."
        self._send_status(stream_id, "status", "NetStream.Play.PublishNotify", description, stream.name)
        return True

    def _send_media(
        self, method: str, chunk_stream_id: int, kind: int, stream_id: int, timestamp: int, payload
    ) -> bool:
        if self._playing(stream_id, method) is None:
            return False
        self._send(chunk_stream_id, kind, stream_id, timestamp, payload)
        return True

    def send_video(self, stream_id: int, timestamp: int, payload: bytes) -> bool:
        """An FLV video tag body to a playing stream; False (nothing sent) if
        the player has closed or deleted it."""
        return self._send_media(
            "send_video", VIDEO_CHUNK_STREAM_ID, RtmpMessageType.VIDEO, stream_id, timestamp, payload
        )

    def send_audio(self, stream_id: int, timestamp: int, payload: bytes) -> bool:
        return self._send_media(
            "send_audio", AUDIO_CHUNK_STREAM_ID, RtmpMessageType.AUDIO, stream_id, timestamp, payload
        )

    def send_metadata(self, stream_id: int, timestamp: int, payload: bytes) -> bool:
        """An FLV script tag body (AMF0 "onMetaData", data)."""
        return self._send_media(
            "send_metadata", DATA_CHUNK_STREAM_ID, RtmpMessageType.DATA_AMF0, stream_id, timestamp, payload
        )

    _MESSAGE_HANDLERS: dict[int, Callable] = {
        RtmpMessageType.SET_CHUNK_SIZE: _on_set_chunk_size,
        RtmpMessageType.ABORT: _on_abort,
        RtmpMessageType.ACKNOWLEDGEMENT: _on_acknowledgement,
        RtmpMessageType.USER_CONTROL: _on_user_control,
        RtmpMessageType.WINDOW_ACKNOWLEDGEMENT_SIZE: _on_window_acknowledgement_size,
        RtmpMessageType.SET_PEER_BANDWIDTH: _on_set_peer_bandwidth,
        RtmpMessageType.AUDIO: _on_audio,
        RtmpMessageType.VIDEO: _on_video,
        RtmpMessageType.DATA_AMF0: _on_data,
        RtmpMessageType.DATA_AMF3: _on_data,
        RtmpMessageType.COMMAND_AMF0: _on_command,
        RtmpMessageType.COMMAND_AMF3: _on_command,
        RtmpMessageType.AGGREGATE: _on_aggregate,
    }

    _COMMAND_HANDLERS: dict[str, Callable] = {
        "connect": _on_connect,
        "releaseStream": _on_release_stream,
        "FCPublish": _on_fc_publish,
        "FCUnpublish": _on_fc_unpublish,
        "createStream": _on_create_stream,
        "publish": _on_publish,
        "play": _on_play,
        "deleteStream": _on_delete_stream,
        "closeStream": _on_close_stream,
    }
