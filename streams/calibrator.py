"""The latency calibrator (the seed's "time calibrator"): a live test stream
pushed over RTMP or SRT whose every frame carries its capture wall-clock time
(livecenter/media/timecode.py), so that the web player can show glass-to-
glass latency by reading it back from the frame it displays.

Frames are made and encoded with PyAV (libx264, AAC) in real time: frame `n`
is captured when the wall clock reaches `start + n / fps`, stamped with that
clock, encoded at once and written to FFmpeg's RTMP client through the FLV
muxer. PyAV's own FFmpeg has no libsrt, so an srt:// URL gets MPEG-TS,
flushed packet by packet as UDP datagrams to `srt-live-transmit` (Debian's
srt-tools), a libsrt caller that sends each one on as an SRT message. The
picture is a flat background with a moving bar (a stall shows) under the
timecode band; the sound is a quiet 440 Hz tone.
"""

from __future__ import annotations

import fractions
import logging
import math
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import av

from livecenter.media import timecode

log = logging.getLogger(__name__)

AUDIO_SAMPLE_RATE = 44_100
AUDIO_FRAME_SAMPLES = 1024  # one AAC frame
AUDIO_BIT_RATE = 64_000
# Audio is encoded this far ahead of the video frame just captured. The
# muxer (av_interleaved_write_frame) holds a video packet until it has
# audio with a later time, and the AAC encoder gives a packet back 1024
# samples after its input (plus 1024 of priming): audio encoded only up to
# the frame's end made each frame wait for the next one (33 ms at 30 fps),
# on RTMP and SRT alike. The tone is not what is measured; the picture is.
AUDIO_LEAD_SAMPLES = 2 * AUDIO_FRAME_SAMPLES
# SRT: 7 TS packets per UDP datagram and so per SRT message, as libsrt's live mode sends them.
SRT_TS_PAYLOAD_BYTES = 7 * 188
# What srt-live-transmit is given to pass on the last datagrams before it is stopped.
RELAY_DRAIN_SECONDS = 0.2
TONE_HZ = 440
TONE_AMPLITUDE = 0.05
BACKGROUND_LUMA = 60
BAR_LUMA = 200
BAR_WIDTH_PX = 32
# The bar crosses the frame in this many seconds.
BAR_PERIOD_SECONDS = 4
# FFmpeg's RTMP client gives up connecting after this long.
CONNECT_TIMEOUT_SECONDS = 10

_SIZE_RE = re.compile(r"^(\d{2,5})x(\d{2,5})$")
_BITRATE_RE = re.compile(r"^(\d+(?:\.\d+)?)([kKmM]?)$")


@dataclass(frozen=True, slots=True)
class CalibratorConfig:
    width: int = 1280
    height: int = 720
    fps: int = 30
    bit_rate: int = 2_000_000
    gop_seconds: float = 1.0
    bframes: int = 0
    duration_seconds: float | None = None  # None: until stopped

    def __post_init__(self) -> None:
        timecode.block_px(self.width)  # raises TimecodeError naming the minimum width
        if self.width % 2 or self.height % 2:
            raise ValueError(f"size must be even in both directions for 4:2:0, not {self.width}x{self.height}")
        if self.height < timecode.band_height_px(self.width) * 2:
            raise ValueError(f"height must be at least twice the timecode band, not {self.height}")
        if not 1 <= self.fps <= 120:
            raise ValueError(f"fps must be between 1 and 120, not {self.fps}")
        if not 10_000 <= self.bit_rate <= 100_000_000:
            raise ValueError(f"bitrate must be between 10k and 100M bit/s, not {self.bit_rate}")
        if not 0 < self.gop_seconds <= 60:
            raise ValueError(f"gop seconds must be above 0 and at most 60, not {self.gop_seconds}")
        if not 0 <= self.bframes <= 16:
            raise ValueError(f"bframes must be between 0 and 16, not {self.bframes}")

    @property
    def gop_frames(self) -> int:
        return max(1, round(self.gop_seconds * self.fps))


@dataclass(slots=True)
class CalibratorReport:
    frames: int = 0
    # Frames captured more than one frame interval after their due time
    # (the machine could not keep up; their timecode is still the truth).
    late_frames: int = 0
    first_epoch_ms: int | None = None
    last_epoch_ms: int | None = None


