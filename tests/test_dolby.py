"""Dolby audio (AC-3, E-AC-3) from an SRT publish through the hub as
Enhanced RTMP audio (livecenter/media/dolby.py), and the MPEG-TS muxer's
passthrough of it (issue 13). Streams come from the ffmpeg CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess

import av
import pytest

from livecenter.media.codecs import CodecError, DolbyConfig, parse_dolby_sync_frame
from livecenter.media.dolby import DolbyAudioTrack
from livecenter.media.flv import (
    AUDIO_PACKET_CODED_FRAMES,
    AUDIO_PACKET_SEQUENCE_START,
    FrameKind,
    audio_codec_name,
    audio_fourcc,
    audio_is_sequence_header,
    ex_audio_body,
    ex_audio_packet_type,
)
from livecenter.media.hub import StreamHub
from livecenter.media.mpegts import AUDIO_PID, MAX_DOLBY_ACCESS_UNIT_BYTES, TS_PACKET_BYTES, TsMuxer, TsMuxError
from livecenter.media.mpegts_demux import FrameReceived, PassthroughAudioReceived, ProgramReceived, TsDemuxer
from livecenter.media.policy import StreamKey
from livecenter.media.rts.media import RtsSource
from tests.test_mpegts_demux import ffmpeg_ts

KEY = StreamKey("push.example.com", "live", "cam1")


def dolby_units(audio: str, channels: int = 2) -> tuple[list, list]:
    """(all demuxer events, its Dolby access units) of a 2 s ffmpeg stream."""
    events = TsDemuxer().receive_data(ffmpeg_ts(audio=audio, extra=("-ac", str(channels))))
    return events, [e for e in events if isinstance(e, PassthroughAudioReceived)]


# --- Enhanced RTMP audio bodies ---------------------------------------------------------


def test_it_writes_the_ex_audio_tag_header_as_ffmpeg_does():
    # FFmpeg 8 (PyAV) writes an E-AC-3 FLV as 0x90 'ec-3' (SequenceStart, empty), 0x91 'ec-3' + frames.
    assert ex_audio_body(b"ec-3", AUDIO_PACKET_SEQUENCE_START) == bytes.fromhex("9065632d33")
    frame = ex_audio_body(b"ec-3", AUDIO_PACKET_CODED_FRAMES, b"\x0b\x77\x00")
    assert frame == bytes.fromhex("9165632d330b7700")
    assert audio_fourcc(frame) == b"ec-3" and ex_audio_packet_type(frame) == AUDIO_PACKET_CODED_FRAMES
    assert audio_is_sequence_header(bytes.fromhex("9065632d33")) and not audio_is_sequence_header(frame)
    assert audio_codec_name(frame) == "E-AC-3" and audio_codec_name(ex_audio_body(b"ac-3", 1)) == "AC-3"


def test_legacy_audio_bodies_have_no_fourcc():
    assert audio_fourcc(b"\xaf\x01\x21") == b"" and ex_audio_packet_type(b"\xaf\x00\x12\x10") == -1
    assert audio_is_sequence_header(b"\xaf\x00\x12\x10") and not audio_is_sequence_header(b"\xaf\x01\x21")
    assert audio_codec_name(b"\xaf\x01") == "AAC" and audio_codec_name(b"") == ""
    assert audio_fourcc(b"\x90ec-") == b""  # too short to say


# --- sync frame headers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("audio", "channels", "codec"),
    [("eac3", 2, "E-AC-3"), ("eac3", 6, "E-AC-3"), ("ac3", 6, "AC-3"), ("ac3", 1, "AC-3")],
)
def test_it_reads_rate_and_channels_from_ffmpeg_s_sync_frames(audio, channels, codec):
    _, units = dolby_units(audio, channels)
    assert {parse_dolby_sync_frame(unit.data) for unit in units} == {DolbyConfig(codec, 48000, channels)}


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x0b\x77\x00\x00\x00\x40", "not an AC-3/E-AC-3 sync frame"),
        (b"\x0b\x78" + bytes(6), "not an AC-3/E-AC-3 sync frame"),
        (b"\x0b\x77\x00\x00\xc0\x40\x00\x00", "AC-3 fscod 3 is reserved"),
        (b"\x0b\x77\x00\x00\x00\x88\x00\x00", "bsid 17 is neither AC-3 nor E-AC-3"),
        (b"\x0b\x77\x00\x00\xf0\x80\x00\x00", "E-AC-3 fscod2 3 is reserved"),
    ],
)
def test_it_refuses_what_is_no_sync_frame_header(data, error):
    with pytest.raises(CodecError, match=error):
        parse_dolby_sync_frame(data)


# --- the SRT publisher's Dolby track ----------------------------------------------------


def test_it_makes_a_sequence_start_then_coded_frames_and_a_new_start_on_a_codec_change():
    track = DolbyAudioTrack()
    assert track.bodies("E-AC-3", b"\x0b\x77a") == [
        bytes.fromhex("9065632d33"),
        bytes.fromhex("9165632d33") + b"\x0b\x77a",
    ]
    assert track.bodies("E-AC-3", b"\x0b\x77b") == [bytes.fromhex("9165632d33") + b"\x0b\x77b"]
    assert track.bodies("AC-3", b"\x0b\x77c") == [ex_audio_body(b"ac-3", 0), ex_audio_body(b"ac-3", 1, b"\x0b\x77c")]
    assert track.bodies("E-AC-3", b"") == [] and track.bodies("MP2", b"x") == []


def test_a_program_with_aac_keeps_the_aac_and_takes_no_dolby():
    data = ffmpeg_ts(audio="aac")  # one program: H.264 and AAC
    program = next(e for e in TsDemuxer().receive_data(data) if isinstance(e, ProgramReceived))
    both = ProgramReceived(
        program.program_number, program.pmt_pid, program.version, program.pcr_pid,
        (*program.streams, type(program.streams[0])(0x102, 0x87, "E-AC-3")),
    )  # fmt: skip
    track = DolbyAudioTrack()
    track.on_program(both)
    assert track.bodies("E-AC-3", b"\x0b\x77") == []
    assert track.refusal == "the program's AAC track is the stream's audio"
    track.on_program(program)  # AAC alone: nothing to say
    assert track.refusal == ""


def push_srt_stream(hub: StreamHub, events: list, key: StreamKey = KEY) -> None:
    """What srt_server does with the demuxer's events."""
    publication = hub.publish(key)
    track = DolbyAudioTrack()
    for event in events:
        if isinstance(event, FrameReceived):
            publication.push(event.kind, event.timestamp_ms, event.body)
        elif isinstance(event, ProgramReceived):
            track.on_program(event)
        elif isinstance(event, PassthroughAudioReceived):
            for body in track.bodies(event.codec, event.data):
                publication.push(FrameKind.AUDIO, event.timestamp_ms, body)


