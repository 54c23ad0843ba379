"""Usage statistics (DescribeLiveDomainBpsData, DescribeLiveDomainTrafficData,
DescribeLiveDomainPushBpsData, DescribePushTrafficData, and viewers as
DescribeLiveDomainOnlineUserNum over time): rolled up from the per-second
samples by the worker (tasks.roll_up_usage), read from the rollups only.

What the figures are, per stream, per app and per domain, for a period:

- traffic in: the bytes the publisher sent, as the node holding it measured
  (samples with no `upstream_node`: a relay between nodes is not ingest);
  traffic out: the bytes every node sent its own viewers, by protocol
  (relays and pulls between nodes are in no node's `bitrate_out`). Each
  sample covers one second, so a sample's bits are its bit rate.
- bandwidth: the average is traffic x 8 / the period; the peak is the
  highest one-second bandwidth (every stream's and node's added up: a
  sample belongs to the second and the UTC minute its `at` falls in, and
  of a node's two samples in one second the later counts).
- the 95th percentile: of the 5-minute average bandwidths of the period, as
  CDN billing reckons it, for hour and day rows and over a queried range;
  of the per-minute averages for a 5-minute row; a minute's is its average.
  Nearest rank: the ceil(0.95 x n)-th smallest of the n sub-periods,
  those without traffic counted as 0.
- viewers: the peak is the most at one second (every node's added up); the
  average is viewer-seconds / the period; unique viewers are the distinct
  viewer identities of the period (sketch.py: exact up to 64, past that a
  HyperLogLog with a 4.6 % standard error).

The worker reads the samples written since its watermark (their ids only
grow: a sample that arrives late, buffered through a database outage or
from a node that was cut off, has a higher id than those rolled up before
it), rolls up again each minute they touch from all that minute's samples
of the domain, then the 5-minute, hour and day periods holding those
minutes from the finer rows. Rolling up a period again gives the same rows,
so a run that dies half way, or two runs, do no harm, and a worker that was
down catches up from the watermark (as long as the samples are kept:
LIVECENTER_MONITORING_RETENTION_HOURS). An open period is rolled up with
what has arrived and again as more does. (On Postgres, ids are handed out
before commit: a sink's insert still uncommitted when the worker reads
could be passed over; each run therefore also reads again the samples of
the last RECHECK_SECONDS, which a sink's insert of a few hundred rows never
outlasts.)
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from domains.models import Domain
from domains.services import ingest_domain_for
from livecenter.lib.api import invalid
from livecenter.lib.dates import aware
from streams.services import valid_name

from .models import StreamSample, UsageRollup, UsageWatermark
from .sketch import ViewerSketch

MINUTE, FIVE_MINUTES, HOUR, DAY = UsageRollup.GRANULARITIES
WATERMARK = "usage"
# Of each coarser granularity, the finer one its totals, peaks and sketches
# are rolled up from, and the one its 95th percentile is taken over.
SOURCE = {FIVE_MINUTES: MINUTE, HOUR: FIVE_MINUTES, DAY: HOUR}
PERCENTILE_SOURCE = {FIVE_MINUTES: MINUTE, HOUR: FIVE_MINUTES, DAY: FIVE_MINUTES}
# The 95th percentile of a range is over its 5-minute periods (billing's).
PERCENTILE_GRANULARITY = FIVE_MINUTES
# Points a query answers at most (a month of hours is 744; a day of minutes 1,440).
MAX_POINTS = 2000
# The granularity a range gets when the caller names none: the finest that
# keeps the chart readable.
AUTO_GRANULARITY = ((dt.timedelta(hours=3), MINUTE), (dt.timedelta(days=2), FIVE_MINUTES),
                    (dt.timedelta(days=31), HOUR))  # fmt: skip
DEFAULT_RANGE = dt.timedelta(hours=24)
# A sample's bits are its rates over its interval, taken as at most this long
# (a node measures its first sample of a stream from the publication's start).
MAX_SAMPLE_SECONDS = 10.0
# The minute this much before a new sample is rolled up again too (the module's docstring).
RECHECK = dt.timedelta(seconds=10)

_ENTITY = tuple[str, str]  # (app, stream): ("", "") the domain, (app, "") the app


def _epoch(at: dt.datetime) -> int:
    return int(at.timestamp())


def _floor(at: dt.datetime, seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(_epoch(at) // seconds * seconds, dt.UTC)


def percentile95(values: list[float], count: int) -> float:
    """Nearest-rank 95th percentile of `values` padded with zeros to `count`."""
    if count <= 0:
        return 0.0
    ordered = sorted(values)
    ordered[:0] = [0.0] * max(0, count - len(ordered))
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


def _entities(app: str, stream: str) -> tuple[_ENTITY, _ENTITY, _ENTITY]:
    return (app, stream), (app, ""), ("", "")


class _Tally:
    """One entity's figures over one period, as they are added up."""

    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out: dict[str, int] = defaultdict(int)
        self.peak_bps_in = 0.0
        self.peak_bps_out = 0.0
        self.peak_viewers = 0
        self.viewer_seconds = 0
        self.sketch = ViewerSketch()
        self.sub_bps_in: list[float] = []  # the finer periods' average bandwidths (percentile)
        self.sub_bps_out: list[float] = []

    def row(self, domain: str, entity: _ENTITY, granularity: int, start: dt.datetime, p95s) -> UsageRollup:
        by_protocol = {protocol: n for protocol, n in sorted(self.bytes_out.items()) if n}
        return UsageRollup(
            granularity=granularity,
            start=start,
            domain_name=domain,
            app=entity[0],
            stream=entity[1],
            bytes_in=self.bytes_in,
            bytes_out=sum(by_protocol.values()),
            bytes_out_by_protocol=by_protocol,
            peak_bps_in=self.peak_bps_in,
            peak_bps_out=self.peak_bps_out,
            p95_bps_in=p95s[0],
            p95_bps_out=p95s[1],
            peak_viewers=self.peak_viewers,
            viewer_seconds=self.viewer_seconds,
            unique_viewers=self.sketch.count(),
            viewer_sketch=self.sketch.dump(),
        )


