"""Alarms (issue 19; ApsaraVideo Live's CreateLiveStreamMonitor): an
operator's rules on the streams of an ingest domain or of one app of it, and
their evaluation by the worker over the recent per-second samples
(tasks.evaluate_alarms, every LIVECENTER_ALARMS_EVALUATE_SECONDS).

A rule's condition is checked per stream:

- frame rate below, bitrate below or above, keyframe interval above: on the
  samples of the node holding the publisher (StreamSample.upstream_node
  empty; a relayed copy measures the same stream again). The condition holds
  once every sample for `duration_seconds` breached the threshold, and is
  clear once every sample for `duration_seconds` did not; in between an
  alarm stays as it is (hysteresis). A gap in the samples (more than
  MAX_SAMPLE_GAP) starts the count again.
- interruption: the stream is expected to send (its session is open, or it
  ended without its publisher or operator ending it, see OPERATOR_STOP_REASONS:
  a dropped connection, a timeout, a node that stopped or restarted)
  and nothing came from the publisher's node for `threshold` seconds. A node
  that went away without a word leaves its sessions open and sends no
  samples: that is such a gap. The alarm opens when the gap reaches the
  threshold (the duration does not add to it) and closes once data has
  flowed again for `duration_seconds`.
- stall ratio above: the stall time over the watch time of the stream's
  viewers, as the players' beacons reported it per minute
  (playback.stall_ratio), over the minutes the last `duration_seconds`
  touch (at least 60); it opens when that window's ratio is above the
  threshold and closes when a window's is not; nobody watching is no verdict.

An alarm of a stream whose publisher or operator ended it closes with the
reason "stream stopped"; changing, disabling or deleting its rule closes it
too (reason "rule changed", "rule disabled", "rule deleted").

Everything is derived from the samples, the sessions and the open alarms'
rows, so a run repeated, run by two workers at once, or after a restart
opens and closes each alarm once: an open alarm is unique per rule and
stream (a constraint) and a close is a conditional UPDATE. Opens and closes
are told through signals.alarm_opened/closed, which the callbacks app
delivers to the domain's callback URL.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from domains.services import ingest_domain_for, owned_rows
from streams.models import PublishSession
from streams.services import valid_name

from . import playback, signals
from .models import ALARM_UNITS, AlarmComparison, AlarmEvent, AlarmMetric, AlarmRule, StreamSample
from .models import alarm_metric_label as metric_label

log = logging.getLogger(__name__)

BELOW, ABOVE = AlarmComparison.BELOW, AlarmComparison.ABOVE
FRAME_RATE = AlarmMetric.FRAME_RATE
BITRATE = AlarmMetric.BITRATE
KEYFRAME_INTERVAL = AlarmMetric.KEYFRAME_INTERVAL
INTERRUPTION = AlarmMetric.INTERRUPTION
STALL_RATIO = AlarmMetric.STALL_RATIO

UNITS = ALARM_UNITS
# The comparisons each metric takes; the first is the default.
COMPARISONS = {FRAME_RATE: (BELOW,), BITRATE: (BELOW, ABOVE), KEYFRAME_INTERVAL: (ABOVE,), INTERRUPTION: (ABOVE,),
               STALL_RATIO: (ABOVE,)}  # fmt: skip
# (lowest, highest) threshold in the metric's unit. Interruption starts at 3 s:
# a node writes its samples every second, so a shorter gap is noise; it ends
# at 10 minutes, which bounds the samples a run reads (lookback below).
THRESHOLDS = {FRAME_RATE: (0.1, 240.0), BITRATE: (1.0, 1_000_000.0), KEYFRAME_INTERVAL: (0.1, 600.0),
              INTERRUPTION: (3.0, 600.0), STALL_RATIO: (0.1, 100.0)}  # fmt: skip
MIN_DURATION_SECONDS = 1
MAX_DURATION_SECONDS = 600  # with the thresholds: a run reads at most ~20 minutes of a domain's samples
DEFAULT_DURATION_SECONDS = 10
# The players report per minute (playback.py): a stall ratio is judged over whole minutes, at least one.
MIN_STALL_RATIO_DURATION_SECONDS = 60
MAX_RULES_PER_DOMAIN = 50

# Sessions that ended with these reasons (the engine's words) were ended by
# their publisher or their operator: not an interruption. RTMP: "" for
# FCUnpublish, deleteStream or closeStream (a connection that closes without
# one is "connection lost": an encoder killed or its network gone); SRT: the
# peer's shutdown; WHIP: the DELETE, or the peer connection closed. A forbid
# is the operator's. Anything else (a lost connection, a timeout, a node
# stopped or restarted, WHIP's "connection failed") is an interruption.
OPERATOR_STOP_REASONS = ("", "peer shut down", "ended by the publisher (DELETE)", "connection closed", "forbidden")
# An interrupted session is looked for this long after it ended: a worker
# down for longer does not open alarms for what ended before.
STOPPED_LOOKBACK = dt.timedelta(hours=1)
SAMPLE_SECONDS = 1.0  # what one sample covers (livecenter/media/stats.py)
# Samples further apart than this leave a hole: a run of breaching (or clear)
# samples starts again after it.
MAX_SAMPLE_GAP = dt.timedelta(seconds=3)
# A sample metric is judged only on a stream whose newest sample is this fresh.
FRESH = dt.timedelta(seconds=10)
LOOKBACK_SLACK = dt.timedelta(seconds=5)

END_STREAM_STOPPED = "stream stopped"
END_RULE_CHANGED = "rule changed"
END_RULE_DISABLED = "rule disabled"
END_RULE_DELETED = "rule deleted"

StreamId = tuple[str, str]  # (app, stream) on a rule's domain


# --- Rules -----------------------------------------------------------------------------------------


def _validate(rule: AlarmRule) -> None:
    """Every error of the rule's fields at once, each naming its field."""
    errors: dict[str, list[str]] = {}
    if rule.app:
        try:
            rule.app = valid_name("app", rule.app)
        except ValidationError as exc:
            errors.update(exc.message_dict)
    if rule.metric not in COMPARISONS:
        errors["metric"] = [f"metric must be one of {', '.join(COMPARISONS)}"]
    else:
        allowed = COMPARISONS[rule.metric]
        if rule.comparison not in allowed:
            errors["comparison"] = [
                f"a {metric_label(rule.metric)} alarm compares {' or '.join(allowed)} its threshold,"
                f" not {rule.comparison!r}"
            ]
        low, high = THRESHOLDS[rule.metric]
        threshold = rule.threshold
        if not isinstance(threshold, int | float) or not math.isfinite(threshold) or not low <= threshold <= high:
            errors["threshold"] = [
                f"threshold of a {metric_label(rule.metric)} alarm must be {low:g} to {high:g} {UNITS[rule.metric]}"
            ]
    duration = rule.duration_seconds
    low = MIN_STALL_RATIO_DURATION_SECONDS if rule.metric == STALL_RATIO else MIN_DURATION_SECONDS
    if not isinstance(duration, int) or not low <= duration <= MAX_DURATION_SECONDS:
        what = " of a stall ratio alarm (the players report per minute)" if rule.metric == STALL_RATIO else ""
        errors["duration_seconds"] = [f"duration{what} must be {low} to {MAX_DURATION_SECONDS} seconds"]
    if errors:
        raise ValidationError(errors)
    twin = AlarmRule.objects.filter(domain=rule.domain, app=rule.app, metric=rule.metric, comparison=rule.comparison)
    if twin.exclude(pk=rule.pk).exists():
        what = metric_label(rule.metric)
        if len(COMPARISONS[rule.metric]) > 1:
            what = f"{what} {rule.comparison}"
        raise ValidationError({"metric": [f"{rule.scope} has a {what} rule already; change that one"]})


