"""RtmpServerConnection against a client made of our own chunk writer and
AMF0 encoder: the handshake, every command and answer, control messages,
limits, and the ERROR state. (A real FFmpeg peer is in test_rtmp_ffmpeg.py.)"""

from __future__ import annotations

import random
import struct

import pytest

from livecenter.media import amf0
from livecenter.media.rtmp import (
    MAX_AMF_DEPTH,
    MAX_BUFFERED_BYTES_BEFORE_PUBLISH,
    MAX_CHUNK_SIZE_BYTES,
    MAX_OPEN_STREAMS,
    OUR_CHUNK_SIZE_BYTES,
    AcknowledgementReceived,
    AudioReceived,
    CloseStreamRequested,
    ConnectRequested,
    DeleteStreamRequested,
    FCPublishRequested,
    FCUnpublishRequested,
    HandshakeCompleted,
    MetadataReceived,
    PeerClosed,
    PingResponded,
    PlayRequested,
    PublishRequested,
    ReleaseStreamRequested,
    RtmpBufferBudget,
    RtmpChunkReader,
    RtmpChunkWriter,
    RtmpMessage,
    RtmpProtocolError,
    RtmpServerConnection,
    RtmpUsageError,
    StreamCreated,
    UnpublishRequested,
    VideoReceived,
    encode_media_message,
)

C1 = bytes(8) + bytes(i % 251 for i in range(1528))
C0C1 = b"\x03" + C1
C2 = bytes(1536)  # echoes S1 in real clients; the server does not look
NOISE = bytes(range(8, 256)) * 7  # what our fake random source hands out
TC_URL = "rtmp://push.test/live"


def not_random(size: int) -> bytes:
    return NOISE[:size]


class Client:
    """The client side of a session, as bytes."""

    def __init__(self) -> None:
        self.writer = RtmpChunkWriter()

    def write(self, chunk_stream_id, message_type, stream_id, timestamp, payload, **kwargs) -> bytes:
        return self.writer.write(chunk_stream_id, message_type, stream_id, timestamp, payload, **kwargs)

    def control(self, message_type: int, payload: bytes) -> bytes:
        return self.write(2, message_type, 0, 0, payload)

    def set_chunk_size(self, size: int) -> bytes:
        data = self.control(1, struct.pack(">I", size & 0xFFFFFFFF))
        self.writer.chunk_size = size
        return data

    def command(self, name: str, transaction_id: float, *values, stream_id: int = 0, message_type: int = 20) -> bytes:
        payload = amf0.encode(name, transaction_id, *values)
        if message_type == 17:
            payload = b"\x00" + payload
        return self.write(3 if stream_id == 0 else 8, message_type, stream_id, 0, payload)

    def connect(self, app: str = "live", tc_url: str = TC_URL) -> bytes:
        return self.command("connect", 1, {"app": app, "tcUrl": tc_url, "flashVer": "FMLE/3.0"})

    def publish(self, name: str = "s?auth_key=1-0-0-abc", stream_id: int = 1) -> bytes:
        return b"".join(
            [
                self.command("releaseStream", 2, None, name),
                self.command("FCPublish", 3, None, name),
                self.command("createStream", 4, None),
                self.command("publish", 5, None, name, "live", stream_id=stream_id),
            ]
        )

    def metadata(self, data: dict, timestamp: int = 0, stream_id: int = 1) -> bytes:
        payload = amf0.encode("@setDataFrame", "onMetaData", data)
        return self.write(5, 18, stream_id, timestamp, payload)

    def video(self, timestamp: int, payload: bytes, stream_id: int = 1) -> bytes:
        return self.write(6, 9, stream_id, timestamp, payload)

    def audio(self, timestamp: int, payload: bytes, stream_id: int = 1) -> bytes:
        return self.write(4, 8, stream_id, timestamp, payload)

    def unpublish(self, name: str = "s?auth_key=1-0-0-abc", stream_id: int = 1) -> bytes:
        return self.command("FCUnpublish", 6, None, name) + self.command("deleteStream", 7, None, float(stream_id))


def publish_session(frames: int = 30) -> bytes:
    """What a publisher sends from C0 to deleteStream: the shape of FFmpeg's."""
    client = Client()
    parts = [C0C1, C2, client.set_chunk_size(4096), client.connect(), client.publish()]
    parts.append(client.metadata(amf0.AmfEcmaArray(width=320.0, height=240.0, framerate=30.0)))
    parts.append(client.video(0, b"\x17\x00" + bytes(40)))  # sequence header
    parts.append(client.audio(0, b"\xaf\x00\x12\x10"))
    for n in range(frames):
        key = n % 10 == 0
        parts.append(client.video(n * 33, (b"\x17\x01" if key else b"\x27\x01") + bytes([n]) * (5000 if key else 700)))
        parts.append(client.audio(n * 23, b"\xaf\x01" + bytes([n]) * 200))
    parts.append(client.unpublish())
    return b"".join(parts)


