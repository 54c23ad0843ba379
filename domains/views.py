"""Console pages for the domain workflow.

Each view authorises (an operator sees only their own domains; anyone else's
is a 404, indistinguishable from a missing one), validates with a form, calls
one service and renders or redirects with a message (STYLE.md). The rules are
in services.py.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from livecenter.lib.pages import add_service_errors, save_settings
from livecenter.templatetags.console import utc_text

from . import services
from .direct import direct_forms
from .forms import (
    AccessControlForm,
    AddDomainForm,
    AssociateIngestForm,
    BindMainDomainForm,
    CertificateForm,
    HlsEncryptionForm,
    HttpsForm,
    RtsForm,
    SrtForm,
    UrlGeneratorForm,
    UrlSigningForm,
)
from .models import MAINLAND_LIVE_CENTERS, Domain, DomainType, Region, icp_filing_required

# The generator's URLs, in the order the page shows them, with the ids a
# browser test reads them by (`url-ingest-rtmp`, `url-playback-flv`, ...).
INGEST_URL_LABELS = {"rtmp": "RTMP", "srt": "SRT", "rts": "RTS (artc://)", "whip": "RTS over WHIP (HTTP)"}
PLAYBACK_URL_LABELS = {
    "rtmp": "RTMP",
    "flv": "HTTP-FLV",
    "m3u8": "HLS (M3U8)",
    "rts": "RTS (artc://)",
    "whep": "RTS over WHEP (HTTP)",
    "srt": "SRT (ffplay, VLC; not in browsers)",
}


def _owned_domain(request, domain_name: str) -> Domain:
    try:
        return services.get_owned_domain(request.user, domain_name)
    except Domain.DoesNotExist:
        raise Http404("no such domain") from None


def _certificate(domain: Domain):
    # A missing reverse one-to-one raises an AttributeError subclass.
    return getattr(domain, "certificate", None)


def _redirect_back(request, domain: Domain):
    """To the page the form was on (a `next` field), else the domain's page."""
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return redirect(target)
    return redirect("domains:detail", domain.domain_name)


# --- List, add, detail, enable/disable, delete ---------------------------------


@login_required
def domain_list(request):
    domains = list(services.owned_domains(request.user).select_related("streaming_domain", "certificate"))
    return render(
        request,
        "domains/list.html",
        {"domains": domains, "limit": settings.LIVECENTER_MAX_DOMAINS_PER_OPERATOR},
    )


