"""Shapes of the callbacks API. Input is checked for types here (strictly:
an unknown field is an error naming it); the rules are services.py's."""

from __future__ import annotations

from rest_framework import serializers

from domains import services as domain_services
from domains.serializers import StrictSerializer

from .models import CallbackConfig, Delivery, DeliveryAttempt, DeliveryStatus


class CallbackConfigSerializer(serializers.Serializer):
    url = serializers.CharField(help_text="Where events are POSTed; empty: none.")
    secret = serializers.SerializerMethodField(help_text="Masked: asterisks only, no character of the secret.")
    secret_set_at = serializers.DateTimeField(read_only=True)
    publish_hook_url = serializers.CharField(help_text="Asked before each publish; empty: none.")
    publish_hook_timeout_ms = serializers.IntegerField()
    publish_hook_allow_when_unreachable = serializers.BooleanField()

    def get_secret(self, config: CallbackConfig) -> str:
        return domain_services.mask_secret(config.secret)


class CallbackConfigUpdateSerializer(StrictSerializer):
    url = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    secret = serializers.CharField(required=False, write_only=True, trim_whitespace=False, help_text="Left out: kept.")
    publish_hook_url = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    publish_hook_timeout_ms = serializers.IntegerField(required=False)
    publish_hook_allow_when_unreachable = serializers.BooleanField(required=False)


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ["number", "at", "ok", "status_code", "latency_ms", "error"]


class DeliverySerializer(serializers.ModelSerializer):
    id = serializers.IntegerField(read_only=True)
    domain = serializers.CharField(source="domain.domain_name", read_only=True)
    status = serializers.ChoiceField(choices=DeliveryStatus.choices, read_only=True)
    attempt_log = DeliveryAttemptSerializer(many=True, read_only=True)

    class Meta:
        model = Delivery
        fields = ["id", "event_id", "event", "domain", "url", "status", "attempts", "created_at", "next_attempt_at",
                  "delivered_at", "status_code", "latency_ms", "error", "payload", "attempt_log"]  # fmt: skip
