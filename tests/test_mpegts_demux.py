"""The MPEG-TS demuxer (livecenter/media/mpegts_demux.py).

Streams come from the ffmpeg CLI (H.264 with B-frames, AAC, AC-3, E-AC-3,
H.265) and from our own muxer; ffprobe says what the frames and their times
are, ffmpeg judges the FLV the frames make. Broken streams (lost, duplicated,
garbage, bad CRCs, limits) are made here from small hand-built packets.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livecenter.media.codecs import iter_nal_units, parse_avc_decoder_config, parse_avc_sequence_header
from livecenter.media.flv import AUDIO, VIDEO, FlvReader, FrameKind, encode_tag, flv_header
from livecenter.media.hub import StreamHub
from livecenter.media.mpegts import (
    AUDIO_PID,
    CLOCK_TICKS_PER_MS,
    PAT_PID,
    PMT_PID,
    TIMESTAMP_WRAP,
    TS_PACKET_BYTES,
    VIDEO_PID,
    AdtsConfig,
    TsMuxer,
    crc32_mpeg2,
)
from livecenter.media.mpegts_demux import (
    MAX_AUDIO_FRAMES_PER_PES,
    MAX_AUDIO_PES_BYTES,
    MAX_BUFFERED_BYTES,
    MAX_ELEMENTARY_STREAMS,
    MAX_PROGRAMS,
    MAX_VIDEO_PES_BYTES,
    TIMELINE_START_MS,
    FrameReceived,
    PassthroughAudioReceived,
    ProgramReceived,
    StreamRefused,
    TsDemuxer,
    TsDemuxError,
)
from livecenter.media.policy import StreamKey
from tests.test_codecs import make_sps
from tests.test_flv import ffmpeg_flv

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- streams from ffmpeg --------------------------------------------------------------


@functools.cache
def ffmpeg_ts(audio: str = "aac", video: str = "libx264", seconds: float = 2.0, extra: tuple[str, ...] = ()) -> bytes:
    """A stream in MPEG-TS made by the ffmpeg CLI (cached: tests share them)."""
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"]
    cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds)]
    if video == "libx264":
        cmd += ["-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "30", "-pix_fmt", "yuv420p"]
    else:
        cmd += ["-c:v", video, "-preset", "ultrafast", "-x265-params", "log-level=error"]
    cmd += ["-c:a", audio, "-ac", "2", *extra, "-f", "mpegts", "-"]
    return subprocess.run(cmd, capture_output=True, check=True, timeout=120).stdout


def ffprobe_packets(path, stream: str) -> list[dict]:
    cmd = ["ffprobe", "-v", "error", "-select_streams", stream, "-show_packets", "-of", "json", str(path)]
    return json.loads(subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout)["packets"]


def demux(data: bytes, chunks: list[int] | None = None) -> tuple[list, TsDemuxer]:
    """All events for `data`, fed whole or in pieces of the given sizes (cycled)."""
    demuxer = TsDemuxer()
    events = []
    if chunks is None:
        events += demuxer.receive_data(data)
    else:
        pos, i = 0, 0
        while pos < len(data):
            events += demuxer.receive_data(data[pos : pos + chunks[i % len(chunks)]])
            pos += chunks[i % len(chunks)]
            i += 1
    events += demuxer.receive_data(b"")
    return events, demuxer


def frames(events: list, kind: FrameKind | None = None, headers: bool = False) -> list[FrameReceived]:
    """The FrameReceived events of one kind, without (or only) sequence headers."""
    return [
        e
        for e in events
        if isinstance(e, FrameReceived) and (kind is None or e.kind == kind) and (e.body[1] == 0) == headers
    ]


def as_flv(events: list) -> bytes:
    out = bytearray(flv_header())
    for e in events:
        if isinstance(e, FrameReceived):
            out += encode_tag(e.kind.tag_type, e.timestamp_ms, e.body)
    return bytes(out)


# --- hand-built packets -----------------------------------------------------------------


def ts_packet(pid: int, payload: bytes, counter: int, start: bool = False, field: bytes | None = None) -> bytes:
    """One packet; `field` is an adaptation field's content (flags first), padded
    with stuffing so that payload and field fill 184 bytes."""
    room = 184 - len(payload)
    if field is None and room == 0:
        control, adaptation = 0x10, b""
    else:
        field = field if field is not None else (b"\x00" if room > 1 else b"")
        field = field + b"\xff" * (room - 1 - len(field))
        control, adaptation = (0x30 if payload else 0x20), bytes((len(field),)) + field
    header = bytes((0x47, (0x40 if start else 0) | (pid >> 8), pid & 0xFF, control | (counter & 0x0F)))
    packet = header + adaptation + payload
    assert len(packet) == TS_PACKET_BYTES
    return packet


def packetize(pid: int, pes: bytes, counter: int = 0) -> bytes:
    out = bytearray()
    for i, pos in enumerate(range(0, len(pes), 184)):
        out += ts_packet(pid, pes[pos : pos + 184], counter + i, start=pos == 0)
    return bytes(out)


def timestamp_field(prefix: int, ticks: int) -> bytes:
    return bytes(
        (
            (prefix << 4) | ((ticks >> 29) & 0x0E) | 1,
            (ticks >> 22) & 0xFF,
            ((ticks >> 14) & 0xFE) | 1,
            (ticks >> 7) & 0xFF,
            ((ticks << 1) & 0xFE) | 1,
        )
    )


def pes(stream_id: int, payload: bytes, pts: int, dts: int | None = None, bounded: bool = True) -> bytes:
    fields = timestamp_field(2 if dts is None else 3, pts) + (b"" if dts is None else timestamp_field(1, dts))
    header = bytes((0x80, 0x80 if dts is None else 0xC0, len(fields))) + fields
    length = len(header) + len(payload) if bounded else 0
    assert length <= 0xFFFF
    return b"\x00\x00\x01" + bytes((stream_id,)) + length.to_bytes(2, "big") + header + payload


def section(table_id: int, extension: int, body: bytes, version: int = 0) -> bytes:
    data = bytes((table_id,)) + (0xB000 | (5 + len(body) + 4)).to_bytes(2, "big")
    data += extension.to_bytes(2, "big") + bytes((0xC1 | (version << 1), 0, 0)) + body
    return data + crc32_mpeg2(data).to_bytes(4, "big")


def psi(pid: int, data: bytes, counter: int = 0) -> bytes:
    """A section in as many packets as it needs, filled with 0xFF."""
    data = b"\x00" + data  # pointer_field
    data += b"\xff" * (-len(data) % 184)
    return b"".join(
        ts_packet(pid, data[pos : pos + 184], counter + i, start=pos == 0)
        for i, pos in enumerate(range(0, len(data), 184))
    )


def pat(programs: list[tuple[int, int]]) -> bytes:
    return section(0x00, 1, b"".join(n.to_bytes(2, "big") + (0xE000 | pid).to_bytes(2, "big") for n, pid in programs))


def pmt(streams: list[tuple[int, int, bytes]], pcr_pid: int = VIDEO_PID, version: int = 0) -> bytes:
    body = (0xE000 | pcr_pid).to_bytes(2, "big") + b"\xf0\x00"
    for stream_type, pid, descriptors in streams:
        body += (
            bytes((stream_type,)) + (0xE000 | pid).to_bytes(2, "big") + (0xF000 | len(descriptors)).to_bytes(2, "big")
        )
        body += descriptors
    return section(0x02, 1, body, version)


AV_STREAMS = [(0x1B, VIDEO_PID, b""), (0x0F, AUDIO_PID, b"")]
DOLBY_PID = 0x102


def program(streams=AV_STREAMS) -> bytes:
    return psi(PAT_PID, pat([(1, PMT_PID)])) + psi(PMT_PID, pmt(streams))


SPS = make_sps(width_mbs=20, height_map_units=15)  # 320x240
PPS = b"\x68\xce\x38\x80"


def access_unit(keyframe: bool = True, size: int = 0) -> bytes:
    """Annex B: AUD, SPS and PPS on keyframes, a slice; filler data (which
    the demuxer drops) up to `size` bytes."""
    unit = b"\x00\x00\x00\x01\x09\xf0"
    if keyframe:
        unit += b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x00\x01" + PPS + b"\x00\x00\x01\x65\x88\x84\x21"
    else:
        unit += b"\x00\x00\x01\x41\x9a\x02\x03"
    if size:
        filler = size - len(unit) - 4 - 1
        assert filler >= 0
        unit += b"\x00\x00\x01\x0c" + b"\xff" * filler + b"\x80"
    return unit


ADTS = AdtsConfig(profile=1, sampling_index=3, channel_config=2)  # AAC LC, 48 kHz, stereo


def adts_frame(raw_bytes: int = 100, fill: int = 0x21) -> bytes:
    return ADTS.header(raw_bytes) + bytes((fill,)) * raw_bytes


# --- real streams -------------------------------------------------------------------------


def test_it_demuxes_an_ffmpeg_stream_with_ffprobe_s_frames_and_times(tmp_path):
    data = ffmpeg_ts()
    (tmp_path / "in.ts").write_bytes(data)
    events, demuxer = demux(data)
    assert isinstance(events[0], ProgramReceived)
    assert [(s.pid, s.codec) for s in events[0].streams] == [(VIDEO_PID, "H.264"), (AUDIO_PID, "AAC")]
    video, audio = frames(events, FrameKind.VIDEO), frames(events, FrameKind.AUDIO)
    probed_video, probed_audio = ffprobe_packets(tmp_path / "in.ts", "v"), ffprobe_packets(tmp_path / "in.ts", "a")
    assert len(video) == len(probed_video) == 60 and len(audio) == len(probed_audio)
    assert [f.body[0] >> 4 == 1 for f in video] == ["K" in p["flags"] for p in probed_video]
    # One timeline for both tracks: DTS (and the composition offset) in ms, shifted alike.
    offset = video[0].timestamp_ms - probed_video[0]["dts"] // 90
    for frame, packet in zip(video, probed_video, strict=True):
        cts = int.from_bytes(frame.body[2:5], "big")
        assert abs(frame.timestamp_ms - packet["dts"] // 90 - offset) <= 1
        assert abs(frame.timestamp_ms + cts - packet["pts"] // 90 - offset) <= 1
    assert any(int.from_bytes(f.body[2:5], "big") for f in video)  # B-frames: PTS after DTS
    for frame, packet in zip(audio, probed_audio, strict=True):
        assert abs(frame.timestamp_ms - packet["pts"] // 90 - offset) <= 1
        assert len(frame.body) - 2 == int(packet["size"]) - 7  # the raw frame, without its ADTS header
    assert vars_of(demuxer.counters) == {"packets": len(data) // TS_PACKET_BYTES}


def vars_of(counters) -> dict:
    """The counters that are not zero."""
    return {name: getattr(counters, name) for name in counters.__slots__ if getattr(counters, name)}


def test_its_frames_make_an_flv_stream_that_ffmpeg_decodes(tmp_path):
    events, _ = demux(ffmpeg_ts())
    headers = frames(events, headers=True)
    assert [h.kind for h in headers] == [FrameKind.VIDEO, FrameKind.AUDIO]
    config = parse_avc_sequence_header(headers[0].body)
    assert (config.width, config.height, config.nal_length_size) == (320, 240, 4)
    assert headers[1].body == b"\xaf\x00\x11\x90"  # AAC LC, 48 kHz, stereo
    path = tmp_path / "out.flv"
    path.write_bytes(as_flv(events))
    cmd = ["ffmpeg", "-hide_banner", "-v", "error", "-i", str(path), "-f", "null", "-"]
    assert subprocess.run(cmd, capture_output=True, timeout=120).stderr.decode() == ""
    assert len(ffprobe_packets(path, "v")) == 60
    # No parameter sets or delimiters are left in the frames: the header has them.
    for frame in frames(events, FrameKind.VIDEO):
        assert {nal[0] & 0x1F for nal in iter_nal_units(frame.body[5:], 4)} <= {1, 5, 6}


def test_it_feeds_the_hub_as_rtmp_ingest_does():
    async def publish():
        hub = StreamHub()
        publication = hub.publish(StreamKey("push.test", "live", "srt"))
        for event in demux(ffmpeg_ts())[0]:
            if isinstance(event, FrameReceived):
                publication.push(event.kind, event.timestamp_ms, event.body)
        return hub.stream(publication.key)

    stream = asyncio.run(publish())
    info = stream.info()
    assert (info.video_codec, info.width, info.height, info.audio_codec) == ("H264", 320, 240, "AAC")
    assert (info.audio_sample_rate, info.audio_channels, round(info.frame_rate)) == (48000, 2, 30)
    assert stream.has_bframes and stream.gop[0].keyframe


@pytest.mark.parametrize("chunks", [[1], [187, 189], "random"], ids=["byte", "off-by-one", "random"])
def test_it_gives_the_same_events_however_the_bytes_arrive(chunks):
    data = ffmpeg_ts()
    if chunks == "random":
        chunks = [random.Random(7).randint(1, 3000) for _ in range(100)]
    whole, demuxer = demux(data)
    pieces, pieced = demux(data, chunks)
    assert pieces == whole and len(whole) > 150
    assert pieced.counters == demuxer.counters


def test_it_passes_e_ac_3_through_with_ffprobe_s_frames_and_times(tmp_path):
    data = ffmpeg_ts(audio="eac3")
    (tmp_path / "in.ts").write_bytes(data)
    events, demuxer = demux(data)
    assert [(s.stream_type, s.codec) for s in events[0].streams] == [(0x1B, "H.264"), (0x87, "E-AC-3")]
    dolby = [e for e in events if isinstance(e, PassthroughAudioReceived)]
    probed = ffprobe_packets(tmp_path / "in.ts", "a")
    assert len(dolby) == len(probed) > 50
    offset = frames(events, FrameKind.VIDEO)[0].timestamp_ms - ffprobe_packets(tmp_path / "in.ts", "v")[0]["dts"] // 90
    for unit, packet in zip(dolby, probed, strict=True):
        assert (unit.codec, unit.sample_rate, unit.samples) == ("E-AC-3", 48000, 1536)
        assert len(unit.data) == int(packet["size"]) and unit.data[:2] == b"\x0b\x77"
        assert abs(unit.timestamp_ms - packet["pts"] // 90 - offset) <= 1
    assert not frames(events, FrameKind.AUDIO) and demuxer.counters.frames_dropped == 0


def test_it_finds_ac_3_by_its_descriptor_in_a_private_stream():
    # DVB signalling (-mpegts_flags system_b): stream_type 0x06 and an AC-3 descriptor.
    events, demuxer = demux(ffmpeg_ts(audio="ac3", extra=("-mpegts_flags", "system_b")))
    assert [(s.stream_type, s.codec) for s in events[0].streams][1] == (0x06, "AC-3")
    dolby = [e for e in events if isinstance(e, PassthroughAudioReceived)]
    assert len(dolby) > 50 and {(u.codec, u.samples) for u in dolby} == {("AC-3", 1536)}
    steps = {b.timestamp_ms - a.timestamp_ms for a, b in zip(dolby, dolby[1:], strict=False)}
    assert steps <= {31, 32, 33}  # 1536 samples at 48 kHz: 32 ms
    assert demuxer.counters.frames_dropped == 0


def test_it_refuses_h265_naming_the_codec():
    events, _ = demux(ffmpeg_ts(video="libx265", seconds=0.5))
    refused = [e for e in events if isinstance(e, StreamRefused)]
    assert [(r.pid, r.stream_type, r.codec) for r in refused] == [(VIDEO_PID, 0x24, "H.265")]
    assert "H.264 only" in refused[0].reason
    assert not frames(events, FrameKind.VIDEO) and frames(events, FrameKind.AUDIO)


# --- through our own muxer ----------------------------------------------------------------


def mux_tags(tags, start_ms: int = 0) -> bytes:
    muxer = TsMuxer()
    out = bytearray()
    for tag in tags:
        if tag.tag_type in (AUDIO, VIDEO):
            data = muxer.mux(FrameKind.of_tag_type(tag.tag_type), tag.timestamp + start_ms, tag.body)
            if data and not out:
                out += muxer.psi()
            out += data
    return bytes(out)


def nal_units(body: bytes) -> list[bytes]:
    """A video body's NAL units, as the demuxer keeps them."""
    return [bytes(n) for n in iter_nal_units(body[5:], 4) if n[0] & 0x1F not in (7, 8, 9)]