def _replace(domain: str, granularity: int, start: dt.datetime, rows: list[UsageRollup]) -> None:
    with transaction.atomic():
        UsageRollup.objects.filter(granularity=granularity, domain_name=domain, start=start).delete()
        UsageRollup.objects.bulk_create(rows)


def roll_up_minute(domain: str, start: dt.datetime) -> None:
    """Every row of `domain` for the minute from `start`, from its samples."""
    end = start + dt.timedelta(seconds=MINUTE)
    samples = StreamSample.objects.filter(domain_name=domain, at__gte=start, at__lt=end).values_list(
        "app", "stream", "node_id", "at", "interval_seconds", "video_bitrate", "audio_bitrate", "upstream_node",
        "bitrate_out", "viewers", "viewer_ids",
    )  # fmt: skip
    bits_in: dict[_ENTITY, float] = defaultdict(float)
    bits_out: dict[_ENTITY, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    viewer_seconds: dict[_ENTITY, float] = defaultdict(float)
    ids: dict[_ENTITY, set[str]] = defaultdict(set)
    # (app, stream, node, second) -> (at, bit/s in, bit/s out, viewers): a node's
    # last sample in each second (one whose ticks drift puts two in a second:
    # the same viewers, not twice as many).
    per_second: dict[tuple[str, str, str, int], tuple] = {}
    for app, stream, node, at, interval, video_bps, audio_bps, upstream, rates_out, viewers, viewer_ids in samples:
        seconds = min(max(0.0, interval), MAX_SAMPLE_SECONDS)
        bps_in = 0.0 if upstream else max(0.0, video_bps) + max(0.0, audio_bps)
        out = {p: max(0.0, float(v)) for p, v in (rates_out or {}).items()}
        watching = sum(max(0, int(v)) for v in (viewers or {}).values())
        for entity in _entities(app, stream):
            bits_in[entity] += bps_in * seconds
            for protocol, bps in out.items():
                bits_out[entity][protocol] += bps * seconds
            viewer_seconds[entity] += watching * seconds
            ids[entity].update(i for i in viewer_ids or () if isinstance(i, str))
        slot = (app, stream, node, int(at.timestamp()))
        if slot not in per_second or per_second[slot][0] <= at:
            per_second[slot] = (at, bps_in, sum(out.values()), watching)
    # entity -> second -> [bit/s in, bit/s out, viewers], every stream's and node's added up
    by_second: dict[_ENTITY, dict[int, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0, 0]))
    for (app, stream, _, second), (_, bps_in, bps_out, watching) in per_second.items():
        for entity in _entities(app, stream):
            cell = by_second[entity][second]
            cell[0] += bps_in
            cell[1] += bps_out
            cell[2] += watching
    rows = []
    for entity, cells_by_second in by_second.items():
        tally = _Tally()
        cells = cells_by_second.values()
        tally.bytes_in = round(bits_in[entity] / 8)
        tally.bytes_out = {p: round(bits / 8) for p, bits in bits_out[entity].items()}
        tally.peak_bps_in = max(c[0] for c in cells)
        tally.peak_bps_out = max(c[1] for c in cells)
        tally.peak_viewers = max(c[2] for c in cells)
        tally.viewer_seconds = round(viewer_seconds[entity])
        tally.sketch = ViewerSketch.of(ids[entity])
        average = (tally.bytes_in * 8 / MINUTE, sum(tally.bytes_out.values()) * 8 / MINUTE)
        rows.append(tally.row(domain, entity, MINUTE, start, average))
    _replace(domain, MINUTE, start, rows)


