"""Shapes of the media workers' API (/api/v1/streams/, issue 7). Input
serializers check types only; the rules are in services.py."""

from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from domains.serializers import StrictSerializer
from streams.serializers import DomainQuerySerializer, domain_field

from .models import (
    MediaJob,
    ReconnectMode,
    RecordConfig,
    Recording,
    Rendition,
    Snapshot,
    SnapshotConfig,
    TemplateGroup,
    TranscodeTemplate,
    VideoProfile,
)

# --- Output -----------------------------------------------------------------


class TemplateSerializer(serializers.ModelSerializer):
    """A transcoding template (DescribeLiveStreamTranscodeInfo)."""

    domain_name = serializers.CharField(source="domain.domain_name", help_text="The ingest domain.")
    app_name = serializers.CharField(source="app", help_text="'*' for every app.")
    standard = serializers.BooleanField(source="is_standard", help_text="lld, lsd, lhd or lud: the preset's values.")

    class Meta:
        model = TranscodeTemplate
        fields = ["domain_name", "app_name", "template_id", "standard", "width", "height", "short_side",
                  "video_bitrate_kbps", "fps", "gop_seconds", "profile", "lazy", "created_at"]  # fmt: skip
        read_only_fields = fields

    def to_representation(self, template):
        data = super().to_representation(template)
        spec = template.spec()  # a standard template shows its preset
        data.update(short_side=spec.short_side, video_bitrate_kbps=spec.video_bitrate_kbps)
        return data


class GroupSerializer(serializers.ModelSerializer):
    domain_name = serializers.CharField(source="domain.domain_name")
    app_name = serializers.CharField(source="app")

    class Meta:
        model = TemplateGroup
        fields = ["domain_name", "app_name", "group_id", "template_ids", "created_at"]
        read_only_fields = fields


class RecordConfigSerializer(serializers.ModelSerializer):
    domain_name = serializers.CharField(source="domain.domain_name")
    app_name = serializers.CharField(source="app")

    class Meta:
        model = RecordConfig
        fields = ["domain_name", "app_name", "format", "cycle_seconds", "on_reconnect", "created_at"]
        read_only_fields = fields


class SnapshotConfigSerializer(serializers.ModelSerializer):
    domain_name = serializers.CharField(source="domain.domain_name")
    app_name = serializers.CharField(source="app")

    class Meta:
        model = SnapshotConfig
        fields = ["domain_name", "app_name", "interval_seconds", "created_at"]
        read_only_fields = fields


class RenditionSerializer(serializers.ModelSerializer):
    stream_name = serializers.CharField(source="stream")

    class Meta:
        model = Rendition
        fields = ["template_id", "stream_name", "lazy", "published_at", "width", "height", "last_watched_at", "stopped"]
        read_only_fields = fields


class JobSerializer(serializers.ModelSerializer):
    """A transcode, recording or snapshot series a worker runs."""

    domain_name = serializers.CharField(help_text="The ingest domain.")
    app_name = serializers.CharField(source="app")
    stream_name = serializers.CharField(source="stream")
    renditions = RenditionSerializer(many=True, read_only=True)

    class Meta:
        model = MediaJob
        fields = ["id", "kind", "domain_name", "app_name", "stream_name", "state", "attempt", "worker", "queued_at",
                  "started_at", "heartbeat_at", "finished_at", "detail", "renditions"]  # fmt: skip
        read_only_fields = fields


class RecordingSerializer(serializers.ModelSerializer):
    domain_name = serializers.CharField(help_text="The ingest domain.")
    app_name = serializers.CharField(source="app")
    stream_name = serializers.CharField(source="stream")
    start_time = serializers.DateTimeField(source="started_at")
    end_time = serializers.DateTimeField(source="ended_at", allow_null=True, help_text="Null while recording.")
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Recording
        fields = ["id", "domain_name", "app_name", "stream_name", "format", "file_name", "start_time", "end_time",
                  "size_bytes", "duration_seconds", "download_url"]  # fmt: skip
        read_only_fields = fields

    def get_download_url(self, recording: Recording) -> str:
        """The MP4, or the HLS VOD playlist (its segments are beside it, at
        relative URLs)."""
        return reverse("streams-api:recording-download", args=[recording.pk])


