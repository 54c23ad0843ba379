"""Shapes of the streams API (/api/v1/streams/).

Field names are the reference API's (aliyun_api_models.md), in snake case:
DescribeLiveStreamsOnlineList's `PublishTime` is `publish_time`, and so on.
Input serializers check types only; the rules are in services.py.
"""

from __future__ import annotations

from rest_framework import serializers

from domains.serializers import StrictSerializer

from . import services
from .models import ControlAction, PublishSession, StreamBlock, StreamControlEvent

# --- Output -----------------------------------------------------------------


class _SessionSerializer(serializers.ModelSerializer):
    domain_name = serializers.SerializerMethodField(
        help_text="The main streaming domain that plays the stream; null when the ingest domain has none."
    )
    publish_domain = serializers.CharField(source="domain_name", help_text="The ingest domain.")
    app_name = serializers.CharField(source="app")
    stream_name = serializers.CharField(source="stream")
    publish_time = serializers.DateTimeField(source="started_at")
    publish_url = serializers.CharField(help_text="The URL the publisher used, without auth_key.")
    protocol = serializers.CharField(help_text="The ingest protocol: rtmp, srt, whip.")
    client_ip = serializers.CharField(help_text="The publisher's IP address.")
    node = serializers.CharField(
        source="node_id", help_text="The media node that holds the publisher: the edge it pushed to, or the center."
    )
    publish_type = serializers.CharField(
        help_text="edge: the publisher pushed to an edge node, which relays the stream to a center node;"
        " center: it pushed to the center node."
    )
    server_ip = serializers.CharField(help_text="The address of the node that holds the publisher.")
    center_node = serializers.CharField(
        source="center_node_id",
        help_text="The center node carrying the stream (transcodes, recordings, snapshots); empty while an edge's"
        " relay has none.",
    )
    transcoded = serializers.SerializerMethodField(help_text="False: these are source streams.")

    def get_domain_name(self, session: PublishSession) -> str | None:
        streaming = getattr(session.domain, "streaming_domain", None) if session.domain_id else None
        return streaming.domain_name if streaming is not None else None

    def get_transcoded(self, session: PublishSession) -> bool:
        return False


class OnlineStreamSerializer(_SessionSerializer):
    """A live stream (DescribeLiveStreamsOnlineList's LiveStreamOnlineInfo)."""

    video_data_rate = serializers.IntegerField(source="video_kbps", help_text="kbit/s, measured.")
    audio_data_rate = serializers.IntegerField(source="audio_kbps", help_text="kbit/s, measured.")
    frame_rate = serializers.FloatField(help_text="Frames per second, measured.")
    video_codec = serializers.CharField(help_text="H264, or empty before the first video header.")
    audio_codec = serializers.CharField(help_text="AAC, MP3, or empty before the first audio header.")
    has_bframes = serializers.BooleanField(
        help_text="The video has B-frames: RTS (WebRTC) plays it only with HTML5 auto-transcoding on."
    )

    class Meta:
        model = PublishSession
        fields = [
            "domain_name",
            "publish_domain",
            "app_name",
            "stream_name",
            "publish_time",
            "publish_url",
            "protocol",
            "client_ip",
            "client_addr",
            "node",
            "publish_type",
            "server_ip",
            "center_node",
            "session_id",
            "video_codec",
            "video_profile",
            "video_data_rate",
            "frame_rate",
            "width",
            "height",
            "audio_codec",
            "audio_data_rate",
            "audio_sample_rate",
            "audio_channels",
            "has_bframes",
            "transcoded",
        ]
        read_only_fields = fields


class PublishRecordSerializer(_SessionSerializer):
    """A publish session (DescribeLiveStreamsPublishList's LiveStreamPublishInfo)."""

    stream_url = serializers.CharField(help_text="{ingest domain}/{app}/{stream}")
    stop_time = serializers.DateTimeField(source="stopped_at", allow_null=True, help_text="Null while live.")
    stop_reason = serializers.CharField(help_text="Empty for a clean unpublish, else why the session ended.")

    class Meta:
        model = PublishSession
        fields = [
            "domain_name",
            "publish_domain",
            "app_name",
            "stream_name",
            "stream_url",
            "publish_url",
            "publish_time",
            "stop_time",
            "stop_reason",
            "protocol",
            "client_addr",
            "client_ip",
            "node",
            "publish_type",
            "server_ip",
            "center_node",
            "session_id",
            "transcoded",
        ]
        read_only_fields = fields


