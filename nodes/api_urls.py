"""The nodes API, mounted at /api/v1/nodes/ (namespace "nodes-api").

GET  /   the media nodes (services.list_nodes)
"""

from django.urls import path

from . import api

app_name = "nodes-api"

urlpatterns = [path("", api.NodeListView.as_view(), name="list")]
