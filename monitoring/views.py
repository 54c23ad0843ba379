"""Monitoring pages: a stream's live charts, a domain's overview (both fed by
WebSockets, consumers.py), and the troubleshooting tool. Each view validates
with a form, calls one service (the operator's own domains only) and renders."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import render

from domains.services import ingest_domains
from livecenter.lib.pages import add_service_errors

from . import services, troubleshoot, usage
from .forms import DomainForm, StatisticsForm, StreamForm, TroubleshootForm


@login_required
def stream(request):
    form = StreamForm(request.GET or None)
    view = None
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        try:
            view = services.stream_view(request.user, data["domain"], data["app"], data["stream"])
        except ValidationError as exc:
            add_service_errors(form, exc)
    context = {"form": form, "view": view, "tab": "stream"}
    if view is not None:
        context["history"] = [services.sample_json(s) for s in view.history]
    return render(request, "monitoring/stream.html", context)


@login_required
def domain(request):
    domains = ingest_domains(request.user)
    data = _with_default_domain(request.GET, domains)
    form = DomainForm(data or None, domains=domains)
    view = None
    if form.is_bound and form.is_valid():
        try:
            view = services.domain_view(request.user, form.cleaned_data["domain"])
        except ValidationError as exc:
            add_service_errors(form, exc)
    context = {"form": form, "view": view, "has_domains": domains.exists(), "tab": "domain"}
    if view is not None:
        context["latest"] = [services.sample_json(s) for s in view.latest.values()]
    return render(request, "monitoring/domain.html", context)


def _with_default_domain(query, domains):
    """The page's query, naming the operator's first ingest domain where it names none."""
    data = query.copy()
    if not data.get("domain") and domains.exists():
        data["domain"] = domains.first().domain_name
    return data


@login_required
def troubleshooter(request):
    form = TroubleshootForm(request.GET or None)
    report = None
    if form.is_bound and form.is_valid():
        report = troubleshoot.check_url(request.user, form.cleaned_data["url"])
    return render(request, "monitoring/troubleshoot.html", {"form": form, "report": report, "tab": "troubleshoot"})


@login_required
def statistics(request):
    """Usage statistics of a domain, app or stream: the form picks the scope,
    the usage panel (charts.js) draws it from the API over the range picked."""
    domains = ingest_domains(request.user)
    data = _with_default_domain(request.GET, domains)
    form = StatisticsForm(data or None, domains=domains)
    scope = None
    if form.is_bound and form.is_valid():
        f = form.cleaned_data
        try:
            scope = usage.usage_scope(request.user, f["domain"], f["app"], f["stream"])
        except ValidationError as exc:
            add_service_errors(form, exc)
    context = {
        "form": form,
        "scope": scope,
        "has_domains": domains.exists(),
        "retention_days": settings.LIVECENTER_USAGE_RETENTION_DAYS,
        "minute_days": settings.LIVECENTER_USAGE_MINUTE_RETENTION_DAYS,
    }
    return render(request, "monitoring/statistics.html", context)
