"""The ABR master playlist: `/{app}/{stream}_{group}.m3u8` (issue 7).

A template group (reference/aliyun_spec.md 3.7) names renditions of a
stream; its URL answers an HLS multivariant playlist (RFC 8216bis 4.4.6) with
one variant per rendition and the source itself last. Each variant is the
rendition's own media playlist (`{stream}_{template}.m3u8`), signed with the
same timestamp, rand and uid as the master's URL, so all expire together.
The renditions are encoded with keyframes where the source has them and the
source's timestamps (mediajobs/transcode/), so their segments line up and a
player switches between them without a stall.

`master_text` is pure; `master_playlist` is what the HTTP server asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from .play import REFUSAL_NOT_LIVE
from .policy import RenditionGroup, StreamKey
from .renditions import output_size, rendition_name, split_rendition_name
from .signing import parse_auth_key, sign

# BANDWIDTH is the peak rate (RFC 8216bis 4.4.6.2); encoders overshoot their
# average by this much at a keyframe-aligned segment.
PEAK_FACTOR = 1.2
# Audio assumed when the source does not say (AAC at 128 kbit/s).
DEFAULT_AUDIO_BPS = 128_000


@dataclass(frozen=True, slots=True)
class Variant:
    uri: str
    average_bps: int
    width: int
    height: int
    frame_rate: float = 0.0


def master_text(variants: list[Variant]) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for v in variants:
        attrs = [f"BANDWIDTH={round(v.average_bps * PEAK_FACTOR)}", f"AVERAGE-BANDWIDTH={v.average_bps}"]
        if v.width and v.height:
            attrs.append(f"RESOLUTION={v.width}x{v.height}")
        if v.frame_rate > 0:
            attrs.append(f"FRAME-RATE={v.frame_rate:.3f}")
        lines += ["#EXT-X-STREAM-INF:" + ",".join(attrs), v.uri]
    return "\n".join(lines) + "\n"


def _variant_uri(app: str, name: str, query: dict[str, str], keys: tuple[str, ...] | None) -> str:
    params = []
    auth = parse_auth_key(query.get("auth_key", ""))
    if keys and auth is not None:
        token = sign(f"/{app}/{name}.m3u8", keys[0], auth.timestamp, auth.rand, auth.uid)
        params.append(f"auth_key={token}")
    if query.get("domain"):
        params.append(f"domain={quote(query['domain'], safe='')}")
    return f"{name}.m3u8" + ("?" + "&".join(params) if params else "")


async def master_playlist(node, admission, app: str, stream: str, query: dict[str, str]) -> tuple[int, str] | None:
    """(status, body) when `stream` names an ABR group of its app, else None
    (the request is an ordinary stream's). Asks for every rendition of the
    group, so that they are live when the player comes for them."""
    split = split_rendition_name(stream)
    lookup = getattr(node.policy, "rendition_group", None)
    if split is None or lookup is None:
        return None
    source_name, group_id = split
    key = admission.key
    group: RenditionGroup | None = await lookup(key.domain, app, group_id)
    if group is None:
        return None
    source = StreamKey(key.domain, app, source_name)
    if not await node.hub.wait_live(source, node.config.play_wait_seconds):
        return 404, REFUSAL_NOT_LIVE
    for spec in group.renditions:
        if not node.hub.is_live(StreamKey(key.domain, app, rendition_name(source_name, spec.template_id))):
            node.request_rendition(source, spec.template_id)
    live = node.hub.stream(source)
    info = live.info()
    audio_bps = round(info.audio_bitrate) or DEFAULT_AUDIO_BPS
    keys = admission.domain.signing_keys if admission.domain is not None else None
    variants = []
    for spec in group.renditions:
        width, height = output_size(spec, info.width, info.height)
        rate = min(spec.fps, info.frame_rate) if spec.fps and info.frame_rate else info.frame_rate
        audio = spec.audio_bitrate_kbps * 1000 if spec.audio_bitrate_kbps else audio_bps
        name = rendition_name(source_name, spec.template_id)
        variants.append(
            Variant(_variant_uri(app, name, query, keys), spec.video_bitrate_kbps * 1000 + audio, width, height, rate)
        )
    variants.sort(key=lambda v: v.average_bps)
    variants.append(
        Variant(
            _variant_uri(app, source_name, query, keys),
            round(info.video_bitrate) + audio_bps,
            info.width,
            info.height,
            info.frame_rate,
        )
    )
    return 200, master_text(variants)
