"""Transcoded renditions as the engine and the workers both see them (issue 7).

A rendition of a live stream is the stream `{stream}_{template}` on every
protocol (DESIGN.md, Addresses). Template ids never contain "_" (the URL
generator's rule), so the last "_" of a stream name splits it into the
source and the template, or the ABR template group.

Pure: what a template asks for and the picture size it gives a source. The
media node uses it for the ABR master playlist (hls_master.py); the Celery
workers (mediajobs/transcode/) use it to encode.
"""

from __future__ import annotations

from dataclasses import dataclass

# The preset H.264 templates (reference/aliyun_spec.md 3.6): the short side
# in pixels and the video bitrate ceiling in kbit/s; the long side follows the
# source's aspect ratio.
STANDARD_TEMPLATES: dict[str, tuple[int, int]] = {
    "lld": (360, 470),
    "lsd": (432, 680),
    "lhd": (648, 1500),
    "lud": (1080, 2500),
}
PROFILES = ("baseline", "main", "high")


@dataclass(frozen=True, slots=True)
class RenditionSpec:
    """One template's output. Sizes of 0 follow the source: with `short_side`
    the short side is scaled to it; with one of `width`/`height` the other
    keeps the aspect ratio; with both, the picture is exactly that size.
    Renditions never upscale."""

    template_id: str
    video_bitrate_kbps: int
    short_side: int = 0
    width: int = 0
    height: int = 0
    fps: float = 0.0  # 0: the source's frame rate
    gop_seconds: float = 0.0  # 0: keyframes where the source has them
    profile: str = "high"
    audio_bitrate_kbps: int = 0  # 0: the source's audio passes through


def standard_spec(template_id: str) -> RenditionSpec | None:
    preset = STANDARD_TEMPLATES.get(template_id)
    if preset is None:
        return None
    return RenditionSpec(template_id, video_bitrate_kbps=preset[1], short_side=preset[0])


def _even(value: float) -> int:
    return max(2, int(value / 2 + 0.5) * 2)


def output_size(spec: RenditionSpec, source_width: int, source_height: int) -> tuple[int, int]:
    """The picture size of `spec` for a source of this size (even numbers, as
    4:2:0 needs), never larger than the source."""
    w, h = source_width, source_height
    if w <= 0 or h <= 0:
        return (_even(spec.width or 640), _even(spec.height or spec.short_side or 360))
    if spec.width and spec.height:
        scale = min(1.0, spec.width / w, spec.height / h) if (spec.width > w or spec.height > h) else 1.0
        return _even(spec.width * scale), _even(spec.height * scale)
    if spec.short_side:
        scale = min(1.0, spec.short_side / min(w, h))
    elif spec.width:
        scale = min(1.0, spec.width / w)
    elif spec.height:
        scale = min(1.0, spec.height / h)
    else:
        scale = 1.0
    return _even(w * scale), _even(h * scale)


def split_rendition_name(stream: str) -> tuple[str, str] | None:
    """`cam1_lld` -> ("cam1", "lld"); None for a name without a suffix."""
    source, sep, suffix = stream.rpartition("_")
    if not sep or not source or not suffix:
        return None
    return source, suffix


def rendition_name(source: str, template_id: str) -> str:
    return f"{source}_{template_id}"