def answer(conn: RtmpServerConnection, event) -> None:
    """What an accepting server does."""
    if isinstance(event, ConnectRequested):
        conn.accept_connect(event)
    elif isinstance(event, PublishRequested):
        conn.accept_publish(event.stream_id, event.name)
    elif isinstance(event, PlayRequested):
        conn.accept_play(event.stream_id, event.name)


def feed(conn: RtmpServerConnection, pieces, respond=answer) -> list:
    events = []
    for piece in pieces:
        for event in conn.receive_data(piece):
            events.append(event)
            if respond:
                respond(conn, event)
    return events


def split(data: bytes, pieces: int, seed: int) -> list[bytes]:
    cuts = sorted({0, len(data), *random.Random(seed).sample(range(1, len(data)), pieces)})
    return [data[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]


class ServerOutput:
    """Reads what the server sends, as a client would."""

    def __init__(self) -> None:
        self.reader = RtmpChunkReader()
        self.handshake = b""

    def read(self, data: bytes) -> list[RtmpMessage]:
        if len(self.handshake) < 3073:
            take = 3073 - len(self.handshake)
            self.handshake += data[:take]
            data = data[take:]
        self.reader.feed(data)
        messages = []
        while (message := self.reader.next_message()) is not None:
            messages.append(message)
            if message.message_type == 1:
                self.reader.set_chunk_size(struct.unpack(">I", message.payload)[0])
        return messages


def described(messages: list[RtmpMessage]) -> list:
    """Messages as (type, stream id, what they say) for readable asserts."""
    out = []
    for m in messages:
        if m.message_type in (18, 20):
            out.append((m.message_type, m.message_stream_id, amf0.decode_all(m.payload)))
        elif m.message_type == 4:
            out.append((4, m.message_stream_id, struct.unpack(">HI", m.payload)))
        else:
            out.append((m.message_type, m.message_stream_id, m.payload))
    return out


def connected(respond=answer) -> tuple[RtmpServerConnection, Client, ServerOutput]:
    conn = RtmpServerConnection(random_bytes=not_random)
    client = Client()
    output = ServerOutput()
    feed(conn, [C0C1, C2, client.connect()], respond)
    output.read(conn.data_to_send())
    return conn, client, output


def publishing(name: str = "s?auth_key=1-0-0-abc") -> tuple[RtmpServerConnection, Client, ServerOutput]:
    conn, client, output = connected()
    feed(conn, [client.publish(name)])
    output.read(conn.data_to_send())
    return conn, client, output


def protocol_error(conn: RtmpServerConnection, data: bytes) -> str:
    with pytest.raises(RtmpProtocolError) as caught:
        conn.receive_data(data)
    return caught.value.reason


# --- handshake ------------------------------------------------------------------------


def test_it_answers_the_handshake_with_s0_s1_s2():
    conn = RtmpServerConnection(random_bytes=not_random)
    assert conn.receive_data(C0C1) == []
    reply = conn.data_to_send()
    assert len(reply) == 1 + 1536 + 1536
    assert reply[0] == 3
    assert reply[1:9] == bytes(8)  # time 0, and a zero version: the simple handshake
    assert reply[9:1537] == NOISE[:1528]
    assert reply[1537:] == C1  # S2 echoes C1
    assert conn.receive_data(C2) == [HandshakeCompleted()]
    assert conn.data_to_send() == b""


def test_it_answers_a_complex_handshake_client_with_the_simple_scheme():
    # FFmpeg's C1 carries a version (0x80000702) and a digest; with a zero
    # version in S1 it takes the simple path and echoes S1 as C2.
    c1 = bytes(4) + b"\x80\x00\x07\x02" + bytes(range(256)) * 5 + bytes(248)
    conn = RtmpServerConnection(random_bytes=not_random)
    conn.receive_data(b"\x03" + c1)
    reply = conn.data_to_send()
    assert reply[5:9] == bytes(4)
    assert reply[1537:] == c1


def test_it_takes_the_handshake_byte_by_byte_and_with_what_follows():
    data = C0C1 + C2 + Client().connect()
    conn = RtmpServerConnection(random_bytes=not_random)
    events = feed(conn, [data[i : i + 1] for i in range(len(data))], respond=None)
    assert [type(e) for e in events] == [HandshakeCompleted, ConnectRequested]


@pytest.mark.parametrize(
    ("first", "reason"),
    [(b"\x06", "unsupported RTMP version 6"), (b"GET / HTTP/1.1\r\n", "unsupported RTMP version 71")],
)
def test_it_refuses_other_versions_at_the_first_byte(first, reason):
    assert protocol_error(RtmpServerConnection(), first) == reason


def test_it_uses_os_randomness_by_default():
    conn = RtmpServerConnection()
    conn.receive_data(C0C1)
    assert len(conn.data_to_send()) == 3073


# --- connect --------------------------------------------------------------------------


def test_it_reports_connect_with_app_and_tc_url():
    conn = RtmpServerConnection(random_bytes=not_random)
    events = feed(conn, [C0C1 + C2 + Client().connect("live?vhost=x")], respond=None)
    assert events[1] == ConnectRequested(
        1.0, "live?vhost=x", TC_URL, {"app": "live?vhost=x", "tcUrl": TC_URL, "flashVer": "FMLE/3.0"}
    )


def test_it_accepts_connect_with_window_bandwidth_chunk_size_and_result():
    conn = RtmpServerConnection(random_bytes=not_random)
    output = ServerOutput()
    (_, event) = feed(conn, [C0C1, C2, Client().connect()], respond=None)
    output.read(conn.data_to_send())
    assert conn.out_chunk_size == 128
    conn.accept_connect(event)
    assert conn.out_chunk_size == OUR_CHUNK_SIZE_BYTES
    assert described(output.read(conn.data_to_send())) == [
        (5, 0, struct.pack(">I", 2_500_000)),
        (6, 0, struct.pack(">IB", 2_500_000, 2)),
        (1, 0, struct.pack(">I", 4096)),
        (
            20,
            0,
            [
                "_result",
                1.0,
                {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0},
                {
                    "level": "status",
                    "code": "NetConnection.Connect.Success",
                    "description": "Connection succeeded.",
                    "objectEncoding": 0.0,
                },
            ],
        ),
    ]


def test_it_rejects_connect_with_an_error_and_ignores_what_follows():
    conn = RtmpServerConnection(random_bytes=not_random)
    client = Client()
    output = ServerOutput()
    (_, event) = feed(conn, [C0C1, C2, client.connect()], respond=None)
    conn.reject_connect(event, "non-existent domain")
    assert described(output.read(conn.data_to_send())) == [
        (
            20,
            0,
            [
                "_error",
                1.0,
                None,
                {"level": "error", "code": "NetConnection.Connect.Rejected", "description": "non-existent domain"},
            ],
        )
    ]
    assert feed(conn, [client.publish()], respond=None) == []
    assert conn.data_to_send() == b""


def test_it_refuses_commands_before_connect():
    conn = RtmpServerConnection()
    conn.receive_data(C0C1 + C2)
    assert protocol_error(conn, Client().command("createStream", 2, None)) == "command 'createStream' before connect"


def test_it_refuses_a_second_connect():
    conn, client, _ = connected()
    assert protocol_error(conn, client.connect()) == "a second connect on one connection"


def test_it_refuses_connect_without_a_command_object():
    conn = RtmpServerConnection()
    conn.receive_data(C0C1 + C2)
    assert protocol_error(conn, Client().command("connect", 1, "live")) == "connect without a command object"


def test_it_reads_commands_sent_as_amf3_messages():
    conn = RtmpServerConnection()
    client = Client()
    events = feed(conn, [C0C1 + C2, client.command("connect", 1, {"app": "a"}, message_type=17)], respond=None)
    assert events[1] == ConnectRequested(1.0, "a", "", {"app": "a"})
    # A real AMF3 body (format byte not 0) is dropped, not fatal.
    assert conn.receive_data(client.write(3, 17, 0, 0, b"\x11\x06")) == []
    assert conn.dropped_messages == 1


# --- publish ----------------------------------------------------------------------------


def test_it_answers_release_stream_fc_publish_and_create_stream_itself():
    conn, client, output = connected()
    events = feed(conn, [client.publish()], respond=None)
    name = "s?auth_key=1-0-0-abc"
    assert events == [
        ReleaseStreamRequested(2.0, name),
        FCPublishRequested(3.0, name),
        StreamCreated(4.0, 1),
        PublishRequested(1, name, "s", {"auth_key": "1-0-0-abc"}, "live"),
    ]
    assert described(output.read(conn.data_to_send())) == [
        (20, 0, ["_result", 2.0, None, amf0.AmfUndefined]),
        (
            20,
            0,
            ["onFCPublish", 0.0, None, {"level": "status", "code": "NetStream.Publish.Start", "description": name}],
        ),
        (20, 0, ["_result", 4.0, None, 1.0]),
    ]


def test_it_accepts_publish_with_stream_begin_and_publish_start():
    conn, client, output = connected()
    feed(conn, [client.publish("s")], respond=None)
    output.read(conn.data_to_send())
    assert conn.accept_publish(1, "s") is True
    assert described(output.read(conn.data_to_send())) == [
        (4, 0, (0, 1)),
        (
            20,
            1,
            [
                "onStatus",
                0.0,
                None,
                {
                    "level": "status",
                    "code": "NetStream.Publish.Start",
                    "description": "s is now published.",
                    "details": "s",
                },
            ],
        ),
    ]
    assert conn.accept_publish(1, "s") is False  # answered already


def test_it_rejects_publish_with_the_given_code():
    conn, client, output = connected()
    feed(conn, [client.publish("s")], respond=None)
    output.read(conn.data_to_send())
    assert conn.reject_publish(1, "NetStream.Publish.Rejected", "invalid md5hash") is True
    assert described(output.read(conn.data_to_send())) == [
        (
            20,
            1,
            [
                "onStatus",
                0.0,
                None,
                {
                    "level": "error",
                    "code": "NetStream.Publish.Rejected",
                    "description": "invalid md5hash",
                    "details": "s",
                },
            ],
        )
    ]
    assert feed(conn, [client.video(0, b"\x17\x00")], respond=None) == []


def test_it_reports_media_and_metadata_with_absolute_timestamps():
    conn, client, _ = publishing()
    metadata = amf0.AmfEcmaArray(width=1280.0, height=720.0)
    events = feed(
        conn,
        [
            client.metadata(metadata),
            client.video(0, b"\x17\x00seq"),
            client.video(33, b"\x27\x01a"),
            client.video(66, b"\x27\x01b"),
            client.audio(0, b"\xaf\x00\x12\x10"),
            client.audio(23, b"\xaf\x01x"),
        ],
    )
    assert events == [
        MetadataReceived(1, 0, metadata, amf0.encode("onMetaData", metadata)),
        VideoReceived(1, 0, b"\x17\x00seq"),
        VideoReceived(1, 33, b"\x27\x01a"),
        VideoReceived(1, 66, b"\x27\x01b"),
        AudioReceived(1, 0, b"\xaf\x00\x12\x10"),
        AudioReceived(1, 23, b"\xaf\x01x"),
    ]
    assert type(events[0].data) is amf0.AmfEcmaArray


def test_it_reads_onmetadata_sent_without_set_data_frame():
    conn, client, _ = publishing()
    events = feed(conn, [client.write(5, 18, 1, 7, amf0.encode("onMetaData", {"a": 1.0}))])
    assert events == [MetadataReceived(1, 7, {"a": 1.0}, amf0.encode("onMetaData", {"a": 1.0}))]


def test_it_drops_data_messages_it_cannot_use():
    conn, client, _ = publishing()
    assert feed(conn, [client.write(5, 18, 1, 0, amf0.encode("onCuePoint", {"a": 1.0}))]) == []
    assert feed(conn, [client.write(5, 18, 1, 0, b"\x02\x00\x09onMeta")]) == []  # bad AMF0
    assert feed(conn, [client.write(5, 15, 1, 0, b"\x00" + amf0.encode("onMetaData", {"b": 2.0}))]) == [
        MetadataReceived(1, 0, {"b": 2.0}, amf0.encode("onMetaData", {"b": 2.0}))
    ]
    assert conn.dropped_messages == 2


def test_it_drops_media_on_streams_not_being_published():
    conn, client, _ = connected()
    feed(conn, [client.command("createStream", 2, None)])
    assert feed(conn, [client.video(0, b"\x17\x00"), client.video(0, b"\x17\x00", stream_id=9)]) == []
    conn, client, _ = publishing()
    assert feed(conn, [client.video(0, b"")]) == []  # an empty tag is no frame
    assert conn.dropped_messages == 1


def test_it_reports_media_of_a_publish_not_answered_yet():
    # So the events depend on the bytes alone; the caller drops what it has
    # not accepted (no client sends media before Publish.Start).
    conn, client, _ = connected()
    events = feed(conn, [client.publish("s") + client.video(0, b"\x17\x00")], respond=None)
    assert events[-2:] == [PublishRequested(1, "s", "s", {}, "live"), VideoReceived(1, 0, b"\x17\x00")]


def test_it_ends_a_publish_on_fc_unpublish_then_deletes_the_stream():
    conn, client, output = publishing()
    events = feed(conn, [client.unpublish()])
    assert events == [
        UnpublishRequested(1),
        FCUnpublishRequested(6.0, "s?auth_key=1-0-0-abc"),
        DeleteStreamRequested(1),
    ]
    assert described(output.read(conn.data_to_send())) == [(20, 0, ["_result", 6.0, None, amf0.AmfUndefined])]


def test_it_ends_a_publish_on_delete_stream_alone():
    conn, client, _ = publishing()
    assert feed(conn, [client.command("deleteStream", 7, None, 1.0)]) == [
        UnpublishRequested(1),
        DeleteStreamRequested(1),
    ]
    assert feed(conn, [client.video(0, b"\x17\x00")]) == []


def test_it_ends_a_publish_on_close_stream_and_on_publish_false():
    conn, client, _ = publishing()
    assert feed(conn, [client.command("closeStream", 0, None, stream_id=1)]) == [
        UnpublishRequested(1),
        CloseStreamRequested(1),
    ]
    events = feed(conn, [client.command("publish", 0, None, "t", stream_id=1)])
    assert events == [PublishRequested(1, "t", "t", {}, "live")]
    assert feed(conn, [client.command("publish", 0, None, False, stream_id=1)]) == [UnpublishRequested(1)]


def test_it_ignores_deleting_streams_that_are_not_there():
    conn, client, _ = publishing()
    for value in (5.0, 1.5, float("nan"), "1", True):
        assert feed(conn, [client.command("deleteStream", 7, None, value)]) == []
    assert feed(conn, [client.command("closeStream", 0, None, stream_id=4)]) == []


def test_it_does_not_end_a_publish_for_an_fc_unpublish_of_another_name():
    conn, client, _ = publishing("s")
    assert feed(conn, [client.command("FCUnpublish", 6, None, "other")]) == [FCUnpublishRequested(6.0, "other")]


def test_it_refuses_publish_on_a_stream_never_created():
    conn, client, _ = connected()
    data = client.command("publish", 0, None, "s", "live", stream_id=5)
    assert protocol_error(conn, data) == "publish on stream 5, which was not created"


def test_it_refuses_a_second_publish_on_one_stream():
    conn, client, _ = connected()
    feed(conn, [client.publish("s")], respond=None)
    data = client.command("publish", 0, None, "s", "live", stream_id=1)
    assert protocol_error(conn, data) == "publish on stream 1, which is waiting for a publish answer"


def test_it_allocates_stream_ids_up_to_the_open_stream_limit():
    conn, client, _ = connected()
    creates = [client.command("createStream", n, None) for n in range(MAX_OPEN_STREAMS)]
    events = feed(conn, creates)
    assert [e.stream_id for e in events] == list(range(1, MAX_OPEN_STREAMS + 1))
    assert feed(conn, [client.command("deleteStream", 0, None, 3.0)]) == [DeleteStreamRequested(3)]
    assert feed(conn, [client.command("createStream", 99, None)]) == [StreamCreated(99.0, MAX_OPEN_STREAMS + 1)]


def test_it_refuses_one_stream_past_the_open_stream_limit():
    conn, client, _ = connected()
    creates = b"".join(client.command("createStream", n, None) for n in range(MAX_OPEN_STREAMS + 1))
    assert protocol_error(conn, creates) == "more than 16 open streams"


def test_it_ignores_commands_a_live_server_need_not_answer():
    conn, client, output = connected()
    assert feed(conn, [client.command("_checkbw", 5, None), client.command("getStreamLength", 6, None, "s")]) == []
    assert output.read(conn.data_to_send()) == []


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (amf0.encode(1.0, 2.0), "a command message without a command name"),
        (b"", "a command message without a command name"),
        (b"\x02\x00\x09creat", "bad AMF0 in a command: truncated AMF0 string at byte 3"),
    ],
)
def test_it_refuses_commands_it_cannot_read(payload, reason):
    conn, client, _ = connected()
    assert protocol_error(conn, client.write(3, 20, 0, 0, payload)) == reason


