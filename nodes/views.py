"""Console pages of the media nodes: one service call, rendered."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from livecenter.media.cluster import HEARTBEAT_SECONDS

from . import services

# The page reloads itself this often: a node that stops beating is shown
# down within NODE_DOWN_SECONDS and this.
RELOAD_SECONDS = int(2 * HEARTBEAT_SECONDS)


@login_required
def node_list(request):
    nodes = services.list_nodes(request.user)
    return render(request, "nodes/list.html", {"nodes": nodes, "reload_seconds": RELOAD_SECONDS})
