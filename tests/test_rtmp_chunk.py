"""The RTMP chunk stream (RTMP 5.3): header types, timestamps, chunk sizes,
interleaving, and the reader's limits at and one past each."""

import random
import struct

import pytest

from livecenter.media.rtmp import (
    MAX_BUFFERED_BYTES,
    MAX_CHUNK_SIZE_BYTES,
    MAX_CHUNK_STREAMS,
    MAX_MESSAGE_BYTES,
    RtmpBufferBudget,
    RtmpChunkReader,
    RtmpChunkWriter,
    RtmpMessage,
    RtmpProtocolError,
    encode_media_message,
)


def read(data: bytes, chunk_size: int = 128, pieces: int | None = None, seed: int = 0) -> list[RtmpMessage]:
    """Every message in `data`, fed whole or cut into `pieces` at random."""
    reader = RtmpChunkReader()
    reader.chunk_size = chunk_size
    cuts = [0, len(data)]
    if pieces:
        cuts = sorted({0, len(data), *random.Random(seed).sample(range(len(data)), min(pieces, len(data)))})
    messages = []
    for start, end in zip(cuts, cuts[1:], strict=False):
        reader.feed(data[start:end])
        while (message := reader.next_message()) is not None:
            messages.append(message)
    assert reader.buffered_bytes == 0
    return messages


def read_bytewise(data: bytes, chunk_size: int = 128) -> list[RtmpMessage]:
    reader = RtmpChunkReader()
    reader.chunk_size = chunk_size
    messages = []
    for i in range(len(data)):
        reader.feed(data[i : i + 1])
        while (message := reader.next_message()) is not None:
            messages.append(message)
    return messages


def reason(call) -> str:
    with pytest.raises(RtmpProtocolError) as caught:
        call()
    return caught.value.reason


def test_it_reads_a_type_0_chunk():
    data = bytes([0x03]) + b"\x00\x00\x64" + b"\x00\x00\x03" + b"\x14" + struct.pack("<I", 1) + b"abc"
    assert read(data) == [RtmpMessage(3, 20, 1, 100, b"abc")]


@pytest.mark.parametrize(
    ("chunk_stream_id", "basic_header"),
    [
        (2, b"\x02"),
        (63, b"\x3f"),
        (64, b"\x00\x00"),
        (319, b"\x00\xff"),
        (320, b"\x01\x00\x01"),
        (65599, b"\x01\xff\xff"),
    ],
)
def test_it_reads_and_writes_all_three_basic_header_sizes(chunk_stream_id, basic_header):
    data = encode_media_message(chunk_stream_id, 9, 1, 5, b"x" * 300, 128)
    assert data.startswith(basic_header)
    assert data[len(basic_header) + 11 + 128 :].startswith(bytes([0xC0 | basic_header[0]]) + basic_header[1:])
    assert read(data) == [RtmpMessage(chunk_stream_id, 9, 1, 5, b"x" * 300)]


def test_it_refuses_chunk_stream_ids_outside_the_range_when_writing():
    with pytest.raises(ValueError, match="outside 2..65599"):
        encode_media_message(1, 9, 1, 0, b"", 128)
    with pytest.raises(ValueError, match="outside 2..65599"):
        encode_media_message(65600, 9, 1, 0, b"", 128)


def test_it_accumulates_deltas_of_type_1_2_and_3_headers():
    # RTMP 5.3.2.1, example 1: audio messages with a constant delta.
    writer = RtmpChunkWriter()
    data = b"".join(
        [
            writer.write(4, 8, 1, 1000, b"a" * 32),
            writer.write(4, 8, 1, 1020, b"b" * 32),
            writer.write(4, 8, 1, 1040, b"c" * 32),
            writer.write(4, 8, 1, 1060, b"d" * 32),
            writer.write(4, 9, 1, 1070, b"e" * 10),
        ]
    )
    kinds = [0, 2, 3, 3, 1]
    offsets = [0, 12 + 32, 12 + 32 + 4 + 32, 12 + 32 + 4 + 32 + 1 + 32, 12 + 32 + 4 + 32 + 1 + 32 + 1 + 32]
    assert [data[offset] >> 6 for offset in offsets] == kinds
    assert [(m.timestamp, m.message_type, m.payload[:1]) for m in read(data)] == [
        (1000, 8, b"a"),
        (1020, 8, b"b"),
        (1040, 8, b"c"),
        (1060, 8, b"d"),
        (1070, 9, b"e"),
    ]