def roll_up_period(domain: str, granularity: int, start: dt.datetime) -> None:
    """Every row of `domain` for one coarser period, from the finer rows
    (SOURCE, PERCENTILE_SOURCE)."""
    end = start + dt.timedelta(seconds=granularity)
    tallies: dict[_ENTITY, _Tally] = defaultdict(_Tally)
    period = {"domain_name": domain, "start__gte": start, "start__lt": end}
    for row in UsageRollup.objects.filter(granularity=SOURCE[granularity], **period).iterator():
        tally = tallies[row.app, row.stream]
        tally.bytes_in += row.bytes_in
        for protocol, n in row.bytes_out_by_protocol.items():
            tally.bytes_out[protocol] += n
        tally.peak_bps_in = max(tally.peak_bps_in, row.peak_bps_in)
        tally.peak_bps_out = max(tally.peak_bps_out, row.peak_bps_out)
        tally.peak_viewers = max(tally.peak_viewers, row.peak_viewers)
        tally.viewer_seconds += row.viewer_seconds
        tally.sketch.merge(ViewerSketch.load(row.viewer_sketch))
    source = PERCENTILE_SOURCE[granularity]
    finer = UsageRollup.objects.filter(granularity=source, **period)
    for app, stream, bytes_in, bytes_out in finer.values_list("app", "stream", "bytes_in", "bytes_out").iterator():
        tally = tallies[app, stream]
        tally.sub_bps_in.append(bytes_in * 8 / source)
        tally.sub_bps_out.append(bytes_out * 8 / source)
    count = granularity // source
    rows = [
        tally.row(
            domain,
            entity,
            granularity,
            start,
            (percentile95(tally.sub_bps_in, count), percentile95(tally.sub_bps_out, count)),
        )
        for entity, tally in tallies.items()
    ]
    _replace(domain, granularity, start, rows)


def roll_up(batch: int | None = None) -> int:
    """Roll up what the samples written since the watermark touch; returns
    how many samples were read (at most `batch`, default
    LIVECENTER_USAGE_ROLLUP_BATCH: beat runs it again for the rest)."""
    batch = batch or settings.LIVECENTER_USAGE_ROLLUP_BATCH
    mark, _ = UsageWatermark.objects.get_or_create(name=WATERMARK)
    new = list(
        StreamSample.objects.filter(id__gt=mark.last_sample_id)
        .order_by("id")
        .values_list("id", "domain_name", "at")[:batch]
    )
    if not new:
        return 0
    minutes: dict[str, set[dt.datetime]] = defaultdict(set)
    for _, domain, at in new:
        minutes[domain].add(_floor(at, MINUTE))
        minutes[domain].add(_floor(at - RECHECK, MINUTE))
    for domain, starts in minutes.items():
        touched = sorted(starts)
        for start in touched:
            roll_up_minute(domain, start)
        for granularity in (FIVE_MINUTES, HOUR, DAY):
            for start in sorted({_floor(m, granularity) for m in touched}):
                roll_up_period(domain, granularity, start)
    # Only now: a run that dies before this line is done again, to the same rows.
    UsageWatermark.objects.filter(pk=mark.pk).update(last_sample_id=new[-1][0])
    return len(new)