def list_rules(owner, domain_name: str | None = None) -> QuerySet[AlarmRule]:
    """The operator's rules, on the ingest domain `domain_name` names or on all of theirs."""
    return owned_rows(AlarmRule, owner, domain_name).select_related("domain")


def get_rule(owner, rule_id: int) -> AlarmRule:
    """The operator's rule, or AlarmRule.DoesNotExist (another's too)."""
    return AlarmRule.objects.select_related("domain").get(pk=rule_id, domain__owner=owner)


def add_rule(
    owner,
    domain_name: str,
    *,
    metric: str,
    threshold: float,
    app: str = "",
    comparison: str | None = None,
    duration_seconds: int = DEFAULT_DURATION_SECONDS,
    enabled: bool = True,
) -> AlarmRule:
    """A rule on the operator's ingest domain (a streaming domain stands for
    the one it plays) or one app of it; `comparison` defaults to the metric's first."""
    domain = ingest_domain_for(owner, domain_name)
    if AlarmRule.objects.filter(domain=domain).count() >= MAX_RULES_PER_DOMAIN:
        raise ValidationError({"domain": [f"a domain has at most {MAX_RULES_PER_DOMAIN} alarm rules"]})
    if not comparison and metric in COMPARISONS:
        comparison = COMPARISONS[metric][0]
    rule = AlarmRule(
        domain=domain,
        app=(app or "").strip(),
        metric=metric,
        comparison=comparison or "",
        threshold=threshold,
        duration_seconds=duration_seconds,
        enabled=enabled,
    )
    _validate(rule)
    _save(rule)
    return rule


