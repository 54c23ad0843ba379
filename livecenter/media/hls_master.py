"""The ABR master playlist: `/{app}/{stream}_{group}.m3u8` (issue 7).

A template group (reference/aliyun_spec.md 3.7) names renditions of a
stream; its URL answers an HLS multivariant playlist (RFC 8216bis 4.4.6) with
one variant per rendition and the source itself last. Each variant is the
rendition's own media playlist (`{stream}_{template}.m3u8`), signed with the
same timestamp, rand and uid as the master's URL, so all expire together.
The renditions are encoded with keyframes where the source has them and the
source's timestamps (mediajobs/transcode/), so their segments line up and a
player switches between them without a stall.

Each variant says its CODECS (RFC 8216bis 4.4.6.2, RFC 6381): `avc1.PPCCLL`
from the stream's AVCDecoderConfigurationRecord, and its audio, which the
renditions copy from the source: `mp4a.40.N` for AAC, and `ac-3` or `ec-3`
for Dolby audio (dolby.py; ETSI TS 102 366 Annex F, as Apple's HLS
authoring spec writes them), so that a player without Dolby picks no
variant it cannot play and one with it knows before loading a segment. A
rendition not live yet gives its profile and the level x264 will choose
for its size, frame rate and bitrate (H.264 Table A-1); a video codec
other than H.264 gives no CODECS at all rather than a wrong one.

`master_text` is pure; `master_playlist` is what the HTTP server asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from .codecs import AvcConfig
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
    codecs: str = ""  # RFC 6381, comma-separated; "" when not known


# RFC 6381 3.3: the sample entry and profile_idc, the constraint flags byte and
# level_idc of the SPS, in hex.
def avc_codec(profile_idc: int, compatibility: int, level_idc: int) -> str:
    return f"avc1.{profile_idc:02x}{compatibility:02x}{level_idc:02x}"


def avc_codec_of(config: AvcConfig | None) -> str | None:
    return avc_codec(config.profile_idc, config.profile_compatibility, config.level_idc) if config else None


# x264's profile_idc and constraint flags for each --profile (set0 for
# baseline, set1 up to main).
X264_PROFILES = {"baseline": (66, 0xC0), "main": (77, 0x40), "high": (100, 0x00)}
# H.264 Table A-1: level_idc, MaxMBPS (macroblocks/s), MaxFS (macroblocks),
# MaxBR (kbit/s for Baseline and Main; High may go 1.25 times higher).
H264_LEVELS = (
    (10, 1_485, 99, 64),
    (11, 3_000, 396, 192),
    (12, 6_000, 396, 384),
    (13, 11_880, 396, 768),
    (20, 11_880, 396, 2_000),
    (21, 19_800, 792, 4_000),
    (22, 20_250, 1_620, 4_000),
    (30, 40_500, 1_620, 10_000),
    (31, 108_000, 3_600, 14_000),
    (32, 216_000, 5_120, 20_000),
    (40, 245_760, 8_192, 20_000),
    (41, 245_760, 8_192, 50_000),
    (42, 522_240, 8_704, 50_000),
    (50, 589_824, 22_080, 135_000),
    (51, 983_040, 36_864, 240_000),
    (52, 2_073_600, 36_864, 240_000),
)


def x264_level(profile: str, width: int, height: int, frame_rate: float, bit_rate: int) -> int:
    """The level_idc x264 picks by itself: the lowest whose frame size,
    macroblock rate and bit rate (its VBV maxrate, our bitrate) fit."""
    mbs_wide, mbs_high = -(-width // 16), -(-height // 16)
    frame_mbs = mbs_wide * mbs_high
    factor = 1.25 if profile == "high" else 1.0
    for level_idc, max_mbps, max_fs, max_kbps in H264_LEVELS:
        side = (8 * max_fs) ** 0.5  # A.3.1: neither dimension past sqrt(8 * MaxFS)
        if (
            frame_mbs <= max_fs
            and mbs_wide <= side
            and mbs_high <= side
            and frame_mbs * (frame_rate or 30) <= max_mbps
            and bit_rate <= max_kbps * 1000 * factor
        ):
            return level_idc
    return H264_LEVELS[-1][0]


# StreamInfo.audio_codec -> the CODECS name of a Dolby track.
DOLBY_CODECS = {"AC-3": "ac-3", "E-AC-3": "ec-3"}


def audio_codec(live) -> str | None:
    """The CODECS name of a live stream's audio; "" if it has none, None if unknown."""
    name = live.info().audio_codec
    if not name:
        return ""
    if name == "AAC":
        return f"mp4a.40.{live.aac_config.object_type}" if live.aac_config is not None else None
    return DOLBY_CODECS.get(name)


def join_codecs(video: str | None, audio: str | None) -> str:
    if not video or audio is None:
        return ""
    return f"{video},{audio}" if audio else video


def master_text(variants: list[Variant]) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for v in variants:
        attrs = [f"BANDWIDTH={round(v.average_bps * PEAK_FACTOR)}", f"AVERAGE-BANDWIDTH={v.average_bps}"]
        if v.codecs:
            attrs.append(f'CODECS="{v.codecs}"')
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
    audio_name = audio_codec(live)  # the renditions copy the source's audio (mediajobs/transcode)
    source_avc = live.avc_config
    variants = []
    for spec in group.renditions:
        width, height = output_size(spec, info.width, info.height)
        rate = min(spec.fps, info.frame_rate) if spec.fps and info.frame_rate else info.frame_rate
        audio = spec.audio_bitrate_kbps * 1000 if spec.audio_bitrate_kbps else audio_bps
        name = rendition_name(source_name, spec.template_id)
        video = None
        rendition = node.hub.stream(StreamKey(key.domain, app, name))
        if rendition is not None and rendition.avc_config is not None:
            video = avc_codec_of(rendition.avc_config)
        elif source_avc is not None and spec.profile in X264_PROFILES:  # not live yet: what x264 will make
            profile_idc, compatibility = X264_PROFILES[spec.profile]
            level = x264_level(spec.profile, width, height, rate, spec.video_bitrate_kbps * 1000)
            video = avc_codec(profile_idc, compatibility, level)
        variants.append(
            Variant(_variant_uri(app, name, query, keys), spec.video_bitrate_kbps * 1000 + audio, width, height, rate,
                    join_codecs(video, audio_name))
        )  # fmt: skip
    variants.sort(key=lambda v: v.average_bps)
    variants.append(
        Variant(
            _variant_uri(app, source_name, query, keys),
            round(info.video_bitrate) + audio_bps,
            info.width,
            info.height,
            info.frame_rate,
            join_codecs(avc_codec_of(source_avc), audio_name),
        )
    )
    return 200, master_text(variants)
