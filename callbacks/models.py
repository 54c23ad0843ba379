"""An ingest domain's callbacks (issue 16) and what was sent to them.

The event URL gets every event of the domain's streams (services.EVENTS);
the publish hook URL, when set, is asked before each publish
(livecenter/media/publish_hook.py). Both are signed with the one secret,
which is stored encrypted and never shown again after saving.
"""

from __future__ import annotations

from django.db import models

from domains.fields import EncryptedTextField
from domains.models import Domain

DEFAULT_HOOK_TIMEOUT_MS = 2000


class CallbackConfig(models.Model):
    domain = models.OneToOneField(Domain, on_delete=models.CASCADE, related_name="callback_config")
    url = models.CharField(max_length=2000, blank=True, default="")  # "" sends no events
    secret = EncryptedTextField(blank=True, default="")
    secret_set_at = models.DateTimeField(null=True, blank=True)
    publish_hook_url = models.CharField(max_length=2000, blank=True, default="")  # "" asks no one
    publish_hook_timeout_ms = models.PositiveIntegerField(default=DEFAULT_HOOK_TIMEOUT_MS)
    # When the publish hook does not answer in time (or cannot be reached):
    # admit the publisher (True) or refuse it (False, the default: fail closed).
    publish_hook_allow_when_unreachable = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"callbacks of {self.domain.domain_name}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # to be tried (again)
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"  # given up: past the retry period, or an address never called


class Delivery(models.Model):
    """One event for one domain's URL. Its attempts are DeliveryAttempt rows;
    the last one's outcome is copied here for the lists."""

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="callback_deliveries")
    event_id = models.CharField(max_length=32, unique=True)  # X-LiveCenter-Delivery
    event = models.CharField(max_length=64)
    url = models.CharField(max_length=2000)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)  # made or claimed
    created_at = models.DateTimeField()
    # Retries run until created_at plus the retry period; a resend starts it again.
    retry_until = models.DateTimeField()
    # When the next attempt is due; while one runs, when its claim lapses (services.claim).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    error = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["domain", "-created_at"]),
            models.Index(fields=["status", "next_attempt_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.event_id} ({self.status})"


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    at = models.DateTimeField()
    ok = models.BooleanField(default=False)
    status_code = models.PositiveIntegerField(null=True, blank=True)  # None: no HTTP answer
    latency_ms = models.FloatField(null=True, blank=True)
    error = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="one_row_per_attempt")]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}"