class BlockedStreamSerializer(serializers.ModelSerializer):
    """A forbidden stream (DescribeLiveStreamsBlockList)."""

    domain_name = serializers.CharField(source="domain.domain_name", help_text="The ingest domain.")
    app_name = serializers.CharField(source="app")
    stream_name = serializers.CharField(source="stream")
    stream_url = serializers.CharField(help_text="{ingest domain}/{app}/{stream}")
    resume_time = serializers.DateTimeField(source="resume_at", help_text="When publishing is allowed again.")
    forbidden_at = serializers.DateTimeField(source="created_at")
    forbidden_by = serializers.CharField(source="created_by.get_username", default=None, allow_null=True)

    class Meta:
        model = StreamBlock
        fields = ["domain_name", "app_name", "stream_name", "stream_url", "resume_time", "forbidden_at", "forbidden_by"]
        read_only_fields = fields


class ControlEventSerializer(serializers.ModelSerializer):
    """What an operator did (DescribeLiveStreamsControlHistory)."""

    action = serializers.ChoiceField(choices=ControlAction.choices)
    domain_name = serializers.CharField(help_text="The ingest domain.")
    app_name = serializers.CharField(source="app", help_text="'*' for a resume of every app.")
    stream_name = serializers.CharField(source="stream")
    time_stamp = serializers.DateTimeField(source="at")
    by = serializers.CharField(source="by.get_username", default=None, allow_null=True)

    class Meta:
        model = StreamControlEvent
        fields = ["action", "domain_name", "app_name", "stream_name", "time_stamp", "by", "detail"]
        read_only_fields = fields


class ForbidResultSerializer(serializers.Serializer):
    domain_name = serializers.CharField(help_text="The ingest domain.")
    app_name = serializers.CharField(source="app")
    stream_name = serializers.CharField(source="stream")
    oneshot = serializers.BooleanField()
    resume_time = serializers.DateTimeField(
        source="resume_at", allow_null=True, help_text="Null for an interruption only this once."
    )


class ResumeResultSerializer(serializers.Serializer):
    domain_name = serializers.CharField(help_text="The ingest domain.")
    app_name = serializers.CharField(source="app")
    stream_name = serializers.CharField(source="stream")
    resumed = serializers.IntegerField(help_text="How many forbidden streams were resumed; 0 if none was forbidden.")


# --- Input ------------------------------------------------------------------


# Query parameters, strict like the bodies: a misspelt filter is an error,
# not a silently unfiltered list. `page` and `format` are DRF's own.
class QuerySerializer(StrictSerializer):
    def to_internal_value(self, data):
        return super().to_internal_value({k: v for k, v in data.items() if k not in ("page", "format")})


def domain_field(**kwargs) -> serializers.CharField:
    return serializers.CharField(
        help_text="An ingest domain, or a streaming domain (stands for the ingest domain it plays).", **kwargs
    )


class DomainQuerySerializer(QuerySerializer):
    domain = domain_field(required=False, allow_blank=True)


class OnlineQuerySerializer(DomainQuerySerializer):
    app = serializers.CharField(required=False, allow_blank=True, help_text="Exact app name.")
    stream = serializers.CharField(required=False, allow_blank=True)
    query_type = serializers.ChoiceField(
        choices=services.QUERY_TYPES,
        default="fuzzy",
        help_text="How stream matches: fuzzy (contains, the default) or strict (equals).",
    )


class HistoryQuerySerializer(OnlineQuerySerializer):
    start_time = serializers.DateTimeField(required=False, help_text="ISO 8601; default: a day before end_time.")
    end_time = serializers.DateTimeField(required=False, help_text="ISO 8601; default: now. At most 30 days.")
    order_by = serializers.ChoiceField(choices=list(services.HISTORY_ORDERS), default=services.DEFAULT_HISTORY_ORDER)


class ForbidSerializer(StrictSerializer):
    domain = domain_field(allow_blank=True)
    app = serializers.CharField(allow_blank=True)
    stream = serializers.CharField(allow_blank=True)
    resume_time = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="ISO 8601. Default: six months from now (LIVECENTER_FORBID_DEFAULT_DAYS).",
    )
    oneshot = serializers.BooleanField(
        default=False, help_text="Only this once: cut the publisher without blocking the stream."
    )


class ResumeSerializer(StrictSerializer):
    domain = domain_field(allow_blank=True)
    app = serializers.CharField(allow_blank=True, help_text="'*' resumes the stream name in every app.")
    stream = serializers.CharField(allow_blank=True)
