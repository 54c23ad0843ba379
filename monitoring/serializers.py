"""Shapes of the monitoring API (/api/v1/monitoring/).

Field names are the reference API's (aliyun_api_models.md) in snake case, as
in streams/serializers.py: DescribeLiveDomainFrameRateAndBitRateData's
`FrameRateAndBitRateInfos.FrameRateAndBitRateInfo[].BitRate` is
`frame_rate_and_bit_rate_infos[].bit_rate`, in bytes per second as there.
"""

from __future__ import annotations

from rest_framework import serializers

from domains.serializers import StrictSerializer
from streams.serializers import QuerySerializer, domain_field

from .models import ALARM_UNITS, AlarmComparison, AlarmEvent, AlarmMetric, AlarmRule, StreamSample

# --- Input ---------------------------------------------------------------------------


class DomainTimeQuerySerializer(QuerySerializer):
    domain = domain_field()
    query_time = serializers.DateTimeField(required=False, help_text="ISO 8601, UTC; default: now.")


class StreamRangeQuerySerializer(QuerySerializer):
    domain = domain_field()
    app = serializers.CharField()
    stream = serializers.CharField()
    start_time = serializers.DateTimeField(required=False, help_text="ISO 8601; default: an hour before end_time.")
    end_time = serializers.DateTimeField(required=False, help_text="ISO 8601; default: now. At most an hour.")


class PlaybackQuerySerializer(QuerySerializer):
    domain = domain_field()
    app = serializers.CharField(required=False, help_text="One app's streams; default: every app.")
    stream = serializers.CharField(required=False, help_text="One stream (with app); default: every stream.")
    start_time = serializers.DateTimeField(required=False, help_text="ISO 8601; default: an hour before end_time.")
    end_time = serializers.DateTimeField(required=False, help_text="ISO 8601; default: now. At most a day.")


class TroubleshootSerializer(StrictSerializer):
    url = serializers.CharField(
        max_length=4096,
        help_text="An ingest or playback URL: rtmp://, http(s)://….flv, .m3u8, .whep or .whip, artc://, srt://.",
    )


# --- Output ---------------------------------------------------------------------------------


def _stream_url(sample: StreamSample) -> str:
    return f"rtmp://{sample.domain_name}/{sample.app}/{sample.stream}"


class FrameRateAndBitRateInfoSerializer(serializers.ModelSerializer):
    """One stream at one time (FrameRateAndBitRateInfo)."""

    stream_url = serializers.SerializerMethodField(help_text="rtmp://{ingest domain}/{app}/{stream}")
    time = serializers.DateTimeField(source="at", help_text="When the sample was taken (the end of its second).")
    video_frame_rate = serializers.FloatField(help_text="Frames per second.")
    audio_frame_rate = serializers.FloatField(help_text="Frames per second (AAC: sample rate / 1024).")
    bit_rate = serializers.SerializerMethodField(help_text="Bytes per second in, audio and video.")

    class Meta:
        model = StreamSample
        fields = ["stream_url", "time", "video_frame_rate", "audio_frame_rate", "bit_rate"]
        read_only_fields = fields

    def get_stream_url(self, sample: StreamSample) -> str:
        return _stream_url(sample)

    def get_bit_rate(self, sample: StreamSample) -> float:
        return round(sample.bitrate / 8, 2)


class SrtLinkSerializer(serializers.Serializer):
    """The publisher's SRT link over the second (livecenter.media.policy.SrtSessionStats)."""

    peer = serializers.CharField(help_text="The caller's address, ip:port.")
    encrypted = serializers.BooleanField(help_text="The caller encrypts with the ingest domain's passphrase.")
    latency_ms = serializers.IntegerField(help_text="The negotiated receiver (TSBPD) latency.")
    rtt_ms = serializers.FloatField(help_text="Smoothed round-trip time.")
    rtt_var_ms = serializers.FloatField(help_text="Round-trip time variation.")
    receive_buffer_packets = serializers.IntegerField(help_text="Packets held in the receive buffer.")
    receive_buffer_ms = serializers.IntegerField(help_text="The sender time they span.")
    packets_received_per_second = serializers.FloatField()
    packets_lost_per_second = serializers.FloatField(help_text="Seen missing, whether recovered or not.")
    packets_retransmitted_per_second = serializers.FloatField(help_text="Received as retransmissions.")
    packets_dropped_per_second = serializers.FloatField(help_text="Never delivered: too late to play.")
    packets_received = serializers.IntegerField(help_text="Since the session started.")
    packets_lost = serializers.IntegerField(help_text="Since the session started.")
    packets_retransmitted = serializers.IntegerField(help_text="Since the session started.")
    packets_dropped = serializers.IntegerField(help_text="Since the session started.")