@login_required
def domain_add(request):
    form = AddDomainForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        try:
            domain = services.add_domain(request.user, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            if domain.local:
                messages.success(
                    request,
                    f"Added {domain.display_name} as a local domain: it is online without DNS, and clients reach"
                    " the media node by its address with domain= (see the URL generator).",
                )
            else:
                messages.success(
                    request,
                    f"Added {domain.display_name}. Add the CNAME record below at your DNS provider, then verify it.",
                )
            return redirect("domains:cname", domain.domain_name)
    region, live_center = form.selection()
    return render(
        request,
        "domains/add.html",
        {
            "form": form,
            "icp_required": icp_filing_required(region, live_center),
            "mainland_live_centers": " ".join(sorted(MAINLAND_LIVE_CENTERS)),
            "icp_free_region": Region.OVERSEAS,
            "domain_count": services.owned_domains(request.user).count(),
            "limit": settings.LIVECENTER_MAX_DOMAINS_PER_OPERATOR,
        },
    )


@login_required
def domain_detail(request, domain_name: str):
    domain = _owned_domain(request, domain_name)
    return render(
        request,
        "domains/detail.html",
        {"domain": domain, "certificate": _certificate(domain), "tab": "detail"},
    )


def _set_enabled(request, domain_name: str, enabled: bool):
    domain = _owned_domain(request, domain_name)
    services.set_switches(domain, enabled=enabled)
    if enabled:
        messages.success(request, f"Enabled {domain.display_name}.")
    else:
        messages.success(request, f"Disabled {domain.display_name}: its streams are refused until it is enabled.")
    return _redirect_back(request, domain)


@login_required
@require_POST
def domain_enable(request, domain_name: str):
    return _set_enabled(request, domain_name, True)


@login_required
@require_POST
def domain_disable(request, domain_name: str):
    return _set_enabled(request, domain_name, False)


@login_required
def domain_delete(request, domain_name: str):
    """GET asks for confirmation; only POST deletes."""
    domain = _owned_domain(request, domain_name)
    if request.method == "POST":
        services.delete_domain(domain)
        messages.success(request, f"Deleted {domain.display_name}.")
        return redirect("domains:list")
    return render(request, "domains/confirm_delete.html", {"domain": domain})


# --- CNAME ------------------------------------------------------------------------


@login_required
def cname_guide(request, domain_name: str):
    domain = _owned_domain(request, domain_name)
    context = {"domain": domain, "tab": "cname"}
    if domain.is_ingest:
        context.update(srt_port=settings.LIVECENTER_SRT_PORT, srt_hint=services.srt_ingest_hint(domain))
    return render(request, "domains/cname.html", context)


@login_required
@require_POST
def cname_verify(request, domain_name: str):
    domain = _owned_domain(request, domain_name)
    result = services.verify_cname(domain)
    if result.configured:
        messages.success(request, f"CNAME configured: {result.detail}.")
    else:
        messages.warning(request, f"CNAME pending: {result.detail}.")
    return redirect("domains:cname", domain.domain_name)


@login_required
@require_POST
def domain_local(request, domain_name: str):
    """Mark the domain local or test (no DNS record expected), or not."""
    domain = _owned_domain(request, domain_name)
    local = request.POST.get("local") == "on"
    services.update_domain(domain, local=local)
    if local:
        messages.success(
            request,
            f"{domain.display_name} is now a local domain: online without a CNAME record; the player and the URL"
            " generator send clients to the media node's address with domain=.",
        )
    else:
        messages.success(request, f"{domain.display_name} is no longer a local domain: it is online once its CNAME is.")
    return redirect("domains:cname", domain.domain_name)


# --- Association (mapping) ------------------------------------------------------------


def _mapping_page(request, domain: Domain, associate_form=None, bind_form=None):
    owned = services.owned_domains(request.user)
    context = {"domain": domain, "tab": "mapping"}
    if domain.is_streaming:
        context["associate_form"] = associate_form or AssociateIngestForm(
            ingest_domains=owned.filter(domain_type=DomainType.INGEST),
            initial={"ingest_domain": domain.ingest_domain.domain_name if domain.ingest_domain_id else None},
        )
        context["bind_form"] = bind_form or BindMainDomainForm(
            streaming_domains=_main_candidates(owned, domain),
            initial={"main_domain": domain.main_domain.domain_name if domain.main_domain_id else None},
        )
        context["sub_domains"] = domain.sub_domains.order_by("domain_name")
    else:
        # Only a streaming domain is associated or bound; show why a form
        # posted for this ingest domain was refused.
        context["refused_forms"] = [f for f in (associate_form, bind_form) if f is not None]
        streaming = domain.main_streaming_domain()
        context["streaming"] = streaming
        context["sub_domains"] = streaming.sub_domains.order_by("domain_name") if streaming else []
    return render(request, "domains/mapping.html", context)


def _main_candidates(owned, domain: Domain):
    """Streaming domains this one could be bound to: main ones, not itself."""
    return owned.filter(domain_type=DomainType.STREAMING, main_domain__isnull=True).exclude(pk=domain.pk)


@login_required
def mapping(request, domain_name: str):
    return _mapping_page(request, _owned_domain(request, domain_name))


@login_required
@require_POST
def mapping_associate(request, domain_name: str):
    domain = _owned_domain(request, domain_name)
    ingest_domains = services.owned_domains(request.user).filter(domain_type=DomainType.INGEST)
    form = AssociateIngestForm(request.POST, ingest_domains=ingest_domains)
    if form.is_valid():
        try:
            services.associate_ingest(domain, form.cleaned_data["ingest_domain"])
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(
                request, f"Associated {domain.display_name} with ingest domain {domain.ingest_domain.display_name}."
            )
            return redirect("domains:mapping", domain.domain_name)
    return _mapping_page(request, domain, associate_form=form)


@login_required
@require_POST
def mapping_bind(request, domain_name: str):
    domain = _owned_domain(request, domain_name)
    form = BindMainDomainForm(
        request.POST, streaming_domains=_main_candidates(services.owned_domains(request.user), domain)
    )
    if form.is_valid():
        try:
            services.bind_main_domain(domain, form.cleaned_data["main_domain"])
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(
                request, f"Bound {domain.display_name} as a sub-streaming domain of {domain.main_domain.display_name}."
            )
            return redirect("domains:mapping", domain.domain_name)
    return _mapping_page(request, domain, bind_form=form)


@login_required
@require_POST
def mapping_clear(request, domain_name: str):
    domain = _owned_domain(request, domain_name)
    if not (domain.ingest_domain_id or domain.main_domain_id):
        messages.info(request, f"{domain.display_name} has no association to remove.")
    else:
        services.clear_mapping(domain)
        messages.success(request, f"Removed the association of {domain.display_name}.")
    return redirect("domains:mapping", domain.domain_name)


# --- Certificate ----------------------------------------------------------------------


def _https_form(domain: Domain, data=None) -> HttpsForm:
    return HttpsForm(data, initial={"https_enabled": domain.https_enabled, "https_redirect": domain.https_redirect})


def _certificate_page(request, domain: Domain, form: CertificateForm, https_form: HttpsForm):
    cert = _certificate(domain)
    context = {"domain": domain, "certificate": cert, "form": form, "https_form": https_form, "tab": "certificate",
               "days_left": cert.days_left(timezone.now()) if cert is not None else None}  # fmt: skip
    return render(request, "domains/certificate.html", context)


@login_required
def certificate(request, domain_name: str):
    domain = _owned_domain(request, domain_name)
    form = CertificateForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        try:
            cert = services.upload_certificate(domain, data["certificate"], data["private_key"], name=data["name"])
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Uploaded certificate {cert.name}; it expires {utc_text(cert.not_after)}.")
            return redirect("domains:certificate", domain.domain_name)
    return _certificate_page(request, domain, form, _https_form(domain))


@login_required
@require_POST
def https_settings(request, domain_name: str):
    domain = _owned_domain(request, domain_name)
    form = _https_form(domain, request.POST)

    def save():
        data = form.cleaned_data
        services.configure_https(domain, enabled=data["https_enabled"], redirect=data["https_redirect"])

    if save_settings(request, form, domain.display_name, save):
        return redirect("domains:certificate", domain.domain_name)
    domain.refresh_from_db()
    return _certificate_page(request, domain, CertificateForm(), form)


@login_required
@require_POST
def certificate_delete(request, domain_name: str):
    domain = _owned_domain(request, domain_name)
    services.delete_certificate(domain)
    messages.success(request, f"Deleted the certificate of {domain.display_name}.")
    return redirect("domains:certificate", domain.domain_name)


# --- RTS ------------------------------------------------------------------------------


@login_required
def rts(request, domain_name: str):
    domain = _owned_domain(request, domain_name)
    initial = {"rts_enabled": domain.rts_enabled, "html5_transcode": domain.html5_transcode}
    form = RtsForm(request.POST if request.method == "POST" else None, initial=initial)
    if save_settings(request, form, domain.display_name, lambda: services.set_switches(domain, **form.cleaned_data)):
        return redirect("domains:rts", domain.domain_name)
    return render(request, "domains/rts.html", {"domain": domain, "form": form, "tab": "rts"})


# --- HLS encryption -----------------------------------------------------------------------


@login_required
def hls_encryption(request, domain_name: str):
    domain = _owned_domain(request, domain_name)
    initial = {
        "hls_encryption": domain.hls_encryption,
        "hls_key_rotation_segments": domain.hls_key_rotation_segments,
        "hls_encryption_apps": ", ".join(domain.hls_encryption_app_list),
    }
    form = HlsEncryptionForm(request.POST if request.method == "POST" else None, initial=initial)
    if save_settings(
        request, form, domain.display_name, lambda: services.configure_hls_encryption(domain, **form.changes())
    ):
        return redirect("domains:hls-encryption", domain.domain_name)
    context = {"domain": domain, "form": form, "tab": "hls-encryption"}
    return render(request, "domains/hls_encryption.html", context)


# --- SRT ----------------------------------------------------------------------------------


@login_required
def srt(request, domain_name: str):
    domain = _owned_domain(request, domain_name)
    initial = {"srt_latency_ms": domain.srt_latency_ms}
    form = SrtForm(request.POST if request.method == "POST" else None, initial=initial)
    note = "publishers connecting from now on use them; a publisher already pushing keeps its session's settings"
    if save_settings(
        request, form, domain.display_name, lambda: services.configure_srt(domain, **form.changes()), note
    ):
        return redirect("domains:srt", domain.domain_name)
    return render(
        request,
        "domains/srt.html",
        {
            "domain": domain,
            "form": form,
            "passphrase_masked": services.mask_secret(domain.srt_passphrase),
            "srt_port": settings.LIVECENTER_SRT_PORT,
            "srt_hint": services.srt_ingest_hint(domain),
            "tab": "srt",
        },
    )


# --- URL signing ------------------------------------------------------------------------


@login_required
def url_signing(request, domain_name: str):
    domain = _owned_domain(request, domain_name)
    initial = {"enabled": domain.auth_enabled, "validity_minutes": domain.auth_validity_minutes}
    form = UrlSigningForm(request.POST if request.method == "POST" else None, initial=initial)
    if save_settings(
        request, form, domain.display_name, lambda: services.configure_url_signing(domain, **form.changes())
    ):
        return redirect("domains:url-signing", domain.domain_name)
    return render(
        request,
        "domains/url_signing.html",
        {
            "domain": domain,
            "form": form,
            "primary_key_masked": services.mask_secret(domain.auth_primary_key),
            "secondary_key_masked": services.mask_secret(domain.auth_secondary_key),
            "tab": "url-signing",
        },
    )


# --- Access lists --------------------------------------------------------------------------


@login_required
def access_control(request, domain_name: str):
    domain = _owned_domain(request, domain_name)
    initial = {
        "ip_mode": domain.ip_acl_mode,
        "ip_entries": "\n".join(domain.ip_acl_entries),
        "referer_mode": domain.referer_acl_mode,
        "referer_entries": "\n".join(domain.referer_acl_entries),
        "referer_allow_empty": domain.referer_acl_allow_empty,
    }
    form = AccessControlForm(
        request.POST if request.method == "POST" else None, initial=initial, streaming=domain.is_streaming
    )
    if save_settings(
        request,
        form,
        domain.display_name,
        lambda: services.configure_access_control(domain, **form.changes()),
        "nodes apply them in seconds",
    ):
        return redirect("domains:access-control", domain.domain_name)
    return render(request, "domains/access_control.html", {"domain": domain, "form": form, "tab": "access-control"})


# --- URL generator --------------------------------------------------------------------------


@login_required
def url_generator(request):
    domains = services.owned_domains(request.user).order_by("domain_name")
    if request.method == "POST":
        form = UrlGeneratorForm(request.POST, domains=domains)
    else:
        form = UrlGeneratorForm(domains=domains, initial={"domain": request.GET.get("domain", "")})
    generated = None
    if form.is_bound and form.is_valid():
        try:
            data = form.cleaned_data
            generated = services.generate_urls(
                request.user,
                data["domain"],
                data["app"],
                data["stream"],
                template=data["template"],
                validity_minutes=data["validity_minutes"],
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
    context = {"form": form, "has_domains": bool(domains), "generated": generated}
    if generated is not None:
        # The same URLs to the node's address with domain= (domains/direct.py).
        forms = direct_forms(domains, generated, request.get_host())
        for side, urls, labels in (
            ("ingest", generated.ingest, INGEST_URL_LABELS),
            ("playback", generated.playback, PLAYBACK_URL_LABELS),
        ):
            context[f"{side}_rows"] = [
                (f"url-{side}-{key}", label, urls[key]) for key, label in labels.items() if key in urls
            ]
            if side in forms:
                context[f"{side}_reach"], direct = forms[side]
                context[f"{side}_direct_rows"] = [
                    (f"url-{side}-direct-{key}", label, direct[key]) for key, label in labels.items() if key in direct
                ]
        context["expires_at"] = dt.datetime.fromtimestamp(generated.expires_at, dt.UTC)
    return render(request, "domains/url_generator.html", context)
