from __future__ import annotations

from rest_framework import serializers


class NodeSerializer(serializers.Serializer):
    """A NodeState (services.py)."""

    node_id = serializers.CharField(source="node.node_id")
    role = serializers.CharField(source="node.role", help_text='"center", "edge", or "center,edge" for a node alone')
    region = serializers.CharField(source="node.region", help_text="live center region; empty: every region")
    host = serializers.CharField(source="node.host", help_text="the address other nodes reach it on")
    listen_host = serializers.CharField(
        source="beat.listen_host",
        allow_null=True,
        default=None,
        help_text='the address it serves the ports below on ("0.0.0.0": every address); null while it is down',
    )
    rtmp_port = serializers.IntegerField(source="node.rtmp_port")
    http_port = serializers.IntegerField(source="node.http_port")
    srt_port = serializers.IntegerField(source="node.srt_port", allow_null=True)
    https_port = serializers.IntegerField(source="node.https_port", allow_null=True, help_text="null: no HTTPS")
    rtmps_port = serializers.IntegerField(source="node.rtmps_port", allow_null=True, help_text="null: no RTMPS")
    started_at = serializers.DateTimeField(source="node.started_at")
    health = serializers.ChoiceField(choices=["up", "down"])
    last_beat_age = serializers.FloatField(allow_null=True, help_text="seconds since its last heartbeat")
    load = serializers.FloatField(source="beat.load", allow_null=True, default=None)
    stream_count = serializers.SerializerMethodField()
    viewers = serializers.IntegerField(source="beat.viewers", allow_null=True, default=None)
    bitrate_in = serializers.FloatField(source="beat.bitrate_in", allow_null=True, default=None)
    bitrate_out = serializers.FloatField(source="beat.bitrate_out", allow_null=True, default=None)
    loop_lag_ms = serializers.FloatField(source="beat.loop_lag_ms", allow_null=True, default=None)
    streams = serializers.ListField(
        source="visible_streams", child=serializers.CharField(), help_text="its live streams on your domains"
    )

    relay_errors = serializers.DictField(
        child=serializers.CharField(), help_text="its streams on your domains that no center takes, and why"
    )

    def get_stream_count(self, state) -> int | None:
        return len(state.beat.streams) if state.beat is not None else None