def prune(now: dt.datetime | None = None) -> int:
    """Delete rollups past their retention: 1-minute rows after
    LIVECENTER_USAGE_MINUTE_RETENTION_DAYS, the others after
    LIVECENTER_USAGE_RETENTION_DAYS. Returns how many went."""
    now = now or timezone.now()
    deleted = 0
    for granularity in UsageRollup.GRANULARITIES:
        cutoff = now - retention(granularity)
        # A period goes once it has ended before the cutoff.
        cutoff -= dt.timedelta(seconds=granularity)
        deleted += UsageRollup.objects.filter(granularity=granularity, start__lt=cutoff).delete()[0]
    return deleted


def retention(granularity: int) -> dt.timedelta:
    if granularity == MINUTE:
        return dt.timedelta(days=settings.LIVECENTER_USAGE_MINUTE_RETENTION_DAYS)
    return dt.timedelta(days=settings.LIVECENTER_USAGE_RETENTION_DAYS)


# --- Queries ----------------------------------------------------------------------------


@dataclass(frozen=True)
class UsagePoint:
    start: dt.datetime
    bytes_in: int = 0
    bytes_out: int = 0
    bytes_out_by_protocol: dict[str, int] = field(default_factory=dict)
    average_bps_in: float = 0.0
    average_bps_out: float = 0.0
    peak_bps_in: float = 0.0
    peak_bps_out: float = 0.0
    p95_bps_in: float = 0.0
    p95_bps_out: float = 0.0
    peak_viewers: int = 0
    average_viewers: float = 0.0
    unique_viewers: int = 0


@dataclass(frozen=True)
class UsageSeries:
    domain_name: str  # the ingest domain
    app: str
    stream: str
    start_time: dt.datetime
    end_time: dt.datetime
    granularity: int
    points: list[UsagePoint]
    summary: UsagePoint  # the whole range (its `start` is the range's)


def _point(row: UsageRollup, seconds: int) -> UsagePoint:
    return UsagePoint(
        start=row.start,
        bytes_in=row.bytes_in,
        bytes_out=row.bytes_out,
        bytes_out_by_protocol=dict(row.bytes_out_by_protocol),
        average_bps_in=row.bytes_in * 8 / seconds,
        average_bps_out=row.bytes_out * 8 / seconds,
        peak_bps_in=row.peak_bps_in,
        peak_bps_out=row.peak_bps_out,
        p95_bps_in=row.p95_bps_in,
        p95_bps_out=row.p95_bps_out,
        peak_viewers=row.peak_viewers,
        average_viewers=row.viewer_seconds / seconds,
        unique_viewers=row.unique_viewers,
    )


def choose_granularity(start: dt.datetime, end: dt.datetime, granularity: int | None, now: dt.datetime) -> int:
    if granularity is None:
        granularity = next((g for span, g in AUTO_GRANULARITY if end - start <= span), DAY)
        if granularity == MINUTE and start < now - retention(MINUTE):
            granularity = FIVE_MINUTES
    elif granularity not in UsageRollup.GRANULARITIES:
        raise invalid("interval", "interval must be 60, 300, 3600 or 86400 seconds")
    if start < now - retention(granularity) - dt.timedelta(seconds=granularity):
        days = retention(granularity).total_seconds() / 86400
        raise invalid("start_time", f"{granularity}-second figures are kept for {days:g} days; start later")
    if (end - start).total_seconds() / granularity > MAX_POINTS:
        raise invalid(
            "interval",
            f"the range holds more than {MAX_POINTS} periods of {granularity} seconds; choose a longer interval",
        )
    return granularity


