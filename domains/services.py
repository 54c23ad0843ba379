"""The domain console's rules, shared by the pages and the API.

Every function raises django.core.exceptions.ValidationError with a dict keyed
by the field at fault, and saves nothing when it does.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import string
import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from livecenter.lib.api import FieldErrors, invalid
from livecenter.media import access, liveurl
from livecenter.media.access import AccessListError
from livecenter.media.hls_crypto import MAX_KEY_ROTATION_SEGMENTS, MIN_KEY_ROTATION_SEGMENTS

from .lib import certificates, dnscheck
from .lib.hostnames import HostnameError, in_test_zone, normalize_domain_name
from .models import (
    AccessListMode,
    CnameStatus,
    Domain,
    DomainCertificate,
    DomainType,
    HttpsRedirect,
    LiveCenter,
    Region,
)

log = logging.getLogger(__name__)

SIGNING_KEY_RE = re.compile(r"^[A-Za-z0-9]{6,32}$")
SIGNING_KEY_RULE = "6-32 letters or digits"
GENERATED_KEY_CHARS = 16
MIN_VALIDITY_MINUTES = 1
MAX_VALIDITY_MINUTES = 10 * 365 * 24 * 60  # no upper limit in the seed; ten years keeps timestamps sane

# SRT receiver latency. libsrt takes any value, but below 20 ms a retransmit
# cannot arrive even on a LAN, and above 8 s live is no longer live (and the
# node's receive buffer would have to hold that much of every publisher).
MIN_SRT_LATENCY_MS = 20
MAX_SRT_LATENCY_MS = 8000
# libsrt's SRTO_PASSPHRASE takes 10 to 79 bytes (HAICRYPT_SECRET_MAX_SZ).
# Printable ASCII only, so that characters are bytes and the passphrase can
# be typed into ffmpeg's and OBS's `passphrase=` URL parameter.
SRT_PASSPHRASE_RE = re.compile(r"^[\x20-\x7e]{10,79}$")
SRT_PASSPHRASE_RULE = "10-79 printable ASCII characters"
# ffmpeg's and libsrt's `pbkeylen` (bytes): AES-128, -192 or -256. The node
# takes the publisher's choice.
SRT_KEY_LENGTHS_BYTES = (16, 24, 32)


def _choice(field: str, value: str, choices: type) -> str:
    if value not in choices.values:
        allowed = ", ".join(choices.values)
        raise invalid(field, f"{field} must be one of: {allowed}")
    return value


def generate_signing_key() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(GENERATED_KEY_CHARS))


MASKED_SECRET = "********"


def mask_secret(value: str) -> str:
    """What the console shows of a saved key: that there is one, and not one
    character of it (a key's first characters narrow a guess and tell an
    onlooker which key is in use). Keys are told apart by when they were set."""
    return MASKED_SECRET if value else ""


def cname_target(domain_name: str) -> str:
    zone = settings.LIVECENTER_CNAME_ZONE.strip(".")
    target = f"{domain_name}.{zone}"
    if len(target) > 253:
        # Too long to prefix: a stable digest of the name keeps it unique.
        target = f"{hashlib.sha256(domain_name.encode()).hexdigest()[:32]}.{zone}"
    return target


def owned_domains(owner):
    return Domain.objects.filter(owner=owner).select_related(
        "ingest_domain", "main_domain", "main_domain__ingest_domain"
    )


def get_owned_domain(owner, domain_name: str) -> Domain:
    """The operator's domain by name (either form), or Domain.DoesNotExist.

    Another operator's domain is indistinguishable from a missing one."""
    try:
        name = normalize_domain_name(domain_name)
    except HostnameError:
        raise Domain.DoesNotExist(domain_name) from None
    return owned_domains(owner).get(domain_name=name)


def ingest_domain_for(owner, domain_name: str | None, field: str = "domain") -> Domain:
    """The operator's ingest domain named by `domain_name`: the domain itself,
    or the one a streaming domain plays (directly or through its main domain).
    Streams, media settings and samples are all keyed by it."""
    if not (domain_name or "").strip():
        raise invalid(field, f"{field} is required")
    try:
        domain = get_owned_domain(owner, domain_name.strip())
    except Domain.DoesNotExist:
        raise invalid(field, f"{domain_name} is not one of your domains") from None
    ingest = domain.effective_ingest_domain()
    if ingest is None:
        raise invalid(
            field,
            f"{domain.domain_name} is a streaming domain with no ingest domain; associate it with one,"
            " or name the ingest domain",
        )
    return ingest