class WhipLinkSerializer(serializers.Serializer):
    """The publisher's WebRTC link over the second (livecenter.media.policy.WhipSessionStats)."""

    session_id = serializers.CharField(help_text="The WHIP session (the last part of its resource URL).")
    peer = serializers.CharField(help_text="The address that POSTed the offer, ip:port.")
    video_codec = serializers.CharField(
        allow_blank=True, help_text="As the publisher sends it: H264, VP8; empty without video."
    )
    audio_codec = serializers.CharField(
        allow_blank=True, help_text="As the publisher sends it: opus; empty without audio."
    )
    connection_state = serializers.CharField(help_text="The peer connection's: new, connecting, connected, ...")
    rtt_ms = serializers.FloatField(help_text="Round-trip time of a STUN check on the ICE pair; 0 until measured.")
    jitter_ms = serializers.FloatField(help_text="The video's interarrival jitter (RFC 3550 A.8).")
    packets_received_per_second = serializers.FloatField(help_text="Audio and video, retransmissions included.")
    packets_lost_per_second = serializers.FloatField(help_text="Never received (RFC 3550 A.3).")
    nacks_sent_per_second = serializers.FloatField(help_text="Packets the node asked for again (RTCP NACK).")
    packets_received = serializers.IntegerField(help_text="Since the session started.")
    packets_lost = serializers.IntegerField(help_text="Since the session started.")
    nacks_sent = serializers.IntegerField(help_text="Since the session started.")
    keyframe_requests = serializers.IntegerField(help_text="PLIs the node sent, since the session started.")
    frames_lost = serializers.IntegerField(
        help_text="Frames given up on (a gap not repaired in time), since the start."
    )


class StreamBitRateInfoSerializer(FrameRateAndBitRateInfoSerializer):
    """One second of a stream's series, with the detail operation's split by track."""

    video_bit_rate = serializers.FloatField(source="video_bitrate", help_text="Bits per second.")
    audio_bit_rate = serializers.FloatField(source="audio_bitrate", help_text="Bits per second.")
    keyframe_interval_ms = serializers.IntegerField()
    bframes = serializers.BooleanField()
    timestamp_jumps = serializers.IntegerField()
    viewers = serializers.DictField(child=serializers.IntegerField(), help_text="Viewers by protocol.")
    bit_rate_out = serializers.DictField(
        source="bitrate_out", child=serializers.FloatField(), help_text="Bits per second out, by protocol."
    )
    srt = SrtLinkSerializer(allow_null=True, help_text="The SRT link, when the stream came in over SRT; else null.")
    whip = WhipLinkSerializer(
        allow_null=True, help_text="The WebRTC link, when the stream came in over WHIP; else null."
    )

    class Meta(FrameRateAndBitRateInfoSerializer.Meta):
        fields = [
            *FrameRateAndBitRateInfoSerializer.Meta.fields,
            "video_bit_rate",
            "audio_bit_rate",
            "keyframe_interval_ms",
            "bframes",
            "timestamp_jumps",
            "viewers",
            "bit_rate_out",
            "srt",
            "whip",
        ]
        read_only_fields = fields


class DomainFrameRatesSerializer(serializers.Serializer):
    """DescribeLiveDomainFrameRateAndBitRateData."""

    domain_name = serializers.CharField(help_text="The ingest domain.")
    query_time = serializers.DateTimeField()
    frame_rate_and_bit_rate_infos = FrameRateAndBitRateInfoSerializer(many=True)


class StreamSeriesSerializer(serializers.Serializer):
    """DescribeLiveStreamBitRateData."""

    stream_url = serializers.CharField()
    start_time = serializers.DateTimeField()
    end_time = serializers.DateTimeField()
    frame_rate_and_bit_rate_infos = StreamBitRateInfoSerializer(many=True)


class UserNumberInfoSerializer(serializers.Serializer):
    transcode_template = serializers.CharField(help_text="Empty for the original stream.")
    user_number = serializers.IntegerField()


class StreamUsersSerializer(serializers.Serializer):
    app_name = serializers.CharField()
    stream_name = serializers.CharField()
    infos = serializers.SerializerMethodField()
    protocols = serializers.DictField(child=serializers.IntegerField(), help_text="Viewers by protocol.")

    def get_infos(self, row) -> list[dict]:
        return [{"transcode_template": row.transcode_template, "user_number": row.user_number}]


