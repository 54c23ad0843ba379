"""The threads of RTS: the conversions that run off the event loop.

`ConversionThread` is one stream's single worker thread. The loop submits
jobs to it (`submit`, `close`); a job runs in the thread and returns its
output, which the thread hands back to the loop in one
`call_soon_threadsafe`: the loop's callbacks and counters are only ever
touched on the loop.

`OpusEncoding` and `H264Transcoding` are the jobs' state: PyAV codec
contexts and the flags the thread keeps for itself. Their methods run only
in the conversion thread; what the loop has to tell them (a keyframe
request) travels as an argument of the next job. media.py's
`OpusTranscoder` and `VideoTranscoder` are their loop side.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import av

from ..codecs import AvcConfig

log = logging.getLogger(__name__)

OPUS_CLOCK_HZ = 48_000
OPUS_TIME_BASE = fractions.Fraction(1, OPUS_CLOCK_HZ)
MS_TIME_BASE = fractions.Fraction(1, 1000)
# Opus in WebRTC: 20 ms frames by default (browsers send 20). RFC 7587
# allows up to 120 ms a packet; a node with many viewers may send 40 or 60
# (`use_opus_frame_ms`): its fan-out sends one packet per viewer per frame,
# and at 50 packets a second audio was a third of the node's work with 500
# viewers (bench/README.md, "bench/rts: latency under load"), at the cost
# of that much more audio latency (the encoder waits for a whole frame).
OPUS_FRAME_MS_CHOICES = (20, 40, 60)
OPUS_FRAME_MS = 20
OPUS_FRAME_SAMPLES = OPUS_CLOCK_HZ * OPUS_FRAME_MS // 1000
_opus_frame_ms = OPUS_FRAME_MS
OPUS_BITRATE = 64_000
# The B-frame-free rendition (the seed's OBS settings for RTS).
TRANSCODE_PROFILE = "baseline"
TRANSCODE_PRESET = "veryfast"
TRANSCODE_TUNE = "zerolatency"


def use_opus_frame_ms(frame_ms: int) -> None:
    """The Opus frame (and RTP packet) duration of the encoders configured
    from now on: one of OPUS_FRAME_MS_CHOICES (the node sets it at start)."""
    global _opus_frame_ms
    if frame_ms not in OPUS_FRAME_MS_CHOICES:
        raise ValueError(f"the Opus frame duration must be one of {OPUS_FRAME_MS_CHOICES} ms, not {frame_ms}")
    _opus_frame_ms = frame_ms


def av_packet(data: bytes, pts: int, time_base: fractions.Fraction) -> av.Packet:
    packet = av.Packet(data)
    packet.pts = packet.dts = pts
    packet.time_base = time_base
    return packet


class ConversionThread:
    """A single thread that runs one stream's conversion jobs in order. Made,
    fed and closed on the event loop; each job's output items are passed to
    `on_output` on the loop. Input past `max_pending` jobs is refused."""

    def __init__(self, name: str, max_pending: int, on_output: Callable) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.name = name
        self._loop = asyncio.get_running_loop()
        self._on_output = on_output
        self.pending = 0  # jobs submitted whose output has not come back
        self.max_pending = max_pending
        self.closed = False

    # --- on the loop ---------------------------------------------------------------

    def submit(self, job: Callable, *args) -> bool:
        if self.closed or self.pending >= self.max_pending:
            return False
        self.pending += 1
        self._executor.submit(self._run, job, args)
        return True

    def close(self) -> None:
        self.closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _finished(self, outputs) -> None:
        try:
            if not self.closed:
                for item in outputs:
                    self._on_output(item)
        finally:
            # After the output: a callback sees its own job still pending.
            self.pending -= 1

    # --- in the thread -------------------------------------------------------------

    def _run(self, job: Callable, args: tuple) -> None:
        try:
            outputs = job(*args)
        except Exception:
            log.exception("%s conversion failed", self.name)
            outputs = ()
        try:
            self._loop.call_soon_threadsafe(self._finished, outputs)
        except RuntimeError:
            pass  # the loop is closed


class OpusEncoding:
    """AAC (or AC-3, E-AC-3: FFmpeg's "ac3"/"eac3" decoders, downmixed to
    stereo by the resampler) to Opus (20 ms packets, or what
    `use_opus_frame_ms` set when it was configured). Runs in the conversion
    thread only."""

    def __init__(self) -> None:
        self._decoder = None
        self._encoder = None
        self._resampler = None
        self._next_pts: int | None = None

    def configure(self, audio_specific_config: bytes, decoder_name: str = "aac") -> list[av.Packet]:
        """`decoder_name` "ac3" or "eac3" takes no config: the sync frames say it all."""
        decoder = av.CodecContext.create(decoder_name, "r")
        if audio_specific_config:
            decoder.extradata = audio_specific_config
        self._decoder = decoder
        encoder = av.CodecContext.create("libopus", "w")
        encoder.sample_rate = OPUS_CLOCK_HZ
        encoder.layout = "stereo"
        encoder.format = "s16"
        encoder.bit_rate = OPUS_BITRATE
        encoder.time_base = OPUS_TIME_BASE
        frame_ms = _opus_frame_ms
        encoder.options = {"application": "lowdelay", "frame_duration": str(frame_ms)}
        self._encoder = encoder
        self._resampler = av.AudioResampler(
            format="s16", layout="stereo", rate=OPUS_CLOCK_HZ, frame_size=OPUS_CLOCK_HZ * frame_ms // 1000
        )
        self._next_pts = None
        return []

    def encode(self, raw: bytes, timestamp_ms: int) -> list[av.Packet]:
        """One raw AAC frame (or Dolby access unit) in, the Opus packets it completes out."""
        if self._decoder is None:
            return []
        try:
            frames = self._decoder.decode(av.Packet(raw))
        except av.FFmpegError as exc:
            log.debug("rts: audio frame not decoded: %s", exc)
            return []
        out = []
        for frame in frames:
            for chunk in self._resampler.resample(frame):
                if self._next_pts is None:
                    self._next_pts = timestamp_ms * OPUS_CLOCK_HZ // 1000
                chunk.pts = self._next_pts
                chunk.time_base = OPUS_TIME_BASE
                self._next_pts += chunk.samples
                for packet in self._encoder.encode(chunk):
                    out.append(av_packet(bytes(packet), packet.pts, OPUS_TIME_BASE))
        return out


class H264Transcoding:
    """H.264 with B-frames to Baseline without (zerolatency). Keyframes
    where the source has them and where asked. Runs in the conversion thread
    only."""

    def __init__(self) -> None:
        self._decoder = None
        self._encoder = None
        # A keyframe was asked for and no picture has come out since: the
        # decoder may hold the frame that brought the request.
        self._force_keyframe = False
        # A frame did not decode: skip to the next source keyframe.
        self._resync = False

    def configure(self, config: AvcConfig | None, decoder_name: str = "h264") -> list:
        # Annex B input brings its SPS and PPS before every keyframe (VP8
        # needs no config). One thread: frame threading would hold back a
        # frame per thread.
        self._decoder = av.CodecContext.create(decoder_name, "r")
        self._decoder.thread_count = 1
        self._encoder = None  # made for the first decoded frame's size
        self._resync = False
        return []

    def transcode(
        self, access_unit: bytes, pts_ms: int, dts_ms: int, keyframe: bool, force_keyframe: bool
    ) -> list[tuple[bytes, int, bool]]:
        """One Annex B access unit in; out the encoded access units as
        (data, 90 kHz pts, keyframe). `force_keyframe`: the next picture out
        is a keyframe."""
        self._force_keyframe = self._force_keyframe or force_keyframe
        if self._decoder is None or (self._resync and not keyframe):
            return []
        self._resync = False
        packet = av.Packet(access_unit)
        packet.pts, packet.dts, packet.time_base = pts_ms, dts_ms, MS_TIME_BASE
        try:
            frames = self._decoder.decode(packet)
        except av.FFmpegError as exc:
            log.debug("rts: H.264 frame not decoded: %s", exc)
            self._resync = True
            return []
        out = []
        for frame in frames:
            if self._encoder is None or (frame.width, frame.height) != (self._encoder.width, self._encoder.height):
                self._open_encoder(frame)
            force = frame.key_frame or self._force_keyframe
            self._force_keyframe = False
            frame.pict_type = av.video.frame.PictureType.I if force else av.video.frame.PictureType.NONE
            frame.time_base = MS_TIME_BASE
            for encoded in self._encoder.encode(frame):
                pts = encoded.pts if encoded.pts is not None else pts_ms
                out.append((bytes(encoded), pts * 90, bool(encoded.is_keyframe)))
        return out

    def _open_encoder(self, frame) -> None:
        encoder = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height = frame.width, frame.height
        encoder.pix_fmt = "yuv420p"
        encoder.time_base = MS_TIME_BASE
        encoder.framerate = fractions.Fraction(30, 1)
        encoder.profile = "Baseline"
        encoder.options = {
            "preset": TRANSCODE_PRESET,
            "tune": TRANSCODE_TUNE,
            "bf": "0",
            # Keyframes where the source has them (forced), none of x264's own.
            "x264-params": "keyint=infinite:min-keyint=1:scenecut=0:repeat-headers=1",
        }
        self._encoder = encoder