def owned_rows(model, owner, domain_name: str | None) -> QuerySet:
    """Rows of `model` (keyed by its `domain`) on the operator's ingest domain
    that `domain_name` names (as ingest_domain_for reads it), or on all their
    domains when it is blank."""
    if (domain_name or "").strip():
        return model.objects.filter(domain=ingest_domain_for(owner, domain_name))
    return model.objects.filter(domain__owner=owner)


def ingest_domains(owner) -> QuerySet[Domain]:
    return owned_domains(owner).filter(domain_type=DomainType.INGEST).order_by("domain_name")


# --- Add, enable, delete ----------------------------------------------------


def add_domain(owner, domain_name: str, domain_type: str, region: str, live_center: str, local: bool = False) -> Domain:
    """`local`: a local or test domain, with no DNS record (models.Domain.local);
    a name under a reserved test zone (`.test`, `.localhost`) is local whatever it says."""
    errors = FieldErrors()
    with errors.check():
        try:
            name = normalize_domain_name(domain_name)
        except HostnameError as exc:
            raise invalid("domain_name", str(exc)) from None
    for field, value, choices in (
        ("domain_type", domain_type, DomainType),
        ("region", region, Region),
        ("live_center", live_center, LiveCenter),
    ):
        with errors.check():
            _choice(field, value, choices)
    errors.raise_any()
    streaming = domain_type == DomainType.STREAMING
    limit = settings.LIVECENTER_MAX_DOMAINS_PER_OPERATOR
    with transaction.atomic():
        # Serialise one operator's additions so two at once cannot pass the quota.
        get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
        if Domain.objects.filter(owner=owner).count() >= limit:
            raise invalid(
                "domain_name", f"you have reached the limit of {limit} domains; delete one before adding another"
            )
        if Domain.objects.filter(domain_name=name).exists():
            raise invalid("domain_name", "the specified domain already exists")
        try:
            with transaction.atomic():
                domain = Domain.objects.create(
                    owner=owner,
                    domain_name=name,
                    domain_type=domain_type,
                    region=region,
                    live_center=live_center,
                    cname=cname_target(name),
                    # RTS and HTML5 auto-transcoding are on for new streaming domains.
                    rts_enabled=streaming,
                    html5_transcode=streaming,
                    auth_enabled=True,
                    auth_primary_key=generate_signing_key(),
                    auth_primary_key_set_at=timezone.now(),
                    local=bool(local) or in_test_zone(name),
                )
        except IntegrityError:
            raise invalid("domain_name", "the specified domain already exists") from None
    log.info("domain added: %s (%s) by %s", name, domain_type, owner)
    return domain


def set_switches(
    domain: Domain,
    *,
    enabled: bool | None = None,
    rts_enabled: bool | None = None,
    html5_transcode: bool | None = None,
) -> Domain:
    """Enable or disable a domain, and switch RTS and HTML5 auto-transcoding."""
    return update_domain(domain, enabled=enabled, rts_enabled=rts_enabled, html5_transcode=html5_transcode)


def update_domain(
    domain: Domain,
    *,
    enabled: bool | None = None,
    local: bool | None = None,
    rts_enabled: bool | None = None,
    html5_transcode: bool | None = None,
    srt_latency_ms: int | None = None,
    srt_passphrase: str | None = None,
    https_enabled: bool | None = None,
    https_redirect: str | None = None,
    hls_encryption: bool | None = None,
    hls_key_rotation_segments: int | None = None,
    hls_encryption_apps: list[str] | None = None,
) -> Domain:
    """The domain's switches and SRT settings at once (the API's PATCH): all
    are checked before any is set, and a value left as None keeps its value."""
    for field, value in (("rts_enabled", rts_enabled), ("html5_transcode", html5_transcode)):
        if value is not None and not domain.is_streaming:
            raise invalid(field, f"{field} applies only to streaming domains")
    changed = _apply_https(domain, https_enabled, https_redirect)
    changed += _apply_srt(domain, srt_latency_ms, srt_passphrase)
    changed += _apply_hls_encryption(domain, hls_encryption, hls_key_rotation_segments, hls_encryption_apps)
    switches = {"rts_enabled": rts_enabled, "html5_transcode": html5_transcode, "enabled": enabled, "local": local}
    for field, value in switches.items():
        if value is not None:
            setattr(domain, field, bool(value))
            changed.append(field)
    if changed:
        domain.save(update_fields=[*changed, "updated_at"])
    return domain


