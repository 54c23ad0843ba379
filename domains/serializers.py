"""Shapes of the REST API: what it accepts and what it answers.

Input serializers check types only; the rules (hostnames, quotas, live
centers, certificates, key formats) live in services.py, so the console pages
and the API give the same answers. Every input serializer is strict: a field
it does not accept is an error naming that field, because a silently ignored
field looks to the client like a change that was made.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from livecenter.media import access
from livecenter.media.hls_crypto import DEFAULT_KEY_ROTATION_SEGMENTS

from . import services
from .models import Domain, DomainCertificate, DomainStatus, DomainType, LiveCenter, Region


def _label(field: str) -> str:
    return field.replace("_", " ")


# Rejects every field it does not accept, naming it. `fixed_fields` are
# fields the resource shows but this request cannot change; they get "...
# cannot be changed" rather than "unknown field". (Comments, not a docstring:
# the schema would show a docstring on every request body.)
class StrictSerializer(serializers.Serializer):
    fixed_fields: frozenset[str] = frozenset()

    def to_internal_value(self, data):
        errors: dict = {}
        if isinstance(data, Mapping):
            accepted = [name for name, field in self.fields.items() if not field.read_only]
            for key in data:
                if key in accepted:
                    continue
                if key in self.fixed_fields:
                    errors[key] = [f"{_label(key)} cannot be changed"]
                else:
                    errors[key] = [f"unknown field; accepted fields are {', '.join(accepted)}"]
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            errors = {**exc.detail, **errors} if isinstance(exc.detail, dict) else exc.detail
            raise serializers.ValidationError(errors) from None
        if errors:
            raise serializers.ValidationError(errors)
        return value


# --- Output -----------------------------------------------------------------


class CertificateSerializer(serializers.ModelSerializer):
    """A certificate as the console shows it; never the private key."""

    days_left = serializers.SerializerMethodField(
        help_text="Whole days until it expires; negative once it has (the node no longer serves it)."
    )

    class Meta:
        model = DomainCertificate
        fields = ["name", "subject", "issuer", "sans", "not_before", "not_after", "days_left", "fingerprint_sha256",
                  "uploaded_at"]  # fmt: skip
        read_only_fields = fields

    def get_days_left(self, certificate: DomainCertificate) -> int:
        return certificate.days_left(timezone.now())


class UrlSigningSummarySerializer(serializers.Serializer):
    enabled = serializers.BooleanField(source="auth_enabled", read_only=True)
    validity_minutes = serializers.IntegerField(source="auth_validity_minutes", read_only=True)


def _domain_name_field(**kwargs) -> serializers.SlugRelatedField:
    """Another domain, by name; null when there is none."""
    return serializers.SlugRelatedField(slug_field="domain_name", read_only=True, **kwargs)


class DomainSerializer(serializers.ModelSerializer):
    display_name = serializers.CharField(read_only=True, help_text="The name in Unicode (U-labels).")
    live_center_name = serializers.CharField(source="get_live_center_display", read_only=True)
    status = serializers.ChoiceField(choices=DomainStatus.choices, read_only=True)
    icp_filing_required = serializers.BooleanField(read_only=True)
    ingest_domain = _domain_name_field(
        allow_null=True, help_text="For a main streaming domain: the ingest domain it is associated with."
    )
    main_domain = _domain_name_field(
        allow_null=True, help_text="For a sub-streaming domain: the main streaming domain it is bound to."
    )
    streaming_domain = _domain_name_field(
        allow_null=True, help_text="For an ingest domain: the streaming domain associated with it."
    )
    sub_domains = _domain_name_field(
        many=True, help_text="For a main streaming domain: the sub-streaming domains bound to it."
    )
    rts_enabled = serializers.SerializerMethodField(help_text="Null for ingest domains.")
    html5_transcode = serializers.SerializerMethodField(help_text="Null for ingest domains.")
    srt_latency_ms = serializers.SerializerMethodField(
        help_text="SRT receiver latency in milliseconds. Null for streaming domains."
    )
    srt_passphrase_set = serializers.SerializerMethodField(
        help_text="Whether SRT publishers must encrypt with a passphrase (never returned). Null for streaming domains."
    )
    srt_passphrase_set_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="When the SRT passphrase was last set; null when there is none."
    )
    hls_encryption = serializers.SerializerMethodField(
        help_text="HLS and LL-HLS encrypted with AES-128 (RTS, FLV and RTMP are not). Null for ingest domains."
    )
    hls_key_rotation_segments = serializers.SerializerMethodField(
        help_text="A new HLS key every this many segments. Null for ingest domains."
    )
    hls_encryption_apps = serializers.SerializerMethodField(
        help_text="The apps HLS encryption applies to; empty: every app. Null for ingest domains."
    )
    url_signing = UrlSigningSummarySerializer(source="*", read_only=True)
    certificate = CertificateSerializer(read_only=True, allow_null=True)

    class Meta:
        model = Domain
        fields = [
            "domain_name",
            "display_name",
            "domain_type",
            "region",
            "live_center",
            "live_center_name",
            "cname",
            "status",
            "cname_status",
            "enabled",
            "local",
            "icp_filing_required",
            "ingest_domain",
            "main_domain",
            "streaming_domain",
            "sub_domains",
            "rts_enabled",
            "html5_transcode",
            "srt_latency_ms",
            "srt_passphrase_set",
            "srt_passphrase_set_at",
            "https_enabled",
            "https_redirect",
            "hls_encryption",
            "hls_key_rotation_segments",
            "hls_encryption_apps",
            "url_signing",
            "certificate",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_rts_enabled(self, domain: Domain) -> bool | None:
        return domain.rts_enabled if domain.is_streaming else None

    def get_html5_transcode(self, domain: Domain) -> bool | None:
        return domain.html5_transcode if domain.is_streaming else None

    def get_srt_latency_ms(self, domain: Domain) -> int | None:
        return domain.srt_latency_ms if domain.is_ingest else None

    def get_srt_passphrase_set(self, domain: Domain) -> bool | None:
        return bool(domain.srt_passphrase) if domain.is_ingest else None

    def get_hls_encryption(self, domain: Domain) -> bool | None:
        return domain.hls_encryption if domain.is_streaming else None

    def get_hls_key_rotation_segments(self, domain: Domain) -> int | None:
        return domain.hls_key_rotation_segments if domain.is_streaming else None

    def get_hls_encryption_apps(self, domain: Domain) -> list[str] | None:
        return domain.hls_encryption_app_list if domain.is_streaming else None


class CnameRecordSerializer(serializers.Serializer):
    host = serializers.CharField(source="domain_name")
    type = serializers.SerializerMethodField()
    value = serializers.CharField(source="cname")

    def get_type(self, domain: Domain) -> str:
        return "CNAME"


class CnameStateSerializer(serializers.Serializer):
    """The record to add, and what the last check found."""

    record = CnameRecordSerializer(source="*")
    status = serializers.CharField(source="cname_status")
    detail = serializers.CharField(source="cname_found")
    checked_at = serializers.DateTimeField(source="cname_checked_at", allow_null=True)


class CnameCheckResultSerializer(serializers.Serializer):
    record = CnameRecordSerializer(source="domain")
    configured = serializers.BooleanField(source="lookup.configured")
    status = serializers.CharField(source="domain.cname_status")
    found = serializers.ListField(child=serializers.CharField(), source="lookup.found")
    detail = serializers.CharField(source="lookup.detail")
    checked_at = serializers.DateTimeField(source="domain.cname_checked_at")


class MappingSerializer(serializers.ModelSerializer):
    ingest_domain = _domain_name_field(allow_null=True)
    main_domain = _domain_name_field(allow_null=True)
    streaming_domain = _domain_name_field(allow_null=True)
    sub_domains = _domain_name_field(many=True)

    class Meta:
        model = Domain
        fields = ["domain_name", "domain_type", "ingest_domain", "main_domain", "streaming_domain", "sub_domains"]
        read_only_fields = fields


class UrlSigningSerializer(serializers.Serializer):
    auth_type = serializers.SerializerMethodField()
    enabled = serializers.BooleanField(source="auth_enabled")
    validity_minutes = serializers.IntegerField(source="auth_validity_minutes")
    primary_key = serializers.SerializerMethodField(help_text="Masked: asterisks only, no character of the key.")
    primary_key_set_at = serializers.DateTimeField(
        source="auth_primary_key_set_at", read_only=True, help_text="When the primary key was last set."
    )
    secondary_key = serializers.SerializerMethodField(
        help_text="Masked: asterisks only, no character of the key; empty when there is none."
    )
    secondary_key_set_at = serializers.DateTimeField(
        source="auth_secondary_key_set_at", read_only=True, help_text="When the secondary key was last set."
    )

    def get_auth_type(self, domain: Domain) -> str:
        return "type_a"

    def get_primary_key(self, domain: Domain) -> str:
        return services.mask_secret(domain.auth_primary_key)

    def get_secondary_key(self, domain: Domain) -> str:
        return services.mask_secret(domain.auth_secondary_key)


class IngestUrlsSerializer(serializers.Serializer):
    rtmp = serializers.CharField()
    srt = serializers.CharField()
    rts = serializers.CharField(help_text="artc:// form")
    whip = serializers.CharField(
        help_text="RTS ingest as a WHIP HTTP URL (RFC 9725): POST an SDP offer; the same auth_key as the artc:// form"
    )


class PlaybackUrlsSerializer(serializers.Serializer):
    rtmp = serializers.CharField()
    flv = serializers.CharField()
    m3u8 = serializers.CharField()
    rts = serializers.CharField(help_text="artc:// form")
    whep = serializers.CharField(help_text="RTS as a WHEP HTTP URL (RFC 9725)")
    srt = serializers.CharField(help_text="SRT playback: the stream ID with m=request, signed over /{app}/{stream}")


class GeneratedUrlsSerializer(serializers.Serializer):
    ingest_domain = serializers.CharField(allow_null=True)
    streaming_domain = serializers.CharField(allow_null=True)
    app = serializers.CharField()
    stream = serializers.CharField()
    template = serializers.CharField(allow_null=True)
    expires_at = serializers.SerializerMethodField(help_text="ISO 8601, UTC.")
    ingest = serializers.SerializerMethodField(help_text="Empty when the domain has no ingest side.")
    playback = serializers.SerializerMethodField(help_text="Empty when the domain has no streaming side.")
    notes = serializers.ListField(child=serializers.CharField())
    direct = serializers.SerializerMethodField(
        help_text='Per side ("ingest", "playback"): the same URLs sent to the media node\'s address with domain='
        " naming the domain, for clients without DNS: `host` (the address), `use` (true where these are the URLs"
        " to use: the domain is local or does not resolve, or LIVECENTER_PLAYER_MEDIA_HOST names a host), `reason`,"
        " and `urls` (rtmp, srt, whip / flv, m3u8, whep, rtmp, srt; HTTPS and RTMPS URLs have none)."
    )

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_direct(self, urls: services.GeneratedUrls) -> dict:
        forms = self.context.get("direct", {})
        return {
            side: {"host": found.direct_host, "use": found.direct, "reason": found.reason, "urls": direct}
            for side, (found, direct) in forms.items()
        }

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_expires_at(self, urls: services.GeneratedUrls) -> str:
        return serializers.DateTimeField().to_representation(dt.datetime.fromtimestamp(urls.expires_at, dt.UTC))

    @extend_schema_field(IngestUrlsSerializer)
    def get_ingest(self, urls: services.GeneratedUrls) -> dict:
        return dict(urls.ingest)

    @extend_schema_field(PlaybackUrlsSerializer)
    def get_playback(self, urls: services.GeneratedUrls) -> dict:
        return dict(urls.playback)


# --- Input ------------------------------------------------------------------


LOCAL_HELP = (
    "A local or test domain, with no DNS record: online without its CNAME, the troubleshooter skips the CNAME"
    " check, and the player and URL generator send clients to the media node's address with domain=. Left out"
    " when adding: on for a name under .test, .localhost, .invalid or .example (RFC 6761)."
)


class DomainCreateSerializer(StrictSerializer):
    domain_name = serializers.CharField(help_text="ASCII or Unicode (IDNA); stored in ASCII (punycode).")
    domain_type = serializers.ChoiceField(choices=DomainType.choices)
    region = serializers.ChoiceField(choices=Region.choices)
    live_center = serializers.ChoiceField(choices=LiveCenter.choices)
    local = serializers.BooleanField(required=False, default=False, help_text=LOCAL_HELP)


class DomainFilterSerializer(serializers.Serializer):
    """Query parameters of the domain list; others (page, format) are DRF's."""

    domain_type = serializers.ChoiceField(choices=DomainType.choices, required=False)
    status = serializers.ChoiceField(choices=DomainStatus.choices, required=False)


