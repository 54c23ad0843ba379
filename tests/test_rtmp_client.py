"""RtmpClientConnection against our own RtmpServerConnection, bytes moved by
hand: publish and play from the handshake to the goodbye, refusals, pings,
acknowledgements, chunk sizes, and bad input. (Against a real node over
sockets in test_media_relay.py.)"""

from __future__ import annotations

import pytest

from livecenter.media import amf0
from livecenter.media.rtmp import (
    AudioReceived,
    ConnectRequested,
    DeleteStreamRequested,
    FCUnpublishRequested,
    MetadataReceived,
    PeerClosed,
    PingResponded,
    PlayRequested,
    PublishRequested,
    RtmpChunkWriter,
    RtmpProtocolError,
    RtmpServerConnection,
    RtmpUsageError,
    UnpublishRequested,
    VideoReceived,
)
from livecenter.media.rtmp.client import (
    Connected,
    PlayStarted,
    PublishStarted,
    Refused,
    RtmpClientConnection,
    StreamEnded,
)

TC_URL = "rtmp://center.test/live"
KEYFRAME = b"\x17\x01\x00\x00\x00" + bytes(9000)  # larger than both chunk sizes
AAC = b"\xaf\x01" + bytes(200)
META = amf0.encode("onMetaData", {"width": 1280.0, "height": 720.0})