def delete_domain(domain: Domain) -> None:
    log.info("domain deleted: %s", domain.domain_name)
    domain.delete()


# --- CNAME ------------------------------------------------------------------


def verify_cname(domain: Domain) -> dnscheck.CnameLookup:
    """Resolve the domain's CNAME over DNS and record what was found."""
    resolver = dnscheck.make_resolver(settings.LIVECENTER_DNS_RESOLVER, settings.LIVECENTER_DNS_TIMEOUT_SECONDS)
    result = dnscheck.lookup_cname(domain.domain_name, domain.cname, resolver)
    domain.cname_status = CnameStatus.CONFIGURED if result.configured else CnameStatus.PENDING
    domain.cname_found = result.detail
    domain.cname_checked_at = timezone.now()
    domain.save(update_fields=["cname_status", "cname_found", "cname_checked_at", "updated_at"])
    return result


# --- Association ------------------------------------------------------------


def _other_domain(owner, field: str, name: str) -> Domain:
    if not name:
        raise invalid(field, f"{field} is required")
    try:
        return get_owned_domain(owner, name)
    except Domain.DoesNotExist:
        raise invalid(field, f"{name} is not one of your domains") from None


def associate_ingest(streaming: Domain, ingest_name: str) -> Domain:
    """Associate a (main) streaming domain with an ingest domain."""
    if not streaming.is_streaming:
        raise invalid("ingest_domain", "only a streaming domain can be associated with an ingest domain")
    ingest = _other_domain(streaming.owner, "ingest_domain", ingest_name)
    if not ingest.is_ingest:
        raise invalid("ingest_domain", f"{ingest.domain_name} is a streaming domain, not an ingest domain")
    if ingest.live_center != streaming.live_center:
        raise invalid(
            "ingest_domain",
            f"{ingest.domain_name} is in live center {ingest.live_center} but {streaming.domain_name} is in"
            f" {streaming.live_center}; associated domains must share a live center",
        )
    if streaming.main_domain_id:
        raise invalid(
            "ingest_domain",
            f"{streaming.domain_name} is a sub-streaming domain of {streaming.main_domain.domain_name};"
            " unbind it before associating it with an ingest domain",
        )
    current = ingest.main_streaming_domain()
    if current is not None and current.pk != streaming.pk:
        raise invalid(
            "ingest_domain",
            f"{ingest.domain_name} is already associated with {current.domain_name}; to serve it on more"
            " streaming domains, bind them as sub-streaming domains of that one",
        )
    streaming.ingest_domain = ingest
    streaming.save(update_fields=["ingest_domain", "updated_at"])
    return streaming


def bind_main_domain(sub: Domain, main_name: str) -> Domain:
    """Bind a sub-streaming domain to a main streaming domain."""
    if not sub.is_streaming:
        raise invalid("main_domain", "only a streaming domain can be bound as a sub-streaming domain")
    main = _other_domain(sub.owner, "main_domain", main_name)
    if main.pk == sub.pk:
        raise invalid("main_domain", "a streaming domain cannot be its own main streaming domain")
    if not main.is_streaming:
        raise invalid("main_domain", f"{main.domain_name} is an ingest domain, not a streaming domain")
    if main.main_domain_id:
        raise invalid("main_domain", f"{main.domain_name} is itself a sub-streaming domain; bind to its main domain")
    if main.live_center != sub.live_center:
        raise invalid(
            "main_domain",
            f"{main.domain_name} is in live center {main.live_center} but {sub.domain_name} is in"
            f" {sub.live_center}; bound domains must share a live center",
        )
    if sub.ingest_domain_id:
        raise invalid(
            "main_domain",
            f"{sub.domain_name} is associated with ingest domain {sub.ingest_domain.domain_name};"
            " remove that association first",
        )
    if sub.sub_domains.exists():
        raise invalid("main_domain", f"{sub.domain_name} has sub-streaming domains of its own")
    sub.main_domain = main
    sub.save(update_fields=["main_domain", "updated_at"])
    return sub