def test_it_reads_command_objects_nested_to_the_amf_depth_limit():
    inner: dict = {}
    for _ in range(MAX_AMF_DEPTH - 1):
        inner = {"a": inner}
    conn = RtmpServerConnection()
    events = feed(conn, [C0C1 + C2 + Client().command("connect", 1, {**inner, "app": "x"})], respond=None)
    assert events[1].app == "x"


def test_it_refuses_command_objects_nested_past_the_amf_depth_limit():
    inner: dict = {}
    for _ in range(MAX_AMF_DEPTH):
        inner = {"a": inner}
    conn = RtmpServerConnection()
    conn.receive_data(C0C1 + C2)
    reason = protocol_error(conn, Client().command("connect", 1, inner))
    assert reason == "bad AMF0 in a command: AMF0 nesting deeper than 16"


def test_it_reads_an_aggregate_message_as_its_tags():
    conn, client, _ = publishing()

    def tag(kind: int, time: int, body: bytes) -> bytes:
        header = struct.pack(">BI", kind, len(body))[:1] + len(body).to_bytes(3, "big")
        header += (time & 0xFFFFFF).to_bytes(3, "big") + bytes([time >> 24]) + bytes(3)
        return header + body + struct.pack(">I", 11 + len(body))

    body = tag(9, 1000, b"\x17\x01v") + tag(8, 1010, b"\xaf\x01a") + tag(18, 1020, amf0.encode("onMetaData", {}))
    body += tag(99, 1030, b"?")
    events = feed(conn, [client.write(6, 22, 1, 5000, body)])
    assert events == [
        VideoReceived(1, 5000, b"\x17\x01v"),
        AudioReceived(1, 5010, b"\xaf\x01a"),
        MetadataReceived(1, 5020, {}, amf0.encode("onMetaData", {})),
    ]
    # Tag times past 24 bits (TimestampExtended) stay relative to the first tag's.
    wide = tag(9, 0xFFFFFF, b"\x27\x01w") + tag(8, 0x1000000 + 10, b"\xaf\x01x")
    assert feed(conn, [client.write(6, 22, 1, 7000, wide)]) == [
        VideoReceived(1, 7000, b"\x27\x01w"),
        AudioReceived(1, 7011, b"\xaf\x01x"),
    ]
    assert protocol_error(conn, client.write(6, 22, 1, 0, body[:20])) == "truncated aggregate message"


