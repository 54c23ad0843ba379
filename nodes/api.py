"""The nodes REST API (/api/v1/nodes/), read-only, in the manner of streams/api.py."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics

from . import serializers, services


@extend_schema_view(
    get=extend_schema(
        summary="List the media nodes: role, region, health, load, what each carries",
        tags=["nodes"],
    )
)
class NodeListView(generics.ListAPIView):
    serializer_class = serializers.NodeSerializer

    def get_queryset(self):
        return services.list_nodes(self.request.user).nodes