def parse_size(text: str) -> tuple[int, int]:
    """'1280x720' -> (1280, 720)."""
    match = _SIZE_RE.match(text.strip())
    if not match:
        raise ValueError(f"size must be WIDTHxHEIGHT, such as 1280x720, not {text!r}")
    return int(match[1]), int(match[2])


def parse_bit_rate(text: str) -> int:
    """'2M' -> 2_000_000, '800k' -> 800_000, '500000' -> 500_000."""
    match = _BITRATE_RE.match(text.strip())
    if not match:
        raise ValueError(f"bitrate must be a number with an optional k or M, such as 2M, not {text!r}")
    return int(float(match[1]) * {"": 1, "k": 1_000, "m": 1_000_000}[match[2].lower()])


class _Painter:
    """Luma planes for the calibrator's frames, without numpy: the band comes
    from the timecode module, the rest is one repeated line with the bar."""

    def __init__(self, config: CalibratorConfig, stride: int) -> None:
        self.config, self.stride = config, stride
        self.band_lines = timecode.band_height_px(config.width)
        self.rest_lines = config.height - self.band_lines

    def luma(self, epoch_ms: int, frame_index: int) -> bytes:
        width, stride = self.config.width, self.stride
        period_frames = BAR_PERIOD_SECONDS * self.config.fps
        x = (frame_index % period_frames) * (width - BAR_WIDTH_PX) // period_frames
        line = (
            bytes([BACKGROUND_LUMA]) * x
            + bytes([BAR_LUMA]) * BAR_WIDTH_PX
            + bytes([BACKGROUND_LUMA]) * (width - x - BAR_WIDTH_PX)
            + bytes(stride - width)
        )
        return timecode.encode_band(epoch_ms, width, stride) + line * self.rest_lines


def _tone_period() -> bytes:
    """One second of the tone as packed float32 samples (a whole number of cycles)."""
    samples = [
        TONE_AMPLITUDE * math.sin(2 * math.pi * TONE_HZ * n / AUDIO_SAMPLE_RATE) for n in range(AUDIO_SAMPLE_RATE)
    ]
    return struct.pack(f"<{len(samples)}f", *samples)


def srt_relay(url: str) -> tuple[subprocess.Popen, str]:
    """`srt-live-transmit` (Debian's srt-tools, libsrt) reading MPEG-TS
    datagrams on a local UDP port and sending each as one SRT message to
    `url` (a caller); and the udp:// URL to write the TS to. It passes the
    bytes on as they come. An ffmpeg relay (`-c copy`) held every video
    frame about 66 ms (bench/README.md, bench/srt): its demuxer ends a PES of
    unbounded length only when the next one starts, and its muxer holds a
    video packet until audio with a later time comes, which our muxer
    (interleaving too) sends only with the next frame."""
    if shutil.which("srt-live-transmit") is None:
        raise OSError("an srt:// URL needs srt-live-transmit (apt-get install srt-tools)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # -a:no: a refused or lost connection ends it (and so the calibrator) rather than retrying.
    cmd = ["srt-live-transmit", "-a:no", "-q", "-loglevel:error", f"udp://127.0.0.1:{port}", url]
    relay = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return relay, f"udp://127.0.0.1:{port}?pkt_size={SRT_TS_PAYLOAD_BYTES}"


def open_output(url: str, config: CalibratorConfig, format: str = "flv"):
    """The FLV muxer on FFmpeg's RTMP client (or `format` on `url`, such as
    MPEG-TS into a pipe), with a video and an audio stream."""
    if format == "flv":
        container = av.open(url, mode="w", format="flv", timeout=CONNECT_TIMEOUT_SECONDS)
    else:
        # Each packet written through at once: the AVIO buffer would hold a
        # frame's tail, and MPEG-TS would gather a third of a second of audio
        # into one PES packet.
        options = {"flush_packets": "1", "pes_payload_size": "0"}
        container = av.open(url, mode="w", format=format, container_options=options)
    video = container.add_stream("libx264", rate=config.fps)
    video.width, video.height, video.pix_fmt = config.width, config.height, "yuv420p"
    video.bit_rate = config.bit_rate
    video.time_base = fractions.Fraction(1, config.fps)
    video.codec_context.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "g": str(config.gop_frames),
        "keyint_min": str(config.gop_frames),
        "sc_threshold": "0",
        "bf": str(config.bframes),
        "maxrate": str(config.bit_rate),
        "bufsize": str(config.bit_rate),
    }
    audio = container.add_stream("aac", rate=AUDIO_SAMPLE_RATE)
    audio.layout = "mono"
    audio.bit_rate = AUDIO_BIT_RATE
    return container, video, audio