def _save(rule: AlarmRule) -> None:
    try:
        with transaction.atomic():
            rule.save()
    except IntegrityError:  # a twin saved meanwhile (one_alarm_rule_per_scope)
        raise ValidationError({"metric": [f"{rule.scope} has this rule already; change that one"]}) from None


RULE_FIELDS = ("app", "metric", "comparison", "threshold", "duration_seconds", "enabled")


def update_rule(rule: AlarmRule, **changes) -> AlarmRule:
    """Change a rule's fields (RULE_FIELDS; None keeps one). Its open alarms
    close: they were opened under the old condition (the next run opens
    them again where the new one holds)."""
    unknown = set(changes) - set(RULE_FIELDS)
    if unknown:
        raise TypeError(f"unknown rule fields: {sorted(unknown)}")
    before = {name: getattr(rule, name) for name in RULE_FIELDS}
    for name, value in changes.items():
        if value is not None:
            setattr(rule, name, value.strip() if name == "app" else value)
    if changes.get("metric") and not changes.get("comparison") and rule.metric in COMPARISONS:
        if rule.comparison not in COMPARISONS[rule.metric]:
            rule.comparison = COMPARISONS[rule.metric][0]
    try:
        _validate(rule)
    except ValidationError:
        for name, value in before.items():
            setattr(rule, name, value)
        raise
    changed = {name for name in RULE_FIELDS if getattr(rule, name) != before[name]}
    if changed:
        _save(rule)
        reason = END_RULE_DISABLED if "enabled" in changed and not rule.enabled else END_RULE_CHANGED
        close_rule_alarms(rule, reason)
    return rule


def delete_rule(rule: AlarmRule) -> None:
    """Delete a rule; its open alarms close first, its past ones stay."""
    close_rule_alarms(rule, END_RULE_DELETED)
    rule.delete()


def close_rule_alarms(rule: AlarmRule, reason: str, now: dt.datetime | None = None) -> int:
    now = now or timezone.now()
    return sum(_close(alarm, now, reason) for alarm in AlarmEvent.objects.filter(rule=rule, ended_at__isnull=True))


# --- What the operator sees ---------------------------------------------------------------------

ALARM_STATES = ("open", "closed")


def list_alarms(owner, domain_name: str | None = None, state: str | None = None) -> QuerySet[AlarmEvent]:
    """The operator's alarms, newest first; `state` "open" or "closed" (else both)."""
    rows = owned_rows(AlarmEvent, owner, domain_name).select_related("rule")
    if state == "open":
        rows = rows.filter(ended_at__isnull=True)
    elif state == "closed":
        rows = rows.filter(ended_at__isnull=False)
    elif state:
        raise ValidationError({"state": [f"state must be one of {', '.join(ALARM_STATES)}, or empty for both"]})
    return rows


