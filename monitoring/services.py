"""Monitoring rules shared by the pages, the API and the WebSockets: what a
stream's figures are at a time, a stream's series over a range, online users,
the Prometheus exposition, and pruning (aliyun_spec.md 4, Streams).

Everything is scoped to one operator, as in streams.services: a domain is
named by the operator and must be theirs, and a streaming domain stands for
the ingest domain it plays. Errors are ValidationErrors keyed by the field.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from domains.models import Domain
from domains.services import ingest_domain_for, ingest_domains
from livecenter.lib.api import invalid
from livecenter.lib.dates import aware
from livecenter.media.liveurl import SrtStreamId
from livecenter.media.policy import StreamKey
from streams.models import PublishSession
from streams.services import valid_name

from . import live, playback
from .models import PublishRefusal, StreamSample

# A stream's figures at a time are its newest sample at most this old: a
# node samples every second, so a live stream always has one.
SAMPLE_LOOKBACK = dt.timedelta(seconds=10)
# DescribeLiveStreamDetailFrameRateAndBitRateData: at most an hour a query,
# the last hour by default. At one sample a second that is 3,600 rows.
MAX_SERIES_RANGE = dt.timedelta(hours=1)
DEFAULT_SERIES_RANGE = dt.timedelta(hours=1)
# What a stream's monitoring page shows on opening, before live samples.
PAGE_HISTORY = dt.timedelta(minutes=5)
# A stream stopped within this long stays on its domain's overview, greyed,
# with its last figures (the newest MAX_RECENTLY_STOPPED of them).
RECENTLY_STOPPED = dt.timedelta(hours=1)
MAX_RECENTLY_STOPPED = 20
# Of a stopped session, its newest samples read for each node's last (a
# stream is carried by a few nodes, each sampling once a second).
MAX_NODE_SAMPLES = 50


def latest_node_samples(domain_names, at: dt.datetime | None = None) -> list[StreamSample]:
    """The newest sample at `at` (default now) of each stream on the named
    ingest domains from each node that carries it (in a cluster: the node
    holding the publisher, its center, the edges pulling it), by stream
    then node."""
    at = aware(at) if at is not None else timezone.now()
    rows = StreamSample.objects.filter(
        domain_name__in=list(domain_names), at__gt=at - SAMPLE_LOOKBACK, at__lte=at
    ).order_by("-at", "-id")
    seen: dict[tuple[str, str, str, str], StreamSample] = {}
    for sample in rows:
        seen.setdefault((sample.domain_name, sample.app, sample.stream, sample.node_id), sample)
    return [seen[k] for k in sorted(seen)]


def _ingest_sample(samples: list[StreamSample]) -> StreamSample:
    """Of one stream's nodes' samples, the publisher's node's (the freshest
    if that node has sent none)."""
    return max([s for s in samples if not s.upstream_node] or samples, key=lambda s: (s.at, s.id))


def _by_stream(samples: list[StreamSample]) -> list[list[StreamSample]]:
    streams: dict[tuple[str, str, str], list[StreamSample]] = {}
    for sample in samples:
        streams.setdefault((sample.domain_name, sample.app, sample.stream), []).append(sample)
    return list(streams.values())


def _combined(samples: list[StreamSample]) -> StreamSample:
    """One stream's figures from its nodes' newest samples: what the
    publisher sends as the node holding it measured it (the freshest
    sample when that node has none), and the viewers and their egress of
    every node added up; each node counts only its own viewers, and a
    relay or pull between nodes is nobody's viewer (stats.NODE_LINK_PROTOCOL),
    so a relayed stream is counted once."""
    row = _ingest_sample(samples)
    if len(samples) == 1:
        return row
    viewers: Counter[str] = Counter()
    bitrate_out: Counter[str] = Counter()
    for sample in samples:
        viewers.update(sample.viewers)
        bitrate_out.update(sample.bitrate_out)
    # An unsaved copy: the figures are the stream's, not one node's row.
    combined = StreamSample(**{f.attname: getattr(row, f.attname) for f in StreamSample._meta.concrete_fields})
    combined.viewers, combined.bitrate_out = dict(viewers), dict(bitrate_out)
    combined.node_id = ""  # several nodes' (the live pages tell it from one node's)
    combined.relay_bitrate_out = sum(s.relay_bitrate_out for s in samples)
    return combined


def latest_samples(domain_names, at: dt.datetime | None = None) -> list[StreamSample]:
    """Each stream's figures at `at` (default now) on the named ingest
    domains, its nodes' newest samples combined (`_combined`)."""
    return [_combined(samples) for samples in _by_stream(latest_node_samples(domain_names, at))]


