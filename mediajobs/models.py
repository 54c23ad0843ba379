"""What the media workers do and what they made (issue 7): transcoding
templates and ABR groups, recording and snapshot settings, the job rows the
workers claim, recordings and snapshots.

Settings are bound to an ingest domain and an app ("*" for every app; an
exact app wins), like every stream-scoped row in streams/: a streaming
domain stands for the ingest domain it plays, so sub-streaming domains share
their main domain's templates (reference/aliyun_spec.md 3.4).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from domains.fields import EncryptedTextField
from domains.models import Domain
from livecenter.media.renditions import RenditionSpec, standard_spec

ANY_APP = "*"


class VideoProfile(models.TextChoices):
    BASELINE = "baseline", "Baseline"
    MAIN = "main", "Main"
    HIGH = "high", "High"


class TranscodeTemplate(models.Model):
    """A rendition `{stream}_{template_id}` (AddLiveStreamTranscode for the
    standard lld/lsd/lhd/lud, AddCustomLiveStreamTranscode otherwise)."""

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="transcode_templates")
    app = models.CharField(max_length=255)
    template_id = models.CharField(max_length=32)
    # Custom templates only (standard ones take the preset's): 0 follows the source.
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    short_side = models.PositiveIntegerField(default=0)
    video_bitrate_kbps = models.PositiveIntegerField(default=0)
    fps = models.FloatField(default=0.0)
    gop_seconds = models.FloatField(default=0.0)
    profile = models.CharField(max_length=16, choices=VideoProfile.choices, default=VideoProfile.HIGH)
    # On demand (the first viewer starts it, the reference's Lazy), or
    # whenever the source is live.
    lazy = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "streams_transcodetemplate"  # made by streams/ before issue 12
        ordering = ["app", "template_id"]
        constraints = [models.UniqueConstraint(fields=["domain", "app", "template_id"], name="one_template_per_app")]

    def __str__(self) -> str:
        return f"{self.domain.domain_name}/{self.app} {self.template_id}"

    @property
    def is_standard(self) -> bool:
        return standard_spec(self.template_id) is not None

    def spec(self) -> RenditionSpec:
        return standard_spec(self.template_id) or RenditionSpec(
            self.template_id,
            video_bitrate_kbps=self.video_bitrate_kbps,
            short_side=self.short_side,
            width=self.width,
            height=self.height,
            fps=self.fps,
            gop_seconds=self.gop_seconds,
            profile=self.profile,
        )


class TemplateGroup(models.Model):
    """A multi-bitrate group: `{stream}_{group_id}.m3u8` is an HLS master
    playlist of its templates' renditions and the source. Its renditions run
    whenever the source is live (the reference: trigger on ingest only)."""

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="template_groups")
    app = models.CharField(max_length=255)
    group_id = models.CharField(max_length=10)
    template_ids = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "streams_templategroup"  # made by streams/ before issue 12
        ordering = ["app", "group_id"]
        constraints = [models.UniqueConstraint(fields=["domain", "app", "group_id"], name="one_group_per_app")]

    def __str__(self) -> str:
        return f"{self.domain.domain_name}/{self.app} {self.group_id}"


class ReconnectMode(models.TextChoices):
    CONTINUE = "continue", "Continue the same file"
    NEW_FILE = "new_file", "Start a new file"


class RecordConfig(models.Model):
    """Record every live stream of an app (AddLiveAppRecordConfig)."""

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="record_configs")
    app = models.CharField(max_length=255)
    format = models.CharField(max_length=8, default="mp4")
    cycle_seconds = models.PositiveIntegerField(default=6 * 3600)  # the reference's CycleDuration default
    on_reconnect = models.CharField(max_length=16, choices=ReconnectMode.choices, default=ReconnectMode.CONTINUE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "streams_recordconfig"  # made by streams/ before issue 12
        ordering = ["app"]
        constraints = [models.UniqueConstraint(fields=["domain", "app"], name="one_record_config_per_app")]

    def __str__(self) -> str:
        return f"{self.domain.domain_name}/{self.app} record"


class SnapshotConfig(models.Model):
    """A JPEG of every live stream of an app every `interval_seconds`
    (AddLiveAppSnapshotConfig)."""

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="snapshot_configs")
    app = models.CharField(max_length=255)
    interval_seconds = models.PositiveIntegerField(default=10)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "streams_snapshotconfig"  # made by streams/ before issue 12
        ordering = ["app"]
        constraints = [models.UniqueConstraint(fields=["domain", "app"], name="one_snapshot_config_per_app")]

    def __str__(self) -> str:
        return f"{self.domain.domain_name}/{self.app} snapshots"


class JobKind(models.TextChoices):
    TRANSCODE = "transcode", "Transcode"
    RECORD = "record", "Record"
    SNAPSHOT = "snapshot", "Snapshots"


class JobState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    FINISHED = "finished", "Finished"
    FAILED = "failed", "Failed"


ACTIVE_STATES = (JobState.QUEUED, JobState.RUNNING)


class MediaJob(models.Model):
    """One worker's work on one live stream. A worker claims it with a
    conditional UPDATE on (state queued, attempt), so a duplicate delivery
    does nothing; while it runs it beats `heartbeat_at`; the beat task
    requeues a job whose heartbeat stopped (mediajobs/tasks.py)."""

    kind = models.CharField(max_length=16, choices=JobKind.choices)
    domain = models.ForeignKey(Domain, null=True, blank=True, on_delete=models.SET_NULL, related_name="media_jobs")
    domain_name = models.CharField(max_length=253)  # the ingest domain
    app = models.CharField(max_length=255)
    stream = models.CharField(max_length=255)  # the source stream
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.QUEUED)
    attempt = models.PositiveIntegerField(default=1)
    worker = models.CharField(max_length=255, blank=True, default="")
    # The media node that carries the source, as the worker reaches it.
    node_host = models.CharField(max_length=255)
    node_rtmp_port = models.PositiveIntegerField()
    node_http_port = models.PositiveIntegerField()
    queued_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    detail = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        db_table = "streams_mediajob"  # made by streams/ before issue 12
        ordering = ["-queued_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "domain_name", "app", "stream"],
                condition=Q(state__in=["queued", "running"]),
                name="one_active_media_job",
            )
        ]
        indexes = [models.Index(fields=["state", "heartbeat_at"], name="media_job_state_beat")]

    def __str__(self) -> str:
        return f"{self.kind} {self.stream_url} ({self.state})"

    @property
    def stream_url(self) -> str:
        return f"{self.domain_name}/{self.app}/{self.stream}"

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES


class Rendition(models.Model):
    """A rendition a transcode job produces, while `stopped` is false."""

    job = models.ForeignKey(MediaJob, on_delete=models.CASCADE, related_name="renditions")
    template_id = models.CharField(max_length=32)
    # Lazy renditions stop when nobody watched them for
    # LIVECENTER_TRANSCODE_IDLE_SECONDS.
    lazy = models.BooleanField(default=True)
    last_watched_at = models.DateTimeField()
    published_at = models.DateTimeField(null=True, blank=True)
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    stopped = models.BooleanField(default=False)

    class Meta:
        db_table = "streams_rendition"  # made by streams/ before issue 12
        ordering = ["template_id"]
        constraints = [models.UniqueConstraint(fields=["job", "template_id"], name="one_rendition_per_job")]

    def __str__(self) -> str:
        return f"{self.job.stream}_{self.template_id}"

    @property
    def stream(self) -> str:
        return f"{self.job.stream}_{self.template_id}"


class Recording(models.Model):
    """One recorded file (a split of a recording). `path` is relative to
    LIVECENTER_RECORDINGS_DIR; `ended_at` is null while it is written."""

    domain = models.ForeignKey(Domain, null=True, blank=True, on_delete=models.SET_NULL, related_name="recordings")
    domain_name = models.CharField(max_length=253)
    app = models.CharField(max_length=255)
    stream = models.CharField(max_length=255)
    job = models.ForeignKey(MediaJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="recordings")
    path = models.CharField(max_length=1024)
    format = models.CharField(max_length=8, default="mp4")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    duration_seconds = models.FloatField(default=0.0)
    # An HLS VOD recording of a stream whose HLS is encrypted (issue 16): the
    # AES-128 key of its segments, in hex, encrypted at rest like signing
    # keys; served as `{stem}.key` beside the segments. "" in clear.
    hls_key = EncryptedTextField(blank=True, default="")

    class Meta:
        db_table = "streams_recording"  # made by streams/ before issue 12
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["domain", "started_at"], name="recording_domain_started")]

    def __str__(self) -> str:
        return self.path

    @property
    def file_name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def key_file_name(self) -> str:
        """The name its playlist gives its key (hls_key), beside its segments."""
        return self.file_name.rsplit(".", 1)[0] + ".key"


class Snapshot(models.Model):
    """One JPEG; `path` is relative to LIVECENTER_SNAPSHOTS_DIR."""

    domain = models.ForeignKey(Domain, null=True, blank=True, on_delete=models.SET_NULL, related_name="snapshots")
    domain_name = models.CharField(max_length=253)
    app = models.CharField(max_length=255)
    stream = models.CharField(max_length=255)
    taken_at = models.DateTimeField()
    path = models.CharField(max_length=1024)
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    size_bytes = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "streams_snapshot"  # made by streams/ before issue 12
        ordering = ["-taken_at", "-id"]
        indexes = [models.Index(fields=["domain_name", "app", "stream", "taken_at"], name="snapshot_stream_taken")]

    def __str__(self) -> str:
        return self.path