class DomainUpdateSerializer(StrictSerializer):
    fixed_fields = frozenset(DomainSerializer.Meta.fields)

    enabled = serializers.BooleanField(required=False)
    local = serializers.BooleanField(required=False, help_text=LOCAL_HELP)
    rts_enabled = serializers.BooleanField(required=False, help_text="Streaming domains only.")
    html5_transcode = serializers.BooleanField(required=False, help_text="Streaming domains only.")
    srt_latency_ms = serializers.IntegerField(
        required=False,
        help_text=f"Ingest domains only: the SRT receiver latency, {services.MIN_SRT_LATENCY_MS}"
        f"-{services.MAX_SRT_LATENCY_MS} ms.",
        error_messages={"invalid": "SRT latency must be a whole number of milliseconds"},
    )
    # Checked by the service, so a spaced or short passphrase gets its rule.
    srt_passphrase = serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        trim_whitespace=False,
        write_only=True,
        style={"input_type": "password"},
        help_text=f"Ingest domains only: {services.SRT_PASSPHRASE_RULE} that SRT publishers must encrypt with;"
        " never returned. An empty string or null removes it; left out, it is kept.",
    )

    https_enabled = serializers.BooleanField(
        required=False, help_text="Serve HTTPS and RTMPS with the domain's certificate (it must have one)."
    )
    https_redirect = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text='"https": HTTP requests get a 301 to HTTPS; "http": the reverse; "": none. Needs HTTPS on.',
    )

    hls_encryption = serializers.BooleanField(
        required=False, help_text="Streaming domains only: encrypt HLS and LL-HLS with AES-128."
    )
    hls_key_rotation_segments = serializers.IntegerField(
        required=False,
        help_text=f"Streaming domains only: a new key every this many segments, {services.MIN_KEY_ROTATION_SEGMENTS}"
        f"-{services.MAX_KEY_ROTATION_SEGMENTS} (default {DEFAULT_KEY_ROTATION_SEGMENTS}).",
        error_messages={"invalid": "key rotation must be a whole number of segments"},
    )
    hls_encryption_apps = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Streaming domains only: the apps whose HLS is encrypted; empty for every app.",
    )

    def validate_srt_passphrase(self, value: str | None) -> str:
        return value or ""  # null removes, as an empty string does


