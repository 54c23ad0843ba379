"""The media workers' API under /api/v1/streams/ (issue 7): transcoding
templates and groups, recording and snapshot settings, running jobs,
recordings and snapshots. In the manner of api.py: check types, call one
service (scoped to the operator's own domains), serialise."""

from __future__ import annotations

from django.http import FileResponse, HttpResponse
from django.http.response import HttpResponseBase
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from livecenter.lib.api import call_service, valid_data

from . import serializers as s
from . import services
from .models import Recording, Snapshot

TAGS = ["media workers"]


class _ListCreate(generics.ListAPIView):
    """GET lists (?domain=), POST adds or sets, DELETE (with a body) removes."""

    query_serializer = s.DomainQuerySerializer
    create_serializer: type
    delete_serializer: type
    # service(owner, domain), service(owner, domain, app, **fields), service(owner, domain, app[, id])
    list_service: staticmethod
    create_service: staticmethod
    delete_service: staticmethod

    def get_queryset(self):
        domain = valid_data(self.query_serializer, self.request.query_params).get("domain")
        return call_service(self.list_service, self.request.user, domain)

    def post(self, request: Request) -> Response:
        data = dict(valid_data(self.create_serializer, request.data))
        domain, app = data.pop("domain"), data.pop("app")
        row = call_service(self.create_service, request.user, domain, app, **data)
        return Response(self.get_serializer(row).data, status=status.HTTP_201_CREATED)

    def delete(self, request: Request) -> Response:
        data = valid_data(self.delete_serializer, request.data)
        call_service(self.delete_service, request.user, *(data[name] for name in self.delete_serializer().fields))
        return Response(status=status.HTTP_204_NO_CONTENT)


def _crud_schema(noun: str, reference: str, create, delete, output):
    return extend_schema_view(
        get=extend_schema(summary=f"List {noun}s ({reference})", parameters=[s.DomainQuerySerializer], tags=TAGS),
        post=extend_schema(summary=f"Add or set a {noun}", request=create, responses={201: output}, tags=TAGS),
        delete=extend_schema(summary=f"Delete a {noun}", request=delete, responses={204: None}, tags=TAGS),
    )


@_crud_schema("transcoding template", "DescribeLiveStreamTranscodeInfo", s.TemplateCreateSerializer,
              s.TemplateDeleteSerializer, s.TemplateSerializer)  # fmt: skip
class TemplateListView(_ListCreate):
    serializer_class = s.TemplateSerializer
    create_serializer = s.TemplateCreateSerializer
    delete_serializer = s.TemplateDeleteSerializer
    list_service = staticmethod(services.list_templates)
    create_service = staticmethod(services.add_template)
    delete_service = staticmethod(services.delete_template)


@_crud_schema("multi-bitrate template group", "ABR", s.GroupCreateSerializer, s.GroupDeleteSerializer,
              s.GroupSerializer)  # fmt: skip
class GroupListView(_ListCreate):
    serializer_class = s.GroupSerializer
    create_serializer = s.GroupCreateSerializer
    delete_serializer = s.GroupDeleteSerializer
    list_service = staticmethod(services.list_groups)
    create_service = staticmethod(services.add_group)
    delete_service = staticmethod(services.delete_group)


@_crud_schema("recording setting", "DescribeLiveRecordConfig", s.RecordConfigSetSerializer, s.AppDeleteSerializer,
              s.RecordConfigSerializer)  # fmt: skip
class RecordConfigListView(_ListCreate):
    serializer_class = s.RecordConfigSerializer
    create_serializer = s.RecordConfigSetSerializer
    delete_serializer = s.AppDeleteSerializer
    list_service = staticmethod(services.list_record_configs)
    create_service = staticmethod(services.set_record_config)
    delete_service = staticmethod(services.delete_record_config)


@_crud_schema("snapshot setting", "AddLiveAppSnapshotConfig", s.SnapshotConfigSetSerializer, s.AppDeleteSerializer,
              s.SnapshotConfigSerializer)  # fmt: skip
class SnapshotConfigListView(_ListCreate):
    serializer_class = s.SnapshotConfigSerializer
    create_serializer = s.SnapshotConfigSetSerializer
    delete_serializer = s.AppDeleteSerializer
    list_service = staticmethod(services.list_snapshot_configs)
    create_service = staticmethod(services.set_snapshot_config)
    delete_service = staticmethod(services.delete_snapshot_config)