# --- DescribeLiveDomainFrameRateAndBitRateData ----------------------------------------


@dataclass(frozen=True)
class FrameRates:
    domain_name: str  # the ingest domain
    query_time: dt.datetime
    frame_rate_and_bit_rate_infos: list[StreamSample]


def domain_frame_rates(owner, domain_name: str, query_time: dt.datetime | None = None) -> FrameRates:
    """Frame rates and bitrate of every stream of an ingest domain at `query_time` (default now)."""
    domain = ingest_domain_for(owner, domain_name)
    at = aware(query_time) if query_time is not None else timezone.now()
    return FrameRates(domain.domain_name, at, latest_samples([domain.domain_name], at))


# --- DescribeLiveStreamBitRateData -----------------------------------------------------


def series_range(
    start: dt.datetime | None,
    end: dt.datetime | None,
    now: dt.datetime | None = None,
    default: dt.timedelta = DEFAULT_SERIES_RANGE,
    most: dt.timedelta = MAX_SERIES_RANGE,
) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a query: end defaults to now, start to `default` before it; at most `most`."""
    end = aware(end) if end is not None else (now or timezone.now())
    start = aware(start) if start is not None else end - default
    if start >= end:
        raise invalid("end_time", "end time must be after the start time")
    if end - start > most:
        span = f"{most.days} day{'s' if most.days > 1 else ''}" if most.days else f"{most.seconds // 60} minutes"
        raise invalid("end_time", f"the time range must not exceed {span}")
    return start, end


@dataclass(frozen=True)
class StreamSeries:
    stream_url: str
    start_time: dt.datetime
    end_time: dt.datetime
    frame_rate_and_bit_rate_infos: QuerySet[StreamSample]


def stream_series(
    owner,
    domain_name: str,
    app: str,
    stream: str,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> StreamSeries:
    """One stream's samples in [start, end), oldest first; at most an hour,
    the last hour by default. In a cluster, those of the node that holds
    the publisher: its frame rates and bit rate are the stream's."""
    domain = ingest_domain_for(owner, domain_name)
    app, stream = valid_name("app", app), valid_name("stream", stream)
    start, end = series_range(start, end, now)
    rows = StreamSample.objects.filter(
        domain_name=domain.domain_name, app=app, stream=stream, upstream_node="", at__gte=start, at__lt=end
    ).order_by("at", "id")
    return StreamSeries(f"rtmp://{domain.domain_name}/{app}/{stream}", start, end, rows)


# --- DescribeLiveDomainOnlineUserNum -------------------------------------------------------


@dataclass(frozen=True)
class StreamUsers:
    app_name: str
    stream_name: str
    user_number: int
    protocols: dict[str, int]
    transcode_template: str = ""  # the original stream


@dataclass(frozen=True)
class OnlineUsers:
    domain_name: str  # the main streaming domain, or the ingest domain when it has none
    query_time: dt.datetime
    streams: list[StreamUsers] = field(default_factory=list)

    @property
    def stream_count(self) -> int:
        return len(self.streams)

    @property
    def user_count(self) -> int:
        return sum(s.user_number for s in self.streams)


def online_users(owner, domain_name: str, query_time: dt.datetime | None = None) -> OnlineUsers:
    """Viewers of every stream of a domain at `query_time` (default now), by protocol."""
    ingest = ingest_domain_for(owner, domain_name)
    at = aware(query_time) if query_time is not None else timezone.now()
    main = ingest.main_streaming_domain()
    rows = [
        StreamUsers(s.app, s.stream, s.viewer_count, dict(s.viewers)) for s in latest_samples([ingest.domain_name], at)
    ]
    return OnlineUsers((main or ingest).domain_name, at, rows)