class MappingUpdateSerializer(StrictSerializer):
    """Exactly one of the two: associate with an ingest domain, or bind to a
    main streaming domain."""

    fixed_fields = frozenset({"streaming_domain", "sub_domains", "domain_name", "domain_type"})

    ingest_domain = serializers.CharField(required=False, allow_blank=True)
    main_domain = serializers.CharField(required=False, allow_blank=True)

    def validate(self, attrs):
        if "ingest_domain" in attrs and "main_domain" in attrs:
            raise serializers.ValidationError({"main_domain": ["give either ingest_domain or main_domain, not both"]})
        if not attrs:
            raise serializers.ValidationError(
                {
                    "ingest_domain": [
                        "give ingest_domain to associate with an ingest domain,"
                        " or main_domain to bind to a main streaming domain"
                    ]
                }
            )
        return attrs


class CertificateUploadSerializer(StrictSerializer):
    fixed_fields = frozenset(CertificateSerializer.Meta.fields) - {"name"}

    name = serializers.CharField(required=False, allow_blank=True, default="")
    certificate = serializers.CharField(
        allow_blank=True, trim_whitespace=False, style={"base_template": "textarea.html"}, help_text="PEM"
    )
    private_key = serializers.CharField(
        allow_blank=True,
        trim_whitespace=False,
        write_only=True,
        style={"base_template": "textarea.html"},
        help_text="PEM, unencrypted; stored encrypted and never returned.",
    )


