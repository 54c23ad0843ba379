"""The streams REST API (/api/v1/streams/), in the manner of domains/api.py.

Each view checks input types with a serializer, calls one service (which
scopes everything to the operator's own domains) and serialises the result;
a service's ValidationError is a 400 whose JSON names the field.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from livecenter.lib.api import call_service, valid_data

from . import serializers, services

TAGS = ["streams"]


class _FilteredListView(generics.ListAPIView):
    query_serializer: type[serializers.QuerySerializer]

    def filters(self) -> dict:
        return valid_data(self.query_serializer, self.request.query_params)


@extend_schema_view(
    get=extend_schema(
        summary="List live streams (DescribeLiveStreamsOnlineList)",
        parameters=[serializers.OnlineQuerySerializer],
        tags=TAGS,
    )
)
class OnlineStreamListView(_FilteredListView):
    serializer_class = serializers.OnlineStreamSerializer
    query_serializer = serializers.OnlineQuerySerializer

    def get_queryset(self):
        f = self.filters()
        return call_service(
            services.list_online_streams,
            self.request.user,
            f.get("domain"),
            app=f.get("app"),
            stream=f.get("stream"),
            query_type=f["query_type"],
        )


@extend_schema_view(
    get=extend_schema(
        summary="List publish sessions in a time range (DescribeLiveStreamsPublishList)",
        parameters=[serializers.HistoryQuerySerializer],
        tags=TAGS,
    )
)
class PublishHistoryView(_FilteredListView):
    serializer_class = serializers.PublishRecordSerializer
    query_serializer = serializers.HistoryQuerySerializer

    def get_queryset(self):
        f = self.filters()
        return call_service(
            services.list_publish_history,
            self.request.user,
            f.get("domain"),
            start=f.get("start_time"),
            end=f.get("end_time"),
            app=f.get("app"),
            stream=f.get("stream"),
            query_type=f["query_type"],
            order_by=f["order_by"],
        )


@extend_schema_view(
    get=extend_schema(
        summary="List forbidden streams (DescribeLiveStreamsBlockList)",
        parameters=[serializers.DomainQuerySerializer],
        tags=TAGS,
    )
)
class BlockedStreamListView(_FilteredListView):
    serializer_class = serializers.BlockedStreamSerializer
    query_serializer = serializers.DomainQuerySerializer

    def get_queryset(self):
        return call_service(services.list_blocked_streams, self.request.user, self.filters().get("domain"))


@extend_schema_view(
    get=extend_schema(
        summary="List forbids, interruptions and resumes (DescribeLiveStreamsControlHistory)",
        parameters=[serializers.DomainQuerySerializer],
        tags=TAGS,
    )
)
class ControlHistoryView(_FilteredListView):
    serializer_class = serializers.ControlEventSerializer
    query_serializer = serializers.DomainQuerySerializer

    def get_queryset(self):
        return call_service(services.list_control_history, self.request.user, self.filters().get("domain"))


@extend_schema(tags=TAGS)
class ForbidView(APIView):
    @extend_schema(
        summary="Forbid a stream: cut its publisher and block it, or interrupt it only this once (ForbidLiveStream)",
        request=serializers.ForbidSerializer,
        responses=serializers.ForbidResultSerializer,
    )
    def post(self, request: Request) -> Response:
        data = valid_data(serializers.ForbidSerializer, request.data)
        result = call_service(
            services.forbid_stream,
            request.user,
            data["domain"],
            data["app"],
            data["stream"],
            resume_at=data.get("resume_time"),
            oneshot=data["oneshot"],
        )
        return Response(serializers.ForbidResultSerializer(result).data)


@extend_schema(tags=TAGS)
class ResumeView(APIView):
    @extend_schema(
        summary="Resume a forbidden stream; app '*' resumes it in every app (ResumeLiveStream)",
        request=serializers.ResumeSerializer,
        responses=serializers.ResumeResultSerializer,
    )
    def post(self, request: Request) -> Response:
        data = valid_data(serializers.ResumeSerializer, request.data)
        result = call_service(services.resume_stream, request.user, data["domain"], data["app"], data["stream"])
        return Response(serializers.ResumeResultSerializer(result).data)
