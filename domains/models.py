from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import models

from livecenter.media.hls_crypto import DEFAULT_KEY_ROTATION_SEGMENTS
from livecenter.media.policy import DEFAULT_SRT_LATENCY_MS

from .fields import EncryptedTextField
from .lib.hostnames import display_name


class DomainType(models.TextChoices):
    INGEST = "ingest", "Ingest domain"
    STREAMING = "streaming", "Streaming domain"


class Region(models.TextChoices):
    """Acceleration region (the API's `Scope`)."""

    MAINLAND = "mainland", "Chinese mainland"
    GLOBAL = "global", "Global"
    OVERSEAS = "overseas", "Outside Chinese mainland"


class LiveCenter(models.TextChoices):
    CN_BEIJING = "cn-beijing", "China (Beijing)"
    CN_SHANGHAI = "cn-shanghai", "China (Shanghai)"
    CN_SHENZHEN = "cn-shenzhen", "China (Shenzhen)"
    CN_QINGDAO = "cn-qingdao", "China (Qingdao)"
    AP_SOUTHEAST_1 = "ap-southeast-1", "Singapore"
    EU_CENTRAL_1 = "eu-central-1", "Germany (Frankfurt)"
    AP_NORTHEAST_1 = "ap-northeast-1", "Japan (Tokyo)"
    AP_SOUTHEAST_5 = "ap-southeast-5", "Indonesia (Jakarta)"


MAINLAND_LIVE_CENTERS = frozenset({"cn-beijing", "cn-shanghai", "cn-shenzhen", "cn-qingdao"})


def icp_filing_required(region: str, live_center: str) -> bool:
    """The seed's rule: only a domain accelerated outside the Chinese mainland
    whose live center is also outside it needs no ICP filing."""
    return not (region == Region.OVERSEAS and live_center not in MAINLAND_LIVE_CENTERS)


class CnameStatus(models.TextChoices):
    PENDING = "pending", "Pending configuration"
    CONFIGURED = "configured", "Configured"


class DomainStatus(models.TextChoices):
    CONFIGURING = "configuring", "Configuring"
    ONLINE = "online", "Online"
    OFFLINE = "offline", "Offline"


class HttpsRedirect(models.TextChoices):
    """Where the media node sends a request for the other scheme (a 301)."""

    NONE = "", "No redirect"
    HTTPS = "https", "HTTP to HTTPS"
    HTTP = "http", "HTTPS to HTTP"


class AccessListMode(models.TextChoices):
    """An access list's mode (livecenter.media.access.AccessMode, whose values these are)."""

    OFF = "off", "Off"
    ALLOW = "allow", "Allow list"
    DENY = "deny", "Deny list"


DEFAULT_VALIDITY_MINUTES = 1440