class UrlSigningUpdateSerializer(StrictSerializer):
    fixed_fields = frozenset({"auth_type"})

    enabled = serializers.BooleanField(required=False)
    # Keys are checked by the service, so a blank or spaced key gets its rule.
    primary_key = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, write_only=True)
    secondary_key = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        write_only=True,
        help_text="An empty string removes the secondary key.",
    )
    validity_minutes = serializers.IntegerField(required=False)


class UrlRequestSerializer(StrictSerializer):
    domain = serializers.CharField(help_text="An ingest domain, or a streaming domain associated with one.")
    app = serializers.CharField(allow_blank=True)
    stream = serializers.CharField(allow_blank=True)
    template = serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        help_text="Transcoding template id: plays {stream}_{template}.",
    )
    validity_minutes = serializers.IntegerField(
        required=False, allow_null=True, help_text="Default: the domain's validity period."
    )


# --- Access lists ---------------------------------------------------------------


class AccessControlSerializer(serializers.Serializer):
    ip_mode = serializers.CharField(source="ip_acl_mode", help_text='"off", "allow" or "deny".')
    ip_entries = serializers.ListField(
        source="ip_acl_entries",
        child=serializers.CharField(),
        help_text="IPv4 and IPv6 addresses and networks (CIDR), in normal form.",
    )
    ip_max_entries = serializers.SerializerMethodField()
    referer_mode = serializers.CharField(
        source="referer_acl_mode", help_text='"off", "allow" or "deny". Streaming domains only.'
    )
    referer_entries = serializers.ListField(
        source="referer_acl_entries",
        child=serializers.CharField(),
        help_text="Hosts (player.example.com) and wildcards (*.example.com: any name under example.com).",
    )
    referer_allow_empty = serializers.BooleanField(
        source="referer_acl_allow_empty", help_text="An allow list admits requests without a Referer."
    )
    referer_max_entries = serializers.SerializerMethodField()

    def get_ip_max_entries(self, domain: Domain) -> int:
        return access.MAX_IP_ENTRIES

    def get_referer_max_entries(self, domain: Domain) -> int:
        return access.MAX_REFERER_ENTRIES


class AccessControlUpdateSerializer(StrictSerializer):
    fixed_fields = frozenset({"ip_max_entries", "referer_max_entries"})

    # Modes and entries are checked by the service, so each bad one gets its rule.
    ip_mode = serializers.CharField(required=False, help_text='"off", "allow" or "deny".')
    ip_entries = serializers.ListField(
        child=serializers.CharField(allow_blank=True),
        required=False,
        help_text=f"At most {access.MAX_IP_ENTRIES}; replaces the list. Needed (at least one) while the list is on.",
    )
    referer_mode = serializers.CharField(required=False, help_text="Streaming domains only.")
    referer_entries = serializers.ListField(
        child=serializers.CharField(allow_blank=True),
        required=False,
        help_text=f"At most {access.MAX_REFERER_ENTRIES}; replaces the list.",
    )
    referer_allow_empty = serializers.BooleanField(required=False, help_text="Allow lists only.")
