"""Viewers' playback quality, from the players' beacons (issue 19;
livecenter/media/beacon.py): the rows the media nodes report
(PlaybackReport, one per minute, stream, streaming domain, protocol,
region and node), what they add up to over a range, and their pruning.

The figures:
- stall ratio: stall time over watch time (watch time counts from the
  first frame, stalls included), None without watch time;
- time to first frame: a histogram over beacon.TTFF_BUCKETS_MS and its
  p50/p90/p99 (the upper bound of the bucket holding the rank);
- fallbacks ("rts>flv": how many plays moved on), errors by kind, bitrate
  switches, stalls, sessions (plays started);
- glass-to-glass latency p50 over the beacon windows that measured it
  (streams carrying the calibrator's timecode).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from livecenter import outage
from livecenter.media.beacon import LATENCY_BUCKETS_MS, TTFF_BUCKETS_MS, histogram_percentile
from livecenter.media.policy import PlaybackReported

from .models import PlaybackReport

# The default range of the pages' and the API's playback figures.
DEFAULT_RANGE = dt.timedelta(hours=1)
# At most this much a query: rows are per minute, so a day of one stream
# with five protocols and a few regions is some tens of thousands of rows.
MAX_RANGE = dt.timedelta(days=1)


def _aware(unix_seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(unix_seconds, dt.UTC)


def _added(old: list, new) -> list[int]:
    size = max(len(old), len(new))
    return [(old[i] if i < len(old) else 0) + (new[i] if i < len(new) else 0) for i in range(size)]


def _merged(old: dict, new: dict) -> dict:
    return dict(Counter(old) + Counter(new))


_COUNTS = ("sessions", "stalls", "stall_ms", "watch_ms", "bitrate_switches")
_HISTOGRAMS = ("ttff_counts", "latency_counts")
_TALLIES = ("fallbacks", "errors")


def add_figures(target, source) -> None:
    """Add `source`'s figures (a PlaybackRow, a PlaybackReport) to `target`'s."""
    for name in _COUNTS:
        setattr(target, name, getattr(target, name) + getattr(source, name))
    for name in _HISTOGRAMS:
        setattr(target, name, _added(getattr(target, name), getattr(source, name)))
    for name in _TALLIES:
        setattr(target, name, _merged(getattr(target, name), getattr(source, name)))


def store(event: PlaybackReported) -> None:
    """Add a node's report to its rows (one per minute and key per node,
    so nodes never write the same row)."""
    if not connection.in_atomic_block:
        close_old_connections()
    try:
        with transaction.atomic():
            for r in event.rows:
                row, created = PlaybackReport.objects.select_for_update().get_or_create(
                    minute=_aware(r.minute), domain_name=r.key.domain, app=r.key.app, stream=r.key.stream,
                    streaming_domain=r.streaming_domain, protocol=r.protocol, region=r.region[:64],
                    node_id=event.node_id[:128],
                )  # fmt: skip
                add_figures(row, r)
                row.save()
    except outage.UNREACHABLE:
        outage.drop_connection()
        raise


def rows(domain_name: str, app: str | None, stream: str | None, since: dt.datetime, until: dt.datetime) -> QuerySet:
    """The rows of a domain (an ingest domain, or a streaming domain for
    what its viewers played), of one app and stream where given, whose
    minute starts in [since, until)."""
    query = PlaybackReport.objects.filter(
        Q(domain_name=domain_name) | Q(streaming_domain=domain_name), minute__gte=since, minute__lt=until
    )
    if app is not None:
        query = query.filter(app=app)
    if stream is not None:
        query = query.filter(stream=stream)
    return query


def stall_ratio(
    domain_name: str, app: str | None, stream: str | None, since: dt.datetime, until: dt.datetime
) -> float | None:
    """Stall time over watch time of a domain's viewers (of one app, of one
    stream where given) in [since, until); None when nobody watched."""
    totals = rows(domain_name, app, stream, since, until).aggregate(stall=Sum("stall_ms"), watch=Sum("watch_ms"))
    if not totals["watch"]:
        return None
    return min(1.0, totals["stall"] / totals["watch"])


class _Totals:
    def __init__(self) -> None:
        self.sessions = self.stalls = self.stall_ms = self.watch_ms = self.bitrate_switches = 0
        self.ttff_counts = [0] * (len(TTFF_BUCKETS_MS) + 1)
        self.latency_counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        self.fallbacks: dict[str, int] = {}
        self.errors: dict[str, int] = {}

    def add(self, row: PlaybackReport) -> None:
        add_figures(self, row)

    def as_dict(self) -> dict:
        ttff = self.ttff_counts
        return {
            "sessions": self.sessions,
            "watch_seconds": round(self.watch_ms / 1000, 1),
            "stalls": self.stalls,
            "stall_seconds": round(self.stall_ms / 1000, 1),
            "stall_ratio": round(self.stall_ms / self.watch_ms, 4) if self.watch_ms else None,
            "ttff_ms": {
                "count": sum(ttff),
                "p50": histogram_percentile(TTFF_BUCKETS_MS, ttff, 0.5),
                "p90": histogram_percentile(TTFF_BUCKETS_MS, ttff, 0.9),
                "p99": histogram_percentile(TTFF_BUCKETS_MS, ttff, 0.99),
                "buckets": [
                    {"le": bound, "count": count} for bound, count in zip((*TTFF_BUCKETS_MS, None), ttff, strict=True)
                ],
            },
            "latency_p50_ms": histogram_percentile(LATENCY_BUCKETS_MS, self.latency_counts, 0.5),
            "bitrate_switches": self.bitrate_switches,
            "fallbacks": dict(Counter(self.fallbacks).most_common()),
            "errors": dict(Counter(self.errors).most_common()),
        }


def summary(query: QuerySet) -> dict:
    """What `query`'s rows add up to: in all, by protocol and by region."""
    total, by_protocol, by_region = _Totals(), {}, {}
    for row in query.iterator():
        total.add(row)
        by_protocol.setdefault(row.protocol, _Totals()).add(row)
        by_region.setdefault(row.region, _Totals()).add(row)
    return {
        "total": total.as_dict(),
        "by_protocol": {name: t.as_dict() for name, t in sorted(by_protocol.items())},
        "by_region": {name: t.as_dict() for name, t in sorted(by_region.items())},
    }


def prune(now: dt.datetime | None = None) -> int:
    """Delete rows older than the samples' retention (LIVECENTER_MONITORING_RETENTION_HOURS)."""
    cutoff = (now or timezone.now()) - dt.timedelta(hours=settings.LIVECENTER_MONITORING_RETENTION_HOURS)
    return PlaybackReport.objects.filter(minute__lt=cutoff).delete()[0]