def test_it_splits_a_long_message_into_type_3_chunks():
    # RTMP 5.3.2.2, example 2: 307 bytes in 128-byte chunks.
    data = RtmpChunkWriter().write(4, 9, 1, 1000, bytes(range(256)) + bytes(51))
    assert len(data) == 12 + 128 + 1 + 128 + 1 + 51
    assert data[12 + 128] == 0xC4
    assert read(data)[0].payload == bytes(range(256)) + bytes(51)


def test_it_reads_a_type_3_message_after_a_type_0_as_the_spec_says():
    # RTMP 5.3.1.2.4: the delta after a type 0 header is its timestamp.
    writer = RtmpChunkWriter()
    data = writer.write(4, 8, 1, 40, b"a") + writer.write(4, 8, 1, 80, b"b")
    assert data[13] >> 6 == 3
    assert [m.timestamp for m in read(data)] == [40, 80]


def test_it_takes_the_message_stream_id_as_0_when_a_chunk_stream_begins_with_type_1():
    data = RtmpChunkWriter().write(7, 9, 0, 33, b"v", fmt=1)
    assert read(data) == [RtmpMessage(7, 9, 0, 33, b"v")]


def test_it_wraps_timestamps_at_32_bits():
    writer = RtmpChunkWriter()
    data = writer.write(4, 8, 1, 0xFFFFFFF0, b"a") + writer.write(4, 8, 1, 0x10, b"b", fmt=2)
    assert [m.timestamp for m in read(data)] == [0xFFFFFFF0, 0x10]


@pytest.mark.parametrize("timestamp", [0xFFFFFF, 0x1000000, 0xFFFFFFFF])
def test_it_reads_and_writes_extended_timestamps(timestamp):
    payload = bytes(range(256)) * 3
    data = encode_media_message(6, 9, 1, timestamp, payload, 128)
    assert data[1:4] == b"\xff\xff\xff"
    assert data[12:16] == struct.pack(">I", timestamp)
    # RTMP 5.3.1.3: repeated on every type 3 continuation chunk.
    assert data[16 + 128 : 16 + 128 + 5] == b"\xc6" + struct.pack(">I", timestamp)
    assert read(data) == [RtmpMessage(6, 9, 1, timestamp, payload)]
    assert read_bytewise(data) == [RtmpMessage(6, 9, 1, timestamp, payload)]


def test_it_writes_a_plain_timestamp_just_below_the_extended_range():
    data = encode_media_message(6, 9, 1, 0xFFFFFE, b"x" * 200, 128)
    assert data[1:4] == b"\xff\xff\xfe"
    assert len(data) == 12 + 128 + 1 + 72


def test_it_reads_extended_timestamps_a_peer_does_not_repeat_on_continuations():
    payload = bytes(range(256)) * 3
    data = RtmpChunkWriter(repeat_extended_timestamp=False).write(6, 9, 1, 0x2000000, payload)
    assert len(data) == 16 + len(payload) + 5
    assert read(data) == [RtmpMessage(6, 9, 1, 0x2000000, payload)]
    assert read_bytewise(data) == [RtmpMessage(6, 9, 1, 0x2000000, payload)]


