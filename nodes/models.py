from __future__ import annotations

from django.db import models

from domains.models import LiveCenter
from livecenter.media.cluster import MAX_HOST_CHARS, MAX_NODE_ID_CHARS


class NodeRole(models.TextChoices):
    # The values are livecenter.media.cluster.ROLES.
    CENTER = "center", "Center"
    EDGE = "edge", "Edge"
    # The embedded topology's one node (`make run`); role_value's spelling.
    BOTH = "center,edge", "Center and edge"


def role_value(roles: frozenset[str]) -> str:
    """The field's value for a set of roles ("center,edge" for both)."""
    return ",".join(sorted(roles))


class Node(models.Model):
    """A media node that has registered itself (nodes/registry.py): who it
    is and where others reach it. How it is doing (its heartbeat) lives in
    Redis when REDIS_URL is set, else in `last_beat` here."""

    node_id = models.CharField(max_length=MAX_NODE_ID_CHARS, unique=True)
    role = models.CharField(max_length=16, choices=NodeRole.choices)
    # Empty: every region (cluster.ANY_REGION, a node alone).
    region = models.CharField(max_length=32, choices=LiveCenter.choices, blank=True)
    host = models.CharField(max_length=MAX_HOST_CHARS, help_text="the address other nodes reach it on")
    rtmp_port = models.PositiveIntegerField()
    http_port = models.PositiveIntegerField()
    srt_port = models.PositiveIntegerField(null=True, blank=True)
    # Its TLS listeners (issue 15); empty: it serves no HTTPS (or RTMPS).
    https_port = models.PositiveIntegerField(null=True, blank=True)
    rtmps_port = models.PositiveIntegerField(null=True, blank=True)
    registered_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(help_text="when its current life began")
    # The latest beat (livecenter.media.cluster.NodeBeat.to_json) when beats
    # are kept in the database (no Redis).
    last_beat = models.JSONField(null=True, blank=True)
    last_beat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["node_id"]

    def __str__(self) -> str:
        return self.node_id