def not_random(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


class Pair:
    """A client and a server connection; `pump` moves bytes both ways until
    both are quiet and returns what each side saw."""

    def __init__(self, publish: bool, stream: str = "s?auth_key=x") -> None:
        self.client = RtmpClientConnection("live", TC_URL, stream, publish=publish, random_bytes=not_random)
        self.server = RtmpServerConnection(random_bytes=not_random)
        self.client_events: list = []
        self.server_events: list = []

    def pump(self, chunk: int | None = None) -> None:
        while True:
            to_server = self.client.data_to_send()
            to_client = self.server.data_to_send()
            if not to_server and not to_client:
                return
            for data in _pieces(to_server, chunk):
                self.server_events += self.server.receive_data(data)
            for data in _pieces(to_client, chunk):
                self.client_events += self.client.receive_data(data)
            self._answer()

    def _answer(self) -> None:
        """The server's caller: accept whatever is asked."""
        for event in self.server_events:
            if isinstance(event, ConnectRequested) and not getattr(self, "connected", False):
                self.connected = True
                self.server.accept_connect(event)
            elif isinstance(event, PublishRequested) and not getattr(self, "answered", False):
                self.answered = True
                self.server.accept_publish(event.stream_id, event.name)
            elif isinstance(event, PlayRequested) and not getattr(self, "answered", False):
                self.answered = True
                self.server.accept_play(event.stream_id, event.name)


def _pieces(data: bytes, size: int | None):
    if not data:
        return
    if size is None:
        yield data
        return
    for i in range(0, len(data), size):
        yield data[i : i + size]


def kinds(events: list) -> list[type]:
    return [type(e) for e in events]


@pytest.mark.parametrize("chunk", [None, 1, 1000])
def test_it_publishes_through_the_handshake_connect_create_stream_and_publish(chunk):
    pair = Pair(publish=True)
    pair.pump(chunk)
    connect = next(e for e in pair.server_events if isinstance(e, ConnectRequested))
    assert (connect.app, connect.tc_url) == ("live", TC_URL)
    publish = next(e for e in pair.server_events if isinstance(e, PublishRequested))
    assert (publish.stream_name, publish.query, publish.publish_type) == ("s", {"auth_key": "x"}, "live")
    assert kinds(pair.client_events) == [Connected, PublishStarted]
    assert pair.client.started and pair.client.stream_id == publish.stream_id
    assert pair.server.peer_chunk_size == 4096

    pair.server_events.clear()
    pair.client.send_metadata(0, META)
    pair.client.send_video(40, KEYFRAME)
    pair.client.send_audio(0x1_0000_0005, AAC)  # wraps to 32 bits
    pair.pump(chunk)
    meta, video, audio = pair.server_events
    assert isinstance(meta, MetadataReceived) and meta.data == {"width": 1280.0, "height": 720.0}
    assert isinstance(video, VideoReceived) and (video.timestamp, video.payload) == (40, KEYFRAME)
    assert isinstance(audio, AudioReceived) and (audio.timestamp, audio.payload) == (5, AAC)


def test_it_says_goodbye_as_obs_does():
    pair = Pair(publish=True)
    pair.pump()
    pair.server_events.clear()
    pair.client.close_stream()
    pair.pump()
    assert kinds(pair.server_events) == [UnpublishRequested, FCUnpublishRequested, DeleteStreamRequested]
    assert not pair.client.started
    with pytest.raises(RtmpUsageError):
        pair.client.send_video(0, KEYFRAME)


def test_it_plays_and_reports_media_then_the_end_of_the_stream():
    pair = Pair(publish=False)
    pair.pump()
    assert kinds(pair.client_events) == [Connected, PlayStarted]
    play = next(e for e in pair.server_events if isinstance(e, PlayRequested))
    pair.client_events.clear()
    pair.server.send_metadata(play.stream_id, 0, META)
    pair.server.send_video(play.stream_id, 33, KEYFRAME)
    pair.server.send_audio(play.stream_id, 34, AAC)
    pair.server.send_unpublish_notify(play.stream_id)
    pair.pump(700)
    meta, video, audio, ended = pair.client_events
    assert isinstance(meta, MetadataReceived) and meta.payload == META
    assert isinstance(video, VideoReceived) and (video.timestamp, video.payload) == (33, KEYFRAME)
    assert isinstance(audio, AudioReceived) and audio.payload == AAC
    assert ended == StreamEnded("NetStream.Play.UnpublishNotify")
    with pytest.raises(RtmpUsageError):
        pair.client.send_video(0, KEYFRAME)  # a player sends no media


def test_a_refused_publish_is_an_event_naming_the_servers_code():
    pair = Pair(publish=True)
    pair.answered = True  # our caller answers instead
    pair.pump()
    publish = next(e for e in pair.server_events if isinstance(e, PublishRequested))
    pair.server.reject_publish(publish.stream_id, "NetStream.Publish.BadName", "s is already being published")
    pair.pump()
    assert pair.client_events[-1] == Refused("NetStream.Publish.BadName", "s is already being published")
    assert not pair.client.started


def test_a_refused_connect_is_an_event():
    pair = Pair(publish=False)
    pair.connected = True
    pair.pump()
    connect = next(e for e in pair.server_events if isinstance(e, ConnectRequested))
    pair.server.reject_connect(connect, "unknown domain")
    pair.pump()
    assert pair.client_events == [Refused("NetConnection.Connect.Rejected", "unknown domain")]


def test_it_answers_pings_and_acknowledges_by_the_servers_window():
    pair = Pair(publish=False)
    pair.pump()
    pair.server_events.clear()
    pair.server.send_ping(1234)
    play = pair.client.stream_id
    # More than the server's window (2.5 MB) of video.
    for i in range(300):
        pair.server.send_video(play, i, KEYFRAME)
    pair.pump()
    assert PingResponded(1234) in pair.server_events
    acks = [e for e in pair.server_events if type(e).__name__ == "AcknowledgementReceived"]
    assert acks and acks[0].sequence_number >= 2_500_000


def test_the_end_of_input_is_an_event_and_later_input_a_usage_error():
    pair = Pair(publish=True)
    pair.pump()
    assert pair.client.receive_data(b"") == [PeerClosed()]
    with pytest.raises(RtmpUsageError):
        pair.client.receive_data(b"x")


def test_a_server_speaking_another_version_is_refused():
    client = RtmpClientConnection("live", TC_URL, "s", publish=True, random_bytes=not_random)
    assert client.data_to_send()[:1] == b"\x03"
    with pytest.raises(RtmpProtocolError, match="version 6"):
        client.receive_data(b"\x06" + bytes(3072))
    with pytest.raises(RtmpProtocolError):
        client.receive_data(b"\x03")  # the error sticks


def test_a_bad_create_stream_answer_is_a_protocol_error():
    client = RtmpClientConnection("live", TC_URL, "s", publish=True, random_bytes=not_random)
    writer = RtmpChunkWriter()
    client.receive_data(b"\x03" + bytes(3072))
    client.receive_data(writer.write(3, 20, 0, 0, amf0.encode("_result", 1.0, {}, {"code": "x"})))
    with pytest.raises(RtmpProtocolError, match="stream id"):
        client.receive_data(writer.write(3, 20, 0, 0, amf0.encode("_result", 4.0, None, -1.0)))


def test_before_connect_is_answered_the_server_may_buffer_little():
    client = RtmpClientConnection("live", TC_URL, "s", publish=True, random_bytes=not_random)
    client.receive_data(b"\x03" + bytes(3072))
    writer = RtmpChunkWriter(chunk_size=128)
    huge = writer.write(3, 20, 0, 0, bytes(200_000))
    with pytest.raises(RtmpProtocolError, match="incomplete messages"):
        client.receive_data(huge[:100_000])