def test_it_reads_extended_deltas_on_type_1_2_and_3_headers():
    writer = RtmpChunkWriter()
    base = 5
    times = [base, base + 0x1000000, base + 0x2000000, base + 0x3000000]
    data = b"".join(
        [
            writer.write(4, 8, 1, times[0], b"a" * 10),
            writer.write(4, 8, 1, times[1], b"b" * 300),  # type 1, extended delta, continuations
            writer.write(4, 8, 1, times[2], b"c" * 300),  # type 3: same delta, still extended
            writer.write(4, 8, 1, times[3] + 1, b"d" * 300),  # type 2
        ]
    )
    messages = read(data)
    assert [m.timestamp for m in messages] == [times[0], times[1], times[2], times[3] + 1]
    assert [m.payload for m in messages] == [b"a" * 10, b"b" * 300, b"c" * 300, b"d" * 300]
    assert read(data, pieces=40) == messages
    assert read_bytewise(data) == messages


def test_it_joins_interleaved_chunk_streams():
    audio = encode_media_message(4, 8, 1, 10, b"A" * 300, 128)
    video = encode_media_message(6, 9, 1, 20, b"V" * 300, 128)
    # Chunks: audio 12+128, video 12+128, audio 1+128, video 1+128, ...
    a = [audio[:140], audio[140:269], audio[269:]]
    v = [video[:140], video[140:269], video[269:]]
    data = a[0] + v[0] + a[1] + v[1] + v[2] + a[2]
    assert read(data) == [RtmpMessage(6, 9, 1, 20, b"V" * 300), RtmpMessage(4, 8, 1, 10, b"A" * 300)]


def test_it_gives_the_same_messages_whole_split_and_byte_by_byte():
    writer = RtmpChunkWriter(chunk_size=100)
    data = b"".join(
        writer.write(csid, kind, 1, t * 33, bytes([t % 256]) * (t * 37 % 700))
        for t in range(60)
        for csid, kind in ((4, 8), (6, 9), (400, 18))
    )
    whole = read(data, chunk_size=100)
    assert len(whole) == 180
    assert read(data, chunk_size=100, pieces=50, seed=1) == whole
    assert read_bytewise(data, chunk_size=100) == whole


def test_it_reads_an_empty_message():
    assert read(encode_media_message(3, 20, 0, 0, b"", 128)) == [RtmpMessage(3, 20, 0, 0, b"")]


def test_it_applies_a_new_chunk_size_from_the_next_chunk():
    reader = RtmpChunkReader()
    reader.feed(encode_media_message(2, 1, 0, 0, struct.pack(">I", 4096), 128))
    assert reader.next_message().payload == struct.pack(">I", 4096)
    reader.set_chunk_size(4096)
    reader.feed(encode_media_message(6, 9, 1, 0, b"v" * 5000, 4096))
    assert reader.next_message().payload == b"v" * 5000


def test_it_accepts_the_largest_chunk_size():
    reader = RtmpChunkReader()
    reader.set_chunk_size(MAX_CHUNK_SIZE_BYTES)
    payload = b"k" * (MAX_CHUNK_SIZE_BYTES + 10)
    data = encode_media_message(6, 9, 1, 0, payload, MAX_CHUNK_SIZE_BYTES)
    assert len(data) == 12 + len(payload) + 1
    reader.feed(data)
    assert reader.next_message().payload == payload


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (MAX_CHUNK_SIZE_BYTES + 1, "chunk size 65537 exceeds 65536"),
        (0, "invalid chunk size 0"),
        (-1, "invalid chunk size -1"),
    ],
)
def test_it_refuses_chunk_sizes_out_of_range(size, expected):
    assert reason(lambda: RtmpChunkReader().set_chunk_size(size)) == expected


def test_it_drops_a_partial_message_on_abort():
    reader = RtmpChunkReader()
    reader.feed(encode_media_message(6, 9, 1, 0, b"v" * 300, 128)[: 12 + 128 + 1 + 128])  # two chunks
    assert reader.next_message() is None
    assert reader.buffered_bytes == 256
    reader.abort(6)
    assert reader.buffered_bytes == 0
    reader.abort(6)  # nothing left to abort
    reader.abort(99)  # a chunk stream never seen
    reader.feed(RtmpChunkWriter().write(6, 9, 1, 0, b"new"))
    assert reader.next_message().payload == b"new"