def test_the_hub_carries_e_ac_3_as_an_audio_track_and_says_so():
    events, units = dolby_units("eac3", 6)

    async def run():
        hub = StreamHub()
        push_srt_stream(hub, events)
        stream = hub.stream(KEY)
        joiner = hub.subscribe(KEY, protocol="flv")
        return stream, stream.info(), joiner.drain()

    stream, info, joined = asyncio.run(run())
    assert (info.audio_codec, info.audio_sample_rate, info.audio_channels) == ("E-AC-3", 48000, 6)
    assert info.video_codec == "H264" and info.audio_bitrate > 0
    assert stream.audio_frames == len(units)
    assert stream.audio_header.body == bytes.fromhex("9065632d33")
    # A joiner gets the SequenceStart with the headers, then the GOP's frames untouched.
    audio = [f for f in joined if f.kind is FrameKind.AUDIO]
    assert audio[0].sequence_header and all(f.body[:5] == bytes.fromhex("9165632d33") for f in audio[1:])
    assert {f.body[5:] for f in audio[1:]} <= {u.data for u in units}


# --- MPEG-TS passthrough (HLS, LL-HLS, SRT playback) -------------------------------------


def mux_hub_frames(events: list) -> bytes:
    """The hub's frames of an SRT stream as a viewer there from the start
    gets them, muxed as the HLS packager and SRT viewers do."""

    async def run():
        hub = StreamHub()
        packager = hub.subscribe(KEY, protocol="hls-packager")
        push_srt_stream(hub, events)
        return packager.drain()

    muxer = TsMuxer()
    out = bytearray()
    psi_for = None
    for frame in asyncio.run(run()):
        data = muxer.mux(frame.kind, frame.timestamp, frame.body)
        # PSI before keyframes, and once the audio joined the PMT (its SequenceStart follows the first keyframe).
        if data and (frame.keyframe and frame.kind is FrameKind.VIDEO or psi_for != muxer.has_audio):
            out += muxer.psi()
            psi_for = muxer.has_audio
        out += data
    return bytes(out)


@pytest.mark.parametrize(("audio", "stream_type", "registration"), [("eac3", 0x87, b"EAC3"), ("ac3", 0x81, b"AC-3")])
def test_the_muxer_passes_dolby_through_as_ffmpeg_types_it(audio, stream_type, registration):
    muxer = TsMuxer()
    fourcc = b"ec-3" if audio == "eac3" else b"ac-3"
    assert muxer.mux(FrameKind.AUDIO, 0, ex_audio_body(fourcc, AUDIO_PACKET_SEQUENCE_START)) == b""
    pmt = muxer.psi()[TS_PACKET_BYTES:]
    # PMT: PCR on the audio PID (no video), then the audio stream with its registration descriptor.
    assert pmt[5 + 8 : 5 + 10] == bytes((0xE0 | AUDIO_PID >> 8, AUDIO_PID & 0xFF))
    assert pmt[5 + 12 : 5 + 23] == bytes((stream_type, 0xE1, 0x01, 0xF0, 6, 0x05, 4)) + registration
    _, units = dolby_units(audio)
    packets = muxer.mux(FrameKind.AUDIO, 1000, ex_audio_body(fourcc, AUDIO_PACKET_CODED_FRAMES, units[0].data))
    pes = packets[4 + 1 + packets[4] :]  # past the adaptation field with the PCR
    assert pes[:4] == b"\x00\x00\x01\xbd" and int.from_bytes(pes[4:6], "big") == 8 + len(units[0].data)
    assert pes[7] == 0x80 and pes[14 : 14 + 2] == b"\x0b\x77"  # a PTS, then the sync frame untouched


