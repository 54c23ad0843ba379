"""AAC made once per stream from Dolby audio for legacy FLV/RTMP players
(issue 13; legacy_audio.py, hub.py): the hub's side, without sockets."""

from __future__ import annotations

import asyncio
import threading

import av

from livecenter.media.dolby import DolbyAudioTrack
from livecenter.media.flv import AUDIO_CODEC_AAC, FrameKind, audio_fourcc
from livecenter.media.hub import StreamHub
from livecenter.media.legacy_audio import AacEncoding
from livecenter.media.mpegts_demux import FrameReceived, PassthroughAudioReceived
from tests.test_dolby import KEY, dolby_units


def push(publication, events: list) -> None:
    track = DolbyAudioTrack()
    for event in events:
        if isinstance(event, FrameReceived):
            publication.push(event.kind, event.timestamp_ms, event.body)
        elif isinstance(event, PassthroughAudioReceived):
            for body in track.bodies(event.codec, event.data):
                publication.push(FrameKind.AUDIO, event.timestamp_ms, body)


async def settle(stream) -> None:
    """Until the conversion thread has answered every job given it."""
    async with asyncio.timeout(60):
        while stream.legacy_aac is not None and stream.legacy_aac.pending:
            await asyncio.sleep(0.01)


def audio_of(frames) -> list:
    return [f for f in frames if f.kind is FrameKind.AUDIO]


def decode_aac(frames) -> list:
    """Decode FLV AAC bodies as a legacy player does: the header's
    AudioSpecificConfig, then each raw frame; errors raise."""
    (header,), raw = [f for f in frames if f.sequence_header], [f for f in frames if not f.sequence_header]
    decoder = av.CodecContext.create("aac", "r")
    decoder.extradata = header.body[2:]
    return [frame for f in raw for frame in decoder.decode(av.Packet(f.body[2:]))]


def legacy_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("legacy-aac")]


def test_it_encodes_e_ac_3_5_1_to_stereo_48_khz_aac_with_the_source_timestamps():
    _, units = dolby_units("eac3", 6)
    encoding = AacEncoding()
    (header,) = encoding.configure("eac3", units[0].timestamp_ms)
    out = encoding.encode([(u.data, u.timestamp_ms) for u in units])
    assert header[2] and header[1][:2] == b"\xaf\x00"
    assert all(body[:2] == b"\xaf\x01" and not is_header for _, body, is_header in out)
    times = [ts for ts, _, _ in out]
    assert times == sorted(times)
    # 1024 samples at 48 kHz is 21.3 ms; the encoder holds back its last frames.
    end = units[-1].timestamp_ms
    assert times[0] <= units[0].timestamp_ms + 1 and end - 150 <= times[-1] <= end + 40
    assert len(out) >= (end - units[0].timestamp_ms) / 21.34 - 5


def test_legacy_subscribers_get_aac_made_once_and_others_keep_the_dolby_frames():
    events, units = dolby_units("eac3", 6)

    async def run():
        hub = StreamHub()
        publication = hub.publish(KEY)
        legacy = [hub.subscribe(KEY, protocol="flv", legacy_audio=True) for _ in range(2)]
        worker = hub.subscribe(KEY, protocol="flv")
        stream = hub.stream(KEY)
        push(publication, events)
        converter = stream.legacy_aac
        await settle(stream)
        late = hub.subscribe(KEY, protocol="rtmp", legacy_audio=True)
        assert stream.legacy_aac is converter  # once per stream
        got = [sub.drain() for sub in (*legacy, worker, late)]
        threads_running = legacy_threads()
        for sub in (*legacy, late):
            sub.close()
        worker_still = stream.legacy_aac
        async with asyncio.timeout(30):
            while legacy_threads():
                await asyncio.sleep(0.01)
        worker.close()
        return got, converter, threads_running, worker_still

    (first, second, worker, late), converter, threads_running, worker_still = asyncio.run(run())
    assert converter is not None and len(threads_running) == 1
    # The last legacy viewer left: the conversion closed, its thread gone.
    assert converter.closed and worker_still is None

    # A media worker gets the Dolby frames as they came, and no AAC.
    assert {audio_fourcc(f.body) for f in audio_of(worker)} == {b"ec-3"}
    assert len(audio_of(worker)) == len(units) + 1
    # Legacy viewers get the same shared video frames and the same AAC frames, no Dolby.
    assert [f for f in first if f.kind is FrameKind.VIDEO] == [f for f in worker if f.kind is FrameKind.VIDEO]
    assert first == second
    audio = audio_of(first)
    assert all(f.body[0] >> 4 == AUDIO_CODEC_AAC for f in audio)
    pcm = decode_aac(audio)
    assert (pcm[0].sample_rate, pcm[0].layout.nb_channels) == (48000, 2)
    assert sum(f.samples for f in pcm) >= 0.9 * (units[-1].timestamp_ms - units[0].timestamp_ms) * 48

    # A late joiner: headers with the AAC one, the GOP's keyframe first, its AAC from there on.
    headers = [f for f in late if f.is_header]
    assert [f.kind for f in headers] == [FrameKind.VIDEO, FrameKind.AUDIO]
    assert headers[1].body[:2] == b"\xaf\x00"
    media = [f for f in late if not f.is_header]
    assert media[0].keyframe and media[0].kind is FrameKind.VIDEO
    late_audio = [f for f in media if f.kind is FrameKind.AUDIO]
    start = media[0].timestamp
    assert late_audio and late_audio == [f for f in audio if not f.sequence_header and f.timestamp >= start]
    assert [f.timestamp for f in media] == sorted(f.timestamp for f in media)
    assert decode_aac([headers[1], *late_audio])


def test_a_stream_with_aac_runs_no_conversion_for_legacy_subscribers():
    from tests.test_hub import AUDIO_HEADER, VIDEO_HEADER, push_gop

    async def run():
        hub = StreamHub()
        publication = hub.publish(KEY)
        publication.push("video", 0, VIDEO_HEADER)
        publication.push("audio", 0, AUDIO_HEADER)
        push_gop(publication, 0)
        sub = hub.subscribe(KEY, protocol="flv", legacy_audio=True)
        return hub.stream(KEY).legacy_aac, sub.drain()

    converter, frames = asyncio.run(run())
    assert converter is None
    assert frames[1].body == AUDIO_HEADER