def open_alarms(owner, limit: int) -> list[AlarmEvent]:
    """Up to `limit` of the operator's open alarms, newest first (the banner: one indexed query)."""
    return list(AlarmEvent.objects.filter(domain__owner=owner, ended_at__isnull=True).order_by("-started_at")[:limit])


# --- Evaluation ---------------------------------------------------------------------------------

BREACH, CLEAR, STOPPED, UNKNOWN = "breach", "clear", "stopped", "unknown"


@dataclass(frozen=True)
class Condition:
    state: str  # BREACH, CLEAR, STOPPED or UNKNOWN (an open alarm stays as it is)
    since: dt.datetime | None = None  # when the breach, the clear run or the stop began
    value: float | None = None  # the newest value, in the metric's unit


@dataclass(frozen=True)
class Point:
    at: dt.datetime
    frame_rate: float
    bitrate_kbps: float
    keyframe_interval_s: float | None  # None until the stream has had two keyframes

    def value(self, metric: str) -> float | None:
        if metric == FRAME_RATE:
            return self.frame_rate
        if metric == BITRATE:
            return self.bitrate_kbps
        if metric == KEYFRAME_INTERVAL:
            return self.keyframe_interval_s
        return None


def breaches(comparison: str, value: float, threshold: float) -> bool:
    return value < threshold if comparison == BELOW else value > threshold


def _lookback(rule: AlarmRule) -> dt.timedelta:
    if rule.metric == STALL_RATIO:  # no samples: the players' reports
        return LOOKBACK_SLACK
    seconds = rule.duration_seconds + (rule.threshold if rule.metric == INTERRUPTION else 0)
    return dt.timedelta(seconds=seconds) + LOOKBACK_SLACK


def _run_start(points: list[Point], matches) -> Point | None:
    """The first point of the newest run of points that all match, unbroken
    by a hole (MAX_SAMPLE_GAP); None when the newest does not match."""
    start = None
    for point in reversed(points):
        if not matches(point) or (start is not None and start.at - point.at > MAX_SAMPLE_GAP):
            break
        start = point
    return start


def sample_condition(rule: AlarmRule, points: list[Point], now: dt.datetime) -> Condition:
    """A frame rate, bitrate or keyframe interval rule on a live stream's
    publisher samples (oldest first)."""
    points = [p for p in points if p.value(rule.metric) is not None]
    if not points or points[-1].at < now - FRESH:
        return Condition(UNKNOWN)
    newest = points[-1]
    value = newest.value(rule.metric)
    breached = breaches(rule.comparison, value, rule.threshold)
    start = _run_start(points, lambda p: breaches(rule.comparison, p.value(rule.metric), rule.threshold) == breached)
    held = (newest.at - start.at).total_seconds() + SAMPLE_SECONDS
    if held < rule.duration_seconds:
        return Condition(UNKNOWN, value=value)
    return Condition(BREACH if breached else CLEAR, start.at, value)


def interruption_condition(
    rule: AlarmRule, points: list[Point], now: dt.datetime, last_data: dt.datetime | None
) -> Condition:
    """An interruption rule on a stream expected to send. `points` are its
    publisher samples in the lookback (oldest first); `last_data` is when
    data last came (the newest sample, the session's start or end)."""
    if last_data is None:
        return Condition(UNKNOWN)
    gap = (now - last_data).total_seconds()
    if gap >= rule.threshold:
        return Condition(BREACH, last_data, round(gap, 3))
    if not points:
        return Condition(UNKNOWN, value=round(gap, 3))
    flowing = dt.timedelta(seconds=rule.threshold)
    start = None
    for point in reversed(points):  # back through the run of data without a gap of `threshold`
        if start is not None and start.at - point.at >= flowing:
            break
        start = point
    if (now - start.at).total_seconds() + SAMPLE_SECONDS < rule.duration_seconds:
        return Condition(UNKNOWN, value=round(gap, 3))
    return Condition(CLEAR, start.at, round(gap, 3))


def stall_window_start(rule: AlarmRule, now: dt.datetime) -> dt.datetime:
    """The start of the minute holding `now - duration`: the players' rows are per minute."""
    return (now - dt.timedelta(seconds=rule.duration_seconds)).replace(second=0, microsecond=0)