def clear_mapping(streaming: Domain) -> Domain:
    streaming.ingest_domain = None
    streaming.main_domain = None
    streaming.save(update_fields=["ingest_domain", "main_domain", "updated_at"])
    return streaming


# --- Certificates -----------------------------------------------------------


def _apply_https(domain: Domain, enabled: bool | None, redirect: str | None) -> list[str]:
    """Check and set the HTTPS switches; the fields changed."""
    changed = []
    if enabled is not None:
        if enabled and not DomainCertificate.objects.filter(domain=domain).exists():
            raise invalid("https_enabled", f"upload a certificate for {domain.domain_name} before turning HTTPS on")
        domain.https_enabled = bool(enabled)
        changed.append("https_enabled")
    if redirect is not None:
        if redirect not in HttpsRedirect.values:
            raise invalid(
                "https_redirect", 'https_redirect must be "" (none), "https" (HTTP to HTTPS) or "http" (HTTPS to HTTP)'
            )
        domain.https_redirect = redirect
        changed.append("https_redirect")
    if domain.https_redirect and not domain.https_enabled:
        if redirect:
            raise invalid("https_redirect", "turn HTTPS on before forcing a redirect between HTTP and HTTPS")
        # HTTPS turned off: a redirect to or from it would send viewers nowhere.
        domain.https_redirect = HttpsRedirect.NONE
        changed.append("https_redirect")
    return list(dict.fromkeys(changed))


def configure_https(domain: Domain, *, enabled: bool | None = None, redirect: str | None = None) -> Domain:
    """HTTPS on or off (only with a certificate) and the forced redirect."""
    return update_domain(domain, https_enabled=enabled, https_redirect=redirect)


def upload_certificate(domain: Domain, certificate_pem: str, private_key_pem: str, name: str = "") -> DomainCertificate:
    name = (name or "").strip()
    if len(name) > 128:
        raise invalid("name", "certificate name must be at most 128 characters")
    try:
        info = certificates.check_certificate(domain.domain_name, certificate_pem, private_key_pem, timezone.now())
    except certificates.CertificateError as exc:
        raise invalid(exc.field, exc.message) from None
    values = {
        "name": name or f"{domain.domain_name}-{info.not_after:%Y%m%d}",
        "certificate_pem": info.certificate_pem,
        "private_key": info.private_key_pem,
        "subject": info.subject,
        "issuer": info.issuer,
        "sans": info.sans,
        "not_before": info.not_before,
        "not_after": info.not_after,
        "fingerprint_sha256": info.fingerprint_sha256,
    }
    with transaction.atomic():
        cert, created = DomainCertificate.objects.update_or_create(domain=domain, defaults=values)
        if created:
            # A first certificate turns HTTPS on, as ApsaraVideo Live's upload does;
            # a replacement keeps the switches as they were.
            domain.https_enabled = True
            domain.save(update_fields=["https_enabled", "updated_at"])
    log.info("certificate uploaded for %s: %s", domain.domain_name, info.fingerprint_sha256)
    return cert


def delete_certificate(domain: Domain) -> None:
    with transaction.atomic():
        DomainCertificate.objects.filter(domain=domain).delete()
        domain.https_enabled, domain.https_redirect = False, HttpsRedirect.NONE
        domain.save(update_fields=["https_enabled", "https_redirect", "updated_at"])


# --- URL signing --------------------------------------------------------------