# --- play -------------------------------------------------------------------------------


def playing() -> tuple[RtmpServerConnection, Client, ServerOutput]:
    conn, client, output = connected()
    feed(conn, [client.command("createStream", 2, None), client.command("play", 0, None, "s?k=v", -2, stream_id=1)])
    output.read(conn.data_to_send())
    return conn, client, output


def test_it_reports_play_and_accepts_it_with_reset_start_and_sample_access():
    conn, client, output = connected()
    events = feed(
        conn,
        [client.command("createStream", 2, None), client.command("play", 0, None, "s?k=v", -1000.0, stream_id=1)],
        respond=None,
    )
    assert events == [StreamCreated(2.0, 1), PlayRequested(1, "s?k=v", "s", {"k": "v"}, -1000.0)]
    output.read(conn.data_to_send())
    assert conn.accept_play(1, "s?k=v") is True
    said = described(output.read(conn.data_to_send()))
    assert said[0] == (4, 0, (0, 1))
    assert [(kind, stream, values[0], values[-1]["code"]) for kind, stream, values in said[1:3]] == [
        (20, 1, "onStatus", "NetStream.Play.Reset"),
        (20, 1, "onStatus", "NetStream.Play.Start"),
    ]
    assert said[3] == (18, 1, ["|RtmpSampleAccess", True, True])


