"""The monitoring REST API (/api/v1/monitoring/), in the manner of streams/api.py:
check input types, call one service (scoped to the operator's own domains),
serialise."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from livecenter.lib.api import call_service, valid_data
from streams.serializers import DomainQuerySerializer

from . import alarms, serializers, services, troubleshoot, usage
from .models import AlarmRule

TAGS = ["monitoring"]
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class DomainFrameRatesView(APIView):
    @extend_schema(
        summary="Frame rates and bitrate of every stream of a domain at a time"
        " (DescribeLiveDomainFrameRateAndBitRateData)",
        parameters=[serializers.DomainTimeQuerySerializer],
        responses=serializers.DomainFrameRatesSerializer,
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        f = valid_data(serializers.DomainTimeQuerySerializer, request.query_params)
        result = call_service(services.domain_frame_rates, request.user, f["domain"], f.get("query_time"))
        return Response(serializers.DomainFrameRatesSerializer(result).data)


class StreamSeriesView(APIView):
    @extend_schema(
        summary="One stream's frame rates and bitrate over a time range (DescribeLiveStreamBitRateData)",
        parameters=[serializers.StreamRangeQuerySerializer],
        responses=serializers.StreamSeriesSerializer,
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        f = valid_data(serializers.StreamRangeQuerySerializer, request.query_params)
        result = call_service(
            services.stream_series,
            request.user,
            f["domain"],
            f["app"],
            f["stream"],
            start=f.get("start_time"),
            end=f.get("end_time"),
        )
        return Response(serializers.StreamSeriesSerializer(result).data)


class OnlineUsersView(APIView):
    @extend_schema(
        summary="Online users of every stream of a domain at a time (DescribeLiveDomainOnlineUserNum)",
        parameters=[serializers.DomainTimeQuerySerializer],
        responses=serializers.OnlineUsersSerializer,
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        f = valid_data(serializers.DomainTimeQuerySerializer, request.query_params)
        result = call_service(services.online_users, request.user, f["domain"], f.get("query_time"))
        return Response(serializers.OnlineUsersSerializer(result).data)


class PlaybackQualityView(APIView):
    @extend_schema(
        summary="Viewers' playback quality from the players' beacons: stall ratio, time to first frame,"
        " fallbacks, errors, latency; in all, by protocol and by viewer region",
        parameters=[serializers.PlaybackQuerySerializer],
        responses=serializers.PlaybackQualitySerializer,
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        f = valid_data(serializers.PlaybackQuerySerializer, request.query_params)
        result = call_service(
            services.playback_quality, request.user, f["domain"], f.get("app"), f.get("stream"),
            start=f.get("start_time"), end=f.get("end_time"),
        )  # fmt: skip
        return Response(serializers.PlaybackQualitySerializer(result).data)


class MetricsView(APIView):
    @extend_schema(
        summary="The newest figures of every live stream in the Prometheus text format (0.0.4)",
        responses={(200, "text/plain"): OpenApiResponse(OpenApiTypes.STR)},
        tags=TAGS,
    )
    def get(self, request: Request) -> HttpResponse:
        return HttpResponse(services.prometheus_text(request.user), content_type=PROMETHEUS_CONTENT_TYPE)


class TroubleshootView(APIView):
    @extend_schema(
        summary="Check an ingest or playback URL step by step and say what to fix",
        request=serializers.TroubleshootSerializer,
        responses=serializers.TroubleshootResultSerializer,
        tags=TAGS,
    )
    def post(self, request: Request) -> Response:
        data = valid_data(serializers.TroubleshootSerializer, request.data)
        report = troubleshoot.check_url(request.user, data["url"])
        return Response(serializers.TroubleshootResultSerializer(report).data)


class UsageView(APIView):
    @extend_schema(
        summary="Bandwidth, traffic and viewers of a domain, app or stream over a time range"
        " (DescribeLiveDomainBpsData, TrafficData, PushBpsData, PushTrafficData, OnlineUserNum)",
        parameters=[serializers.UsageQuerySerializer],
        responses=serializers.UsageSeriesSerializer,
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        return Response(serializers.UsageSeriesSerializer(_usage(request)).data)


class UsageCsvView(APIView):
    @extend_schema(
        summary="The same as usage/, as CSV: a line a period, then the range's total",
        parameters=[serializers.UsageQuerySerializer],
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR)},
        tags=TAGS,
    )
    def get(self, request: Request) -> HttpResponse:
        series = _usage(request)
        response = HttpResponse(usage.usage_csv(series), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{usage.csv_filename(series)}"'
        return response


def _usage(request: Request) -> usage.UsageSeries:
    f = valid_data(serializers.UsageQuerySerializer, request.query_params)
    return call_service(
        usage.usage_series,
        request.user,
        f["domain"],
        f["app"],
        f["stream"],
        start=f.get("start_time"),
        end=f.get("end_time"),
        granularity=f.get("interval"),
    )


# --- Alarms (alarms.py) ----------------------------------------------------------------------

ALARM_TAGS = ["alarms"]


def _owned_rule(request: Request, rule_id: int) -> AlarmRule:
    try:
        return alarms.get_rule(request.user, rule_id)
    except AlarmRule.DoesNotExist:
        raise NotFound("no such alarm rule") from None


@extend_schema_view(
    get=extend_schema(summary="List alarm rules", parameters=[DomainQuerySerializer], tags=ALARM_TAGS),
    post=extend_schema(
        summary="Add an alarm rule (CreateLiveStreamMonitor)",
        request=serializers.AlarmRuleCreateSerializer,
        responses={201: serializers.AlarmRuleSerializer},
        tags=ALARM_TAGS,
    ),
)
class AlarmRuleListView(generics.ListAPIView):
    serializer_class = serializers.AlarmRuleSerializer

    def get_queryset(self):
        domain = valid_data(DomainQuerySerializer, self.request.query_params).get("domain")
        return call_service(alarms.list_rules, self.request.user, domain)

    def post(self, request: Request) -> Response:
        data = dict(valid_data(serializers.AlarmRuleCreateSerializer, request.data))
        rule = call_service(alarms.add_rule, request.user, data.pop("domain"), **data)
        return Response(serializers.AlarmRuleSerializer(rule).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=ALARM_TAGS)
class AlarmRuleView(APIView):
    @extend_schema(summary="Show an alarm rule", responses=serializers.AlarmRuleSerializer)
    def get(self, request: Request, rule_id: int) -> Response:
        return Response(serializers.AlarmRuleSerializer(_owned_rule(request, rule_id)).data)

    @extend_schema(
        summary="Change an alarm rule; a field left out keeps its value (its open alarms close)",
        request=serializers.AlarmRuleUpdateSerializer,
        responses=serializers.AlarmRuleSerializer,
    )
    def patch(self, request: Request, rule_id: int) -> Response:
        rule = _owned_rule(request, rule_id)
        data = valid_data(serializers.AlarmRuleUpdateSerializer, request.data)
        return Response(serializers.AlarmRuleSerializer(call_service(alarms.update_rule, rule, **data)).data)

    @extend_schema(summary="Delete an alarm rule (its open alarms close; past ones stay)", responses={204: None})
    def delete(self, request: Request, rule_id: int) -> Response:
        alarms.delete_rule(_owned_rule(request, rule_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    get=extend_schema(
        summary="List alarms, newest first", parameters=[serializers.AlarmQuerySerializer], tags=ALARM_TAGS
    )
)
class AlarmListView(generics.ListAPIView):
    serializer_class = serializers.AlarmEventSerializer

    def get_queryset(self):
        f = valid_data(serializers.AlarmQuerySerializer, self.request.query_params)
        return call_service(alarms.list_alarms, self.request.user, f.get("domain"), f.get("state"))