def check_url_signing(
    *, primary_key: str | None = None, secondary_key: str | None = None, validity_minutes: int | None = None
) -> None:
    """configure_url_signing's rules on the values given (None: not given),
    every bad field reported at once; a form with errors of its own asks it
    too (livecenter.lib.pages.add_service_checks)."""
    errors = FieldErrors()
    if primary_key is not None and not SIGNING_KEY_RE.match(primary_key):
        with errors.check():
            raise invalid("primary_key", f"primary key must be {SIGNING_KEY_RULE}")
    if secondary_key and not SIGNING_KEY_RE.match(secondary_key):
        with errors.check():
            raise invalid("secondary_key", f"secondary key must be {SIGNING_KEY_RULE}")
    if validity_minutes is not None:
        with errors.check():
            if not isinstance(validity_minutes, int) or isinstance(validity_minutes, bool):
                raise invalid("validity_minutes", "validity period must be a whole number of minutes")
            if validity_minutes < MIN_VALIDITY_MINUTES:
                raise invalid("validity_minutes", f"validity period must be at least {MIN_VALIDITY_MINUTES} minute")
            if validity_minutes > MAX_VALIDITY_MINUTES:
                raise invalid("validity_minutes", f"validity period must be at most {MAX_VALIDITY_MINUTES} minutes")
    errors.raise_any()


def configure_url_signing(
    domain: Domain,
    *,
    enabled: bool | None = None,
    primary_key: str | None = None,
    secondary_key: str | None = None,
    validity_minutes: int | None = None,
) -> Domain:
    """Change a domain's Type A settings. A key left as None keeps its value;
    an empty secondary key removes it."""
    check_url_signing(primary_key=primary_key, secondary_key=secondary_key, validity_minutes=validity_minutes)
    if enabled is not None:
        domain.auth_enabled = bool(enabled)
    now = timezone.now()
    if primary_key is not None:
        domain.auth_primary_key, domain.auth_primary_key_set_at = primary_key, now
    if secondary_key is not None:
        domain.auth_secondary_key = secondary_key
        domain.auth_secondary_key_set_at = now if secondary_key else None
    if validity_minutes is not None:
        domain.auth_validity_minutes = validity_minutes
    if domain.auth_enabled and not domain.auth_primary_key:
        domain.auth_primary_key, domain.auth_primary_key_set_at = generate_signing_key(), now
    domain.save()
    # Say that keys changed, never what they are.
    log.info("url signing changed for %s (enabled=%s)", domain.domain_name, domain.auth_enabled)
    return domain


# --- HLS encryption -----------------------------------------------------------


MAX_HLS_ENCRYPTION_APPS = 50
HLS_ENCRYPTION_APPS_CHARS = Domain._meta.get_field("hls_encryption_apps").max_length


def configure_hls_encryption(
    domain: Domain,
    *,
    enabled: bool | None = None,
    key_rotation_segments: int | None = None,
    apps: list[str] | None = None,
) -> Domain:
    """Switch a streaming domain's HLS encryption (AES-128, a new key every
    `key_rotation_segments` segments) for `apps` (empty: every app). None
    keeps a value."""
    changed = _apply_hls_encryption(domain, enabled, key_rotation_segments, apps)
    if changed:
        domain.save(update_fields=[*changed, "updated_at"])
    return domain


def _apply_hls_encryption(
    domain: Domain, enabled: bool | None, rotation: int | None, apps: list[str] | None
) -> list[str]:
    """Check, then set, the HLS encryption settings on `domain` (unsaved); the fields changed."""
    values = (("hls_encryption", enabled), ("hls_key_rotation_segments", rotation), ("hls_encryption_apps", apps))
    for field, value in values:
        if value is not None and not domain.is_streaming:
            raise invalid(field, f"{field} applies only to streaming domains: viewers play HLS from them")
    if rotation is not None and (
        not isinstance(rotation, int)
        or isinstance(rotation, bool)
        or not MIN_KEY_ROTATION_SEGMENTS <= rotation <= MAX_KEY_ROTATION_SEGMENTS
    ):
        raise invalid(
            "hls_key_rotation_segments",
            f"key rotation must be a whole number of segments, {MIN_KEY_ROTATION_SEGMENTS}-{MAX_KEY_ROTATION_SEGMENTS}",
        )
    if apps is not None:
        apps = list(dict.fromkeys(app.strip() for app in apps if app.strip()))
        for app in apps:
            if not liveurl.NAME_RE.match(app):
                raise invalid("hls_encryption_apps", f"app name {app[:64]!r} must be {liveurl.NAME_RULE}")
        if len(apps) > MAX_HLS_ENCRYPTION_APPS or len(",".join(apps)) > HLS_ENCRYPTION_APPS_CHARS:
            raise invalid(
                "hls_encryption_apps",
                f"at most {MAX_HLS_ENCRYPTION_APPS} apps, {HLS_ENCRYPTION_APPS_CHARS} characters in all;"
                " leave it empty for every app",
            )
    changed = []
    if enabled is not None:
        domain.hls_encryption = bool(enabled)
        changed.append("hls_encryption")
    if rotation is not None:
        domain.hls_key_rotation_segments = rotation
        changed.append("hls_key_rotation_segments")
    if apps is not None:
        domain.hls_encryption_apps = ",".join(apps)
        changed.append("hls_encryption_apps")
    if changed:
        log.info(
            "hls encryption changed for %s (enabled=%s, key every %d segments, apps=%s)",
            domain.domain_name,
            domain.hls_encryption,
            domain.hls_key_rotation_segments,
            domain.hls_encryption_apps or "all",
        )
    return changed


