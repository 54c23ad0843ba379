"""Per-second samples of live streams, as the media nodes measured them
(livecenter/media/stats.py), kept for LIVECENTER_MONITORING_RETENTION_HOURS.

Rows name the stream by its ingest domain's name, app and stream, as
publish sessions do, so a query for one stream is one index range; the
operator's streams are those on the operator's ingest domains.
"""

from __future__ import annotations

from django.db import models


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