def test_it_accepts_a_message_at_the_size_limit():
    payload = bytes(MAX_MESSAGE_BYTES)
    assert read(encode_media_message(6, 9, 1, 0, payload, MAX_CHUNK_SIZE_BYTES), MAX_CHUNK_SIZE_BYTES)[0].payload == (
        payload
    )


def test_it_refuses_a_message_one_byte_past_the_size_limit():
    header = encode_media_message(6, 9, 1, 0, bytes(MAX_MESSAGE_BYTES + 1), 128)[:12]
    reader = RtmpChunkReader()
    reader.feed(header)
    assert reason(reader.next_message) == "message of 8388609 bytes exceeds 8388608"


def test_it_accepts_as_many_chunk_streams_as_the_limit():
    data = b"".join(encode_media_message(csid, 8, 1, 0, b"a", 128) for csid in range(3, 3 + MAX_CHUNK_STREAMS))
    assert len(read(data)) == MAX_CHUNK_STREAMS


def test_it_refuses_one_chunk_stream_past_the_limit():
    data = b"".join(encode_media_message(csid, 8, 1, 0, b"a", 128) for csid in range(3, 4 + MAX_CHUNK_STREAMS))
    assert reason(lambda: read(data)) == "more than 64 chunk streams"


def fill_to(extra: int) -> RtmpChunkReader:
    """A reader holding MAX_BUFFERED_BYTES + `extra` bytes of two incomplete
    messages (each cut at a chunk boundary, so the next may begin)."""
    size = MAX_CHUNK_SIZE_BYTES
    reader = RtmpChunkReader()
    reader.set_chunk_size(size)
    big = encode_media_message(6, 9, 1, 0, bytes(MAX_MESSAGE_BYTES), size)
    big_chunks = MAX_MESSAGE_BYTES // size - 1
    reader.feed(big[: 12 + big_chunks * size + big_chunks - 1])  # a 1-byte header on each continuation
    assert reader.next_message() is None
    assert reader.buffered_bytes == big_chunks * size
    small_chunks = (MAX_BUFFERED_BYTES - big_chunks * size) // size
    small = encode_media_message(4, 8, 1, 0, bytes((small_chunks + 1) * size), size)
    end = 12 + small_chunks * size + small_chunks - 1
    reader.feed(small[: end + (1 + extra if extra else 0)])
    return reader


def test_it_holds_incomplete_messages_up_to_the_buffer_limit():
    reader = fill_to(0)
    assert reader.next_message() is None
    assert reader.buffered_bytes == MAX_BUFFERED_BYTES


def test_it_refuses_to_hold_one_byte_past_the_buffer_limit():
    reader = fill_to(1)
    assert reason(reader.next_message) == "more than 9437184 bytes of incomplete messages"


def test_it_counts_a_partial_header_towards_the_buffer():
    reader = RtmpChunkReader()
    reader.feed(encode_media_message(6, 9, 1, 0, b"v", 128)[:7])
    assert reader.next_message() is None
    assert reader.buffered_bytes == 7


def partial(size: int, csid: int = 6) -> bytes:
    """The first `size` payload bytes of a 100 KB video message (128-byte
    chunks), cut at a chunk boundary."""
    data = encode_media_message(csid, 9, 1, 0, bytes(100_000), 128)
    chunks = size // 128
    return data[: 12 + chunks * 128 + chunks - 1]


def test_it_holds_incomplete_messages_up_to_a_limit_its_caller_sets():
    reader = RtmpChunkReader(max_buffered_bytes=1024)
    reader.feed(partial(1024))
    assert reader.next_message() is None
    assert reader.buffered_bytes == 1024


def test_it_refuses_one_chunk_past_a_limit_its_caller_sets_and_names_it():
    reader = RtmpChunkReader()
    reader.set_buffer_limit(1024, " before a publish request")
    reader.feed(partial(1024 + 128))
    assert reason(reader.next_message) == "more than 1024 bytes of incomplete messages before a publish request"