# --- SRT ----------------------------------------------------------------------


def configure_srt(domain: Domain, *, srt_latency_ms: int | None = None, srt_passphrase: str | None = None) -> Domain:
    """Change an ingest domain's SRT settings. None keeps a value; an empty
    passphrase removes it, so publishers push unencrypted."""
    changed = _apply_srt(domain, srt_latency_ms, srt_passphrase)
    if changed:
        domain.save(update_fields=[*changed, "updated_at"])
    return domain


def check_srt(*, srt_latency_ms: int | None = None, srt_passphrase: str | None = None) -> None:
    """configure_srt's rules on the values given (None: not given), every bad
    field reported at once."""
    latency_ms, passphrase = srt_latency_ms, srt_passphrase
    errors = FieldErrors()
    if latency_ms is not None:
        with errors.check():
            if not isinstance(latency_ms, int) or isinstance(latency_ms, bool):
                raise invalid("srt_latency_ms", "SRT latency must be a whole number of milliseconds")
            if not MIN_SRT_LATENCY_MS <= latency_ms <= MAX_SRT_LATENCY_MS:
                raise invalid(
                    "srt_latency_ms",
                    f"SRT latency must be between {MIN_SRT_LATENCY_MS} and {MAX_SRT_LATENCY_MS} milliseconds",
                )
    if passphrase:
        # The message never repeats the passphrase, nor its length.
        with errors.check():
            if not SRT_PASSPHRASE_RE.match(passphrase):
                raise invalid("srt_passphrase", f"SRT passphrase must be {SRT_PASSPHRASE_RULE}")
            if passphrase != passphrase.strip():
                raise invalid("srt_passphrase", "SRT passphrase must not begin or end with a space")
    errors.raise_any()


def _apply_srt(domain: Domain, latency_ms: int | None, passphrase: str | None) -> list[str]:
    """Check, then set, SRT settings on `domain` (unsaved); the fields changed."""
    for field, value in (("srt_latency_ms", latency_ms), ("srt_passphrase", passphrase)):
        if value is not None and not domain.is_ingest:
            raise invalid(
                field,
                f"{field} applies only to ingest domains: SRT publishers push to an ingest domain,"
                " and its settings apply to the streaming domains that play it",
            )
    check_srt(srt_latency_ms=latency_ms, srt_passphrase=passphrase)
    changed = []
    if latency_ms is not None:
        domain.srt_latency_ms = latency_ms
        changed.append("srt_latency_ms")
    if passphrase is not None:
        domain.srt_passphrase = passphrase
        domain.srt_passphrase_set_at = timezone.now() if passphrase else None
        changed += ["srt_passphrase", "srt_passphrase_set_at"]
    if changed:
        # Say what changed, never the passphrase.
        state = "unchanged" if passphrase is None else ("set" if passphrase else "removed")
        log.info(
            "srt settings changed for %s (latency=%d ms, passphrase %s)",
            domain.domain_name,
            domain.srt_latency_ms,
            state,
        )
    return changed


def srt_ingest_hint(domain: Domain) -> str | None:
    """What an SRT publisher to an encrypted ingest domain must add to the
    generated URL (never the passphrase itself); None when it needs nothing."""
    if not domain.is_ingest or not domain.srt_passphrase:
        return None
    *shorter, longest = (str(n) for n in SRT_KEY_LENGTHS_BYTES)
    return (
        f"SRT ingest to {domain.domain_name} is encrypted: add &passphrase={{your SRT passphrase, percent-encoded}}"
        f" to the SRT URL, and optionally &pbkeylen={', '.join(shorter)} or {longest} (the AES key length in bytes;"
        f" {SRT_KEY_LENGTHS_BYTES[0]} when left out). A publisher without the passphrase, or with another one,"
        " is refused."
    )


