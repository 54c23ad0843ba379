"""Per-second samples of live streams, as the media nodes measured them
(livecenter/media/stats.py), kept for LIVECENTER_MONITORING_RETENTION_HOURS.

Rows name the stream by its ingest domain's name, app and stream, as
publish sessions do, so a query for one stream is one index range; the
operator's streams are those on the operator's ingest domains.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class StreamSample(models.Model):
    at = models.DateTimeField()  # the end of the second the sample covers
    domain_name = models.CharField(max_length=253)  # the ingest domain
    app = models.CharField(max_length=255)
    stream = models.CharField(max_length=255)
    session_id = models.CharField(max_length=64)
    node_id = models.CharField(max_length=128, blank=True, default="")

    # Rates over the second before `at`; bit rates in bits per second.
    video_frame_rate = models.FloatField(default=0.0)
    audio_frame_rate = models.FloatField(default=0.0)
    video_bitrate = models.FloatField(default=0.0)
    audio_bitrate = models.FloatField(default=0.0)
    keyframe_interval_ms = models.PositiveIntegerField(default=0)
    bframes = models.BooleanField(default=False)
    timestamp_jumps = models.PositiveIntegerField(default=0)

    video_codec = models.CharField(max_length=16, blank=True, default="")
    video_profile = models.CharField(max_length=32, blank=True, default="")
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    audio_codec = models.CharField(max_length=16, blank=True, default="")
    audio_sample_rate = models.PositiveIntegerField(default=0)
    audio_channels = models.PositiveSmallIntegerField(default=0)

    # By protocol ("rtmp", "flv", "hls", "rts", ...): viewers, and bits per second out.
    viewers = models.JSONField(default=dict)
    bitrate_out = models.JSONField(default=dict)
    # The publisher's SRT link when it came in over SRT (livecenter.media.policy.SrtSessionStats
    # as a dict: RTT, packets lost/retransmitted/dropped per second and in all, receive buffer,
    # latency, encryption, peer); null for other protocols.
    srt = models.JSONField(null=True, blank=True, default=None)
    # The publisher's WebRTC link when it came in over WHIP (livecenter.media.policy.WhipSessionStats
    # as a dict: connection state, codecs, RTT, jitter, packets received/lost and NACKs per second
    # and in all, keyframe requests, frames lost, peer); null for other protocols.
    whip = models.JSONField(null=True, blank=True, default=None)
    # In a cluster, each node that carries the stream samples it: the one
    # holding the publisher (this is empty), and the ones receiving it from
    # another node (this names that node: a center's relay from an edge, an
    # edge's pull from a center). Ingest is counted where this is empty,
    # egress and viewers on every node, each its own viewers'.
    upstream_node = models.CharField(max_length=128, blank=True, default="")
    # Bits per second sent to other nodes (relays, pulls): not in `bitrate_out`.
    relay_bitrate_out = models.FloatField(default=0.0)
    # The time the rates cover (about a second): the usage rollups' traffic is rate x this.
    interval_seconds = models.FloatField(default=1.0)
    # Viewer identities first seen in this UTC minute on this node
    # (livecenter.media.policy.StreamSample.viewer_ids), for unique viewers.
    viewer_ids = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [
            models.Index(fields=["domain_name", "app", "stream", "at"], name="sample_stream_at"),
            models.Index(fields=["domain_name", "at"], name="sample_domain_at"),
            models.Index(fields=["at"], name="sample_at"),  # pruning
        ]

    def __str__(self) -> str:
        return f"{self.stream_url} at {self.at:%Y-%m-%d %H:%M:%S}"

    @property
    def stream_url(self) -> str:
        return f"{self.domain_name}/{self.app}/{self.stream}"

    @property
    def bitrate(self) -> float:
        """Bits per second in, audio and video."""
        return self.video_bitrate + self.audio_bitrate

    @property
    def viewer_count(self) -> int:
        return sum(self.viewers.values())

    @property
    def total_bitrate_out(self) -> float:
        return sum(self.bitrate_out.values())


class PublishRefusal(models.Model):
    """A publisher a media node turned away (livecenter.media.policy.PublishRefused),
    kept for the troubleshooting tool as long as samples are. Only refusals
    that name one of the operators' domains are kept."""

    at = models.DateTimeField()
    domain_name = models.CharField(max_length=253)  # as the publisher named it
    app = models.CharField(max_length=255, blank=True, default="")
    stream = models.CharField(max_length=255, blank=True, default="")
    protocol = models.CharField(max_length=16)
    client_addr = models.CharField(max_length=64, blank=True, default="")
    reason = models.CharField(max_length=255)
    code = models.IntegerField(default=0)  # the protocol's own: an SRT rejection reason, WHIP's HTTP status; 0 for RTMP
    node_id = models.CharField(max_length=128, blank=True, default="")

    class Meta:
        ordering = ["at", "id"]
        indexes = [
            models.Index(fields=["domain_name", "app", "stream", "at"], name="refusal_stream_at"),
            models.Index(fields=["at"], name="refusal_at"),  # pruning
        ]

    def __str__(self) -> str:
        return f"{self.protocol} {self.domain_name}/{self.app}/{self.stream} refused at {self.at:%Y-%m-%d %H:%M:%S}"