# --- The live pages -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamView:
    domain: Domain  # the ingest domain
    key: StreamKey
    session: PublishSession | None  # the live session, if any
    history: list[StreamSample]

    @property
    def is_live(self) -> bool:
        return self.session is not None

    @property
    def is_srt(self) -> bool:
        """The stream came in over SRT: its live session, or a sample on the page."""
        if self.session is not None and self.session.protocol == "srt":
            return True
        return any(s.srt is not None for s in self.history)

    @property
    def is_whip(self) -> bool:
        """The stream came in over WHIP: its live session, or a sample on the page."""
        if self.session is not None and self.session.protocol == "whip":
            return True
        return any(s.whip is not None for s in self.history)

    @property
    def ingest_url(self) -> str:
        """The stream's ingest URL without a signature, for the troubleshooting tool."""
        key = self.key
        protocol = self.publish_protocol
        if protocol == "srt":
            return f"srt://{key.domain}?streamid={SrtStreamId(key.domain, key.app, key.stream, None)}"
        if protocol == "whip":
            return f"http://{key.domain}/{key.app}/{key.stream}.whip"
        return f"rtmp://{key.domain}/{key.app}/{key.stream}"

    @property
    def publish_protocol(self) -> str:
        """How the stream comes in: its live session's protocol, else its last
        sample's link tells SRT and WHIP from RTMP."""
        if self.session is not None:
            return self.session.protocol
        last = self.history[-1] if self.history else None
        return "srt" if last and last.srt else "whip" if last and last.whip else "rtmp"


def stream_key(owner, domain_name: str, app: str, stream: str) -> StreamKey:
    """The key of a stream on one of the operator's domains."""
    domain = ingest_domain_for(owner, domain_name)
    return StreamKey(domain.domain_name, valid_name("app", app), valid_name("stream", stream))


def stream_view(owner, domain_name: str, app: str, stream: str, now: dt.datetime | None = None) -> StreamView:
    """A stream of the operator's, whether it is live, and its last PAGE_HISTORY
    of samples (a stream stopped longer ago: its last sample)."""
    domain = ingest_domain_for(owner, domain_name)
    app, stream = valid_name("app", app), valid_name("stream", stream)
    now = now or timezone.now()
    session = (
        PublishSession.objects.filter(domain=domain, app=app, stream=stream, stopped_at__isnull=True)
        .order_by("-started_at")
        .first()
    )
    history = list(  # the publisher's node's, as stream_series
        StreamSample.objects.filter(
            domain_name=domain.domain_name, app=app, stream=stream, upstream_node="", at__gt=now - PAGE_HISTORY,
            at__lte=now,
        ).order_by("at", "id")
    )  # fmt: skip
    if not history and session is None:
        # Stopped a while ago: its last figures, which the page shows as such.
        last = (
            StreamSample.objects.filter(domain_name=domain.domain_name, app=app, stream=stream, upstream_node="")
            .order_by("-at", "-id")
            .first()
        )
        history = [last] if last is not None else []
    return StreamView(domain, StreamKey(domain.domain_name, app, stream), session, history)


@dataclass(frozen=True)
class StoppedStream:
    session: PublishSession  # its last session, stopped within RECENTLY_STOPPED
    last: StreamSample | None  # that session's last figures, its nodes' combined


@dataclass(frozen=True)
class DomainView:
    domain: Domain  # the ingest domain
    sessions: list[PublishSession]  # live now
    latest: dict[str, StreamSample]  # stream_url -> its newest sample
    stopped: list[StoppedStream]  # not live now, stopped lately: the newest first

    @property
    def bitrate_in(self) -> float:
        return sum(s.bitrate for s in self.latest.values())

    @property
    def bitrate_out(self) -> float:
        return sum(s.total_bitrate_out for s in self.latest.values())

    @property
    def users(self) -> int:
        return sum(s.viewer_count for s in self.latest.values())


