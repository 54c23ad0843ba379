"""What an `RtmpServerConnection` tells its caller, in the order the peer
caused it. Past tense: each one has happened (or been asked for) already."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HandshakeCompleted:
    pass


@dataclass(frozen=True, slots=True)
class ConnectRequested:
    """`connect`: answer with `accept_connect` or `reject_connect`."""

    transaction_id: float
    app: str  # as the client sent it; some put a query after it ("live?vhost=x")
    tc_url: str
    command_object: dict


@dataclass(frozen=True, slots=True)
class ReleaseStreamRequested:
    """`releaseStream` (the connection has answered it)."""

    transaction_id: float
    name: str


@dataclass(frozen=True, slots=True)
class FCPublishRequested:
    """`FCPublish` (the connection has answered it with `onFCPublish`)."""

    transaction_id: float
    name: str


@dataclass(frozen=True, slots=True)
class FCUnpublishRequested:
    """`FCUnpublish` (the connection has answered it)."""

    transaction_id: float
    name: str


@dataclass(frozen=True, slots=True)
class StreamCreated:
    """`createStream`: the connection allocated `stream_id` and answered."""

    transaction_id: float
    stream_id: int


@dataclass(frozen=True, slots=True)
class PublishRequested:
    """`publish`: answer with `accept_publish` or `reject_publish`."""

    stream_id: int
    name: str  # as sent, e.g. "s?auth_key=..."
    stream_name: str  # before the "?"
    query: dict[str, str]  # after it
    publish_type: str  # "live", "record" or "append"


@dataclass(frozen=True, slots=True)
class PlayRequested:
    """`play`: answer with `accept_play` or `reject_play`."""

    stream_id: int
    name: str
    stream_name: str
    query: dict[str, str]
    # As sent. RTMP 7.2.2.1 says seconds (-2: live or recorded, -1: live
    # only); clients send milliseconds (FFmpeg -2000, librtmp -1000).
    start: float


@dataclass(frozen=True, slots=True)
class MetadataReceived:
    """`@setDataFrame`/`onMetaData` on a stream being published.

    This and the media events come for a stream from its PublishRequested
    on, answered or not (a well-behaved client waits for Publish.Start, and
    the events depend on the peer's bytes alone this way): drop what comes
    before you accept."""

    stream_id: int
    timestamp: int
    data: dict
    payload: bytes  # AMF0 ("onMetaData", data): an FLV script tag body


@dataclass(frozen=True, slots=True)
class VideoReceived:
    stream_id: int
    timestamp: int  # milliseconds, absolute, 32-bit
    payload: bytes  # an FLV video tag body


@dataclass(frozen=True, slots=True)
class AudioReceived:
    stream_id: int
    timestamp: int
    payload: bytes  # an FLV audio tag body


@dataclass(frozen=True, slots=True)
class UnpublishRequested:
    """The peer stopped publishing a stream it asked to publish (answered or
    not): `FCUnpublish` naming it, `closeStream`, `deleteStream` or
    `publish(false)`. It comes just before the event of that command."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class DeleteStreamRequested:
    stream_id: int


@dataclass(frozen=True, slots=True)
class CloseStreamRequested:
    stream_id: int


@dataclass(frozen=True, slots=True)
class PingResponded:
    """A User Control PingResponse to our `send_ping`."""

    timestamp: int


@dataclass(frozen=True, slots=True)
class AcknowledgementReceived:
    sequence_number: int  # bytes the peer has received, modulo 2**32


@dataclass(frozen=True, slots=True)
class PeerClosed:
    """End of input: `receive_data(b"")`."""


Event = (
    HandshakeCompleted
    | ConnectRequested
    | ReleaseStreamRequested
    | FCPublishRequested
    | FCUnpublishRequested
    | StreamCreated
    | PublishRequested
    | PlayRequested
    | MetadataReceived
    | VideoReceived
    | AudioReceived
    | UnpublishRequested
    | DeleteStreamRequested
    | CloseStreamRequested
    | PingResponded
    | AcknowledgementReceived
    | PeerClosed
)