class UsageRollup(models.Model):
    """Usage of a stream, an app (stream "") or a domain (app and stream "")
    over one period of `granularity` seconds starting at `start`, rolled up
    from the samples by the worker (usage.py, which defines every figure).
    Periods with no sample have no row."""

    MINUTE, FIVE_MINUTES, HOUR, DAY = 60, 300, 3600, 86400
    GRANULARITIES = (MINUTE, FIVE_MINUTES, HOUR, DAY)

    granularity = models.PositiveIntegerField()  # seconds
    start = models.DateTimeField()
    domain_name = models.CharField(max_length=253)  # the ingest domain
    app = models.CharField(max_length=255, blank=True, default="")
    stream = models.CharField(max_length=255, blank=True, default="")

    bytes_in = models.BigIntegerField(default=0)
    bytes_out = models.BigIntegerField(default=0)
    bytes_out_by_protocol = models.JSONField(default=dict)
    peak_bps_in = models.FloatField(default=0.0)
    peak_bps_out = models.FloatField(default=0.0)
    p95_bps_in = models.FloatField(default=0.0)
    p95_bps_out = models.FloatField(default=0.0)
    peak_viewers = models.PositiveIntegerField(default=0)
    viewer_seconds = models.BigIntegerField(default=0)
    unique_viewers = models.PositiveIntegerField(default=0)
    viewer_sketch = models.BinaryField(default=b"")  # sketch.ViewerSketch

    class Meta:
        ordering = ["granularity", "start", "domain_name", "app", "stream"]
        constraints = [
            models.UniqueConstraint(
                fields=["granularity", "domain_name", "app", "stream", "start"], name="usage_rollup_unique"
            ),
        ]
        indexes = [models.Index(fields=["granularity", "start"], name="usage_granularity_start")]  # pruning

    def __str__(self) -> str:
        what = "/".join(part for part in (self.domain_name, self.app, self.stream) if part)
        return f"{what} {self.granularity} s from {self.start:%Y-%m-%d %H:%M}"


class UsageWatermark(models.Model):
    """How far the usage rollups have read the samples: the highest
    StreamSample id rolled up (ids only grow, so a sample that arrives late
    has a higher one and its minute is rolled up again)."""

    name = models.CharField(max_length=32, unique=True)
    last_sample_id = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} at sample {self.last_sample_id}"


# --- Alarms (issue 19; ApsaraVideo Live's CreateLiveStreamMonitor) -------------------------------
# alarms.py evaluates the rules over the recent samples; the README's "Alarms" says what each means.


class AlarmMetric(models.TextChoices):
    FRAME_RATE = "frame_rate", "Frame rate"  # video frames per second in
    BITRATE = "bitrate", "Bitrate"  # kbit/s in, audio and video
    KEYFRAME_INTERVAL = "keyframe_interval", "Keyframe interval"  # seconds
    INTERRUPTION = "interruption", "Interruption"  # seconds without data from the publisher
    STALL_RATIO = "stall_ratio", "Stall ratio"  # percent of viewers' watch time spent stalled (playback.py)


class AlarmComparison(models.TextChoices):
    BELOW = "below", "below"
    ABOVE = "above", "above"


ALARM_UNITS = {"frame_rate": "fps", "bitrate": "kbit/s", "keyframe_interval": "s", "interruption": "s",
               "stall_ratio": "%"}  # fmt: skip


def alarm_metric_label(metric: str) -> str:
    return AlarmMetric(metric).label.lower() if metric in AlarmMetric.values else metric


def alarm_condition(metric: str, comparison: str, threshold: float) -> str:
    """'frame rate below 20 fps'; an interruption rule reads 'no data for 10 s'."""
    if metric == AlarmMetric.INTERRUPTION:
        return f"no data for {threshold:g} s"
    return f"{alarm_metric_label(metric)} {comparison} {threshold:g} {ALARM_UNITS.get(metric, '')}".rstrip()


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class AlarmRule(models.Model):
    """An operator's threshold on one metric of the streams of an ingest
    domain, or of one app of it (`app` empty: every app)."""

    domain = models.ForeignKey("domains.Domain", on_delete=models.CASCADE, related_name="alarm_rules")
    app = models.CharField(max_length=255, blank=True, default="")
    metric = models.CharField(max_length=32, choices=AlarmMetric.choices)
    comparison = models.CharField(max_length=8, choices=AlarmComparison.choices)
    threshold = models.FloatField()  # in the metric's unit (AlarmMetric's comments)
    # How long the condition must hold before an alarm opens, and be clear before it closes.
    duration_seconds = models.PositiveIntegerField(default=10)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["domain__domain_name", "app", "metric", "id"]
        constraints = [
            models.UniqueConstraint(fields=["domain", "app", "metric", "comparison"], name="one_alarm_rule_per_scope")
        ]
        indexes = [models.Index(fields=["enabled"], name="alarm_rule_enabled")]

    def __str__(self) -> str:
        return f"{self.get_metric_display()} {self.comparison} {self.threshold:g} on {self.scope}"

    @property
    def condition(self) -> str:
        return alarm_condition(self.metric, self.comparison, self.threshold)

    @property
    def scope(self) -> str:
        return f"{self.domain.domain_name}/{self.app}" if self.app else self.domain.domain_name