@extend_schema_view(
    get=extend_schema(
        summary="Running transcodes, recordings and snapshot series, with their renditions",
        parameters=[s.JobQuerySerializer],
        tags=TAGS,
    )
)
class JobListView(generics.ListAPIView):
    serializer_class = s.JobSerializer

    def get_queryset(self):
        f = valid_data(s.JobQuerySerializer, self.request.query_params)
        return call_service(services.list_jobs, self.request.user, f.get("domain"), active=not f["all"])


@extend_schema_view(get=extend_schema(summary="List recorded files", parameters=[s.StreamFilterSerializer], tags=TAGS))
class RecordingListView(generics.ListAPIView):
    serializer_class = s.RecordingSerializer

    def get_queryset(self):
        f = valid_data(s.StreamFilterSerializer, self.request.query_params)
        return call_service(services.list_recordings, self.request.user, f.get("domain"), f.get("app"),
                            f.get("stream"))  # fmt: skip


@extend_schema_view(
    get=extend_schema(
        summary="List snapshots, newest first (DescribeLiveStreamSnapshotInfo)",
        parameters=[s.StreamFilterSerializer],
        tags=TAGS,
    )
)
class SnapshotListView(generics.ListAPIView):
    serializer_class = s.SnapshotSerializer

    def get_queryset(self):
        f = valid_data(s.StreamFilterSerializer, self.request.query_params)
        return call_service(services.list_snapshots, self.request.user, f.get("domain"), f.get("app"),
                            f.get("stream"))  # fmt: skip


CONTENT_TYPES = {".mp4": "video/mp4", ".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t"}


def recording_response(owner, recording_id: int, name: str | None = None) -> HttpResponseBase:
    """A file of one of the operator's recordings (404 for another's): the
    MP4 or HLS VOD playlist, or with `name` one of the playlist's segments
    or, for an encrypted one, its key."""
    try:
        recording = services.get_recording(owner, recording_id)
    except Recording.DoesNotExist:
        raise NotFound("you have no recording with this id") from None
    if name is not None and recording.hls_key and name == recording.key_file_name:
        # The key of an encrypted HLS recording: for its owner only, never cached.
        response = HttpResponse(bytes.fromhex(recording.hls_key), content_type="application/octet-stream")
        response["Cache-Control"] = "private, no-store"
        return response
    files = services.recording_files(recording)
    path = files.get(name or recording.file_name)
    if path is None:
        raise NotFound("the recording has no such file" if name else "the recording's file is gone")
    content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
    if path.suffix == ".mp4":
        return FileResponse(path.open("rb"), as_attachment=True, filename=path.name, content_type=content_type)
    return FileResponse(path.open("rb"), content_type=content_type)


def snapshot_response(owner, snapshot_id: int) -> FileResponse:
    try:
        snapshot = services.get_snapshot(owner, snapshot_id)
    except Snapshot.DoesNotExist:
        raise NotFound("you have no snapshot with this id") from None
    path = services.snapshot_file(snapshot)
    if not path.exists():
        raise NotFound("the snapshot's file is gone")
    return FileResponse(path.open("rb"), content_type="image/jpeg")


class RecordingDownloadView(APIView):
    @extend_schema(
        summary="Download a recorded file: the MP4, or the HLS VOD playlist",
        responses={(200, "video/mp4"): bytes, (200, "application/vnd.apple.mpegurl"): str},
        tags=TAGS,
    )
    def get(self, request: Request, recording_id: int):
        return recording_response(request.user, recording_id)


class RecordingSegmentView(APIView):
    @extend_schema(
        summary="A segment of an HLS VOD recording",
        operation_id="recordings_segment_retrieve",
        responses={(200, "video/mp2t"): bytes},
        tags=TAGS,
    )
    def get(self, request: Request, recording_id: int, name: str):
        return recording_response(request.user, recording_id, name)


class SnapshotImageView(APIView):
    @extend_schema(summary="A snapshot's JPEG", responses={(200, "image/jpeg"): bytes}, tags=TAGS)
    def get(self, request: Request, snapshot_id: int):
        return snapshot_response(request.user, snapshot_id)