@pytest.mark.parametrize("audio", ["eac3", "ac3"])
def test_muxed_dolby_demuxes_to_the_same_access_units(audio):
    events, units = dolby_units(audio, 6)
    again = [e for e in TsDemuxer().receive_data(mux_hub_frames(events)) if isinstance(e, PassthroughAudioReceived)]
    units = units[-len(again) :]  # from the first keyframe on, where the hub's viewers start
    assert len(units) > 50 and [u.data for u in again] == [u.data for u in units]
    offset = again[0].timestamp_ms - units[0].timestamp_ms
    assert [u.timestamp_ms - offset for u in again] == [u.timestamp_ms for u in units]


def test_ffmpeg_decodes_the_muxed_e_ac_3_and_h264(tmp_path):
    events, units = dolby_units("eac3", 6)
    path = tmp_path / "out.ts"
    path.write_bytes(mux_hub_frames(events))
    probed = json.loads(
        subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,channels,sample_rate", "-of", "json", path],
            capture_output=True, check=True, timeout=60,
        ).stdout
    )["streams"]  # fmt: skip
    assert {s["codec_name"] for s in probed} == {"h264", "eac3"}
    assert next(s for s in probed if s["codec_name"] == "eac3")["channels"] == 6
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-xerror", "-i", path, "-map", "0:a", "-f", "s16le", "-"],
        capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    muxed = [e for e in TsDemuxer().receive_data(path.read_bytes()) if isinstance(e, PassthroughAudioReceived)]
    assert len(muxed) > 50 and len(decoded) == len(muxed) * 1536 * 6 * 2  # every sample of every unit


def test_the_muxer_refuses_an_audio_codec_it_cannot_carry_and_a_unit_past_its_limit():
    muxer = TsMuxer()
    with pytest.raises(TsMuxError, match="audio FourCC b'Opus' is not AC-3 or E-AC-3"):
        muxer.mux(FrameKind.AUDIO, 0, ex_audio_body(b"Opus", AUDIO_PACKET_SEQUENCE_START))
    muxer.mux(FrameKind.AUDIO, 0, ex_audio_body(b"ec-3", AUDIO_PACKET_SEQUENCE_START))
    with pytest.raises(TsMuxError, match="is not the stream's audio codec"):
        muxer.mux(FrameKind.AUDIO, 0, ex_audio_body(b"ac-3", AUDIO_PACKET_CODED_FRAMES, b"\x0b\x77"))
    at_limit = ex_audio_body(b"ec-3", AUDIO_PACKET_CODED_FRAMES, bytes(MAX_DOLBY_ACCESS_UNIT_BYTES))
    assert len(muxer.mux(FrameKind.AUDIO, 0, at_limit)) % TS_PACKET_BYTES == 0
    with pytest.raises(TsMuxError, match="exceeds MAX_DOLBY_ACCESS_UNIT_BYTES"):
        muxer.mux(FrameKind.AUDIO, 0, at_limit + b"\x00")


# --- RTS: Opus made once from the Dolby audio ------------------------------------------


def test_rts_makes_opus_once_from_e_ac_3_5_1():
    from tests.test_rts_media import service, settle

    events, units = dolby_units("eac3", 6)

    async def run():
        hub = StreamHub()
        publication = hub.publish(KEY)
        source = RtsSource(service(hub), KEY)
        viewer = source.add_viewer(may_transcode=True)
        track = DolbyAudioTrack()
        for event in events:
            if isinstance(event, FrameReceived):
                publication.push(event.kind, event.timestamp_ms, event.body)
            elif isinstance(event, PassthroughAudioReceived):
                for body in track.bodies(event.codec, event.data):
                    publication.push(FrameKind.AUDIO, event.timestamp_ms, body)
            await asyncio.sleep(0)
        await settle(source, 60)
        packets = list(viewer.audio.queue)
        source.close()
        return packets

    packets = asyncio.run(run())
    # 20 ms Opus packets from the viewer's keyframe (the second, at 2 s) to the end, in order, in stereo.
    assert len(packets) >= 45 and len(units) == 63
    pts = [p.pts for p in packets]
    assert all(b - a == 960 for a, b in zip(pts, pts[1:], strict=False))
    decoder = av.CodecContext.create("opus", "r")
    frames = [f for p in packets for f in decoder.decode(av.Packet(bytes(p)))]
    assert frames and frames[0].layout.nb_channels == 2