def test_it_rejects_play_with_the_given_code():
    conn, client, output = connected()
    feed(conn, [client.command("createStream", 2, None), client.command("play", 0, None, "s", stream_id=1)], None)
    output.read(conn.data_to_send())
    assert conn.reject_play(1, "NetStream.Play.StreamNotFound", "stream is not live") is True
    ((_, _, values),) = described(output.read(conn.data_to_send()))
    assert values[3] == {
        "level": "error",
        "code": "NetStream.Play.StreamNotFound",
        "description": "stream is not live",
        "details": "s",
    }
    assert conn.send_video(1, 0, b"\x17\x00") is False


def test_it_sends_media_to_a_player_as_shared_bytes_would_be():
    conn, _, output = playing()
    frame = b"\x17\x01" + bytes(range(256)) * 40
    assert conn.send_video(1, 0x1000000, frame) is True
    assert conn.send_audio(1, 5, b"\xaf\x01a") is True
    assert conn.send_metadata(1, 0, amf0.encode("onMetaData", {"w": 1.0})) is True
    sent = conn.data_to_send()
    shared = encode_media_message(6, 9, 1, 0x1000000, frame, conn.out_chunk_size)
    assert sent.startswith(shared)
    assert [(m.chunk_stream_id, m.message_type, m.timestamp) for m in output.read(sent)] == [
        (6, 9, 0x1000000),
        (4, 8, 5),
        (5, 18, 0),
    ]
    conn.send_raw(shared)
    assert conn.data_to_send() == shared