def stall_condition(rule: AlarmRule, ratio: float | None, since: dt.datetime, now: dt.datetime) -> Condition:
    """A stall ratio rule on a live stream: its viewers' stall time over
    watch time since `since` (playback.stall_ratio), in percent. Nobody
    watching is no verdict. It opened at the window's start; it closes when
    a whole window is clear."""
    if ratio is None:
        return Condition(UNKNOWN)
    value = round(ratio * 100, 3)
    if breaches(rule.comparison, value, rule.threshold):
        return Condition(BREACH, since, value)
    return Condition(CLEAR, now, value)


def _publisher_points(domain_name: str, since: dt.datetime, until: dt.datetime) -> dict[StreamId, list[Point]]:
    """The domain's streams' samples from the node holding the publisher
    over (since, until], oldest first: one range of the sample_domain_at index."""
    rows = (
        StreamSample.objects.filter(domain_name=domain_name, at__gt=since, at__lte=until, upstream_node="")
        .order_by("at", "id")
        .values_list(
            "app", "stream", "at", "video_frame_rate", "video_bitrate", "audio_bitrate", "keyframe_interval_ms"
        )  # fmt: skip
    )
    series: dict[StreamId, list[Point]] = {}
    for app, stream, at, frame_rate, video, audio, keyframe_ms in rows:
        point = Point(at, frame_rate, (video + audio) / 1000, keyframe_ms / 1000 if keyframe_ms else None)
        series.setdefault((app, stream), []).append(point)
    return series


def _newest_sample_at(domain_name: str, key: StreamId, after: dt.datetime) -> dt.datetime | None:
    """The publisher's newest sample of a stream after `after` (the sample_stream_at index, backwards)."""
    return (
        StreamSample.objects.filter(domain_name=domain_name, app=key[0], stream=key[1], at__gt=after, upstream_node="")
        .order_by("-at")
        .values_list("at", flat=True)
        .first()
    )


def _latest_session(domain_id: int, key: StreamId) -> dict | None:
    return (
        PublishSession.objects.filter(domain_id=domain_id, app=key[0], stream=key[1])
        .order_by("-started_at", "-id")
        .values("started_at", "stopped_at", "stop_reason")
        .first()
    )


def _interrupted(session: dict | None) -> bool:
    """A stopped session its publisher or operator did not end."""
    return bool(session and session["stopped_at"] and session["stop_reason"] not in OPERATOR_STOP_REASONS)


class _Domain:
    """One evaluation's view of one ingest domain: its live streams, its
    recently interrupted ones and its publisher samples, read once."""

    def __init__(self, rules: list[AlarmRule], now: dt.datetime) -> None:
        self.domain = rules[0].domain
        self.now = now
        self.live: dict[StreamId, dt.datetime] = {}
        for app, stream, started in (
            PublishSession.objects.filter(domain=self.domain, stopped_at__isnull=True)
            .order_by("started_at")
            .values_list("app", "stream", "started_at")
        ):
            self.live[(app, stream)] = started  # the newest session wins
        self.points = _publisher_points(self.domain.domain_name, now - max(map(_lookback, rules)), now)
        self.dropped: set[StreamId] = set()
        if any(rule.metric == INTERRUPTION for rule in rules):
            self.dropped = {
                key
                for key in PublishSession.objects.filter(domain=self.domain, stopped_at__gt=now - STOPPED_LOOKBACK)
                .exclude(stop_reason__in=OPERATOR_STOP_REASONS)
                .values_list("app", "stream")
                .distinct()
                if key not in self.live
            }
        self._sessions: dict[StreamId, dict | None] = {}

    def latest_session(self, key: StreamId) -> dict | None:
        if key not in self._sessions:
            self._sessions[key] = _latest_session(self.domain.pk, key)
        return self._sessions[key]

    def candidates(self, rule: AlarmRule) -> set[StreamId]:
        keys = set(self.live) | (self.dropped if rule.metric == INTERRUPTION else set())
        return {key for key in keys if not rule.app or key[0] == rule.app}

    def condition(self, rule: AlarmRule, key: StreamId) -> Condition:
        points = self.points.get(key, [])
        started = self.live.get(key)
        if started is None:
            session = self.latest_session(key)
            if rule.metric == INTERRUPTION and _interrupted(session):
                stopped = session["stopped_at"]
                last = _newest_sample_at(self.domain.domain_name, key, session["started_at"])
                return interruption_condition(rule, [], self.now, min(last or stopped, stopped))
            return Condition(STOPPED, session["stopped_at"] if session and session["stopped_at"] else self.now)
        if rule.metric == STALL_RATIO:
            since = stall_window_start(rule, self.now)
            ratio = playback.stall_ratio(self.domain.domain_name, key[0], key[1], since, self.now)
            return stall_condition(rule, ratio, since, self.now)
        if rule.metric != INTERRUPTION:
            return sample_condition(rule, points, self.now)
        newest = points[-1].at if points else None
        if newest is None:  # none in the lookback: when did data last come?
            newest = _newest_sample_at(self.domain.domain_name, key, started)
        return interruption_condition(rule, points, self.now, max(newest or started, started))


