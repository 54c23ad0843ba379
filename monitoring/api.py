"""The monitoring REST API (/api/v1/monitoring/), in the manner of streams/api.py:
check input types, call one service (scoped to the operator's own domains),
serialise."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from livecenter.lib.api import call_service, valid_data

from . import serializers, services, troubleshoot

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