# --- URL generator --------------------------------------------------------------


@dataclass(frozen=True)
class GeneratedUrls:
    ingest_domain: str | None
    streaming_domain: str | None
    app: str
    stream: str
    template: str | None
    expires_at: int
    ingest: dict
    playback: dict
    notes: list[str]


def _signed_host(domain: Domain) -> liveurl.SignedHost:
    return liveurl.SignedHost(
        host=domain.domain_name,
        key=domain.auth_primary_key if domain.auth_enabled else None,
        validity_seconds=domain.validity_seconds,
        https=domain.https_enabled,
    )


def _ports() -> liveurl.Ports:
    return liveurl.Ports(
        rtmp=settings.LIVECENTER_RTMP_PORT,
        http=settings.LIVECENTER_HTTP_PORT,
        srt=settings.LIVECENTER_SRT_PORT,
        https=settings.LIVECENTER_HTTPS_PORT,
        rtmps=settings.LIVECENTER_RTMPS_PORT,
    )


def tls_reach_notes(ingest: Domain | None, streaming: Domain | None) -> list[str]:
    """What the media nodes' heartbeats say against the https:// and rtmps://
    URLs of these domains (issue 15). The nodes app, which reads the beats,
    sets it (nodes/apps.py: this app never imports that one); nothing to say
    until it has."""
    return []


def generate_urls(
    owner,
    domain_name: str,
    app: str,
    stream: str,
    template: str | None = None,
    validity_minutes: int | None = None,
    now: float | None = None,
) -> GeneratedUrls:
    """Signed ingest and playback URLs for a stream, from either side of an
    association. The URLs expire `validity_minutes` from now (default: the
    domain's validity period)."""
    domain = _other_domain(owner, "domain", domain_name)
    if not liveurl.NAME_RE.match(app or ""):
        raise invalid("app", f"app name must be {liveurl.NAME_RULE}")
    if not liveurl.NAME_RE.match(stream or ""):
        raise invalid("stream", f"stream name must be {liveurl.NAME_RULE}")
    template = (template or "").strip() or None
    if template is not None and not liveurl.TEMPLATE_RE.match(template):
        raise invalid("template", "transcoding template id must be 1-32 letters, digits or '-'")
    if validity_minutes is not None and not (MIN_VALIDITY_MINUTES <= validity_minutes <= MAX_VALIDITY_MINUTES):
        raise invalid(
            "validity_minutes", f"validity must be between {MIN_VALIDITY_MINUTES} and {MAX_VALIDITY_MINUTES} minutes"
        )
    if domain.is_ingest:
        ingest, streaming = domain, domain.main_streaming_domain()
    else:
        ingest, streaming = domain.effective_ingest_domain(), domain
    notes = []
    if streaming is None:
        notes.append(f"{domain.domain_name} has no associated streaming domain, so there are no playback URLs.")
    if ingest is None:
        notes.append(f"{domain.domain_name} is not associated with an ingest domain, so there are no ingest URLs.")
    for d in (ingest, streaming):
        if d is not None and not d.enabled:
            notes.append(f"{d.domain_name} is disabled; its URLs will be refused until it is enabled.")
    srt_hint = srt_ingest_hint(ingest) if ingest is not None else None
    if srt_hint:
        notes.append(srt_hint)
    notes += tls_reach_notes(ingest, streaming)
    now = time.time() if now is None else now
    minutes = validity_minutes or domain.auth_validity_minutes
    expires_at = int(now) + minutes * 60
    ports = _ports()
    return GeneratedUrls(
        ingest_domain=ingest.domain_name if ingest else None,
        streaming_domain=streaming.domain_name if streaming else None,
        app=app,
        stream=stream,
        template=template,
        expires_at=expires_at,
        ingest=liveurl.ingest_urls(_signed_host(ingest), app, stream, expires_at, ports) if ingest else {},
        playback=(
            liveurl.playback_urls(_signed_host(streaming), app, stream, template, expires_at, ports)
            if streaming
            else {}
        ),
        notes=notes,
    )