def evaluate(now: dt.datetime | None = None) -> tuple[int, int]:
    """Open and close alarms as the enabled rules' conditions say at `now`
    (default now). Returns (opened, closed)."""
    now = now or timezone.now()
    rules = list(AlarmRule.objects.filter(enabled=True).select_related("domain"))
    open_rows = {
        (a.rule_id, a.app, a.stream): a
        for a in AlarmEvent.objects.filter(ended_at__isnull=True, rule__in=[r.pk for r in rules])
    }
    by_domain: dict[int, list[AlarmRule]] = {}
    for rule in rules:
        by_domain.setdefault(rule.domain_id, []).append(rule)
    opened = closed = 0
    for domain_rules in by_domain.values():
        view = _Domain(domain_rules, now)
        for rule in domain_rules:
            keys = view.candidates(rule) | {(app, stream) for rid, app, stream in open_rows if rid == rule.pk}
            for key in sorted(keys):
                alarm = open_rows.get((rule.pk, *key))
                condition = view.condition(rule, key)
                if alarm is None and condition.state == BREACH:
                    opened += _open(rule, key, condition)
                elif alarm is not None and condition.state in (CLEAR, STOPPED):
                    reason = END_STREAM_STOPPED if condition.state == STOPPED else ""
                    closed += _close(alarm, condition.since or now, reason)
    return opened, closed


def _open(rule: AlarmRule, key: StreamId, condition: Condition) -> int:
    try:
        with transaction.atomic():
            alarm = AlarmEvent.objects.create(
                rule=rule,
                domain=rule.domain,
                domain_name=rule.domain.domain_name,
                app=key[0],
                stream=key[1],
                metric=rule.metric,
                comparison=rule.comparison,
                threshold=rule.threshold,
                value=condition.value if condition.value is not None else 0.0,
                started_at=condition.since,
            )
    except IntegrityError:
        return 0  # another run opened it first
    log.info("alarm opened: %s on %s (value %g)", rule.condition,
             alarm.stream_url, alarm.value)  # fmt: skip
    _tell(signals.alarm_opened, alarm)
    return 1


def _close(alarm: AlarmEvent, at: dt.datetime, reason: str) -> int:
    ended = max(at, alarm.started_at)
    if not AlarmEvent.objects.filter(pk=alarm.pk, ended_at__isnull=True).update(ended_at=ended, end_reason=reason):
        return 0  # another run closed it first
    alarm.ended_at, alarm.end_reason = ended, reason
    log.info("alarm closed: %s on %s%s", alarm.condition,
             alarm.stream_url, f" ({reason})" if reason else "")  # fmt: skip
    _tell(signals.alarm_closed, alarm)
    return 1


def _tell(signal, alarm: AlarmEvent) -> None:
    for receiver, result in signal.send_robust(sender=AlarmEvent, alarm=alarm):
        if isinstance(result, Exception):
            log.error("%s failed on alarm %s", getattr(receiver, "__qualname__", receiver), alarm.pk, exc_info=result)
