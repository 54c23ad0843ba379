"""The media loops of the workers, on PyAV (libavformat, libavcodec, libx264).

Each reads the live source like any viewer (HTTP-FLV from the media node)
and stops when the source ends, when the read times out, or when its control
says so (`should_stop()`, checked between packets; the job's heartbeat
thread sets it when the job's claim is lost, mediajobs/tasks.py).

- `transcode`: decode once, scale and encode once per rendition, publish
  each rendition back to the node over RTMP like any publisher. Keyframes are
  forced where the source has them and the source's timestamps are kept, so
  renditions and source cut HLS segments at the same instants (ABR).
  Renditions come and go while it runs (`control.wanted()`): one starts at
  the source's next keyframe, one no longer wanted is closed.
- `record`: remux (no decoding) into MP4 files, or HLS VOD (a playlist and
  its MPEG-TS segments), split at the first keyframe after `cycle_seconds`.
- `snapshot`: every `interval_seconds`, decode the next keyframe and write a
  JPEG of the source's size.

`record` and `snapshot` read through a `LiveSource`: when the source drops
(the read fails or the response ends) while the stream is still live
(`control.source_live()`), it reconnects with backoff and goes on; the node
rebases timestamps, so what comes after continues what came before. If it
does not come back within SOURCE_RECONNECT_SECONDS, `SourceLost` is raised
and the task tries the job again (mediajobs/tasks.py).

PyAV calls block; run these in a thread or process of their own. Decoding,
encoding, reading and muxing release the GIL, so jobs share a worker's
threads well; opening a publish connection does not (PyAV 18 holds it through
`avio_open` and `avformat_write_header`, FFmpeg's RTMP connect and publish),
so a media node must never run in a transcode's process: it could not answer
the publish the worker waits on (streams/calibrator.py says the same).
"""

from __future__ import annotations

import contextlib
import errno
import fractions
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import av
from av.video.frame import PictureType
from av.video.reformatter import VideoReformatter

from livecenter.media.redact import redact_text
from livecenter.media.renditions import RenditionSpec, output_size

log = logging.getLogger(__name__)

# Opening the source or a publish connection, and one read: past these the
# source is taken as gone (the node holds viewers 10 s for a returning
# publisher, so a read timeout must be longer than that).
OPEN_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 20.0
# How long the source's stream info may take to find (probing reads this much).
PROBE_BYTES = 256 * 1024
ANALYZE_MICROSECONDS = 1_500_000
# x264's speed preset for renditions; bench/transcode compares the ffmpeg
# CLI with the same settings.
X264_PRESET = "veryfast"
# With keyframes forced at the source's, x264's own GOP is only a ceiling.
MAX_GOP_SECONDS = 10
MS = fractions.Fraction(1, 1000)
# A source that drops while the stream is live is opened again after these
# waits (the last one repeats), for up to SOURCE_RECONNECT_SECONDS in all:
# past the node's 10 s reconnect grace and a publisher's own retries.
SOURCE_RECONNECT_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0)
SOURCE_RECONNECT_SECONDS = 60.0
# A rendition that could not be published (still live from a worker being
# replaced) is tried again after this.
RETRY_PUBLISH_SECONDS = 2.0


class Control(Protocol):
    def should_stop(self) -> bool: ...


class LiveControl(Control, Protocol):
    def source_live(self) -> bool:
        """Whether the stream is still being published (the database says)."""


class SourceLost(Exception):
    """The source dropped while its stream was live and did not come back."""