class OnlineUsersSerializer(serializers.Serializer):
    """DescribeLiveDomainOnlineUserNum."""

    domain_name = serializers.CharField(help_text="The main streaming domain (the ingest domain when it has none).")
    query_time = serializers.DateTimeField()
    stream_count = serializers.IntegerField()
    user_count = serializers.IntegerField()
    online_user_info = StreamUsersSerializer(source="streams", many=True)


class CheckStepSerializer(serializers.Serializer):
    name = serializers.CharField()
    title = serializers.CharField()
    status = serializers.ChoiceField(choices=["pass", "fail", "warn", "skip"])
    reason = serializers.CharField()
    advice = serializers.CharField(allow_blank=True)


class TroubleshootResultSerializer(serializers.Serializer):
    url = serializers.CharField()
    kind = serializers.CharField(allow_blank=True, help_text="ingest, playback, or empty when the URL does not parse.")
    ok = serializers.BooleanField(help_text="No step failed.")
    steps = CheckStepSerializer(many=True)


# --- Usage statistics (usage.py) -----------------------------------------------------------


class UsageQuerySerializer(QuerySerializer):
    domain = domain_field()
    app = serializers.CharField(required=False, allow_blank=True, default="", help_text="Default: the whole domain.")
    stream = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Default: the whole app (needs `app`)."
    )
    start_time = serializers.DateTimeField(required=False, help_text="ISO 8601; default: a day before end_time.")
    end_time = serializers.DateTimeField(required=False, help_text="ISO 8601; default: now.")
    interval = serializers.ChoiceField(
        choices=[60, 300, 3600, 86400],
        required=False,
        help_text="Seconds a point covers; default: chosen from the range (up to 3 h: 60; 2 days: 300;"
        " 31 days: 3600; longer: 86400).",
    )


class UsagePointSerializer(serializers.Serializer):
    """One period's usage (usage.py defines each figure)."""

    time_stamp = serializers.DateTimeField(source="start", help_text="The start of the period (UTC).")
    bytes_in = serializers.IntegerField(help_text="Ingest traffic (PushTrafficData), bytes.")
    bytes_out = serializers.IntegerField(help_text="Playback traffic (TrafficData), bytes.")
    bytes_out_by_protocol = serializers.DictField(child=serializers.IntegerField(), help_text="Bytes, by protocol.")
    average_bps_in = serializers.FloatField(help_text="Ingest bandwidth (PushBpsData), the period's average, bit/s.")
    average_bps_out = serializers.FloatField(help_text="Playback bandwidth (BpsData), the period's average, bit/s.")
    peak_bps_in = serializers.FloatField(help_text="The highest one-second ingest bandwidth, bit/s.")
    peak_bps_out = serializers.FloatField(help_text="The highest one-second playback bandwidth, bit/s.")
    p95_bps_in = serializers.FloatField(help_text="95th percentile of the 5-minute ingest bandwidths, bit/s.")
    p95_bps_out = serializers.FloatField(help_text="95th percentile of the 5-minute playback bandwidths, bit/s.")
    peak_viewers = serializers.IntegerField(help_text="The most viewers at one second (OnlineUserNum).")
    average_viewers = serializers.FloatField(help_text="Viewer-seconds / the period.")
    unique_viewers = serializers.IntegerField(help_text="Distinct viewers: exact up to 64, else within 4.6 % (1 σ).")


class UsageSeriesSerializer(serializers.Serializer):
    domain_name = serializers.CharField(help_text="The ingest domain.")
    app = serializers.CharField(help_text='"" for the whole domain.')
    stream = serializers.CharField(help_text='"" for the whole app or domain.')
    start_time = serializers.DateTimeField(help_text="The range, widened to whole periods.")
    end_time = serializers.DateTimeField()
    interval = serializers.IntegerField(source="granularity", help_text="Seconds a point covers.")
    data = UsagePointSerializer(source="points", many=True, help_text="A point a period; zeros where none.")
    summary = UsagePointSerializer(help_text="The whole range; its time_stamp is the range's start.")


# --- Alarms (alarms.py) ------------------------------------------------------------------


THRESHOLD_HELP = "fps, kbit/s, seconds (keyframe interval; interruption: without data), or % (stall ratio)."


