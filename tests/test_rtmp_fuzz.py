"""Property tests of RtmpServerConnection (hypothesis): random bytes and
mutated valid sessions, fed whole and cut at random points, give events or
RtmpProtocolError -- never another exception -- with bounded buffers; and a
valid session gives the same events however it is cut."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livecenter.media.rtmp import (
    MAX_BUFFERED_BYTES,
    ConnectRequested,
    PlayRequested,
    PublishRequested,
    RtmpProtocolError,
    RtmpServerConnection,
)
from tests.test_rtmp_connection import C0C1, C2, Client, publish_session
from tests.test_rtmp_ffmpeg import captured_publish

HANDSHAKE = C0C1 + C2
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def play_session() -> bytes:
    client = Client()
    return HANDSHAKE + b"".join(
        [
            client.connect(),
            client.command("createStream", 2, None),
            client.command("play", 0, None, "s?auth_key=1", -2.0, stream_id=1),
            client.control(4, b"\x00\x03\x00\x00\x00\x01\x00\x00\x0b\xb8"),  # SetBufferLength
            client.control(5, b"\x00\x00\x10\x00"),  # Window Acknowledgement Size
            client.control(4, b"\x00\x06\x00\x00\x00\x07"),  # PingRequest
            client.command("closeStream", 0, None, stream_id=1),
            client.command("deleteStream", 3, None, 1.0),
        ]
    )


SESSIONS = {"publish": publish_session(frames=12), "play": play_session()}


def answer(conn: RtmpServerConnection, event) -> None:
    """What an accepting server does, sending to players as it goes."""
    if isinstance(event, ConnectRequested):
        conn.accept_connect(event)
    elif isinstance(event, PublishRequested):
        conn.accept_publish(event.stream_id, event.name)
    elif isinstance(event, PlayRequested):
        if conn.accept_play(event.stream_id, event.name):
            conn.send_video(event.stream_id, 0, b"\x17\x00" + bytes(50))


def run(data: bytes, cuts: list[int]) -> tuple[list, RtmpProtocolError | None]:
    """Feed `data` cut at `cuts`; the events, and the error if one came."""
    conn = RtmpServerConnection()
    events: list = []
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    try:
        for start, end in zip(points, points[1:], strict=False):
            for event in conn.receive_data(data[start:end]):
                events.append(event)
                answer(conn, event)
            conn.data_to_send()
            assert conn.buffered_bytes <= MAX_BUFFERED_BYTES
    except RtmpProtocolError as exc:
        with pytest.raises(RtmpProtocolError) as again:
            conn.receive_data(b"\x00")
        assert again.value is exc
        return events, exc
    conn.receive_data(b"")
    return events, None


def check(data: bytes, cuts: list[int]) -> None:
    whole_events, whole_error = run(data, [])
    cut_events, cut_error = run(data, cuts)
    # The bytes decide, not how they arrive: the same outcome, and without
    # an error the same events.
    assert (whole_error is None) == (cut_error is None)
    if whole_error is None:
        assert cut_events == whole_events


cuts = st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=40)


@FUZZ
@given(data=st.binary(max_size=3000), cuts=cuts)
def test_it_survives_random_bytes(data, cuts):
    check(data, cuts)


@FUZZ
@given(data=st.binary(max_size=3000), cuts=cuts)
def test_it_survives_random_bytes_after_a_handshake(data, cuts):
    check(HANDSHAKE + data, cuts)


def mutate(data: bytes, overwrites, deletion, insertion, truncate) -> bytes:
    body = bytearray(data)
    for index, value in overwrites:
        body[index % len(body)] = value
    start, length = deletion
    start %= len(body)
    del body[start : start + length]
    at, extra = insertion
    at %= len(body) + 1
    body[at:at] = extra
    if truncate:
        del body[truncate % (len(body) + 1) :]
    return bytes(body)


mutations = {
    "overwrites": st.lists(
        st.tuples(st.integers(len(HANDSHAKE), 1 << 20), st.integers(0, 255)), min_size=1, max_size=6
    ),
    "deletion": st.tuples(st.integers(len(HANDSHAKE), 1 << 20), st.integers(0, 20)),
    "insertion": st.tuples(st.integers(len(HANDSHAKE), 1 << 20), st.binary(max_size=20)),
    "truncate": st.integers(0, 1 << 20) | st.none(),
    "cuts": cuts,
}


@FUZZ
@given(session=st.sampled_from(sorted(SESSIONS)), **mutations)
def test_it_survives_mutated_sessions(session, overwrites, deletion, insertion, truncate, cuts):
    check(mutate(SESSIONS[session], overwrites, deletion, insertion, truncate), cuts)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**mutations)
def test_it_survives_a_mutated_ffmpeg_capture(overwrites, deletion, insertion, truncate, cuts):
    data = captured_publish().client_bytes[:12000]
    check(mutate(data, overwrites, deletion, insertion, truncate), cuts)


@settings(max_examples=60, deadline=None)
@given(session=st.sampled_from(sorted(SESSIONS)), cuts=cuts)
def test_it_gives_the_same_events_for_a_valid_session_however_it_is_cut(session, cuts):
    events, error = run(SESSIONS[session], cuts)
    assert error is None
    assert events == run(SESSIONS[session], [])[0]
