"""AAC made from a stream's Dolby audio, once per stream, for the FLV and
RTMP players that know only the legacy SoundFormats (issue 13).

The hub carries AC-3/E-AC-3 as Enhanced RTMP FourCC audio (dolby.py). FFmpeg
7.1+ reads it, so media workers (recordings copy the E-AC-3) keep it; but
FFmpeg 5/6, flv.js/mpegts.js in the web player and OBS-era players find an
audio track of unknown codec and play the video without sound. For them
the hub (LiveStream, hub.py) has this conversion decode the Dolby audio,
downmix it to stereo 48 kHz and encode it to AAC-LC, and hands them the AAC
in place of the Dolby tags; the video frames stay the shared ones.

`AacEncoding` is the job's state and runs only in the conversion thread
(rts/threads.py's ConversionThread, as RTS's Opus does); `AacTranscoder` is
its loop side. It decodes whatever FFmpeg decoder it is configured with: a
WHIP publisher's Opus becomes the stream's AAC the same way (rts/ingest.py).
What comes out are FLV AAC tag bodies, (timestamp ms, body, is sequence
header): an AudioSpecificConfig first, then raw AAC frames whose timestamps
are the source frames' (the encoder's pts, counted in samples from the
first source frame, re-anchored at a discontinuity).
"""

from __future__ import annotations

import fractions
import logging
from collections.abc import Callable

import av

from .flv import AUDIO_CODEC_AAC, PACKET_NALU, PACKET_SEQUENCE_HEADER
from .rts.threads import ConversionThread

log = logging.getLogger(__name__)

AAC_SAMPLE_RATE_HZ = 48_000
AAC_TIME_BASE = fractions.Fraction(1, AAC_SAMPLE_RATE_HZ)
AAC_FRAME_SAMPLES = 1024  # AAC-LC: one frame is 1024 samples a channel
# Stereo AAC-LC at 128 kbit/s: transparent enough for a downmix, a tenth of
# a 720p stream.
AAC_BITRATE = 128_000
# FLV AudioTagHeader for AAC: SoundFormat 10, SoundRate 3 (AAC always says
# 44 kHz), 16-bit, stereo (FLV 10.1, E.4.2.1).
FLV_AAC_FLAGS = (AUDIO_CODEC_AAC << 4) | (3 << 2) | (1 << 1) | 1
# Jobs waiting in the thread: a job is one Dolby frame (32 ms of E-AC-3 at
# 48 kHz) or the batch of a GOP's frames at start. 64 is 2 s of audio, past
# which input is dropped rather than queued: a thread that cannot keep up
# would only fall further behind the video.
AAC_MAX_PENDING_JOBS = 64
# A source frame this far from where the previous one ended is a
# discontinuity: the output's timestamps start again from it.
AAC_RESYNC_MS = 100


def flv_aac_body(packet_type: int, data: bytes) -> bytes:
    return bytes((FLV_AAC_FLAGS, packet_type)) + data


class AacEncoding:
    """AC-3/E-AC-3 access units to AAC-LC stereo 48 kHz. Runs in the
    conversion thread only."""

    def __init__(self) -> None:
        self._decoder = None
        self._encoder = None
        self._resampler = None
        self._next_pts: int | None = None  # the next resampled sample, 1/48000 s
        self._source_end_ms: int | None = None  # where the last source frame ended

    def configure(self, decoder_name: str, timestamp_ms: int) -> list[tuple[int, bytes, bool]]:
        """`decoder_name` "ac3", "eac3" (the sync frames say their rate and
        channels) or "opus" (WebRTC's Opus is 48 kHz; FFmpeg's decoder
        makes stereo without an OpusHead): no config. Out: the AAC sequence
        header."""
        self._decoder = av.CodecContext.create(decoder_name, "r")
        encoder = av.CodecContext.create("aac", "w")
        encoder.sample_rate = AAC_SAMPLE_RATE_HZ
        encoder.layout = "stereo"
        encoder.format = "fltp"
        encoder.bit_rate = AAC_BITRATE
        encoder.time_base = AAC_TIME_BASE
        encoder.open()
        self._encoder = encoder
        self._resampler = av.AudioResampler(
            format="fltp", layout="stereo", rate=AAC_SAMPLE_RATE_HZ, frame_size=AAC_FRAME_SAMPLES
        )
        self._next_pts = self._source_end_ms = None
        return [(timestamp_ms, flv_aac_body(PACKET_SEQUENCE_HEADER, bytes(encoder.extradata)), True)]

    def encode(self, units: list[tuple[bytes, int]]) -> list[tuple[int, bytes, bool]]:
        """Access units (Dolby sync frames, Opus packets) as (data, timestamp
        ms) in; out the AAC frames they complete."""
        if self._decoder is None:
            return []
        out = []
        for data, timestamp_ms in units:
            try:
                frames = self._decoder.decode(av.Packet(data))
            except av.FFmpegError as exc:
                log.debug("legacy audio: Dolby frame not decoded: %s", exc)
                continue
            for frame in frames:
                end = self._source_end_ms
                if self._next_pts is None or end is None or abs(timestamp_ms - end) > AAC_RESYNC_MS:
                    self._next_pts = timestamp_ms * AAC_SAMPLE_RATE_HZ // 1000
                self._source_end_ms = timestamp_ms + frame.samples * 1000 // frame.sample_rate
                for chunk in self._resampler.resample(frame):
                    chunk.pts = self._next_pts
                    chunk.time_base = AAC_TIME_BASE
                    self._next_pts += chunk.samples
                    for packet in self._encoder.encode(chunk):
                        # The encoder's priming makes its first pts 1024 samples early.
                        ms = max(packet.pts * 1000 // AAC_SAMPLE_RATE_HZ, 0)
                        out.append((ms, flv_aac_body(PACKET_NALU, bytes(packet)), False))
        return out


class AacTranscoder:
    """One stream's AAC, in a thread of its own: the loop's side of
    AacEncoding. `on_output(timestamp_ms, body, is_header)` is called on the
    loop with each FLV AAC body."""

    def __init__(self, on_output: Callable[[int, bytes, bool], None]) -> None:
        self._encoding = AacEncoding()
        self._thread = ConversionThread("legacy-aac", AAC_MAX_PENDING_JOBS, lambda item: on_output(*item))

    @property
    def pending(self) -> int:
        return self._thread.pending

    @property
    def closed(self) -> bool:
        return self._thread.closed

    def configure(self, decoder_name: str, timestamp_ms: int) -> None:
        self._thread.submit(self._encoding.configure, decoder_name, timestamp_ms)

    def push(self, units: list[tuple[bytes, int]]) -> None:
        if units:
            self._thread.submit(self._encoding.encode, units)

    def close(self) -> None:
        self._thread.close()
