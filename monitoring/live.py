"""What the live pages hear: channel-layer groups and the JSON of a sample.

One group per stream and one per ingest domain. A media node's sink sends
every stream's sample to its stream's group each second, one message per
domain to the domain's group, and the stream's start and stop to both; the
WebSocket consumers (consumers.py) join the groups their page shows. Group
names are hashes: a channel-layer name is limited to 100 ASCII characters,
and a domain/app/stream key can be longer.
"""

from __future__ import annotations

import hashlib

from livecenter.media.policy import StreamKey, StreamSample

SAMPLE = "monitoring.sample"  # {"sample": {...}} to a stream's group
SAMPLES = "monitoring.samples"  # {"samples": [{...}, ...]} to a domain's group
STATE = "monitoring.state"  # {"stream_url", "live", "session_id", "at", "reason"} to both


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def stream_group(key: StreamKey) -> str:
    return f"monitoring.stream.{_digest(str(key))}"


def domain_group(domain_name: str) -> str:
    return f"monitoring.domain.{_digest(domain_name)}"


def sample_json(
    *,
    stream_url: str,
    session_id: str,
    at: float,
    video_frame_rate: float,
    audio_frame_rate: float,
    video_bitrate: float,
    audio_bitrate: float,
    keyframe_interval_ms: int,
    bframes: bool,
    timestamp_jumps: int,
    video_codec: str,
    video_profile: str,
    width: int,
    height: int,
    audio_codec: str,
    audio_sample_rate: int,
    audio_channels: int,
    viewers: dict,
    bitrate_out: dict,
    srt: dict | None = None,
    whip: dict | None = None,
    node_id: str = "",
    upstream_node: str = "",
) -> dict:
    """A sample as the pages and the WebSockets carry it: times in Unix
    seconds, rates rounded, bit rates in bits per second."""
    return {
        "stream_url": stream_url,
        "session_id": session_id,
        "at": round(at, 3),
        "video_frame_rate": round(video_frame_rate, 2),
        "audio_frame_rate": round(audio_frame_rate, 2),
        "video_bitrate": round(video_bitrate),
        "audio_bitrate": round(audio_bitrate),
        "bitrate": round(video_bitrate + audio_bitrate),
        "keyframe_interval_ms": keyframe_interval_ms,
        "bframes": bframes,
        "timestamp_jumps": timestamp_jumps,
        "video_codec": video_codec,
        "video_profile": video_profile,
        "width": width,
        "height": height,
        "audio_codec": audio_codec,
        "audio_sample_rate": audio_sample_rate,
        "audio_channels": audio_channels,
        "viewers": dict(viewers),
        "bitrate_out": {k: round(v) for k, v in bitrate_out.items()},
        "srt": link_json(srt),
        "whip": link_json(whip),
        # The node that sampled it ("" for a stream's figures from several),
        # and the node it receives the stream from ("" where the publisher is).
        "node_id": node_id,
        "upstream_node": upstream_node,
    }


def link_json(link: dict | None) -> dict | None:
    """A publisher's link reading (SrtSessionStats or WhipSessionStats as a
    dict) with its figures rounded."""
    if link is None:
        return None
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in link.items()}


_FIELDS = (
    "session_id", "video_frame_rate", "audio_frame_rate", "video_bitrate", "audio_bitrate", "keyframe_interval_ms",
    "bframes", "timestamp_jumps", "video_codec", "video_profile", "width", "height", "audio_codec",
    "audio_sample_rate", "audio_channels", "viewers", "bitrate_out", "upstream_node",
)  # fmt: skip


def event_sample_json(sample: StreamSample, node_id: str) -> dict:
    srt = sample.srt.as_dict() if sample.srt is not None else None
    whip = sample.whip.as_dict() if sample.whip is not None else None
    return sample_json(
        stream_url=str(sample.key), at=sample.at, srt=srt, whip=whip, node_id=node_id,
        **{f: getattr(sample, f) for f in _FIELDS},
    )  # fmt: skip


def row_sample_json(row) -> dict:
    """The same for a StreamSample row (monitoring.models)."""
    return sample_json(
        stream_url=row.stream_url,
        at=row.at.timestamp(),
        srt=row.srt,
        whip=row.whip,
        node_id=row.node_id,
        **{f: getattr(row, f) for f in _FIELDS},
    )