def domain_view(owner, domain_name: str, now: dt.datetime | None = None) -> DomainView:
    domain = ingest_domain_for(owner, domain_name)
    sessions = list(
        PublishSession.objects.filter(domain=domain, stopped_at__isnull=True).order_by("app", "stream", "-started_at")
    )
    latest = {s.stream_url: s for s in latest_samples([domain.domain_name], now)}
    return DomainView(domain, sessions, latest, recently_stopped(domain, {s.stream_url for s in sessions}, now))


def recently_stopped(domain: Domain, live: set[str], now: dt.datetime | None = None) -> list[StoppedStream]:
    """The streams of `domain` not in `live` whose last session stopped
    within RECENTLY_STOPPED of `now`, the newest first, with their last figures."""
    now = now or timezone.now()
    found: dict[str, PublishSession] = {}
    for session in PublishSession.objects.filter(
        domain=domain, stopped_at__gt=now - RECENTLY_STOPPED, stopped_at__lte=now
    ).order_by("-stopped_at"):
        if session.stream_url not in live:
            found.setdefault(session.stream_url, session)
        if len(found) == MAX_RECENTLY_STOPPED:
            break
    return [StoppedStream(session, _last_figures(session)) for session in found.values()]


def _last_figures(session: PublishSession) -> StreamSample | None:
    """A stopped session's last sample of each node that carried it, combined."""
    rows = StreamSample.objects.filter(
        domain_name=session.domain_name, app=session.app, stream=session.stream, session_id=session.session_id,
        at__lte=session.stopped_at + SAMPLE_LOOKBACK,
    ).order_by("-at", "-id")  # fmt: skip
    newest: dict[str, StreamSample] = {}
    rows = list(rows[:MAX_NODE_SAMPLES])
    for sample in rows:
        if sample.at < rows[0].at - SAMPLE_LOOKBACK:
            break  # that node had stopped carrying it before
        newest.setdefault(sample.node_id, sample)
    return _combined(list(newest.values())) if newest else None


def stopped_json(stopped: StoppedStream) -> dict:
    """A stopped stream on the domain overview (its page's JSON and WebSocket snapshot)."""
    session = stopped.session
    return {
        "stream_url": session.stream_url,
        "session_id": session.session_id,
        "stopped_at": session.stopped_at.timestamp(),
        "reason": session.stop_reason,
        "sample": sample_json(stopped.last) if stopped.last is not None else None,
    }


def sample_json(row: StreamSample) -> dict:
    return live.row_sample_json(row)


# --- Prometheus ------------------------------------------------------------------------------------

# (metric, help) of the gauges, in the text exposition format 0.0.4.
_GAUGES = (
    ("livecenter_stream_video_frame_rate", "Video frames per second received, over the last second."),
    ("livecenter_stream_audio_frame_rate", "Audio frames per second received, over the last second."),
    ("livecenter_stream_in_bits_per_second", "Bits per second received, by track."),
    ("livecenter_stream_keyframe_interval_seconds", "Time between the last two keyframes."),
    ("livecenter_stream_bframes", "1 when the last second had B-frames."),
    ("livecenter_stream_timestamp_jumps", "Timestamp jumps in the last second."),
    ("livecenter_stream_viewers", "Viewers, by protocol."),
    ("livecenter_stream_out_bits_per_second", "Bits per second sent to viewers, by protocol."),
)


def _label(value: str) -> str:
    # Exposition format: backslash, double quote and line feed are escaped.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _value(number: float) -> str:
    return repr(float(number))


def _ingest_lines(lines: dict[str, list[str]], labels: str, s: StreamSample) -> None:
    lines["livecenter_stream_video_frame_rate"].append(f"{{{labels}}} {_value(s.video_frame_rate)}")
    lines["livecenter_stream_audio_frame_rate"].append(f"{{{labels}}} {_value(s.audio_frame_rate)}")
    for track, bps in (("video", s.video_bitrate), ("audio", s.audio_bitrate)):
        lines["livecenter_stream_in_bits_per_second"].append(f'{{{labels},track="{track}"}} {_value(bps)}')
    lines["livecenter_stream_keyframe_interval_seconds"].append(f"{{{labels}}} {_value(s.keyframe_interval_ms / 1000)}")
    lines["livecenter_stream_bframes"].append(f"{{{labels}}} {_value(1 if s.bframes else 0)}")
    lines["livecenter_stream_timestamp_jumps"].append(f"{{{labels}}} {_value(s.timestamp_jumps)}")


