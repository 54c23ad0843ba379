"""Console pages for streams: online streams, publish history, forbidden
streams, forbid and resume (aliyun_spec.md 3.10); the web player and the
Go live page (issue 17), which publishes from the browser over WHIP.

Each view validates with a form, calls one service (which sees only the
operator's own domains) and renders or redirects with a message.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from domains import services as domain_services
from domains.direct import media_host
from domains.models import Domain
from livecenter.lib.pages import add_service_errors, paginate, read_filter, service_rows
from livecenter.templatetags.console import utc_text

from . import services, signals
from .forms import DomainFilterForm, ForbidForm, GoLiveForm, HistoryFilterForm, PlayerForm, StreamFilterForm, StreamForm
from .golive import publish_target
from .player import live_choices, pasted_sources, player_sources

CONTROL_EVENTS_SHOWN = 20
# Live streams the player page lists to pick from.
PLAYER_LIVE_LISTED = 50


@login_required
def online(request):
    domains = domain_services.ingest_domains(request.user)
    form, data = read_filter(request, StreamFilterForm, domains=domains)
    rows = []
    if data is not None:
        rows = service_rows(
            form,
            services.list_online_streams,
            request.user,
            data.get("domain") or None,
            app=data.get("app") or None,
            stream=data.get("stream") or None,
        )
    page, query = paginate(request, rows)
    # The media workers add each stream's latest snapshot (mediajobs/receivers.py).
    signals.online_streams_listed.send(sender=None, sessions=page.object_list)
    return render(
        request,
        "streams/online.html",
        {"form": form, "page": page, "query": query, "has_domains": domains.exists(), "tab": "online"},
    )


@login_required
def history(request):
    domains = domain_services.ingest_domains(request.user)
    form, data = read_filter(request, HistoryFilterForm, domains=domains)
    rows, time_range = [], None
    if data is not None:
        try:
            time_range = services.history_range(data.get("start_time"), data.get("end_time"))
        except ValidationError as exc:
            add_service_errors(form, exc)
    if time_range is not None:
        rows = service_rows(
            form,
            services.list_publish_history,
            request.user,
            data.get("domain") or None,
            start=time_range[0],
            end=time_range[1],
            app=data.get("app") or None,
            stream=data.get("stream") or None,
            order_by="publish_time_desc",
        )
    page, query = paginate(request, rows)
    return render(
        request,
        "streams/history.html",
        {
            "form": form,
            "page": page,
            "query": query,
            "range": time_range,
            "has_domains": domains.exists(),
            "tab": "history",
        },
    )


@login_required
def blocked(request):
    """Forbidden streams, and the latest forbids and resumes, of one domain or all."""
    form, data = read_filter(request, DomainFilterForm, domains=domain_services.ingest_domains(request.user))
    rows, events = [], []
    if data is not None:
        domain = data.get("domain") or None
        rows = service_rows(form, services.list_blocked_streams, request.user, domain)
        events = service_rows(form, services.list_control_history, request.user, domain)[:CONTROL_EVENTS_SHOWN]
    page, query = paginate(request, rows)
    return render(
        request,
        "streams/blocked.html",
        {"form": form, "page": page, "query": query, "events": events, "tab": "blocked"},
    )


@login_required
def forbid(request):
    """GET shows the form (filled from the query: a Forbid button's link);
    POST forbids, or interrupts only this once."""
    domains = domain_services.ingest_domains(request.user)
    if request.method == "POST":
        form = ForbidForm(request.POST, domains=domains)
    else:
        initial = {k: request.GET.get(k, "") for k in ("domain", "app", "stream")}
        form = ForbidForm(domains=domains, initial=initial)
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        try:
            result = services.forbid_stream(
                request.user,
                data["domain"],
                data["app"],
                data["stream"],
                resume_at=data["resume_time"],
                oneshot=data["oneshot"],
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            name = f"{result.domain_name}/{result.app}/{result.stream}"
            if result.oneshot:
                messages.success(request, f"Interrupted {name}: its publisher was cut; it may publish again.")
                return redirect("streams:online")
            messages.success(
                request,
                f"Forbade {name}: its publisher was cut and publishing is refused until {utc_text(result.resume_at)}.",
            )
            return redirect("streams:blocked")
    return render(request, "streams/forbid.html", {"form": form, "has_domains": domains.exists(), "tab": "online"})


@login_required
@require_POST
def resume(request):
    form = StreamForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            result = services.resume_stream(request.user, data["domain"], data["app"], data["stream"])
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            name = f"{result.domain_name}/{result.app}/{result.stream}"
            if result.resumed:
                messages.success(request, f"Resumed {name}: it may publish again.")
            else:
                messages.info(request, f"{name} was not forbidden.")
            return redirect("streams:blocked")
    for errors in form.errors.values():
        for error in errors:
            messages.error(request, error)
    return redirect("streams:blocked")


@login_required
def player(request):
    """The web player for one of the operator's streams (?domain=&app=&stream=
    &protocol=auto|rts|flv|llhls|hls&template=), or a pasted playback URL of
    one of the operator's streaming domains (?url=): playback URLs for
    static/js/player.js. Without a query it shows the form and the live
    streams to pick from; a bad query is a 400 with the field named."""
    domains = domain_services.owned_domains(request.user).order_by("domain_name")
    form = PlayerForm(request.GET or None, domains=domains, initial={"protocol": "auto"})
    sources = None
    if form.is_bound and form.is_valid() and form.cleaned_data["url"]:
        try:
            sources = pasted_sources(form.cleaned_data["url"], domains, request.get_host())
        except ValidationError as exc:
            add_service_errors(form, exc)
    elif form.is_bound and form.is_valid():
        data = form.cleaned_data
        try:
            urls = domain_services.generate_urls(
                request.user, data["domain"], data["app"], data["stream"], template=data["template"]
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            if urls.playback:
                streaming = domains.filter(domain_name=urls.streaming_domain).first()
                rts = streaming is not None and streaming.rts_enabled
                encrypted = streaming is not None and streaming.hls_encrypts(data["app"])
                host = media_host(streaming, request.get_host())
                sources = {
                    **player_sources(urls, host, rts_enabled=rts),
                    "protocol": data["protocol"],
                    # What the node encrypts HLS with (nodes.bridge: DomainConfig.hls_key_period).
                    "hls_encryption": "AES-128" if encrypted else None,
                }
            else:
                form.add_error("domain", " ".join(urls.notes))
    status = 400 if form.is_bound and form.errors else 200
    context = {"form": form, "sources": sources, "has_domains": domains.exists()}
    if sources is not None:
        # The player reports a stream that is not live once the node has waited this long for it.
        sources["play_wait_seconds"] = settings.LIVECENTER_PLAY_WAIT_SECONDS
    else:
        # Streams to pick from (the newest first).
        sessions = services.list_online_streams(request.user)[:PLAYER_LIVE_LISTED]
        context["live"] = live_choices(sessions, list(domains))
    return render(request, "streams/player.html", context, status=status)


@login_required
def go_live(request, domain_name: str):
    """Publish the browser's camera and microphone, or a screen, to one
    stream of an ingest domain over WHIP (?app=&stream=; issue 17): the URL
    the URL generator signs, for static/js/golive.js. Only the domain's
    owner sees it (anyone else's domain, and a streaming domain, is a 404).
    Without a query it shows the form; a bad query is a 400 with the field
    named."""
    try:
        domain = domain_services.get_owned_domain(request.user, domain_name)
    except Domain.DoesNotExist:
        raise Http404("no such domain") from None
    if not domain.is_ingest:
        raise Http404("not an ingest domain")
    form = GoLiveForm(request.GET or None)
    target = None
    notes = []
    if form.is_bound and form.is_valid():
        try:
            urls = domain_services.generate_urls(
                request.user, domain.domain_name, form.cleaned_data["app"], form.cleaned_data["stream"]
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            target = publish_target(urls, media_host(domain, request.get_host()))
            # The SRT passphrase hint is for SRT publishers, not this page's.
            notes = [note for note in urls.notes if note != domain_services.srt_ingest_hint(domain)]
    status = 400 if form.is_bound and form.errors else 200
    context = {"domain": domain, "form": form, "target": target, "notes": notes, "tab": "go-live"}
    if target is not None:
        context["expires_at"] = dt.datetime.fromtimestamp(target["expires_at"], dt.UTC)
    return render(request, "streams/go_live.html", context, status=status)