# --- Access lists -------------------------------------------------------------


def _acl_mode(field: str, value: str | None, current: str) -> str:
    if value is None:
        return current
    if value not in AccessListMode.values:
        raise invalid(field, f"{_ACL_LABELS[field]} must be one of: {', '.join(AccessListMode.values)}")
    return value


_ACL_LABELS = {
    "ip_mode": "IP list mode",
    "ip_entries": "IP list",
    "referer_mode": "Referer list mode",
    "referer_entries": "Referer list",
}
_ACL_FIELDS = ("ip_acl_mode", "ip_acl_entries", "referer_acl_mode", "referer_acl_entries", "referer_acl_allow_empty")


def _acl_entries(field: str, mode: str, entries: list[str] | None, current: list[str], parse, what: str) -> list[str]:
    """The list's entries once changed: parsed (AccessListError becomes a
    message naming the entry), none while the list is off, at least one while on."""
    if entries is None:
        entries = [] if mode == AccessListMode.OFF else current
    else:
        try:
            entries = list(parse(entries))
        except AccessListError as exc:
            raise invalid(field, f"{_ACL_LABELS[field]}: {exc}") from None
        if entries and mode == AccessListMode.OFF:
            raise invalid(field, f"{_ACL_LABELS[field]}: the list is off; choose allow or deny to use entries")
    if mode != AccessListMode.OFF and not entries:
        raise invalid(field, f"{_ACL_LABELS[field]}: add at least one {what}, or switch the list off")
    return entries


def configure_access_control(
    domain: Domain,
    *,
    ip_mode: str | None = None,
    ip_entries: list[str] | None = None,
    referer_mode: str | None = None,
    referer_entries: list[str] | None = None,
    referer_allow_empty: bool | None = None,
) -> Domain:
    """Change a domain's access lists (livecenter/media/access.py). None
    keeps a value. Each list is off, an allow list or a deny list (never
    both, as ApsaraVideo Live's); a list switched off forgets its entries.
    The Referer list is a streaming domain's: publishers (RTMP, SRT) send no
    Referer. Nodes see the change at their next policy lookup (within
    LIVECENTER_POLICY_CACHE_SECONDS; this process's at once, nodes.receivers)."""
    referer_given = (referer_mode, referer_entries, referer_allow_empty) != (None, None, None)
    if referer_given and not domain.is_streaming:
        field = "referer_mode" if referer_mode is not None else "referer_entries"
        raise invalid(
            field, "the Referer list applies only to streaming domains: RTMP and SRT publishers send no Referer"
        )
    ip_mode = _acl_mode("ip_mode", ip_mode, domain.ip_acl_mode)
    referer_mode = _acl_mode("referer_mode", referer_mode, domain.referer_acl_mode)
    errors = FieldErrors()
    ips = referers = []
    with errors.check():
        ips = _acl_entries("ip_entries", ip_mode, ip_entries, domain.ip_acl_entries, access.parse_ip_entries,
                           "address or network")  # fmt: skip
    with errors.check():
        referers = _acl_entries("referer_entries", referer_mode, referer_entries, domain.referer_acl_entries,
                                access.parse_referer_entries, "host")  # fmt: skip
    if referer_allow_empty is None:
        allow_empty = domain.referer_acl_allow_empty and referer_mode == AccessListMode.ALLOW
    else:
        allow_empty = bool(referer_allow_empty)
        if allow_empty and referer_mode != AccessListMode.ALLOW:
            with errors.check():
                raise invalid("referer_allow_empty", "allowing an empty Referer applies to an allow list only")
    errors.raise_any()
    domain.ip_acl_mode, domain.ip_acl_entries = ip_mode, ips
    domain.referer_acl_mode, domain.referer_acl_entries = referer_mode, referers
    domain.referer_acl_allow_empty = allow_empty
    domain.save(update_fields=[*_ACL_FIELDS, "updated_at"])
    log.info(
        "access lists changed for %s (IP: %s, %d entries; Referer: %s, %d entries%s)",
        domain.domain_name, ip_mode, len(ips), referer_mode, len(referers), ", empty allowed" if allow_empty else "",
    )  # fmt: skip
    return domain