def test_it_tells_a_player_when_the_publisher_leaves_and_comes_back():
    conn, _, output = playing()
    assert conn.send_unpublish_notify(1) is True
    said = described(output.read(conn.data_to_send()))
    assert said[0][2][3]["code"] == "NetStream.Play.UnpublishNotify"
    assert said[1] == (4, 0, (1, 1))  # Stream EOF
    assert conn.send_publish_notify(1) is True
    said = described(output.read(conn.data_to_send()))
    assert said[0] == (4, 0, (0, 1))  # Stream Begin
    assert said[1][2][3]["code"] == "NetStream.Play.PublishNotify"


def test_it_sends_nothing_to_a_player_that_deleted_its_stream():
    conn, client, _ = playing()
    assert feed(conn, [client.command("deleteStream", 3, None, 1.0)]) == [DeleteStreamRequested(1)]
    conn.data_to_send()
    assert conn.send_video(1, 0, b"\x17\x00") is False
    assert conn.send_unpublish_notify(1) is False
    assert conn.data_to_send() == b""


def test_it_refuses_to_send_to_a_stream_never_created():
    conn, _, _ = playing()
    with pytest.raises(RtmpUsageError, match="send_video: stream 2 was never created"):
        conn.send_video(2, 0, b"")
    with pytest.raises(RtmpUsageError, match="accept_publish: stream 0 was never created"):
        conn.accept_publish(0, "s")


def test_it_reports_a_play_answered_after_the_player_closed_it_as_moot():
    conn, client, _ = connected()
    feed(
        conn,
        [
            client.command("createStream", 2, None),
            client.command("play", 0, None, "s", stream_id=1),
            client.command("closeStream", 0, None, stream_id=1),
        ],
        respond=None,
    )
    conn.data_to_send()
    assert conn.accept_play(1, "s") is False
    assert conn.reject_play(1, "NetStream.Play.Failed", "x") is False
    assert conn.data_to_send() == b""


# --- protocol control -----------------------------------------------------------------


def test_it_answers_a_ping_and_reports_a_pong():
    conn, client, output = connected()
    assert feed(conn, [client.control(4, struct.pack(">HI", 6, 1234))]) == []
    assert described(output.read(conn.data_to_send())) == [(4, 0, (7, 1234))]
    conn.send_ping(99)
    assert described(output.read(conn.data_to_send())) == [(4, 0, (6, 99))]
    assert feed(conn, [client.control(4, struct.pack(">HI", 7, 99))]) == [PingResponded(99)]
    assert feed(conn, [client.control(4, struct.pack(">HII", 3, 1, 3000))]) == []  # SetBufferLength