class AlarmEvent(models.Model):
    """One alarm of one stream: open while `ended_at` is null. The rule's
    metric, comparison and threshold are copied, so the history stays true
    after the rule changes or goes (`rule` becomes null)."""

    rule = models.ForeignKey(AlarmRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="alarms")
    domain = models.ForeignKey("domains.Domain", on_delete=models.CASCADE, related_name="alarms")
    domain_name = models.CharField(max_length=253)  # the ingest domain, as samples name it
    app = models.CharField(max_length=255)
    stream = models.CharField(max_length=255)
    metric = models.CharField(max_length=32, choices=AlarmMetric.choices)
    comparison = models.CharField(max_length=8, choices=AlarmComparison.choices)
    threshold = models.FloatField()
    value = models.FloatField()  # the newest value when it opened, in the metric's unit
    started_at = models.DateTimeField()  # when the condition began to hold
    ended_at = models.DateTimeField(null=True, blank=True)  # when it cleared; null while open
    # Empty when the condition cleared; else why it closed ("stream stopped", "rule disabled", ...).
    end_reason = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            # One open alarm per rule and stream, whichever worker evaluates (alarms.py relies on it).
            models.UniqueConstraint(
                fields=["rule", "domain_name", "app", "stream"],
                condition=models.Q(ended_at__isnull=True),
                name="one_open_alarm_per_rule_stream",
            )
        ]
        indexes = [
            models.Index(fields=["ended_at"], name="alarm_open"),  # the evaluator's open alarms
            models.Index(fields=["domain", "ended_at"], name="alarm_domain_open"),  # the banner
            models.Index(fields=["domain", "-started_at"], name="alarm_domain_started"),  # the list
        ]

    def __str__(self) -> str:
        return f"{self.get_metric_display()} alarm on {self.stream_url} from {self.started_at:%Y-%m-%d %H:%M:%S}"

    @property
    def stream_url(self) -> str:
        return f"{self.domain_name}/{self.app}/{self.stream}"

    @property
    def is_open(self) -> bool:
        return self.ended_at is None

    @property
    def condition(self) -> str:
        return alarm_condition(self.metric, self.comparison, self.threshold)

    @property
    def unit(self) -> str:
        return ALARM_UNITS.get(self.metric, "")

    @property
    def duration_text(self) -> str:
        """How long it was open, h:mm:ss (so far, while open)."""
        end = self.ended_at or timezone.now()
        return _clock((end - self.started_at).total_seconds())


class PlaybackReport(models.Model):
    """Viewers' playback of a stream in one minute, as its players' beacons
    told one media node (livecenter.media.policy.PlaybackRow), per
    streaming domain, protocol and viewer region; a node's later reports
    of the same minute are added to its row. Kept as long as samples are.
    monitoring.playback sums them: stall ratio (stall time over watch
    time), time-to-first-frame percentiles, fallbacks, errors, latency."""

    minute = models.DateTimeField()  # the minute's start
    domain_name = models.CharField(max_length=253)  # the ingest domain, as samples name streams
    app = models.CharField(max_length=255)
    stream = models.CharField(max_length=255)
    streaming_domain = models.CharField(max_length=253)
    protocol = models.CharField(max_length=16)
    region = models.CharField(max_length=64)
    node_id = models.CharField(max_length=128, blank=True, default="")

    sessions = models.PositiveIntegerField(default=0)  # player sessions that started it (once a session)
    # Counts per bucket of livecenter.media.beacon.TTFF_BUCKETS_MS (and LATENCY_BUCKETS_MS), plus one above.
    ttff_counts = models.JSONField(default=list)
    stalls = models.PositiveIntegerField(default=0)
    stall_ms = models.PositiveBigIntegerField(default=0)
    watch_ms = models.PositiveBigIntegerField(default=0)
    bitrate_switches = models.PositiveIntegerField(default=0)
    fallbacks = models.JSONField(default=dict)  # "rts>flv" -> count
    errors = models.JSONField(default=dict)  # kind -> count
    latency_counts = models.JSONField(default=list)

    class Meta:
        ordering = ["minute", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["minute", "domain_name", "app", "stream", "streaming_domain", "protocol", "region", "node_id"],
                name="playback_report_row",
            ),
        ]
        indexes = [
            models.Index(fields=["domain_name", "app", "stream", "minute"], name="playback_stream_minute"),
            models.Index(fields=["streaming_domain", "minute"], name="playback_domain_minute"),
            models.Index(fields=["minute"], name="playback_minute"),  # pruning
        ]

    def __str__(self) -> str:
        return f"{self.domain_name}/{self.app}/{self.stream} {self.protocol} {self.region} {self.minute:%Y-%m-%d %H:%M}"