class Domain(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="domains")
    # Lower-case ASCII (A-labels); unique across all operators.
    domain_name = models.CharField(max_length=253, unique=True)
    domain_type = models.CharField(max_length=16, choices=DomainType.choices)
    region = models.CharField(max_length=16, choices=Region.choices)
    live_center = models.CharField(max_length=32, choices=LiveCenter.choices)
    cname = models.CharField(max_length=253)
    enabled = models.BooleanField(default=True)
    # A local or test domain: no DNS record is expected (one machine, a lab,
    # a name under an RFC 6761 zone such as .test or .localhost). It is
    # online without its CNAME, the troubleshooter skips the CNAME step
    # saying so, and clients reach the node by address with `domain=`
    # (domains/direct.py).
    local = models.BooleanField(default=False)

    # The last CNAME check: what DNS said, and when.
    cname_status = models.CharField(max_length=16, choices=CnameStatus.choices, default=CnameStatus.PENDING)
    cname_found = models.TextField(blank=True, default="")
    cname_checked_at = models.DateTimeField(null=True, blank=True)

    # A main streaming domain is associated with one ingest domain; a
    # sub-streaming domain is bound to a main streaming domain instead and
    # plays what the main one plays.
    ingest_domain = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="streaming_domain"
    )
    main_domain = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="sub_domains"
    )

    rts_enabled = models.BooleanField(default=False)
    html5_transcode = models.BooleanField(default=False)

    # HTTPS (and RTMPS) with the domain's certificate: on only while it has
    # one (services.configure_https); the redirect needs HTTPS on.
    https_enabled = models.BooleanField(default=False)
    https_redirect = models.CharField(max_length=8, choices=HttpsRedirect.choices, default="", blank=True)

    # URL signing, Type A.
    auth_enabled = models.BooleanField(default=True)
    auth_primary_key = EncryptedTextField(blank=True, default="")
    auth_secondary_key = EncryptedTextField(blank=True, default="")
    # When each key was last set: what the console shows of a key besides
    # asterisks (services.mask_secret), so that keys can be told apart.
    auth_primary_key_set_at = models.DateTimeField(null=True, blank=True)
    auth_secondary_key_set_at = models.DateTimeField(null=True, blank=True)
    auth_validity_minutes = models.PositiveIntegerField(default=DEFAULT_VALIDITY_MINUTES)

    # SRT ingest (ingest domains only): the receiver latency the node
    # offers at the handshake, and the passphrase publishers must encrypt
    # with ("" for none). Set and checked by services.configure_srt.
    srt_latency_ms = models.PositiveIntegerField(default=DEFAULT_SRT_LATENCY_MS)
    srt_passphrase = EncryptedTextField(blank=True, default="")
    srt_passphrase_set_at = models.DateTimeField(null=True, blank=True)

    # HLS encryption (streaming domains only; livecenter/media/hls_crypto.py):
    # AES-128 with a new key every `hls_key_rotation_segments` segments, for
    # the apps in `hls_encryption_apps` (comma-separated; blank: every app).
    # Set and checked by services.configure_hls_encryption.
    hls_encryption = models.BooleanField(default=False)
    hls_key_rotation_segments = models.PositiveIntegerField(default=DEFAULT_KEY_ROTATION_SEGMENTS)
    hls_encryption_apps = models.CharField(max_length=1024, blank=True, default="")
    # Access lists (livecenter/media/access.py; services.configure_access_control):
    # an IP list (publishers of an ingest domain, viewers of a streaming
    # one) and a Referer list (streaming domains), each off, allow or deny;
    # the entries in normal form, empty while the list is off.
    ip_acl_mode = models.CharField(max_length=8, choices=AccessListMode.choices, default=AccessListMode.OFF)
    ip_acl_entries = models.JSONField(default=list, blank=True)
    referer_acl_mode = models.CharField(max_length=8, choices=AccessListMode.choices, default=AccessListMode.OFF)
    referer_acl_entries = models.JSONField(default=list, blank=True)
    referer_acl_allow_empty = models.BooleanField(default=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "domain_name"]
        indexes = [models.Index(fields=["owner", "domain_type"])]

    def __str__(self) -> str:
        return self.domain_name

    @property
    def is_ingest(self) -> bool:
        return self.domain_type == DomainType.INGEST

    @property
    def is_streaming(self) -> bool:
        return self.domain_type == DomainType.STREAMING

    @property
    def display_name(self) -> str:
        return display_name(self.domain_name)

    @property
    def status(self) -> str:
        """Offline when disabled; online once DNS points at us, or at once
        for a local domain (which has no DNS to wait for); configuring
        until then."""
        if not self.enabled:
            return DomainStatus.OFFLINE
        if self.cname_status == CnameStatus.CONFIGURED or self.local:
            return DomainStatus.ONLINE
        return DomainStatus.CONFIGURING

    def get_status_display(self) -> str:
        label = DomainStatus(self.status).label
        if self.local and self.status == DomainStatus.ONLINE:
            return f"{label} (local)"
        return label

    def cname_state_display(self) -> str:
        """The CNAME check as the domain lists show it: a local domain that
        has none says it needs none, not that it is pending."""
        if self.local and self.cname_status != CnameStatus.CONFIGURED:
            return "Not needed (local)"
        return self.get_cname_status_display()

    @property
    def icp_filing_required(self) -> bool:
        return icp_filing_required(self.region, self.live_center)

    @property
    def validity_seconds(self) -> int:
        return self.auth_validity_minutes * 60

    @property
    def hls_encryption_app_list(self) -> list[str]:
        return [app for app in self.hls_encryption_apps.split(",") if app]

    def hls_encrypts(self, app: str) -> bool:
        """Whether this streaming domain encrypts `app`'s HLS (as DomainConfig.hls_key_period says)."""
        apps = self.hls_encryption_app_list
        return self.is_streaming and self.hls_encryption and (not apps or app in apps)

    def signing_keys(self) -> list[str]:
        return [k for k in (self.auth_primary_key, self.auth_secondary_key) if k]

    def effective_ingest_domain(self) -> Domain | None:
        """The ingest domain whose streams this streaming domain plays."""
        if self.is_ingest:
            return self
        if self.main_domain_id:
            return self.main_domain.ingest_domain
        return self.ingest_domain

    def main_streaming_domain(self) -> Domain | None:
        """For an ingest domain: the streaming domain associated with it."""
        if not self.is_ingest:
            return self.main_domain or self
        try:
            return self.streaming_domain
        except Domain.DoesNotExist:
            return None


class DomainCertificate(models.Model):
    domain = models.OneToOneField(Domain, on_delete=models.CASCADE, related_name="certificate")
    name = models.CharField(max_length=128)
    certificate_pem = models.TextField()
    private_key = EncryptedTextField()  # never shown again after upload
    subject = models.TextField()
    issuer = models.TextField()
    sans = models.JSONField(default=list)
    not_before = models.DateTimeField()
    not_after = models.DateTimeField()
    fingerprint_sha256 = models.CharField(max_length=128)
    uploaded_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.domain.domain_name})"

    def days_left(self, now: dt.datetime) -> int:
        """Whole days until it expires (negative once it has)."""
        return (self.not_after - now).days