@pytest.mark.parametrize(
    ("message_type", "payload", "reason"),
    [
        (1, b"\x00\x00", "truncated Set Chunk Size message (2 bytes)"),
        (2, b"", "truncated Abort message (0 bytes)"),
        (3, b"\x00", "truncated Acknowledgement message (1 bytes)"),
        (4, b"\x00", "truncated User Control message (1 bytes)"),
        (4, b"\x00\x06\x00", "truncated User Control PingRequest message (3 bytes)"),
        (5, b"\x00\x00\x10", "truncated Window Acknowledgement Size message (3 bytes)"),
    ],
)
def test_it_refuses_truncated_control_messages(message_type, payload, reason):
    conn, client, _ = connected()
    assert protocol_error(conn, client.control(message_type, payload)) == reason


def test_it_acknowledges_once_the_peer_window_is_received():
    conn, client, output = publishing("s")
    conn.data_to_send()
    feed(conn, [client.control(5, struct.pack(">I", 4000))])
    assert output.read(conn.data_to_send()) == []  # the window counts from the start
    received = conn.bytes_received
    assert received < 4000
    size = next(
        n for n in range(4000, 0, -1) if received + len(encode_media_message(6, 9, 1, 0, bytes(n), 128)) == 4000
    )
    data = encode_media_message(6, 9, 1, 0, bytes(size), 128)
    feed(conn, [data[:-1]])
    assert output.read(conn.data_to_send()) == []
    feed(conn, [data[-1:]])
    assert described(output.read(conn.data_to_send())) == [(3, 0, struct.pack(">I", conn.bytes_received))]
    assert feed(conn, [client.control(3, struct.pack(">I", 777))]) == [AcknowledgementReceived(777)]


def test_it_takes_the_peer_chunk_size_up_to_the_limit():
    conn, client, _ = publishing("s")
    feed(conn, [client.set_chunk_size(MAX_CHUNK_SIZE_BYTES)])
    assert conn.peer_chunk_size == MAX_CHUNK_SIZE_BYTES
    frame = b"\x17\x01" + bytes(MAX_CHUNK_SIZE_BYTES * 2)
    assert feed(conn, [client.video(0, frame)]) == [VideoReceived(1, 0, frame)]


@pytest.mark.parametrize(
    ("size", "reason"),
    [
        (MAX_CHUNK_SIZE_BYTES + 1, "chunk size 65537 exceeds 65536"),
        (0, "invalid chunk size 0"),
        (0x80000000, "invalid chunk size -2147483648"),  # RTMP 5.4.1: the top bit must be 0
    ],
)
def test_it_refuses_peer_chunk_sizes_out_of_range(size, reason):
    conn, client, _ = connected()
    assert protocol_error(conn, client.control(1, struct.pack(">I", size))) == reason


def test_it_drops_an_aborted_message():
    conn, client, _ = publishing("s")
    data = client.video(0, bytes(300))
    events = feed(
        conn, [data[:140], client.control(2, struct.pack(">I", 6)), client.write(6, 9, 1, 40, b"\x17\x01v", fmt=0)]
    )
    assert events == [VideoReceived(1, 40, b"\x17\x01v")]


def test_it_ignores_set_peer_bandwidth_and_unknown_message_types():
    conn, client, _ = connected()
    assert feed(conn, [client.control(6, struct.pack(">IB", 1000, 2)), client.write(3, 19, 0, 0, b"so")]) == []
    assert conn.dropped_messages == 1


# --- the whole session, however it is cut -------------------------------------------


def test_it_gives_the_same_events_whole_split_and_byte_by_byte():
    data = publish_session()
    whole = feed(RtmpServerConnection(), [data])
    assert [type(e).__name__ for e in whole[:8]] == [
        "HandshakeCompleted",
        "ConnectRequested",
        "ReleaseStreamRequested",
        "FCPublishRequested",
        "StreamCreated",
        "PublishRequested",
        "MetadataReceived",
        "VideoReceived",
    ]
    assert len(whole) == 8 + 1 + 60 + 3
    for seed in range(3):
        assert feed(RtmpServerConnection(), split(data, 200, seed)) == whole
    assert feed(RtmpServerConnection(), [data[i : i + 1] for i in range(len(data))]) == whole


def test_it_holds_trailing_partial_input_without_events():
    data = publish_session(frames=3)
    conn = RtmpServerConnection()
    whole = feed(conn, [data])
    partial = encode_media_message(9, 9, 1, 0, bytes(10000), 4096)[:500]  # the session set 4096-byte chunks
    assert feed(conn, [partial]) == []
    assert conn.buffered_bytes == 500 - 12
    assert len(whole) == 8 + 1 + 6 + 3


# --- end of input, the ERROR state and misuse -------------------------------------------


def test_it_reports_the_end_of_input_and_refuses_more():
    conn, _, _ = connected()
    assert conn.receive_data(b"") == [PeerClosed()]
    with pytest.raises(RtmpUsageError, match="after the end of input"):
        conn.receive_data(b"x")


