"""Fuzz harnesses, one per sans-IO parser (bench/fuzz/run.py drives them).

Each target is a function of one input (bytes) that drives a parser the way
the node does and lets through only the parser's own protocol error; any
other exception is a finding. Each also has an "at the limits" list: inputs
exactly at a named size limit (accepted) and one past it (refused with the
protocol error).

Run one target in this process (what run.py does, one process per target):

    python bench/fuzz/targets.py NAME STATS_JSON FINDINGS_DIR [libFuzzer args...]

The parser modules are imported under atheris' instrumentation so libFuzzer
sees their coverage; nothing else is instrumented.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_INSTRUMENT = os.environ.get("LIVECENTER_FUZZ_INSTRUMENT") == "1"
if _INSTRUMENT:
    import atheris

    _imports = atheris.instrument_imports(include=["livecenter", "aiortc.sdp"])
else:
    _imports = contextlib.nullcontext()

with _imports:
    import h11
    from aiortc.sdp import SessionDescription

    from livecenter.media import amf0, codecs, flv, hls, mpegts, mpegts_demux
    from livecenter.media.admission import domain_of
    from livecenter.media.http_server import _HLS_MEDIA_PATH_RE, _PLAY_PATH_RE, MAX_REQUEST_HEAD_BYTES
    from livecenter.media.rtmp import chunk as rtmp_chunk
    from livecenter.media.rtmp.client import PublishStarted, RtmpClientConnection
    from livecenter.media.rtmp.connection import RtmpServerConnection
    from livecenter.media.rtmp.errors import RtmpProtocolError
    from livecenter.media.rtmp.events import ConnectRequested, PlayRequested, PublishRequested
    from livecenter.media.rts import h264 as rts_h264
    from livecenter.media.rts import whep
    from livecenter.media.signing import check_segment_token
    from livecenter.media.srt import crypto as srt_crypto
    from livecenter.media.srt import packets as srt_packets
    from livecenter.media.srt.connection import MAX_REORDER_PACKETS, MAX_SEND_BUFFER_PACKETS
    from livecenter.media.srt.errors import SrtProtocolError
    from livecenter.media.srt.events import SrtConnectionRequested, SrtDataReceived
    from livecenter.media.srt.listener import COOKIE_PERIOD_US, SrtListener

SLOW_CPU_SECONDS = 0.1  # the campaign's bound on one input's CPU time
RTMP_HANDSHAKE = b"\x03" + bytes(1536) + bytes(1536)  # C0 C1 C2: the server checks only C0


FEED_WHOLE = False  # the limits stage feeds its (large) inputs whole


MAX_PIECES = 64


def pieces(data: bytes) -> Iterator[bytes]:
    """`data` cut into pieces whose size the last byte picks (1 to 9,436
    bytes), so one input is also fed in different cuts; at most MAX_PIECES
    of them, as byte-at-a-time feeding of a long input measures the cost of
    a call (a few microseconds, linear), not of the parser."""
    if FEED_WHOLE:
        yield data
        return
    step = max(1 + (data[-1] * 37 if data else 0), len(data) // MAX_PIECES)
    for start in range(0, len(data), step):
        yield data[start : start + step]


# --- RTMP ------------------------------------------------------------------------


def _answer(conn: RtmpServerConnection, event) -> None:
    """What an accepting server does."""
    if isinstance(event, ConnectRequested):
        conn.accept_connect(event)
    elif isinstance(event, PublishRequested):
        conn.accept_publish(event.stream_id, event.name)
    elif isinstance(event, PlayRequested) and conn.accept_play(event.stream_id, event.name):
        conn.send_video(event.stream_id, 0, b"\x17\x00" + bytes(8))


def rtmp_connection(data: bytes) -> None:
    """First byte even: a valid handshake comes first and the rest is the
    chunk stream (what the fuzzer should spend its time on); odd: the rest
    is the whole input, handshake included."""
    if not data:
        return
    body = data[1:]
    if not data[0] & 1:
        body = RTMP_HANDSHAKE + body
    conn = RtmpServerConnection()
    for piece in pieces(body):
        for event in conn.receive_data(piece):
            _answer(conn, event)
        conn.data_to_send()
        assert conn.buffered_bytes <= rtmp_chunk.MAX_BUFFERED_BYTES, conn.buffered_bytes
    conn.receive_data(b"")


def rtmp_client(data: bytes) -> None:
    """What a server sends our client (rtmp/client.py), which a node uses to
    push to or pull from another node. First byte: bit 0 publish (else
    play), bit 1 the input starts after a valid S0 S1 S2. A publisher sends
    a frame after each piece once it has started."""
    if not data:
        return
    body = data[1:]
    if not data[0] & 2:
        body = RTMP_HANDSHAKE + body
    conn = RtmpClientConnection("live", "rtmp://center/live", "s?k=v", publish=bool(data[0] & 1))
    for piece in pieces(body):
        for event in conn.receive_data(piece):
            if isinstance(event, PublishStarted):
                conn.send_metadata(0, amf0.encode("onMetaData", {}))
        if conn.started and conn.publish:
            conn.send_video(40, b"\x17\x01\x00\x00\x00" + bytes(64))
        conn.data_to_send()
        assert conn.buffered_bytes <= rtmp_chunk.MAX_BUFFERED_BYTES, conn.buffered_bytes
    conn.receive_data(b"")


def rtmp_chunk_stream(data: bytes) -> None:
    """The chunk stream alone (after the handshake), applying Set Chunk Size
    and Abort between messages as the connection does."""
    reader = rtmp_chunk.RtmpChunkReader()
    for piece in pieces(data):
        reader.feed(piece)
        while (message := reader.next_message()) is not None:
            if message.message_type in (1, 2) and len(message.payload) >= 4:
                (value,) = struct.unpack_from(">I", message.payload)
                if message.message_type == 1:
                    reader.set_chunk_size(value - (1 << 32) if value & 0x80000000 else value)
                else:
                    reader.abort(value)
        assert reader.buffered_bytes <= rtmp_chunk.MAX_BUFFERED_BYTES, reader.buffered_bytes


# --- AMF0, FLV, codecs --------------------------------------------------------------


def amf0_decode(data: bytes) -> None:
    values = amf0.decode_all(data)
    amf0.decode_all(amf0.encode(*values))  # what we decoded, we can write and read back


def flv_read(data: bytes) -> None:
    """An FLV stream in, its tags out, and the tag body helpers the hub
    calls on each (they never raise)."""
    reader = flv.FlvReader()
    for piece in pieces(data):
        for tag in reader.receive_data(piece):
            body = tag.body
            flv.video_is_sequence_header(body), flv.video_is_keyframe(body), flv.avc_composition_time(body)
            flv.audio_is_sequence_header(body), flv.audio_sample_rate(body), flv.audio_channels(body)
        assert reader.buffered_bytes <= flv.MAX_BUFFERED_BYTES
    reader.receive_data(b"")


def codecs_parse(data: bytes) -> None:
    """First byte picks the parser; the rest is its input."""
    if not data:
        return
    which, body = data[0] % 8, data[1:]
    if which == 0:
        codecs.parse_sps(body)
    elif which == 1:
        config = codecs.parse_avc_sequence_header(body)
        config.width, config.height, config.profile_name, config.level, config.annexb_parameter_sets()
    elif which == 2:
        codecs.parse_avc_decoder_config(body)
    elif which == 3:
        codecs.avcc_to_annexb(body, 1 + data[0] // 8 % 4)
    elif which == 4:
        _ = codecs.parse_aac_sequence_header(body).profile_name
    elif which == 5:
        codecs.parse_audio_specific_config(body)
    elif which == 6:
        rts_h264.flv_video_has_b_slices(body, 1 + data[0] // 8 % 4)
    else:
        rts_h264.slice_type(body)


# --- MPEG-TS ------------------------------------------------------------------------


def _frames(data: bytes) -> Iterator[tuple[str, int, bytes]]:
    """FLV tags as frames; a stream that goes bad just ends."""
    reader = flv.FlvReader()
    with contextlib.suppress(flv.FlvProtocolError):
        for tag in reader.receive_data(data):
            kind = {flv.VIDEO: "video", flv.AUDIO: "audio"}.get(tag.tag_type, "meta")
            yield kind, tag.timestamp, tag.body


def _check_ts(ts: bytes, continuity: dict[int, int]) -> None:
    """The muxer's output read back: whole packets, sync bytes, continuity
    counters in step per PID, and valid CRCs on PSI."""
    assert len(ts) % mpegts.TS_PACKET_BYTES == 0, len(ts)
    for offset in range(0, len(ts), mpegts.TS_PACKET_BYTES):
        packet = ts[offset : offset + mpegts.TS_PACKET_BYTES]
        assert packet[0] == mpegts.SYNC_BYTE
        pid = (packet[1] & 0x1F) << 8 | packet[2]
        counter, adaptation = packet[3] & 0x0F, packet[3] >> 4 & 3
        assert adaptation != 0
        if adaptation & 1:
            if pid in continuity:
                assert counter == (continuity[pid] + 1) & 0x0F, (pid, counter, continuity[pid])
            continuity[pid] = counter
        if adaptation == 3:
            assert packet[4] <= mpegts.TS_PAYLOAD_BYTES - 1
        if pid in (mpegts.PAT_PID, mpegts.PMT_PID):
            section_length = (packet[6] & 0x0F) << 8 | packet[7]
            section = packet[5 : 8 + section_length]
            assert mpegts.crc32_mpeg2(section) == 0


def mpegts_mux(data: bytes, strict: bool = False) -> None:
    """FLV tags in (the hub's frames), TS out, and the TS read back. A
    refused frame is dropped and the muxer goes on, as the packager does
    (`strict`: the refusal is raised, for the limits stage)."""
    muxer = mpegts.TsMuxer()
    continuity: dict[int, int] = {}
    for kind, timestamp, body in _frames(data):
        try:
            if kind == "video" and flv.video_is_sequence_header(body):
                muxer.set_video_config(body)
                _check_ts(muxer.psi(), continuity)
            elif kind == "audio" and flv.audio_is_sequence_header(body):
                muxer.set_audio_config(body)
                _check_ts(muxer.psi(), continuity)
            else:
                _check_ts(muxer.mux(kind, timestamp, body), continuity)
        except mpegts.TsMuxError:
            if strict:
                raise


# --- HLS requests -----------------------------------------------------------------

HTTP_READ_BYTES = 8192  # what MediaHttpSession.read_request reads at a time
_HLS_SECRET = b"fuzz-secret"
_HLS_NOW = 1_800_000_000.0


def hls_request(data: bytes) -> None:
    """An HTTP request head as the media HTTP server reads it (h11 with its
    size cap), then routed as it routes: WHEP path, HLS media URI and its
    token, playlist path and its delivery directives, Host and domain."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES)
    event = h11.NEED_DATA
    for start in range(0, len(data) + 1, HTTP_READ_BYTES):  # the server's reads, then its end of input
        conn.receive_data(data[start : start + HTTP_READ_BYTES])
        if (event := conn.next_event()) is not h11.NEED_DATA:
            break
    if not isinstance(event, h11.Request):
        return
    try:
        target = urlsplit(event.target.decode("latin-1"))
    except ValueError:  # the server answers 400 (the campaign's first finding: "//[x")
        return
    query = dict(parse_qsl(target.query, keep_blank_values=True))
    host = dict(event.headers).get(b"host", b"").decode("latin-1")
    domain_of(host, query)
    if (path := whep.parse_whep_path(target.path)) is not None:
        _ = path.signed_uri
        return
    if media := _HLS_MEDIA_PATH_RE.match(target.path):
        hls.parse_media_uri(media["file"])
        check_segment_token(_HLS_SECRET, media["stream"], query.get("token", ""), _HLS_NOW)
        return
    if (play := _PLAY_PATH_RE.match(target.path)) and play["ext"] == "m3u8":
        hls.decide_blocking_reload(
            query.get("_HLS_msn"), query.get("_HLS_part"), open_msn=7, open_parts=2, previous_parts=5, part_limit=3
        )


# --- SDP ----------------------------------------------------------------------------


AIORTC_REFUSED = {"offers": 0}  # offers check_offer passed and aiortc's parser refused


def sdp_offer(data: bytes) -> None:
    """A WHEP offer body as session.py reads it: UTF-8 (else 400),
    check_offer, then aiortc's parser. session.py answers 400 to any aiortc
    failure, so those are counted, not findings; the campaign before the
    line-by-line validation found 20 kinds (bench/fuzz/regressions/sdp/)."""
    try:
        offer = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    whep.check_offer(offer)
    try:
        SessionDescription.parse(offer)
    except Exception:  # noqa: BLE001 - as session.py
        AIORTC_REFUSED["offers"] += 1


# --- MPEG-TS in (SRT ingest) -----------------------------------------------------------


def mpegts_demux_read(data: bytes) -> None:
    """A transport stream into TsDemuxer in pieces (the last byte picks their
    size), then its end (b""). What comes out is what the hub takes: frames
    no larger than an FLV tag, timestamps not below zero; what it holds stays
    under MAX_BUFFERED_BYTES (plus the part of a packet it waits on)."""
    demuxer = mpegts_demux.TsDemuxer()
    for piece in [*pieces(data), b""]:
        for event in demuxer.receive_data(piece):
            if isinstance(event, mpegts_demux.FrameReceived):
                assert len(event.body) <= flv.MAX_TAG_BYTES, len(event.body)
                assert event.timestamp_ms >= 0, event
            elif isinstance(event, mpegts_demux.PassthroughAudioReceived):
                assert event.timestamp_ms >= 0, event
        limit = mpegts_demux.MAX_BUFFERED_BYTES + mpegts.TS_PACKET_BYTES
        assert demuxer.buffered_bytes <= limit, demuxer.buffered_bytes


# --- SRT --------------------------------------------------------------------------------


def _srt_key_material_round_trip(data: bytes) -> None:
    material = srt_crypto.parse_key_material(data)
    again = srt_crypto.parse_key_material(bytes(material))
    assert again == material, (material, again)


def srt_packet_codecs(data: bytes) -> None:
    """First byte even: the rest is a datagram for parse_packet, and what it
    parses to, written back with bytes(), parses to an equal packet (key
    material it carries goes through the next); odd: the rest is a key
    material message, which round-trips likewise."""
    if not data:
        return
    body = data[1:]
    if data[0] & 1:
        srt_crypto.parse_km_state(body[:4])
        _srt_key_material_round_trip(body)
        return
    packet = srt_packets.parse_packet(body)
    again = srt_packets.parse_packet(bytes(packet))
    assert again == packet, (packet, again)
    if isinstance(packet, srt_packets.SrtHandshake) and packet.km is not None:
        srt_crypto.parse_km_state(packet.km)
        _srt_key_material_round_trip(packet.km)
    elif isinstance(packet, srt_packets.SrtUserControl):
        _srt_key_material_round_trip(packet.body)


# The secret and peer of tests/test_srt_fuzz.py, so that the SYN cookie of its
# session (a seed) is good here; the passphrase of the libsrt vectors.
SRT_SECRET = b"fuzz" * 8
SRT_PASSPHRASE = "ten chars or more"
SRT_START = 10.0
SRT_PEERS = [("192.0.2.1", 9000), ("192.0.2.1", 9001), ("198.51.100.7", 5000), ("2001:db8::1", 9000, 0, 0)]
# Flags of a datagram's header byte (srt_listener's docstring).
SRT_TO_CONNECTION = 0x01
SRT_FIX_COOKIE = 0x02
SRT_SEND_FIRST = 0x04
SRT_CLOSE_AFTER = 0x80
SRT_PLAY_PAYLOAD = b"\x47" + bytes(187)


class _SrtFuzzListener(SrtListener):
    """Socket IDs drawn in order rather than at random, so that an input
    replays the same way (libFuzzer needs it, and so does a regression)."""

    def __init__(self, **kwargs) -> None:
        self._drawn = 0
        super().__init__(**kwargs)

    def _new_socket_id(self) -> int:
        self._drawn += 1
        return 0x0100_0000 + self._drawn


def srt_datagrams(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """The input as (clock byte, flags, datagram): each datagram follows a
    4-byte header: clock, flags, and its length (big-endian, 11 bits)."""
    pos = 0
    while len(data) - pos >= 4:
        clock, flags, length = data[pos], data[pos + 1], int.from_bytes(data[pos + 2 : pos + 4], "big") & 0x07FF
        pos += 4
        yield clock, flags, data[pos : pos + length]
        pos += length


def srt_listener(data: bytes) -> None:
    """A sequence of datagrams (srt_datagrams) into an SrtListener with a
    fixed secret, on a fake clock the header's clock byte advances
    (byte**3 / 600 ms: 0 to 27.6 s, so that ACK periods, the pending-handshake
    timeout and the idle timeout all come round). The flags are harness help
    a fuzzer cannot find alone: SRT_FIX_COOKIE writes the good SYN cookie into
    a handshake (a keyed hash), SRT_TO_CONNECTION the newest connection's
    socket ID as the destination; SRT_SEND_FIRST has every connection send a
    TS packet first (so that ACKs and NAKs find something, as for a player);
    bits 3-4 pick the peer address, bits 5-6 the passphrase every
    SrtConnectionRequested is accepted with (none, the right one, a wrong
    one); SRT_CLOSE_AFTER closes the newest connection from our side after.
    After every datagram the timers run as the node's tick runs them.

    Nothing may escape receive_datagram or handle_timer, not even
    SrtProtocolError: a bad datagram is dropped and counted. Every datagram
    we send parses, and the buffers stay within their limits."""
    listener = _SrtFuzzListener(secret=SRT_SECRET)
    now = SRT_START
    for clock, flags, datagram in srt_datagrams(data):
        now += clock**3 / 600_000
        addr = SRT_PEERS[flags >> 3 & 3]
        if flags & SRT_SEND_FIRST:
            for connection in listener.connections.values():
                connection.send(SRT_PLAY_PAYLOAD, now)
                _check_srt_sent(connection.datagrams_to_send())
        if flags & SRT_TO_CONNECTION and listener.connections and len(datagram) >= 16:
            datagram = datagram[:12] + max(listener.connections).to_bytes(4, "big") + datagram[16:]
        if flags & SRT_FIX_COOKIE and len(datagram) >= 48 and datagram[:2] == b"\x80\x00":
            cookie = listener._cookie(addr, round(now * 1_000_000) // COOKIE_PERIOD_US)
            datagram = datagram[:44] + cookie.to_bytes(4, "big") + datagram[48:]
        listener.receive_datagram(datagram, addr, now)
        listener.handle_timer(now)
        passphrase = (None, SRT_PASSPHRASE, "not the passphrase", SRT_PASSPHRASE)[flags >> 5 & 3]
        for event in listener.events():
            if isinstance(event, SrtConnectionRequested):
                listener.accept(event, now, passphrase=passphrase)
            elif isinstance(event, SrtDataReceived):
                assert len(event.payload) <= srt_packets.MAX_DATAGRAM_BYTES
        if flags & SRT_CLOSE_AFTER and listener.connections:
            listener.close(max(listener.connections), now)
        _check_srt_sent(d for d, _ in listener.datagrams_to_send())
        assert len(listener.connections) <= listener.max_connections
        for connection in listener.connections.values():
            assert connection.buffered_packets <= MAX_REORDER_PACKETS, connection.buffered_packets
            assert len(connection._lost) <= MAX_REORDER_PACKETS, len(connection._lost)
            assert len(connection._forgotten) <= MAX_REORDER_PACKETS, len(connection._forgotten)
            assert len(connection._send_buffer) <= MAX_SEND_BUFFER_PACKETS


def _check_srt_sent(datagrams) -> None:
    for datagram in datagrams:
        assert len(datagram) <= srt_packets.MAX_DATAGRAM_BYTES, len(datagram)
        srt_packets.parse_packet(datagram)


# --- the table ----------------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    label: str
    data: bytes
    refused: bool  # True: the protocol error is expected; False: accepted


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    errors: tuple[type[BaseException], ...]
    max_len: int
    limits: Callable[[], list[Limit]] = field(default=lambda: [])


def _rtmp_message(csid: int, type_id: int, payload: bytes, chunk_size: int = 128) -> bytes:
    """One message as chunks: a type 0 chunk, then type 3 chunks (RTMP 5.3.1)."""

    def basic(fmt: int) -> bytes:
        return bytes((fmt << 6 | csid,)) if csid < 64 else bytes((fmt << 6, csid - 64))

    out = bytearray(basic(0) + bytes(3) + len(payload).to_bytes(3, "big") + bytes((type_id,)) + struct.pack("<I", 1))
    for start in range(0, max(len(payload), 1), chunk_size):
        if start:
            out += basic(3)
        out += payload[start : start + chunk_size]
    return bytes(out)


def _set_chunk_size(size: int) -> bytes:
    return _rtmp_message(2, 1, struct.pack(">I", size))


def _rtmp_limits() -> list[Limit]:
    big = rtmp_chunk.MAX_CHUNK_SIZE_BYTES
    msg = rtmp_chunk.MAX_MESSAGE_BYTES
    return [
        Limit("chunk size = MAX_CHUNK_SIZE_BYTES", _set_chunk_size(big) + _rtmp_message(6, 9, bytes(big), big), False),
        Limit("chunk size = MAX_CHUNK_SIZE_BYTES + 1", _set_chunk_size(big + 1), True),
        Limit("message = MAX_MESSAGE_BYTES", _set_chunk_size(big) + _rtmp_message(6, 9, bytes(msg), big), False),
        Limit("message = MAX_MESSAGE_BYTES + 1", _set_chunk_size(big) + _rtmp_message(6, 9, bytes(msg + 1), big), True),
        Limit(
            f"{rtmp_chunk.MAX_CHUNK_STREAMS} chunk streams",
            b"".join(_rtmp_message(3 + i, 9, bytes(10)) for i in range(rtmp_chunk.MAX_CHUNK_STREAMS)),
            False,
        ),
    ]


def _rtmp_connection_limits() -> list[Limit]:
    # The message-size limits are the chunk reader's (rtmp_chunk); before a
    # publish the connection holds far less (MAX_BUFFERED_BYTES_BEFORE_PUBLISH).
    return [Limit(x.label, b"\x00" + x.data, x.refused) for x in _rtmp_limits() if "message" not in x.label]


def _amf0_limits() -> list[Limit]:
    def nested(depth: int) -> bytes:
        return b"\x0a\x00\x00\x00\x01" * depth + b"\x05"  # strict arrays of one element, then null

    return [
        Limit("nesting = MAX_AMF_DEPTH", nested(amf0.MAX_AMF_DEPTH), False),
        Limit("nesting = MAX_AMF_DEPTH + 1", nested(amf0.MAX_AMF_DEPTH + 1), True),
        Limit("short string of 0xFFFF bytes", b"\x02\xff\xff" + b"a" * 0xFFFF, False),
        Limit("short string one byte short", b"\x02\xff\xff" + b"a" * 0xFFFE, True),
    ]


def _flv_limits() -> list[Limit]:
    def tag(size: int) -> bytes:
        return flv.FLV_HEADER + flv.encode_tag(flv.VIDEO, 0, b"\x17\x01" + bytes(size - 2))

    def header(offset: int) -> bytes:
        return b"FLV\x01\x05" + offset.to_bytes(4, "big") + bytes(offset - 9 + 4)

    return [
        Limit("tag = MAX_TAG_BYTES", tag(flv.MAX_TAG_BYTES), False),
        Limit("tag = MAX_TAG_BYTES + 1", tag(flv.MAX_TAG_BYTES + 1), True),
        Limit("header = MAX_HEADER_BYTES", header(flv.MAX_HEADER_BYTES), False),
        Limit("header = MAX_HEADER_BYTES + 1", header(flv.MAX_HEADER_BYTES + 1), True),
    ]


def _codecs_limits() -> list[Limit]:
    sps = b"\x67\x42\xc0\x1e\xd9\x01\x41\xfb\x01\x10\x00\x00\x03\x00\x10\x00\x00\x03\x03\xc0\xf1\x62\xe4\x80"

    def units(count: int) -> bytes:
        return b"\x1b" + b"\x00\x00\x00\x02\x09\xf0" * count  # selector 3, 4-byte lengths

    return [
        Limit("SPS = MAX_SPS_BYTES", b"\x00" + sps + bytes(codecs.MAX_SPS_BYTES - len(sps)), False),
        Limit("SPS = MAX_SPS_BYTES + 1", b"\x00" + sps + bytes(codecs.MAX_SPS_BYTES + 1 - len(sps)), True),
        Limit("NAL units = MAX_NAL_UNITS_PER_ACCESS_UNIT", units(codecs.MAX_NAL_UNITS_PER_ACCESS_UNIT), False),
        Limit("NAL units = MAX_NAL_UNITS_PER_ACCESS_UNIT + 1", units(codecs.MAX_NAL_UNITS_PER_ACCESS_UNIT + 1), True),
    ]


def _mpegts_limits() -> list[Limit]:
    def aac(raw: int) -> bytes:
        config = flv.encode_tag(flv.AUDIO, 0, b"\xaf\x00\x12\x10")  # AAC LC, 44.1 kHz, stereo
        return flv.FLV_HEADER + config + flv.encode_tag(flv.AUDIO, 23, b"\xaf\x01" + bytes(raw))

    return [
        Limit("AAC frame = MAX_AAC_FRAME_BYTES", b"S" + aac(mpegts.MAX_AAC_FRAME_BYTES), False),
        Limit("AAC frame = MAX_AAC_FRAME_BYTES + 1", b"S" + aac(mpegts.MAX_AAC_FRAME_BYTES + 1), True),
    ]


def mpegts_target(data: bytes) -> None:
    """A leading b"S" (only the limits stage sends it) raises refusals."""
    if FEED_WHOLE and data[:1] == b"S":
        mpegts_mux(data[1:], strict=True)
    else:
        mpegts_mux(data)


def _hls_limits() -> list[Limit]:
    def head(target: str, pad: int = 0) -> bytes:
        return f"GET {target} HTTP/1.1\r\nHost: a.test\r\nX: {'a' * pad}\r\n\r\n".encode()

    base = len(head("/live/s.m3u8"))
    # h11 caps the *incomplete* head: one that arrives whole in a read is
    # taken, so the effective cap is the limit plus one 8 KiB read.
    past = MAX_REQUEST_HEAD_BYTES + HTTP_READ_BYTES + 1
    return [
        Limit("head = MAX_REQUEST_HEAD_BYTES", head("/live/s.m3u8", MAX_REQUEST_HEAD_BYTES - base), False),
        Limit("head = MAX_REQUEST_HEAD_BYTES + 8 KiB + 1", head("/live/s.m3u8", past - base), True),
        Limit(f"_HLS_msn of {hls.MAX_SEQUENCE_DIGITS} digits", head("/live/s.m3u8?_HLS_msn=" + "0" * 18), False),
    ]


def _sdp_limits() -> list[Limit]:
    offer = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 H264/90000\r\na=recvonly\r\n"
    )
    pad = whep.MAX_OFFER_BYTES - len(offer) - len("a=x:\r\n")
    return [Limit("offer = MAX_OFFER_BYTES", (offer + "a=x:" + "y" * pad + "\r\n").encode(), False)]


def _ts_packets(pid: int, section: bytes) -> bytes:
    """A PSI section in TS packets (a pointer_field, then 0xFF stuffing)."""
    data = b"\x00" + section
    data += b"\xff" * (-len(data) % mpegts.TS_PAYLOAD_BYTES)
    out = b""
    for k, pos in enumerate(range(0, len(data), mpegts.TS_PAYLOAD_BYTES)):
        header = bytes((0x47, (0x40 if pos == 0 else 0) | pid >> 8, pid & 0xFF, 0x10 | k & 0x0F))
        out += header + data[pos : pos + mpegts.TS_PAYLOAD_BYTES]
    return out


def _psi_section(table_id: int, body: bytes) -> bytes:
    data = bytes((table_id,)) + (0xB000 | 5 + len(body) + 4).to_bytes(2, "big") + b"\x00\x01\xc1\x00\x00" + body
    return data + mpegts.crc32_mpeg2(data).to_bytes(4, "big")


def _mpegts_demux_limits() -> list[Limit]:
    def pat(programs: int) -> bytes:
        body = b"".join(n.to_bytes(2, "big") + (0xE000 | 0x100 + n).to_bytes(2, "big") for n in range(1, programs + 1))
        return _ts_packets(mpegts.PAT_PID, _psi_section(0x00, body))

    def pmt(streams: int) -> bytes:
        body = b"\xe1\x00\xf0\x00" + b"".join(
            b"\x0f" + (0xE000 | 0x200 + k).to_bytes(2, "big") + b"\xf0\x00" for k in range(streams)
        )
        return pat(1) + _ts_packets(0x101, _psi_section(0x02, body))

    return [
        Limit("programs = MAX_PROGRAMS", pat(mpegts_demux.MAX_PROGRAMS), False),
        Limit("programs = MAX_PROGRAMS + 1", pat(mpegts_demux.MAX_PROGRAMS + 1), True),
        Limit("streams = MAX_ELEMENTARY_STREAMS", pmt(mpegts_demux.MAX_ELEMENTARY_STREAMS), False),
        Limit("streams = MAX_ELEMENTARY_STREAMS + 1", pmt(mpegts_demux.MAX_ELEMENTARY_STREAMS + 1), True),
    ]


def _srt_packets_limits() -> list[Limit]:
    def handshake(stream_id: str) -> bytes:
        return b"\x00" + bytes(
            srt_packets.SrtHandshake(version=5, handshake_type=0xFFFF_FFFF, socket_id=1, stream_id=stream_id)
        )

    data = srt_packets.SrtDataPacket(1, bytes(srt_packets.MAX_DATAGRAM_BYTES - srt_packets.HEADER_BYTES))
    return [
        Limit("datagram = MAX_DATAGRAM_BYTES", b"\x00" + bytes(data), False),
        Limit("datagram = MAX_DATAGRAM_BYTES + 1", b"\x00" + bytes(data) + b"\x00", True),
        Limit("stream ID = MAX_STREAM_ID_BYTES", handshake("s" * srt_packets.MAX_STREAM_ID_BYTES), False),
        Limit("stream ID = MAX_STREAM_ID_BYTES + 4", handshake("s" * (srt_packets.MAX_STREAM_ID_BYTES + 1)), True),
    ]


TARGETS = {
    t.name: t
    for t in [
        Target("rtmp_chunk", rtmp_chunk_stream, (RtmpProtocolError,), 8192, _rtmp_limits),
        Target("rtmp_connection", rtmp_connection, (RtmpProtocolError,), 8192, _rtmp_connection_limits),
        Target("rtmp_client", rtmp_client, (RtmpProtocolError,), 8192),
        Target("amf0", amf0_decode, (amf0.AmfError,), 4096, _amf0_limits),
        Target("flv", flv_read, (flv.FlvProtocolError,), 8192, _flv_limits),
        Target("codecs", codecs_parse, (codecs.CodecError,), 4096, _codecs_limits),
        Target("mpegts", mpegts_target, (mpegts.TsMuxError,), 8192, _mpegts_limits),
        Target("hls_request", hls_request, (h11.RemoteProtocolError,), 4096, _hls_limits),
        Target("sdp", sdp_offer, (whep.OfferError,), 8192, _sdp_limits),
        Target("mpegts_demux", mpegts_demux_read, (mpegts_demux.TsDemuxError,), 16384, _mpegts_demux_limits),
        Target("srt_packets", srt_packet_codecs, (SrtProtocolError,), 2048, _srt_packets_limits),
        Target("srt_listener", srt_listener, (), 16384),
    ]
}


# --- the runner (one target per process) --------------------------------------------


class Campaign:
    """Counts, times and records one target's inputs; writes STATS_JSON as
    it goes (libFuzzer may end the process without running Python's exit
    handlers)."""

    def __init__(self, target: Target, stats_path: Path, findings_dir: Path) -> None:
        self.target = target
        self.stats_path = stats_path
        self.findings_dir = findings_dir
        self.stats = {"target": target.name, "inputs": 0, "protocol_errors": 0, "slowest_cpu_ms": 0.0, "findings": {}}
        self.started = time.monotonic()

    def save(self) -> None:
        self.stats["wall_seconds"] = round(time.monotonic() - self.started, 1)
        tmp = self.stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.stats, indent=1))
        tmp.replace(self.stats_path)

    def cpu_seconds(self, data: bytes) -> tuple[float, BaseException | None]:
        error = None
        started = time.process_time()
        try:
            self.target.run(data)
        except self.target.errors:
            self.stats["protocol_errors"] += 1
        except Exception as exc:  # a finding
            error = exc
        return time.process_time() - started, error

    def finding(self, kind: str, data: bytes, detail: str) -> None:
        digest = hashlib.sha1(data).hexdigest()[:12]
        if kind in self.stats["findings"]:
            self.stats["findings"][kind]["count"] += 1
            return
        path = self.findings_dir / f"{self.target.name}-{digest}"
        path.write_bytes(data)
        self.stats["findings"][kind] = {"count": 1, "input": str(path), "detail": detail[-2000:]}
        print(f"FINDING {self.target.name} {kind}: {path}\n{detail}", file=sys.stderr, flush=True)
        self.save()

    def test_one_input(self, data: bytes) -> None:
        self.stats["inputs"] += 1
        cpu, error = self.cpu_seconds(data)
        if error is not None:
            cause = error.__cause__ or error
            tb = traceback.extract_tb(cause.__traceback__)
            where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"
            detail = "".join(traceback.format_exception(error))
            self.finding(f"{type(error).__name__}/{type(cause).__name__} at {where}", data, detail)
        if cpu > SLOW_CPU_SECONDS:
            # Re-check: a slow input must be slow again, not a hiccup of a shared machine.
            cpu = min(cpu, *(self.cpu_seconds(data)[0] for _ in range(2)))
            if cpu > SLOW_CPU_SECONDS:
                self.finding(f"slow input ({cpu * 1000:.0f} ms CPU)", data, f"{len(data)} bytes")
        if cpu * 1000 > self.stats["slowest_cpu_ms"]:
            self.stats["slowest_cpu_ms"] = round(cpu * 1000, 3)
            self.stats["slowest_input_bytes"] = len(data)
        if self.stats["inputs"] % 1000 == 0:
            self.save()

    def at_the_limits(self) -> None:
        global FEED_WHOLE
        FEED_WHOLE = True
        results = []
        for limit in self.target.limits():
            cpu, error = self.cpu_seconds_expecting(limit)
            results.append({"label": limit.label, "ok": error is None, "cpu_ms": round(cpu * 1000, 1), "error": error})
        FEED_WHOLE = False
        self.stats["limits"] = results
        self.save()

    def cpu_seconds_expecting(self, limit: Limit) -> tuple[float, str | None]:
        started = time.process_time()
        outcome: BaseException | None = None
        try:
            self.target.run(limit.data)
        except BaseException as exc:
            outcome = exc
        cpu = time.process_time() - started
        refused = isinstance(outcome, self.target.errors)
        if outcome is not None and not refused:
            return cpu, f"unexpected {type(outcome).__name__}: {outcome}"
        if refused != limit.refused:
            return cpu, f"expected {'refusal' if limit.refused else 'acceptance'}, got {outcome or 'acceptance'}"
        return cpu, None


def main(argv: list[str]) -> None:
    name, stats_path, findings_dir, *fuzzer_args = argv[1:]
    target = TARGETS[name]
    campaign = Campaign(target, Path(stats_path), Path(findings_dir))
    campaign.at_the_limits()
    atheris.Setup([argv[0], f"-max_len={target.max_len}", *fuzzer_args], campaign.test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