def usage_range(start, end, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    end = aware(end) if end is not None else now
    start = aware(start) if start is not None else end - DEFAULT_RANGE
    if start >= end:
        raise invalid("end_time", "end time must be after the start time")
    return start, end


def usage_scope(owner, domain_name: str, app: str = "", stream: str = "") -> tuple[Domain, str, str]:
    """(the ingest domain, app, stream) of a query: one of the owner's domains,
    with an app ("" for the whole domain) and a stream of it ("" for the whole app)."""
    domain = ingest_domain_for(owner, domain_name)
    if stream and not app:
        raise invalid("app", "name the app of the stream")
    return domain, valid_name("app", app) if app else "", valid_name("stream", stream) if stream else ""


def usage_series(
    owner,
    domain_name: str,
    app: str = "",
    stream: str = "",
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    granularity: int | None = None,
    now: dt.datetime | None = None,
) -> UsageSeries:
    """The usage of one of the owner's domains (or one of its apps, or
    streams) over a range, one point per period (periods without traffic as
    zeros), and the range's totals. The range is widened to whole periods."""
    domain, app, stream = usage_scope(owner, domain_name, app, stream)
    now = now or timezone.now()
    start, end = usage_range(start, end, now)
    granularity = choose_granularity(start, end, granularity, now)
    first = _floor(start, granularity)
    last = _floor(end - dt.timedelta(microseconds=1), granularity)
    span = dt.timedelta(seconds=granularity)
    scope = {"domain_name": domain.domain_name, "app": app, "stream": stream}
    rows = {
        row.start: row
        for row in UsageRollup.objects.filter(granularity=granularity, start__gte=first, start__lte=last, **scope)
    }
    points, at = [], first
    while at <= last:
        row = rows.get(at)
        points.append(_point(row, granularity) if row is not None else UsagePoint(start=at))
        at += span
    summary = _summary(list(rows.values()), first, last + span, scope)
    return UsageSeries(domain.domain_name, app, stream, first, last + span, granularity, points, summary)


def _summary(rows: list[UsageRollup], start: dt.datetime, end: dt.datetime, scope: dict) -> UsagePoint:
    seconds = (end - start).total_seconds()
    by_protocol: dict[str, int] = defaultdict(int)
    sketch = ViewerSketch()
    for row in rows:
        for protocol, n in row.bytes_out_by_protocol.items():
            by_protocol[protocol] += n
        sketch.merge(ViewerSketch.load(row.viewer_sketch))
    # The percentile is over the range's 5-minute periods, whatever the points are
    # (a range shorter than one: its minutes').
    g = PERCENTILE_GRANULARITY if seconds >= PERCENTILE_GRANULARITY else MINUTE
    fine = UsageRollup.objects.filter(granularity=g, start__gte=start, start__lt=end, **scope)
    fine_rows = list(fine.values_list("bytes_in", "bytes_out"))
    count = int(seconds // g)
    bytes_in = sum(r.bytes_in for r in rows)
    bytes_out = sum(r.bytes_out for r in rows)
    return UsagePoint(
        start=start,
        bytes_in=bytes_in,
        bytes_out=bytes_out,
        bytes_out_by_protocol=dict(sorted(by_protocol.items())),
        average_bps_in=bytes_in * 8 / seconds,
        average_bps_out=bytes_out * 8 / seconds,
        peak_bps_in=max((r.peak_bps_in for r in rows), default=0.0),
        peak_bps_out=max((r.peak_bps_out for r in rows), default=0.0),
        p95_bps_in=percentile95([n * 8 / g for n, _ in fine_rows], count),
        p95_bps_out=percentile95([n * 8 / g for _, n in fine_rows], count),
        peak_viewers=max((r.peak_viewers for r in rows), default=0),
        average_viewers=sum(r.viewer_seconds for r in rows) / seconds,
        unique_viewers=sketch.count(),
    )


CSV_COLUMNS = (
    "start", "bytes_in", "bytes_out", "average_bps_in", "average_bps_out", "peak_bps_in", "peak_bps_out",
    "p95_bps_in", "p95_bps_out", "peak_viewers", "average_viewers", "unique_viewers",
)  # fmt: skip


def usage_csv(series: UsageSeries) -> str:
    """The series as CSV: one line a period (UTC, ISO 8601), bytes out by
    protocol in a column each, then a `total` line."""
    protocols = sorted(series.summary.bytes_out_by_protocol)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *(f"bytes_out_{p}" for p in protocols)])

    def line(point: UsagePoint, start: str) -> list:
        values = [getattr(point, name) for name in CSV_COLUMNS[1:]]
        by_protocol = [point.bytes_out_by_protocol.get(p, 0) for p in protocols]
        return [start, *(_csv_number(v) for v in values), *by_protocol]

    for point in series.points:
        writer.writerow(line(point, point.start.isoformat().replace("+00:00", "Z")))
    writer.writerow(line(series.summary, "total"))
    return out.getvalue()


def _csv_number(value) -> str:
    return str(value) if isinstance(value, int) else f"{value:.3f}".rstrip("0").rstrip(".")


def csv_filename(series: UsageSeries) -> str:
    scope = "_".join(part for part in (series.domain_name, series.app, series.stream) if part)
    safe = "".join(c if c.isalnum() or c in "-._" else "-" for c in scope)
    return f"usage_{safe}_{series.start_time:%Y%m%dT%H%MZ}_{series.granularity}s.csv"