class LiveSource:
    """The live source, read again after a drop while the stream is live.

    `packets()` yields (packet, is_video) across reconnects, without the
    demuxer's end-of-stream packets; `video` and `audio` are the streams of
    the connection being read (decode with `video`). `reason` says why it
    ended."""

    def __init__(
        self,
        url: str,
        control: LiveControl,
        video_only: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url, self.control, self.video_only = url, control, video_only
        self._sleep, self._clock = sleep, clock
        self.reconnects = 0
        self.reason = ""
        self._open(open_source(url))

    def _open(self, container) -> None:
        self.container = container
        self.video = container.streams.video[0]
        self.audio = container.streams.audio[0] if container.streams.audio and not self.video_only else None

    def packets(self):
        while True:
            video = self.video
            streams = [video] + ([self.audio] if self.audio is not None else [])
            try:
                for packet in self.container.demux(streams):
                    if packet.dts is not None:
                        yield packet, packet.stream is video
                reason = "source ended"
            except av.FFmpegError as exc:
                reason = f"source failed: {exc}"
            if not self._reconnect(reason):
                self.reason = reason
                return

    def _reconnect(self, reason: str) -> bool:
        """Open the source again while the stream is live; False when it is
        not (the source ended), SourceLost when it does not come back."""
        self.close()
        deadline = self._clock() + SOURCE_RECONNECT_SECONDS
        for attempt in itertools.count():
            if self.control.should_stop() or not self.control.source_live():
                return False
            if self._clock() >= deadline:
                raise SourceLost(f"{reason}; not back within {SOURCE_RECONNECT_SECONDS:.0f} s")
            backoff = SOURCE_RECONNECT_BACKOFF_SECONDS
            self._sleep(backoff[min(attempt, len(backoff) - 1)])
            try:
                container = open_source(self.url)
            except (av.FFmpegError, OSError) as exc:
                log.info("source: reconnect failed: %s", redact_text(str(exc)))  # the URL is signed
                continue
            try:
                self._open(container)
            except IndexError:  # no video yet (a publisher that is only starting)
                container.close()
                continue
            self.reconnects += 1
            log.info("source: reconnected after %s", redact_text(reason))
            return True
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None


@dataclass
class Output:
    """One rendition being encoded and published."""

    spec: RenditionSpec
    url: str
    container: av.container.OutputContainer
    video: av.video.stream.VideoStream
    audio: av.audio.stream.AudioStream | None
    width: int
    height: int
    min_interval_ms: float = 0.0
    last_pts: int | None = None
    frames: int = 0
    # One per output, so that its scaler is made once, not per frame.
    scaler: VideoReformatter = field(default_factory=VideoReformatter)


def open_source(url: str):
    return av.open(
        url,
        # Not "nobuffer": it drops what probing read, the stream's first second.
        options={
            "probesize": str(PROBE_BYTES),
            "analyzeduration": str(ANALYZE_MICROSECONDS),
        },
        timeout=(OPEN_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
    )


def x264_options(spec: RenditionSpec, fps: float) -> dict[str, str]:
    rate = spec.video_bitrate_kbps * 1000
    gop_seconds = spec.gop_seconds or MAX_GOP_SECONDS
    return {
        "preset": X264_PRESET,
        "tune": "zerolatency",  # no B-frames, no lookahead: RTS can play it, and it adds no delay
        "profile": spec.profile,
        "maxrate": str(rate),
        "bufsize": str(rate),
        "g": str(max(1, round(gop_seconds * (fps or 30)))),
        "sc_threshold": "0",
        "forced-idr": "1",
    }


def open_output(spec: RenditionSpec, url: str, source_video, source_audio, fps: float) -> Output:
    width, height = output_size(spec, source_video.codec_context.width, source_video.codec_context.height)
    container = av.open(url, mode="w", format="flv", timeout=(OPEN_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS))
    try:
        video = container.add_stream("libx264")
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.bit_rate = spec.video_bitrate_kbps * 1000
        video.time_base = MS
        video.codec_context.time_base = MS
        if fps:
            video.codec_context.framerate = fractions.Fraction(fps).limit_denominator(1001)
        video.codec_context.options = x264_options(spec, fps)
        audio = container.add_stream_from_template(source_audio) if source_audio is not None else None
    except Exception:
        container.close()
        raise
    interval = 1000 / spec.fps if spec.fps and fps and spec.fps < fps else 0.0
    return Output(spec, url, container, video, audio, width, height, min_interval_ms=interval * 0.98)


def close_output(output: Output) -> None:
    try:
        for packet in output.video.encode(None):
            output.container.mux(packet)
    except (av.FFmpegError, OSError, ValueError) as exc:
        log.info("rendition %s: flush failed: %s", output.spec.template_id, exc)
    try:
        output.container.close()
    except (av.FFmpegError, OSError) as exc:
        log.info("rendition %s: close failed: %s", output.spec.template_id, exc)


def source_fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


class TranscodeControl(Control, Protocol):
    def wanted(self) -> dict[str, tuple[RenditionSpec, str]]:
        """Renditions to produce now: template id -> (spec, RTMP publish URL)."""

    def published(self, template_id: str, width: int, height: int) -> None: ...


@dataclass
class TranscodeReport:
    frames_in: int = 0
    frames_out: dict[str, int] = field(default_factory=dict)
    reason: str = ""


class _Ladder:
    """The renditions being produced from one decoded source."""

    def __init__(self, control: TranscodeControl, report: TranscodeReport, video, audio, fps: float) -> None:
        self.control, self.report = control, report
        self.video, self.audio, self.fps = video, audio, fps
        self.outputs: dict[str, Output] = {}
        self.pending: dict[str, tuple[RenditionSpec, str]] = {}
        self.retry_at: dict[str, float] = {}

    def poll(self) -> bool:
        """Ask what is wanted; close what is not. False when nothing is."""
        self.pending = self.control.wanted()
        for template_id in [t for t in self.outputs if t not in self.pending]:
            log.info("rendition %s: no longer wanted", template_id)
            close_output(self.outputs.pop(template_id))
        return bool(self.pending or self.outputs)

    def audio_packet(self, packet) -> None:
        for output in self.outputs.values():
            if output.audio is not None and output.frames:
                output.container.mux(_copy_packet(packet, output.audio))

    def _start(self, now: float) -> None:
        # A new rendition starts on a keyframe, so that its first segment
        # lines up with the source's.
        for template_id, (spec, url) in self.pending.items():
            if template_id in self.outputs or now < self.retry_at.get(template_id, 0):
                continue
            try:
                output = self.outputs[template_id] = open_output(spec, url, self.video, self.audio, self.fps)
            except (av.FFmpegError, OSError) as exc:
                # Another worker may still be publishing it (a job restarted
                # while the old one was alive): try again shortly.
                log.info("rendition %s: cannot publish: %s", template_id, exc)
                self.retry_at[template_id] = now + RETRY_PUBLISH_SECONDS
                continue
            log.info("rendition %s: publishing %dx%d", template_id, output.width, output.height)
            self.control.published(template_id, output.width, output.height)

    def frame(self, frame, now: float) -> None:
        self.report.frames_in += 1
        keyframe, pts = frame.key_frame, frame.pts
        if keyframe:
            self._start(now)
        for template_id, output in list(self.outputs.items()):
            if not output.frames and not keyframe:
                continue
            if output.min_interval_ms and output.frames and not keyframe and output.last_pts is not None:
                if pts - output.last_pts < output.min_interval_ms:
                    continue  # the template's lower frame rate
            scaled = output.scaler.reformat(frame, output.width, output.height, "yuv420p", interpolation="BICUBIC")
            scaled.pts, scaled.time_base = pts, MS
            # Keyframes where the source has them (ABR: aligned segments).
            scaled.pict_type = PictureType.I if keyframe else PictureType.NONE
            try:
                for out_packet in output.video.encode(scaled):
                    output.container.mux(out_packet)
            except (av.FFmpegError, OSError) as exc:
                log.info("rendition %s: publish failed: %s", template_id, exc)
                close_output(self.outputs.pop(template_id))
                self.retry_at[template_id] = now + RETRY_PUBLISH_SECONDS
                continue
            output.last_pts = pts
            output.frames += 1
            self.report.frames_out[template_id] = self.report.frames_out.get(template_id, 0) + 1

    def close(self) -> None:
        for output in self.outputs.values():
            close_output(output)
        self.outputs.clear()


def transcode(source_url: str, control: TranscodeControl, poll_seconds: float = 1.0) -> TranscodeReport:
    report = TranscodeReport()
    source = open_source(source_url)
    ladder = None
    try:
        video = source.streams.video[0]
        audio = source.streams.audio[0] if source.streams.audio else None
        video.thread_type = "AUTO"
        ladder = _Ladder(control, report, video, audio, source_fps(video))
        next_poll = 0.0
        for packet in source.demux([video] + ([audio] if audio is not None else [])):
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + poll_seconds
                if control.should_stop():
                    report.reason = "stopped"
                    break
                if not ladder.poll():
                    report.reason = "no renditions wanted"
                    break
            if packet.dts is None:
                continue  # the demuxer's end-of-stream packet
            if packet.stream is audio:
                ladder.audio_packet(packet)
                continue
            for frame in video.decode(packet):
                ladder.frame(frame, now)
        else:
            report.reason = "source ended"
            for frame in video.decode(None):  # what frame threading still holds
                ladder.frame(frame, time.monotonic())
    except av.FFmpegError as exc:
        report.reason = f"source failed: {exc}"
    finally:
        if ladder is not None:
            ladder.close()
        source.close()
    return report


def _copy_packet(packet, stream):
    copy = av.Packet(bytes(packet))
    copy.pts, copy.dts = packet.pts, packet.dts
    copy.time_base = packet.time_base
    copy.is_keyframe = packet.is_keyframe  # MP4's sync samples, HLS's segment cuts
    copy.stream = stream
    return copy


# --- Recording -----------------------------------------------------------------------

# Segments of an HLS VOD recording; cut at the first keyframe past this.
HLS_VOD_SEGMENT_SECONDS = 6


class RecordControl(LiveControl, Protocol):
    def open_file(self, started_at: float) -> Path:
        """Where the next file goes (its folder exists)."""

    def file_closed(self, path: Path, started_at: float, ended_at: float, duration_s: float) -> None: ...

    def split_now(self) -> bool:
        """Whether to start a new file at the next keyframe (e.g. a new publisher)."""


class OutputFailed(Exception):
    """The job's output could not be written (the disk is full, the folder
    is gone or read-only): a failure of this job alone, in words a person
    reads in the console (issue 11). The source, and its stream, are fine."""


def _output_failure(exc: BaseException, path: Path) -> OutputFailed:
    code = getattr(exc, "errno", None)
    if code == errno.ENOSPC:
        return OutputFailed(f"no space left on device: {path.name} could not be written")
    if code == errno.EDQUOT:
        return OutputFailed(f"disk quota exceeded: {path.name} could not be written")
    reason = getattr(exc, "strerror", None) or str(exc)
    return OutputFailed(f"{path.name} could not be written: {reason}")


@dataclass
class _RecordFile:
    path: Path
    container: av.container.OutputContainer
    video: object
    audio: object | None
    started_at: float
    first_dts: int
    last_ts: int = 0
    last_dts: dict[int, int] = field(default_factory=dict)  # by output stream index


def _open_record_file(path: Path, source_video, source_audio, started_at: float, first_dts: int) -> _RecordFile:
    if path.suffix == ".m3u8":
        # HLS VOD: the playlist and its MPEG-TS segments side by side ({stem}_00000.ts ...).
        container = av.open(str(path), mode="w", format="hls", options={
            "hls_time": str(HLS_VOD_SEGMENT_SECONDS), "hls_playlist_type": "vod", "hls_list_size": "0",
            "hls_segment_filename": str(path.with_name(f"{path.stem}_%05d.ts")),
        })  # fmt: skip
    else:
        container = av.open(str(path), mode="w", format="mp4")
    video = container.add_stream_from_template(source_video)
    audio = container.add_stream_from_template(source_audio) if source_audio is not None else None
    return _RecordFile(path, container, video, audio, started_at, first_dts)


def record(source_url: str, control: RecordControl, cycle_seconds: float, poll_seconds: float = 1.0) -> str:
    """Record the source until it ends; returns why it stopped. A source
    that drops while the stream is live is read again into the same file
    (LiveSource); SourceLost when it does not come back."""
    source = LiveSource(source_url, control)
    current: _RecordFile | None = None
    reason = ""

    def close() -> None:
        nonlocal current
        if current is None:
            return
        done, current = current, None
        try:
            done.container.close()
        except (av.FFmpegError, OSError) as exc:
            raise _output_failure(exc, done.path) from exc
        control.file_closed(done.path, done.started_at, time.time(), done.last_ts / 1000)

    try:
        next_poll = 0.0
        split = False
        for packet, is_video in source.packets():
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + poll_seconds
                if control.should_stop():
                    reason = "stopped"
                    break
                split = split or control.split_now()
            if is_video and packet.is_keyframe:
                due = current is not None and (packet.dts - current.first_dts) >= cycle_seconds * 1000
                if current is None or due or split:
                    close()
                    split = False
                    started = time.time()
                    path = control.open_file(started)
                    try:
                        current = _open_record_file(path, source.video, source.audio, started, packet.dts)
                    except (av.FFmpegError, OSError) as exc:
                        raise _output_failure(exc, path) from exc
            if current is None:
                continue  # the file starts at a keyframe
            target = current.video if is_video else current.audio
            if target is None:
                continue
            dts = packet.dts - current.first_dts
            if dts < 0 or dts <= current.last_dts.get(target.index, -1):
                continue  # audio from before the file's first keyframe, or a step back the MP4 muxer refuses
            current.last_dts[target.index] = dts
            out = _copy_packet(packet, target)
            out.dts = dts
            out.pts = max(dts, (packet.pts if packet.pts is not None else packet.dts) - current.first_dts)
            current.last_ts = max(current.last_ts, out.pts + (packet.duration or 0))
            try:
                current.container.mux(out)
            except (av.FFmpegError, OSError) as exc:
                failed, current = current, None
                with contextlib.suppress(av.FFmpegError, OSError):
                    failed.container.close()  # what it can; the file is incomplete
                control.file_closed(failed.path, failed.started_at, time.time(), failed.last_ts / 1000)
                raise _output_failure(exc, failed.path) from exc
    finally:
        try:
            close()
        finally:
            source.close()
    return reason or source.reason


# --- Snapshots -----------------------------------------------------------------------


class SnapshotControl(LiveControl, Protocol):
    def snapshot_taken(self, jpeg: bytes, width: int, height: int, taken_at: float) -> None: ...


def encode_jpeg(frame) -> bytes:
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height = frame.width, frame.height
    codec.pix_fmt = "yuvj420p"
    codec.time_base = fractions.Fraction(1, 25)
    codec.options = {"qmin": "2", "qmax": "6"}
    picture = frame.reformat(format="yuvj420p")
    picture.pts = 0
    data = b"".join(bytes(p) for p in codec.encode(picture))
    data += b"".join(bytes(p) for p in codec.encode(None))
    return data


def snapshot(
    source_url: str, control: SnapshotControl, interval_seconds: float, clock: Callable[[], float] = time.time
) -> str:
    """Write a JPEG of the source every `interval_seconds`, from its next
    keyframe (only keyframes are decoded); returns why it stopped. A source
    that drops while the stream is live is read again (LiveSource)."""
    source = LiveSource(source_url, control, video_only=True)
    reason = ""
    try:
        next_at = 0.0
        for packet, _ in source.packets():
            if control.should_stop():
                reason = "stopped"
                break
            if not packet.is_keyframe:
                continue
            video = source.video
            now = clock()
            if now < next_at:
                continue
            # A keyframe decodes alone; the flush gets it out of a decoder
            # that holds frames back (frame threading).
            frames = list(video.decode(packet)) or list(video.decode(None))
            if not frames:
                video.codec_context.flush_buffers()
                continue
            frame = frames[-1]
            control.snapshot_taken(encode_jpeg(frame), frame.width, frame.height, now)
            next_at = now + interval_seconds
            video.codec_context.flush_buffers()
    finally:
        source.close()
    return reason or source.reason
