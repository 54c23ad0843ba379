"""What the engine reported (publish sessions) and what operators decided
(forbidden streams, and the history of those decisions).

Rows name their ingest domain twice: by foreign key, for the operator's
queries, and by a copy of its name, so history survives the domain's
deletion (the key becomes null; the name stays).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from domains.models import Domain


class PublishType(models.TextChoices):
    # The values are livecenter.media.policy's EDGE_PUBLISH and CENTER_PUBLISH.
    EDGE = "edge", "Edge"
    CENTER = "center", "Center"


class PublishSession(models.Model):
    """One publish, from `published` to `unpublished`: the publish history
    (DescribeLiveStreamsPublishList) and, while `stopped_at` is null, the
    online list (DescribeLiveStreamsOnlineList)."""

    domain = models.ForeignKey(Domain, null=True, blank=True, on_delete=models.SET_NULL, related_name="sessions")
    domain_name = models.CharField(max_length=253)  # the ingest domain, kept after it is deleted
    app = models.CharField(max_length=255)
    stream = models.CharField(max_length=255)
    session_id = models.CharField(max_length=64, unique=True)
    # The node that holds the publisher: the edge it pushed to, or the center.
    node_id = models.CharField(max_length=128, blank=True, default="")
    # DescribeLiveStreamsOnlineList's PublishType: "edge" when the publisher
    # pushed to an edge, which relays the stream to a center; "center" when
    # it pushed to the center (the one node of `make run` included).
    publish_type = models.CharField(max_length=8, choices=PublishType.choices, default=PublishType.CENTER)
    # DescribeLiveStreamsOnlineList's ServerIp: the address of `node_id` as
    # the nodes reach it (its advertised host).
    server_ip = models.CharField(max_length=255, blank=True, default="")
    # The center node carrying the stream now: `node_id` itself for a center
    # publish; an edge's relay's center ("" until it has one, or while it
    # moves). Its transcodes, recordings and snapshots read it there.
    center_node_id = models.CharField(max_length=128, blank=True, default="")
    protocol = models.CharField(max_length=16)  # "rtmp", "srt", "whip"
    client_addr = models.CharField(max_length=64, blank=True, default="")  # "ip:port", "[v6]:port"
    publish_url = models.CharField(max_length=2048, blank=True, default="")  # without auth_key
    started_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)  # null while live
    stop_reason = models.CharField(max_length=255, blank=True, default="")

    # The latest media info the engine reported; bit rates in bits per second.
    video_codec = models.CharField(max_length=16, blank=True, default="")
    audio_codec = models.CharField(max_length=16, blank=True, default="")
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    frame_rate = models.FloatField(default=0.0)
    video_bitrate = models.PositiveBigIntegerField(default=0)
    audio_bitrate = models.PositiveBigIntegerField(default=0)
    video_profile = models.CharField(max_length=32, blank=True, default="")
    audio_sample_rate = models.PositiveIntegerField(default=0)
    audio_channels = models.PositiveSmallIntegerField(default=0)
    # A B slice was seen: browsers' WebRTC plays none, so RTS needs the
    # domain's HTML5 auto-transcoding (livecenter/media/rts/).
    has_bframes = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)  # also the last time the node reported the session

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["domain", "stopped_at"], name="session_domain_live"),
            models.Index(fields=["domain", "started_at"], name="session_domain_started"),
            models.Index(fields=["node_id", "stopped_at"], name="session_node_live"),
        ]

    def __str__(self) -> str:
        return f"{self.stream_url} ({self.session_id})"

    @property
    def is_live(self) -> bool:
        return self.stopped_at is None

    @property
    def stream_url(self) -> str:
        """`{domain}/{app}/{stream}`, the form the reference API names streams by."""
        return f"{self.domain_name}/{self.app}/{self.stream}"

    @property
    def client_ip(self) -> str:
        """The publisher's address without its port."""
        addr = self.client_addr
        if addr.startswith("[") and "]" in addr:
            return addr[1 : addr.index("]")]
        if addr.count(":") == 1:
            return addr.split(":", 1)[0]
        return addr  # a bare IPv4 or IPv6 address

    @property
    def video_kbps(self) -> int:
        return round(self.video_bitrate / 1000)

    @property
    def audio_kbps(self) -> int:
        return round(self.audio_bitrate / 1000)


class StreamBlock(models.Model):
    """A forbidden stream (ForbidLiveStream without Oneshot): publishing it
    is refused until `resume_at`. A row whose `resume_at` has passed blocks
    nothing; the next forbid of the same stream reuses it."""

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="stream_blocks")  # the ingest domain
    app = models.CharField(max_length=255)
    stream = models.CharField(max_length=255)
    resume_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["domain", "app", "stream"], name="one_block_per_stream")]

    def __str__(self) -> str:
        return self.stream_url

    @property
    def stream_url(self) -> str:
        return f"{self.domain.domain_name}/{self.app}/{self.stream}"


class ControlAction(models.TextChoices):
    FORBID = "forbid", "Forbid"
    KICK = "kick", "Interrupt once"  # a forbid with Oneshot: the publisher is cut, nothing is blocked
    RESUME = "resume", "Resume"


class StreamControlEvent(models.Model):
    """What an operator did to a stream, and when
    (DescribeLiveStreamsControlHistory)."""

    action = models.CharField(max_length=16, choices=ControlAction.choices)
    domain = models.ForeignKey(Domain, null=True, blank=True, on_delete=models.SET_NULL, related_name="control_events")
    domain_name = models.CharField(max_length=253)
    app = models.CharField(max_length=255)  # "*" for a resume of every app
    stream = models.CharField(max_length=255)
    at = models.DateTimeField(auto_now_add=True)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    detail = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["domain", "at"], name="control_domain_at")]

    def __str__(self) -> str:
        return f"{self.action} {self.domain_name}/{self.app}/{self.stream}"