def test_it_charges_a_shared_budget_and_gives_back_what_completes():
    budget = RtmpBufferBudget(max_bytes=2048)
    reader = RtmpChunkReader(budget=budget)
    whole = encode_media_message(6, 9, 1, 0, bytes(1500), 128)
    reader.feed(whole[:700])
    assert reader.next_message() is None
    assert 0 < budget.used_bytes == reader.buffered_bytes
    reader.feed(whole[700:])
    assert reader.next_message().payload == bytes(1500)
    assert budget.used_bytes == 0


def test_it_fills_a_shared_budget_to_the_byte_and_refuses_the_next_chunk():
    budget = RtmpBufferBudget(max_bytes=2048)
    first, second = RtmpChunkReader(budget=budget), RtmpChunkReader(budget=budget)
    first.feed(partial(1024))
    second.feed(partial(1024))
    assert first.next_message() is None and second.next_message() is None
    assert budget.used_bytes == 2048
    second.feed(partial(1024 + 128)[len(partial(1024)) :])
    assert reason(second.next_message) == "the node's 2048 bytes for incomplete messages are in use"
    assert budget.used_bytes == 2048  # the refused chunk was not charged


def test_it_gives_its_share_of_the_budget_back_on_abort_and_close():
    budget = RtmpBufferBudget()
    reader = RtmpChunkReader(budget=budget)
    reader.feed(partial(512, csid=6) + partial(256, csid=4))
    assert reader.next_message() is None
    assert budget.used_bytes == 768
    reader.abort(4)
    assert budget.used_bytes == 512
    reader.close()
    reader.close()
    assert budget.used_bytes == 0
    assert reader.buffered_bytes == 0


def test_it_refuses_a_chunk_stream_that_begins_without_a_full_header():
    assert reason(lambda: read(b"\x85")) == "chunk stream 5 begins with a type 2 chunk header"
    assert reason(lambda: read(b"\xc5")) == "chunk stream 5 begins with a type 3 chunk header"


def test_it_refuses_a_new_message_header_in_the_middle_of_a_message():
    data = encode_media_message(6, 9, 1, 0, b"v" * 300, 128)[:140] + encode_media_message(6, 9, 1, 0, b"w", 128)
    assert reason(lambda: read(data)) == (
        "chunk stream 6: a type 0 chunk header before the previous message was complete"
    )


def test_it_writes_each_header_type_only_when_the_previous_message_allows():
    writer = RtmpChunkWriter()
    assert writer.write(4, 8, 1, 0, b"ab")[0] >> 6 == 0
    assert writer.write(4, 8, 2, 10, b"ab")[0] >> 6 == 0  # another message stream
    assert writer.write(4, 8, 2, 5, b"ab")[0] >> 6 == 0  # time went back
    assert writer.write(4, 8, 2, 15, b"abc")[0] >> 6 == 1  # another length
    assert writer.write(4, 8, 2, 16, b"abc")[0] >> 6 == 2  # another delta
    assert writer.write(4, 8, 2, 17, b"abc")[0] >> 6 == 3  # the same delta
    with pytest.raises(ValueError, match="same delta"):
        writer.write(4, 8, 2, 30, b"abc", fmt=3)
    with pytest.raises(ValueError, match="same length and type"):
        writer.write(4, 9, 2, 30, b"abc", fmt=2)
    with pytest.raises(ValueError, match="type 0 or 1"):
        writer.write(5, 9, 2, 30, b"abc", fmt=2)


def test_it_encodes_media_the_same_for_everyone():
    one = encode_media_message(6, 9, 1, 1000, b"frame" * 1000, 4096)
    assert one == encode_media_message(6, 9, 1, 1000, memoryview(b"frame" * 1000), 4096)
    assert one[0] == 0x06 and one[12 + 4096] == 0xC6
    assert read(one, chunk_size=4096) == [RtmpMessage(6, 9, 1, 1000, b"frame" * 1000)]


def test_it_refuses_to_encode_what_the_header_cannot_carry():
    with pytest.raises(ValueError, match="24-bit length field"):
        encode_media_message(6, 9, 1, 0, bytes(0x1000000), 4096)
    with pytest.raises(ValueError, match="must be positive"):
        encode_media_message(6, 9, 1, 0, b"x", 0)