class SnapshotSerializer(serializers.ModelSerializer):
    """One snapshot (DescribeLiveStreamSnapshotInfo's LiveStreamSnapshotInfo)."""

    domain_name = serializers.CharField(help_text="The ingest domain.")
    app_name = serializers.CharField(source="app")
    stream_name = serializers.CharField(source="stream")
    create_time = serializers.DateTimeField(source="taken_at")
    image_url = serializers.SerializerMethodField()

    class Meta:
        model = Snapshot
        fields = ["id", "domain_name", "app_name", "stream_name", "create_time", "width", "height", "size_bytes",
                  "image_url"]  # fmt: skip
        read_only_fields = fields

    def get_image_url(self, snapshot: Snapshot) -> str:
        return reverse("streams-api:snapshot-image", args=[snapshot.pk])


# --- Input ------------------------------------------------------------------


class TemplateCreateSerializer(StrictSerializer):
    domain = domain_field(allow_blank=True)
    app = serializers.CharField(allow_blank=True, help_text="App name, or '*' for every app.")
    template_id = serializers.CharField(allow_blank=True, help_text="lld, lsd, lhd, lud, or your own id.")
    width = serializers.IntegerField(required=False, default=0, help_text="Custom only; 0 follows the source.")
    height = serializers.IntegerField(required=False, default=0)
    short_side = serializers.IntegerField(required=False, default=0, help_text="Custom only: the short side in px.")
    video_bitrate_kbps = serializers.IntegerField(required=False, default=0, help_text="Custom only: 1-6000.")
    fps = serializers.FloatField(required=False, default=0, help_text="Custom only: 1-60; 0 keeps the source's.")
    gop_seconds = serializers.FloatField(required=False, default=0, help_text="Custom only: 1-20; 0 follows.")
    profile = serializers.ChoiceField(choices=VideoProfile.values, required=False, default=VideoProfile.HIGH)
    lazy = serializers.BooleanField(
        required=False, default=True, help_text="Start on the first viewer (default), or whenever the source is live."
    )


class GroupCreateSerializer(StrictSerializer):
    domain = domain_field(allow_blank=True)
    app = serializers.CharField(allow_blank=True)
    group_id = serializers.CharField(allow_blank=True, help_text="1-10 letters, digits or '-'.")
    template_ids = serializers.ListField(child=serializers.CharField(), allow_empty=True)


class RecordConfigSetSerializer(StrictSerializer):
    domain = domain_field(allow_blank=True)
    app = serializers.CharField(allow_blank=True)
    cycle_seconds = serializers.IntegerField(required=False, default=6 * 3600, help_text="Split files this long.")
    on_reconnect = serializers.ChoiceField(
        choices=ReconnectMode.values,
        required=False,
        default=ReconnectMode.CONTINUE,
        help_text="When the publisher comes back within the node's reconnect grace: continue the file or start one.",
    )
    format = serializers.ChoiceField(
        choices=["mp4", "m3u8"], required=False, default="mp4", help_text="mp4, or m3u8 (HLS VOD)."
    )


class SnapshotConfigSetSerializer(StrictSerializer):
    domain = domain_field(allow_blank=True)
    app = serializers.CharField(allow_blank=True)
    interval_seconds = serializers.IntegerField(required=False, default=10, help_text="5-3600.")


class AppDeleteSerializer(StrictSerializer):
    domain = domain_field(allow_blank=True)
    app = serializers.CharField(allow_blank=True)


class TemplateDeleteSerializer(AppDeleteSerializer):
    template_id = serializers.CharField(allow_blank=True)


class GroupDeleteSerializer(AppDeleteSerializer):
    group_id = serializers.CharField(allow_blank=True)


class StreamFilterSerializer(DomainQuerySerializer):
    app = serializers.CharField(required=False, allow_blank=True)
    stream = serializers.CharField(required=False, allow_blank=True)


class JobQuerySerializer(DomainQuerySerializer):
    all = serializers.BooleanField(required=False, default=False, help_text="Finished jobs too.")