def test_it_stays_in_error_after_a_protocol_error():
    conn, client, _ = playing()
    conn.send_video(1, 0, b"\x17\x00")
    with pytest.raises(RtmpProtocolError) as first:
        conn.receive_data(client.control(1, struct.pack(">I", 0)))
    for call in (
        lambda: conn.receive_data(b"more"),
        lambda: conn.receive_data(b""),
        lambda: conn.accept_play(1, "s"),
        lambda: conn.send_video(1, 0, b""),
        lambda: conn.send_raw(b""),
        lambda: conn.send_ping(1),
    ):
        with pytest.raises(RtmpProtocolError) as again:
            call()
        assert again.value is first.value
    assert conn.data_to_send()  # still hands over what was queued before


def test_it_refuses_to_answer_a_connect_twice_or_one_never_made():
    conn, _, _ = connected()
    with pytest.raises(RtmpUsageError, match="no connect is waiting for an answer"):
        conn.accept_connect(ConnectRequested(1.0, "live", "", {}))
    with pytest.raises(RtmpUsageError, match="takes a ConnectRequested event"):
        conn.reject_connect("connect", "no")


# --- what a peer may hold before and after its publish is accepted (issue 11) ----------


def video_head(client: Client, payload_bytes: int, message_bytes: int = 1_000_000) -> bytes:
    """The first `payload_bytes` of a large video message on stream 1, cut
    at a chunk boundary (the client's chunk size is 4096)."""
    data = client.video(0, bytes(message_bytes))
    chunks = payload_bytes // 4096
    return data[: 12 + chunks * 4096 + chunks - 1]


def connected_4k(respond=answer, **limits) -> tuple[RtmpServerConnection, Client]:
    conn = RtmpServerConnection(random_bytes=not_random, **limits)
    client = Client()
    feed(conn, [C0C1, C2, client.set_chunk_size(4096), client.connect()], respond)
    return conn, client


def test_it_holds_incomplete_messages_up_to_the_limit_before_a_publish_request():
    conn, client = connected_4k()
    feed(conn, [client.command("createStream", 2, None), video_head(client, MAX_BUFFERED_BYTES_BEFORE_PUBLISH)])
    assert conn.buffered_bytes == MAX_BUFFERED_BYTES_BEFORE_PUBLISH


def test_it_refuses_one_chunk_past_the_limit_before_a_publish_request():
    conn, client = connected_4k()
    data = video_head(client, MAX_BUFFERED_BYTES_BEFORE_PUBLISH + 4096)
    assert protocol_error(conn, data) == "more than 16384 bytes of incomplete messages before a publish request"


def test_it_keeps_the_small_limit_for_a_player():
    conn, client = connected_4k()
    feed(conn, [client.command("createStream", 2, None), client.command("play", 3, None, "s", stream_id=1)])
    assert protocol_error(conn, video_head(client, 5 * 4096)).startswith("more than 16384 bytes")


@pytest.mark.parametrize("respond", [answer, None], ids=["accepted", "not answered yet"])
def test_it_takes_the_larger_limit_from_the_publish_request_on(respond):
    # Bytes alone decide: the same whether the caller answered before the
    # frame's chunks came or not.
    conn, client = connected_4k(max_buffered_bytes=256 * 1024)
    publish = client.publish("s")
    frame = client.video(0, bytes(1_000_000))
    head, rest = frame[: 12 + 64 * 4096 + 63], frame[12 + 64 * 4096 + 63 :][:4097]  # 64 chunks, then one more
    assert isinstance(feed(conn, [publish + head], respond)[-1], PublishRequested)
    assert conn.buffered_bytes == 256 * 1024
    assert protocol_error(conn, rest) == "more than 262144 bytes of incomplete messages"


def test_it_refuses_what_a_shared_budget_has_no_room_for_and_gives_its_share_back():
    budget = RtmpBufferBudget(max_bytes=40 * 1024)
    first, first_client = connected_4k(budget=budget)
    second, second_client = connected_4k(budget=budget)
    feed(first, [first_client.publish("a"), video_head(first_client, 32 * 1024)])
    feed(second, [second_client.publish("b")])
    assert budget.used_bytes == 32 * 1024
    reason = protocol_error(second, video_head(second_client, 12 * 1024))
    assert reason == "the node's 40960 bytes for incomplete messages are in use"
    first.close()
    assert budget.used_bytes == 0
    third, third_client = connected_4k(budget=budget)
    assert feed(third, [third_client.publish("c"), video_head(third_client, 12 * 1024)])
    assert budget.used_bytes == 12 * 1024
    assert third.receive_data(b"") == [PeerClosed()]
    assert budget.used_bytes == 0


def test_it_gives_back_its_share_of_the_budget_on_a_protocol_error():
    budget = RtmpBufferBudget()
    conn, client = connected_4k(budget=budget)
    feed(conn, [client.publish("s"), video_head(client, 8192)])
    assert budget.used_bytes == 8192
    protocol_error(conn, client.control(1, struct.pack(">I", 0)))
    assert budget.used_bytes == 0


def test_it_says_when_the_handshake_is_complete():
    conn = RtmpServerConnection(random_bytes=not_random)
    conn.receive_data(C0C1 + C2[:-1])
    assert not conn.handshake_complete
    conn.receive_data(C2[-1:])
    assert conn.handshake_complete