def push(
    url: str,
    config: CalibratorConfig,
    stop: threading.Event | None = None,
    on_frame=None,
) -> CalibratorReport:
    """Push the calibration stream to `url` (rtmp://..., or srt://... as
    MPEG-TS through srt-live-transmit) until `stop` is set or the configured
    duration has passed. Blocking. PyAV keeps the GIL while FFmpeg's RTMP
    client waits on the server, so a media node in the same process would
    never answer: run this in a process of its own (`manage.py calibrator`).
    `on_frame(report)` is called after each frame."""
    stop = stop or threading.Event()
    report = CalibratorReport()
    relay = None
    if urlsplit(url).scheme == "srt":
        relay, relay_url = srt_relay(url)
        try:
            container, video, audio = open_output(relay_url, config, "mpegts")
        except BaseException:
            _stop_relay(relay)
            raise
    else:
        container, video, audio = open_output(url, config)
    try:
        probe = av.VideoFrame(config.width, config.height, "yuv420p")
        painter = _Painter(config, probe.planes[0].line_size)
        chroma = [bytes([128]) * plane.buffer_size for plane in probe.planes[1:]]
        tone = _tone_period()
        audio_samples = 0
        interval = 1 / config.fps
        frame_time_base = fractions.Fraction(1, config.fps)
        start = time.time()
        while not stop.is_set():
            due = start + report.frames * interval
            if config.duration_seconds is not None and due - start >= config.duration_seconds:
                break
            wait = due - time.time()
            if wait > 0 and stop.wait(wait):
                break
            now = time.time()
            if now - due > interval:
                report.late_frames += 1
            epoch_ms = int(now * 1000)
            frame = av.VideoFrame(config.width, config.height, "yuv420p")
            frame.planes[0].update(painter.luma(epoch_ms, report.frames))
            for plane, data in zip(frame.planes[1:], chroma, strict=True):
                plane.update(data)
            # In frames: the stream's own time base becomes the FLV muxer's
            # 1/1000 once the header is written.
            frame.pts = report.frames
            frame.time_base = frame_time_base
            container.mux(video.encode(frame))
            # Audio up to the end of this video frame and AUDIO_LEAD_SAMPLES on, in whole AAC frames.
            video_end = (report.frames + 1) * AUDIO_SAMPLE_RATE // config.fps
            while audio_samples < video_end + AUDIO_LEAD_SAMPLES:
                container.mux(audio.encode(_audio_frame(tone, audio_samples)))
                audio_samples += AUDIO_FRAME_SAMPLES
            if relay is not None and relay.poll() is not None:
                raise OSError(
                    f"srt-live-transmit ended (exit status {relay.returncode}): the SRT connection failed, was"
                    " refused or was lost (libsrt's error, if it logged one, is above)"
                )
            report.frames += 1
            report.first_epoch_ms = report.first_epoch_ms or epoch_ms
            report.last_epoch_ms = epoch_ms
            if on_frame is not None:
                on_frame(report)
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    finally:
        try:
            container.close()
        finally:
            if relay is not None:
                _stop_relay(relay)
    return report


def _stop_relay(relay: subprocess.Popen) -> None:
    """Let the relay send the last datagrams, then stop it: on SIGINT it
    closes its SRT connection (the node sees the end of the stream)."""
    if relay.poll() is None:
        time.sleep(RELAY_DRAIN_SECONDS)
        relay.send_signal(signal.SIGINT)
    try:
        relay.wait(5)
    except subprocess.TimeoutExpired:
        relay.kill()
        relay.wait(5)


def _audio_frame(tone: bytes, first_sample: int) -> av.AudioFrame:
    frame = av.AudioFrame(format="flt", layout="mono", samples=AUDIO_FRAME_SAMPLES)
    offset = (first_sample % AUDIO_SAMPLE_RATE) * 4
    data = (tone[offset:] + tone)[: AUDIO_FRAME_SAMPLES * 4]
    frame.planes[0].update(data + bytes(frame.planes[0].buffer_size - len(data)))
    frame.sample_rate = AUDIO_SAMPLE_RATE
    frame.pts = first_sample
    frame.time_base = fractions.Fraction(1, AUDIO_SAMPLE_RATE)
    return frame