class AlarmRuleSerializer(serializers.ModelSerializer):
    domain = serializers.CharField(source="domain.domain_name", read_only=True, help_text="The ingest domain.")
    app = serializers.CharField(help_text="Empty: every app of the domain.")
    unit = serializers.SerializerMethodField(help_text="The threshold's unit.")
    condition = serializers.CharField(read_only=True, help_text="The rule in words.")

    class Meta:
        model = AlarmRule
        fields = ["id", "domain", "app", "metric", "comparison", "threshold", "unit", "duration_seconds", "enabled",
                  "condition", "created_at", "updated_at"]  # fmt: skip

    def get_unit(self, rule: AlarmRule) -> str:
        return ALARM_UNITS.get(rule.metric, "")


class AlarmRuleUpdateSerializer(StrictSerializer):
    fixed_fields = frozenset({"domain"})

    app = serializers.CharField(required=False, allow_blank=True, help_text="Empty: every app of the domain.")
    metric = serializers.ChoiceField(required=False, choices=AlarmMetric.choices)
    comparison = serializers.ChoiceField(
        required=False, choices=AlarmComparison.choices, help_text="Default: the metric's own (bitrate: below)."
    )
    threshold = serializers.FloatField(required=False, help_text=THRESHOLD_HELP)
    duration_seconds = serializers.IntegerField(
        required=False, help_text="How long the condition holds before the alarm opens, and is clear before it closes."
    )
    enabled = serializers.BooleanField(required=False)


class AlarmRuleCreateSerializer(AlarmRuleUpdateSerializer):
    fixed_fields = frozenset()

    domain = domain_field()
    metric = serializers.ChoiceField(choices=AlarmMetric.choices)
    threshold = serializers.FloatField(help_text=THRESHOLD_HELP)


class AlarmQuerySerializer(QuerySerializer):
    domain = domain_field(required=False, allow_blank=True)
    state = serializers.ChoiceField(choices=["open", "closed"], required=False, help_text="Default: both.")


class AlarmEventSerializer(serializers.ModelSerializer):
    domain = serializers.CharField(source="domain_name", read_only=True)
    rule = serializers.PrimaryKeyRelatedField(read_only=True, help_text="Null once the rule is deleted.")
    unit = serializers.CharField(read_only=True)
    condition = serializers.CharField(read_only=True)
    open = serializers.BooleanField(source="is_open", read_only=True)

    class Meta:
        model = AlarmEvent
        fields = ["id", "rule", "domain", "app", "stream", "metric", "comparison", "threshold", "unit", "value",
                  "condition", "open", "started_at", "ended_at", "end_reason"]  # fmt: skip


class TtffSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="First frames reported.")
    p50 = serializers.IntegerField(allow_null=True, help_text="ms: the upper bound of the bucket holding the median.")
    p90 = serializers.IntegerField(allow_null=True)
    p99 = serializers.IntegerField(allow_null=True)
    buckets = serializers.ListField(
        child=serializers.DictField(), help_text='[{"le": upper bound in ms (null: above the last), "count": n}]'
    )


class PlaybackFiguresSerializer(serializers.Serializer):
    """What viewers' players reported (monitoring.playback)."""

    sessions = serializers.IntegerField(help_text="Plays started.")
    watch_seconds = serializers.FloatField(help_text="From the first frame on, stalls included.")
    stalls = serializers.IntegerField()
    stall_seconds = serializers.FloatField()
    stall_ratio = serializers.FloatField(allow_null=True, help_text="Stall time over watch time.")
    ttff_ms = TtffSerializer(help_text="Time to first frame.")
    latency_p50_ms = serializers.IntegerField(
        allow_null=True, help_text="Glass-to-glass, where the stream carries the calibrator's timecode."
    )
    bitrate_switches = serializers.IntegerField()
    fallbacks = serializers.DictField(child=serializers.IntegerField(), help_text='"rts>flv": count')
    errors = serializers.DictField(child=serializers.IntegerField(), help_text="kind: count")


class PlaybackQualitySerializer(serializers.Serializer):
    domain = serializers.CharField(help_text="The ingest domain.")
    app = serializers.CharField(allow_null=True)
    stream = serializers.CharField(allow_null=True)
    start_time = serializers.DateTimeField()
    end_time = serializers.DateTimeField()
    total = PlaybackFiguresSerializer()
    by_protocol = serializers.DictField(child=PlaybackFiguresSerializer())
    by_region = serializers.DictField(child=PlaybackFiguresSerializer())