@pytest.mark.parametrize("start_ms", [0, TIMESTAMP_WRAP // CLOCK_TICKS_PER_MS - 1000], ids=["zero", "wrapping"])
def test_it_gives_back_what_our_muxer_was_given(start_ms):
    tags = FlvReader().receive_data(ffmpeg_flv(seconds=2.0, extra="-bf 2"))
    events, demuxer = demux(mux_tags(tags, start_ms))
    for kind in (FrameKind.VIDEO, FrameKind.AUDIO):
        given = [t for t in tags if FrameKind.of_tag_type(t.tag_type) == kind and t.body[1] == 1]
        got = frames(events, kind)
        assert len(got) == len(given) > 40
        # The same times: the timeline is the muxer's, moved to start at TIMELINE_START_MS.
        offset = got[0].timestamp_ms - given[0].timestamp
        assert [f.timestamp_ms - offset for f in got] == [t.timestamp for t in given]
        if kind == FrameKind.AUDIO:
            assert [f.body for f in got] == [t.body for t in given]
        else:
            assert [f.body[:5] for f in got] == [t.body[:5] for t in given]  # key/inter, CompositionTime
            assert [nal_units(f.body) for f in got] == [nal_units(t.body) for t in given]
    video_header = next(t.body for t in tags if t.tag_type == VIDEO and t.body[1] == 0)
    got_header = frames(events, FrameKind.VIDEO, headers=True)[0].body
    assert parse_avc_sequence_header(got_header).sps == parse_avc_sequence_header(video_header).sps
    assert parse_avc_sequence_header(got_header).pps == parse_avc_sequence_header(video_header).pps
    assert demuxer.counters.pes_dropped == demuxer.counters.frames_dropped == 0
    assert min(e.timestamp_ms for e in frames(events)) >= TIMELINE_START_MS - 100


# --- when a frame comes out ------------------------------------------------------------------


def emitted_at(data: bytes) -> list[tuple[int, FrameReceived]]:
    """(index of the packet whose feeding gave it, frame) for each video frame,
    the stream fed one TS packet at a time as SRT delivers it."""
    demuxer, out = TsDemuxer(), []
    for i, packet in enumerate(packets_of(data)):
        out += [(i, f) for f in frames(demuxer.receive_data(packet), FrameKind.VIDEO)]
    return out


def pes_ends(data: bytes, pid: int) -> list[int]:
    """The index of the last packet of each PES on `pid` (but the last PES)."""
    starts = [i for i, p in enumerate(packets_of(data)) if pid_of(p) == pid and p[1] & 0x40]
    on_pid = [i for i, p in enumerate(packets_of(data)) if pid_of(p) == pid]
    return [max(i for i in on_pid if i < start) for start in starts[1:]]


def test_it_emits_an_ffmpeg_video_frame_with_its_last_packet_not_the_next_frame_s_first():
    # FFmpeg writes video PES with PES_packet_length 0 and stuffs their last packet only.
    data = ffmpeg_ts()
    starts = [p for p in packets_of(data) if pid_of(p) == VIDEO_PID and p[1] & 0x40]
    assert all((p[5 + p[4] :] if p[3] & 0x20 else p[4:])[4:6] == b"\x00\x00" for p in starts)
    got = emitted_at(data)
    ends = pes_ends(data, VIDEO_PID)
    assert len(got) == 60 and len(ends) == 59
    # The first frame teaches the demuxer that this muxer stuffs a PES's end: it waits
    # for the next frame's start. Every other one goes out with its own last packet.
    second_start = ends[0] + 1 + [pid_of(p) for p in packets_of(data)[ends[0] + 1 :]].index(VIDEO_PID)
    assert got[0][0] == second_start
    assert [i for i, _ in got[1:59]] == ends[1:]
    assert [f for _, f in got] == frames(demux(data)[0], FrameKind.VIDEO)


def test_it_emits_our_muxer_s_video_frame_with_its_last_packet():
    # What SRT playback (SrtViewer) sends: mpegts.py stuffs a PES's last packet only.
    data = mux_tags(FlvReader().receive_data(ffmpeg_flv(seconds=2.0, extra="-bf 2")))
    got = emitted_at(data)
    ends = pes_ends(data, VIDEO_PID)
    assert len(got) > 40
    assert [i for i, _ in got[1 : len(ends)]] == ends[1:]


def test_it_emits_a_pes_of_known_length_with_its_last_packet():
    # FFmpeg's audio PES (a few ADTS frames each) say their length: each is read once its bytes are in.
    data = ffmpeg_ts()
    demuxer, first_frame_at = TsDemuxer(), {}
    for i, packet in enumerate(packets_of(data)):
        for e in frames(demuxer.receive_data(packet), FrameKind.AUDIO):
            first_frame_at.setdefault(e.timestamp_ms, i)
    at, ends = sorted(set(first_frame_at.values())), pes_ends(data, AUDIO_PID)
    assert len(ends) >= 10 and at[: len(ends)] == ends


def stuffed_then_continued(unit: bytes, pts: int, counter: int) -> bytes:
    """A video PES whose first packet is stuffed although more of it follows."""
    data = pes(0xE0, unit, pts, bounded=False)
    rest = [data[pos : pos + 184] for pos in range(100, len(data), 184)]
    return ts_packet(VIDEO_PID, data[:100], counter, start=True) + b"".join(
        ts_packet(VIDEO_PID, piece, counter + 1 + i) for i, piece in enumerate(rest)
    )


def test_it_never_ends_a_pes_at_stuffing_on_a_pid_whose_muxer_stuffs_mid_pes():
    stream = program()
    counter = 0
    for n in range(3):
        unit = access_unit(keyframe=True, size=400)
        stream += stuffed_then_continued(unit, 90_000 + 3000 * n, counter)
        counter += 1 + -(-(len(pes(0xE0, unit, 0, bounded=False)) - 100) // 184)
    events, demuxer = demux(stream)
    assert len(frames(events, FrameKind.VIDEO)) == 3
    assert demuxer.counters.pes_dropped == demuxer.counters.pes_cut_by_stuffing == 0


def test_it_stops_ending_pes_at_stuffing_once_a_pes_goes_on_after_it():
    # Two frames stuffed at their end (learnt), then one stuffed mid-PES: that one is
    # cut (counted), the rest of it dropped; from then on only the next start ends a PES.
    unit = access_unit(keyframe=True, size=400)
    stream = program()
    stream += packetize(VIDEO_PID, pes(0xE0, unit, 90_000, bounded=False), 0)
    stream += packetize(VIDEO_PID, pes(0xE0, unit, 93_000, bounded=False), 3)
    stream += stuffed_then_continued(unit, 96_000, 6)
    stream += stuffed_then_continued(unit, 99_000, 9)
    events, demuxer = demux(stream)
    video = frames(events, FrameKind.VIDEO)
    assert [f.timestamp_ms - video[0].timestamp_ms for f in video] == [0, 33, 66, 100]
    assert demuxer.counters.pes_cut_by_stuffing == 1  # the third; the fourth waited for its end


def test_at_the_end_a_pes_whose_stuffed_last_packet_never_came_is_dropped_not_emitted_cut_short():
    # A libsrt caller that closes drops what it has not sent: the input ends inside a
    # frame. Its muxer stuffs a PES's last packet (learnt), so that frame is cut short:
    # dropped (a decoder would meet a broken slice), where a whole last one goes out.
    unit = access_unit(keyframe=True, size=1000)
    packets = -(-len(pes(0xE0, unit, 0, bounded=False)) // 184)
    whole = [packetize(VIDEO_PID, pes(0xE0, unit, 90_000 + 3000 * n, bounded=False), packets * n) for n in range(4)]
    events, demuxer = demux(program() + b"".join(whole[:3]) + whole[3][: (packets - 2) * TS_PACKET_BYTES])
    assert len(frames(events, FrameKind.VIDEO)) == 3  # the three whole ones, each at its last packet
    assert demuxer.counters.pes_dropped == 1
    # The same end with a muxer that does not stuff (learnt: a PES went on after its
    # stuffing): the PES held at the end is the last frame, emitted as before.
    mid = 1 + -(-(len(pes(0xE0, unit, 0, bounded=False)) - 100) // 184)
    stream = program() + stuffed_then_continued(unit, 90_000, 0) + stuffed_then_continued(unit, 93_000, mid)
    events, demuxer = demux(stream)
    assert len(frames(events, FrameKind.VIDEO)) == 2 and demuxer.counters.pes_dropped == 0


# --- loss, duplicates, garbage --------------------------------------------------------------


def packets_of(data: bytes) -> list[bytes]:
    return [data[i : i + TS_PACKET_BYTES] for i in range(0, len(data), TS_PACKET_BYTES)]


def pid_of(packet: bytes) -> int:
    return ((packet[1] & 0x1F) << 8) | packet[2]


def continuation_index(packets: list[bytes], pid: int, nth: int) -> int:
    """The index of the nth packet of `pid` that continues a PES (no PUSI)."""
    found = [i for i, p in enumerate(packets) if pid_of(p) == pid and not p[1] & 0x40]
    return found[nth]


def test_it_drops_the_pes_a_lost_packet_broke_and_goes_on():
    data = ffmpeg_ts()
    clean, _ = demux(data)
    packets = packets_of(data)
    lost = continuation_index(packets, VIDEO_PID, 100)
    events, demuxer = demux(b"".join(packets[:lost] + packets[lost + 1 :]))
    assert (demuxer.counters.continuity_errors, demuxer.counters.pes_dropped) == (1, 1)
    assert len(frames(events, FrameKind.VIDEO)) == len(frames(clean, FrameKind.VIDEO)) - 1
    assert set(frames(events, FrameKind.VIDEO)) < set(frames(clean, FrameKind.VIDEO))
    assert frames(events, FrameKind.AUDIO) == frames(clean, FrameKind.AUDIO)


def test_it_drops_a_duplicate_packet():
    data = ffmpeg_ts()
    packets = packets_of(data)
    twice = continuation_index(packets, VIDEO_PID, 100)
    events, demuxer = demux(b"".join(packets[: twice + 1] + packets[twice:]))
    assert events == demux(data)[0]
    assert (demuxer.counters.duplicate_packets, demuxer.counters.continuity_errors) == (1, 0)


def test_it_honours_the_discontinuity_indicator():
    # From a packet with an adaptation field on, the counters jump; the packet says so.
    data = ffmpeg_ts()
    packets = [bytearray(p) for p in packets_of(data)]
    video = [i for i, p in enumerate(packets) if pid_of(p) == VIDEO_PID]
    at = next(i for i in video[50:] if packets[i][3] & 0x20 and packets[i][4] > 0)
    packets[at][5] |= 0x80
    for i in video:
        if i >= at:
            packets[i][3] = (packets[i][3] & 0xF0) | ((packets[i][3] + 5) & 0x0F)
    events, demuxer = demux(b"".join(packets))
    assert demuxer.counters.continuity_errors == demuxer.counters.pes_dropped == 0
    assert frames(events) == frames(demux(data)[0])


def test_it_continues_the_timeline_across_a_new_time_base():
    # Audio alone, its PID the PCR PID; the time base restarts at 0 with a
    # discontinuity_indicator, and then wraps back (no indicator): a jump the hub rebases.
    def audio(counter: int, pts: int, discontinuity: bool = False) -> bytes:
        data = pes(0xC0, adts_frame(20), pts)
        field = b"\x80" if discontinuity else None
        return ts_packet(AUDIO_PID, data, counter, start=True, field=field)

    head = psi(PAT_PID, pat([(1, PMT_PID)])) + psi(PMT_PID, pmt([(0x0F, AUDIO_PID, b"")], pcr_pid=AUDIO_PID))
    data = head + audio(0, 5_000_000) + audio(1, 5_001_920) + audio(2, 0, discontinuity=True) + audio(3, 1920)
    data += audio(4, 5_003_840)
    got = [f.timestamp_ms - TIMELINE_START_MS for f in frames(demux(data)[0], FrameKind.AUDIO)]
    assert got == [0, 21, 21, 42, (2 * 1920 + 5_003_840 - 1920) // 90]


def test_it_regains_sync_after_garbage_and_counts_what_it_skipped():
    data = ffmpeg_ts()
    packets = packets_of(data)
    garbage = bytes(range(100))  # no 0x47 in it
    events, demuxer = demux(b"junk" + b"".join(packets[:40]) + garbage + b"".join(packets[40:]))
    assert events == demux(data)[0]
    assert (demuxer.counters.sync_losses, demuxer.counters.skipped_bytes) == (1, 4 + 100)


def test_it_finds_the_sync_past_a_false_one():
    # A 0x47 in garbage is no packet start unless another follows 188 bytes on.
    data = program() + packetize(AUDIO_PID, pes(0xC0, adts_frame(), 90_000))
    events, demuxer = demux(b"\x47\x00\x11" + data)
    assert len(frames(events, FrameKind.AUDIO)) == 1 and demuxer.counters.skipped_bytes == 3


def test_it_drops_a_truncated_last_packet():
    data = ffmpeg_ts()
    events, demuxer = demux(data[:-50])
    assert demuxer.counters.skipped_bytes == TS_PACKET_BYTES - 50
    assert len(frames(events, FrameKind.VIDEO)) >= 59


def test_it_drops_sections_with_a_bad_crc():
    good = pmt(AV_STREAMS)
    bad = bytearray(good)
    bad[-1] ^= 1
    audio = packetize(AUDIO_PID, pes(0xC0, adts_frame(), 90_000))
    head = psi(PAT_PID, pat([(1, PMT_PID)])) + psi(PMT_PID, bytes(bad))
    events, demuxer = demux(
        head + audio + psi(PMT_PID, good, counter=1) + packetize(AUDIO_PID, pes(0xC0, adts_frame(), 92_000), 1)
    )
    assert demuxer.counters.section_errors == 1
    assert [type(e) for e in events] == [ProgramReceived, FrameReceived, FrameReceived]  # header, then frame


def test_it_reads_a_section_that_spans_packets_and_follows_a_pmt_change():
    many = [(0x1B, VIDEO_PID, b"\x05\x04HDMV" + bytes(250))] + [(0x0F, AUDIO_PID, b"")]
    first = psi(PAT_PID, pat([(1, PMT_PID)])) + psi(PMT_PID, pmt(many))
    assert len(first) == 3 * TS_PACKET_BYTES
    changed = psi(PMT_PID, pmt([(0x0F, AUDIO_PID, b""), (0x81, DOLBY_PID, b"")], version=1), counter=2)
    events, _ = demux(first + changed)
    programs = [e for e in events if isinstance(e, ProgramReceived)]
    assert [p.version for p in programs] == [0, 1]
    assert [s.codec for s in programs[1].streams] == ["AAC", "AC-3"]


def test_it_refuses_streams_it_does_not_take_and_says_why():
    streams = [(0x1B, VIDEO_PID, b""), (0x1B, 0x103, b""), (0x03, 0x104, b""), (0x0F, AUDIO_PID, b"")]
    events, _ = demux(program(streams))
    refused = {e.pid: (e.codec, e.reason) for e in events if isinstance(e, StreamRefused)}
    assert refused == {
        0x103: ("H.264", "another H.264 stream: only the first (PID 0x0100) is taken"),
        0x104: ("MPEG-1 audio", "MPEG-1 audio is not taken (H.264, AAC, AC-3 and E-AC-3 are)"),
    }


# --- frames and timestamps -------------------------------------------------------------------


def test_it_spaces_the_adts_frames_of_a_pes_by_1024_samples_and_joins_a_frame_cut_between_two():
    one, two, three = adts_frame(100, 1), adts_frame(120, 2), adts_frame(90, 3)
    cut = 50
    first = packetize(AUDIO_PID, pes(0xC0, one + two[:cut], 900_000))
    # The next PES's PTS is that of the first frame that starts in it.
    second = packetize(AUDIO_PID, pes(0xC0, two[cut:] + three, 900_000 + 2 * 1920), counter=1)
    events, demuxer = demux(program() + first + second)
    got = frames(events, FrameKind.AUDIO)
    assert [f.body[2:] for f in got] == [one[7:], two[7:], three[7:]]
    start = got[0].timestamp_ms
    assert [f.timestamp_ms - start for f in got] == [0, 21, 42]  # 1920 ticks each at 48 kHz... floored to ms
    assert demuxer.counters.frames_dropped == 0


def test_it_unwraps_pts_at_33_bits_into_a_monotonic_timeline():
    near = TIMESTAMP_WRAP - 3 * 1920
    audio = b"".join(
        packetize(AUDIO_PID, pes(0xC0, adts_frame(), (near + i * 1920) % TIMESTAMP_WRAP), counter=i) for i in range(6)
    )
    got = frames(demux(program() + audio)[0], FrameKind.AUDIO)
    assert [f.timestamp_ms for f in got] == [TIMELINE_START_MS + i * 1920 // 90 for i in range(6)]


def test_it_makes_a_new_sequence_header_when_the_sps_changes():
    other_sps = make_sps(width_mbs=40, height_map_units=30)
    units = [access_unit(), access_unit(False), access_unit().replace(SPS, other_sps), access_unit()]
    video = b"".join(
        packetize(VIDEO_PID, pes(0xE0, unit, 90_000 + i * 3000, bounded=False), counter=i)
        for i, unit in enumerate(units)
    )
    events, _ = demux(program() + video)
    headers = frames(events, FrameKind.VIDEO, headers=True)
    assert [parse_avc_decoder_config(h.body[5:]).width for h in headers] == [320, 640, 320]
    assert [f.body[0] for f in frames(events, FrameKind.VIDEO)] == [0x17, 0x27, 0x17, 0x17]


def test_it_drops_video_before_its_parameter_sets():
    video = packetize(VIDEO_PID, pes(0xE0, access_unit(False), 90_000, bounded=False))
    video += packetize(VIDEO_PID, pes(0xE0, access_unit(), 93_000, bounded=False), counter=1)
    events, demuxer = demux(program() + video)
    assert [f.body[0] for f in frames(events, FrameKind.VIDEO)] == [0x17]
    assert demuxer.counters.frames_dropped == 1


# --- limits -----------------------------------------------------------------------------------


def test_it_takes_a_video_pes_of_max_video_pes_bytes_and_drops_one_byte_more():
    for extra, dropped in ((0, 0), (1, 1)):
        header = pes(0xE0, b"", 90_000, bounded=False)
        unit = access_unit(size=MAX_VIDEO_PES_BYTES - len(header) + extra)
        events, demuxer = demux(program() + packetize(VIDEO_PID, header + unit))
        assert demuxer.counters.pes_dropped == dropped
        assert len(frames(events, FrameKind.VIDEO)) == 1 - dropped


def test_it_takes_an_audio_pes_of_max_audio_pes_bytes_and_drops_one_byte_more():
    # An unbounded audio PES (allowed by some muxers) of ADTS frames and padding.
    for extra, dropped in ((0, 0), (1, 1)):
        header = pes(0xC0, b"", 90_000, bounded=False)
        data = (header + adts_frame(1000) * MAX_AUDIO_FRAMES_PER_PES).ljust(MAX_AUDIO_PES_BYTES + extra, b"\0")
        events, demuxer = demux(program() + packetize(AUDIO_PID, data))
        assert demuxer.counters.pes_dropped == dropped
        assert len(frames(events, FrameKind.AUDIO)) == (0 if dropped else MAX_AUDIO_FRAMES_PER_PES)


def test_it_buffers_at_most_max_buffered_bytes_of_pes():
    # Video and AAC at their limits, unfinished; then an AC-3 PES's first packet.
    streams = AV_STREAMS + [(0x81, DOLBY_PID, b"")]
    for video_bytes, dropped in ((MAX_VIDEO_PES_BYTES - 184, 0), (MAX_VIDEO_PES_BYTES - 183, 1)):
        header = pes(0xE0, b"", 90_000, bounded=False)
        video = packetize(VIDEO_PID, header + access_unit(size=video_bytes - len(header)))
        audio_header = pes(0xC0, b"", 90_000, bounded=False)
        audio = packetize(AUDIO_PID, audio_header + bytes(MAX_AUDIO_PES_BYTES - len(audio_header)))
        demuxer = TsDemuxer()
        demuxer.receive_data(program(streams) + video + audio)
        assert demuxer.buffered_bytes == video_bytes + MAX_AUDIO_PES_BYTES
        demuxer.receive_data(ts_packet(DOLBY_PID, b"\x00\x00\x01\xbd" + bytes(180), 0, start=True))
        assert demuxer.counters.pes_dropped == dropped
        assert demuxer.buffered_bytes <= MAX_BUFFERED_BYTES


def test_it_takes_max_audio_frames_per_pes_and_drops_the_rest():
    for count, dropped in ((MAX_AUDIO_FRAMES_PER_PES, 0), (MAX_AUDIO_FRAMES_PER_PES + 1, 1)):
        data = program() + packetize(AUDIO_PID, pes(0xC0, adts_frame(10) * count, 90_000))
        events, demuxer = demux(data)
        assert len(frames(events, FrameKind.AUDIO)) == MAX_AUDIO_FRAMES_PER_PES
        assert demuxer.counters.frames_dropped == dropped


def test_it_takes_max_programs_and_refuses_one_more_for_good():
    demux(psi(PAT_PID, pat([(n, 0x20 + n) for n in range(1, MAX_PROGRAMS + 1)])))
    demuxer = TsDemuxer()
    with pytest.raises(TsDemuxError, match=rf"the PAT lists {MAX_PROGRAMS + 1} programs, more than MAX_PROGRAMS"):
        demuxer.receive_data(psi(PAT_PID, pat([(n, 0x20 + n) for n in range(1, MAX_PROGRAMS + 2)])) + program())
    with pytest.raises(TsDemuxError):
        demuxer.receive_data(program())


def test_it_takes_max_elementary_streams_and_refuses_one_more():
    streams = [(0x0F, 0x100 + i, b"") for i in range(MAX_ELEMENTARY_STREAMS)]
    events, _ = demux(program(streams))
    assert len(events[0].streams) == MAX_ELEMENTARY_STREAMS
    with pytest.raises(TsDemuxError, match="MAX_ELEMENTARY_STREAMS"):
        demux(program(streams + [(0x0F, 0x200, b"")]))


def test_it_refuses_to_be_fed_after_the_end():
    demuxer = TsDemuxer()
    demuxer.receive_data(b"")
    with pytest.raises(RuntimeError):
        demuxer.receive_data(b"\x47")


# --- fuzz -----------------------------------------------------------------------------------------


def events_or_error(data: bytes, chunks: list[int]) -> None:
    try:
        events, demuxer = demux(data, chunks)
    except TsDemuxError:
        return
    assert all(isinstance(e, (ProgramReceived, StreamRefused, FrameReceived, PassthroughAudioReceived)) for e in events)
    assert demuxer.buffered_bytes == 0


@FUZZ
@given(data=st.binary(max_size=4000), chunks=st.lists(st.integers(1, 600), min_size=1, max_size=5))
def test_it_turns_any_bytes_into_events_or_its_error(data, chunks):
    events_or_error(data, chunks)


@functools.cache
def small_streams() -> list[bytes]:
    """Two seconds of each stream the demuxer takes, cut to 120 packets."""
    return [ffmpeg_ts()[: 120 * 188], ffmpeg_ts(audio="eac3")[: 120 * 188], ffmpeg_ts(audio="ac3")[: 120 * 188]]


@FUZZ
@given(
    which=st.integers(0, 2),
    flips=st.lists(st.tuples(st.integers(0, 120 * 188 - 1), st.integers(0, 255)), max_size=20),
    cut=st.tuples(st.integers(0, 120 * 188), st.integers(0, 2000)),
    chunks=st.lists(st.integers(1, 5000), min_size=1, max_size=5),
)
def test_it_turns_mutated_streams_into_events_or_its_error(which, flips, cut, chunks):
    data = bytearray(small_streams()[which])
    for at, value in flips:
        data[at] = value
    del data[cut[0] : cut[0] + cut[1]]
    events_or_error(bytes(data), chunks)


# Payloads built of pieces that start like frames (a start code, an ADTS or a
# Dolby sync word), so that the frame parsers see headers, not just noise.
SYNCS = [b"", b"\x00\x00\x01", b"\x00\x00\x01\x67", b"\xff\xf1", b"\xff\xf9", b"\x0b\x77"]


@FUZZ
@given(
    pieces=st.lists(st.tuples(st.sampled_from(SYNCS), st.binary(max_size=400)), max_size=12),
    stream_type=st.sampled_from([0x1B, 0x0F, 0x81, 0x87]),
    bounded=st.booleans(),
)
def test_it_reads_any_pes_payload_into_events(pieces, stream_type, bounded):
    payload = b"".join(sync + piece for sync, piece in pieces)
    data = program([(stream_type, VIDEO_PID, b"")])
    counter = 0
    for i, part in enumerate((payload, payload[len(payload) // 3 :], payload[::-1])):
        packets = packetize(VIDEO_PID, pes(0xE0, part, 90_000 + i * 3000, bounded=bounded), counter)
        counter += len(packets) // TS_PACKET_BYTES
        data += packets
    events_or_error(data, [len(data)])