def _stream_lines(lines: dict[str, list[str]], samples: list[StreamSample]) -> None:
    """One stream's gauges, labelled with the node each figure is from:
    what it receives from the publisher's node, the viewers of each node.
    Added up over `node`, a stream relayed between nodes counts once."""
    for s in samples:
        labels = (
            f'domain="{_label(s.domain_name)}",app="{_label(s.app)}",stream="{_label(s.stream)}",'
            f'node="{_label(s.node_id)}"'
        )
        if s is _ingest_sample(samples):
            _ingest_lines(lines, labels, s)
        for protocol, count in sorted(Counter(s.viewers).items()):
            lines["livecenter_stream_viewers"].append(f'{{{labels},protocol="{_label(protocol)}"}} {_value(count)}')
        for protocol, bps in sorted(s.bitrate_out.items()):
            lines["livecenter_stream_out_bits_per_second"].append(
                f'{{{labels},protocol="{_label(protocol)}"}} {_value(bps)}'
            )


def prometheus_text(owner, now: dt.datetime | None = None) -> str:
    """The newest figures of each of the operator's live streams as Prometheus gauges (`_stream_lines`)."""
    names = list(ingest_domains(owner).values_list("domain_name", flat=True))
    lines: dict[str, list[str]] = {name: [] for name, _ in _GAUGES}
    for samples in _by_stream(latest_node_samples(names, now)):
        _stream_lines(lines, samples)
    out = []
    for name, help_text in _GAUGES:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} gauge")
        out.extend(name + line for line in lines[name])
    return "\n".join(out) + "\n"


# --- Viewers' playback quality (issue 19) -------------------------------------------------------


def playback_quality(
    owner,
    domain_name: str,
    app: str | None = None,
    stream: str | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> dict:
    """What the players of an operator's domain (one app, one stream where
    given) reported in [start, end): at most a day, the last hour by
    default (monitoring.playback says what each figure is)."""
    domain = ingest_domain_for(owner, domain_name)
    if stream and not app:
        raise invalid("app", "name the app of the stream too")
    app = valid_name("app", app) if app else None
    stream = valid_name("stream", stream) if stream else None
    start, end = series_range(start, end, now, playback.DEFAULT_RANGE, playback.MAX_RANGE)
    # Rows are per minute: the one `start` falls in counts.
    since = start.replace(second=0, microsecond=0)
    summary = playback.summary(playback.rows(domain.domain_name, app, stream, since, end))
    return {"domain": domain.domain_name, "app": app, "stream": stream, "start_time": start, "end_time": end,
            **summary}  # fmt: skip


# --- Retention ------------------------------------------------------------------------------------


def prune_samples(now: dt.datetime | None = None) -> int:
    """Delete samples older than LIVECENTER_MONITORING_RETENTION_HOURS, oldest
    first, in batches; returns how many went."""
    cutoff = (now or timezone.now()) - dt.timedelta(hours=settings.LIVECENTER_MONITORING_RETENTION_HOURS)
    batch = settings.LIVECENTER_MONITORING_PRUNE_BATCH
    deleted = 0
    for _ in range(settings.LIVECENTER_MONITORING_PRUNE_MAX_BATCHES):
        ids = list(StreamSample.objects.filter(at__lt=cutoff).order_by("at").values_list("id", flat=True)[:batch])
        if not ids:
            break
        deleted += StreamSample.objects.filter(id__in=ids).delete()[0]
        if len(ids) < batch:
            break
    return deleted


def prune_refusals(now: dt.datetime | None = None) -> int:
    """Delete publish refusals older than the samples' retention (there are
    few: a node reports at most ten a second, of known domains only)."""
    cutoff = (now or timezone.now()) - dt.timedelta(hours=settings.LIVECENTER_MONITORING_RETENTION_HOURS)
    return PublishRefusal.objects.filter(at__lt=cutoff).delete()[0]
