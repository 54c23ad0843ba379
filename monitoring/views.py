"""Monitoring pages: a stream's live charts, a domain's overview (both fed by
WebSockets, consumers.py), and the troubleshooting tool. Each view validates
with a form, calls one service (the operator's own domains only) and renders."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from domains.services import ingest_domains
from livecenter.lib.pages import add_service_errors, paginate

from . import alarms, services, troubleshoot, usage
from .forms import AlarmRuleForm, DomainForm, StatisticsForm, StreamForm, TroubleshootForm
from .models import AlarmRule


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
        context["stopped"] = [services.stopped_json(s) for s in view.stopped]
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


# --- Alarms (alarms.py) ----------------------------------------------------------------------------


@login_required
def alarms_page(request):
    """Open and past alarms, the rules, and a form to add one."""
    domains = ingest_domains(request.user)
    form = AlarmRuleForm(request.POST if request.method == "POST" else None, domains=domains)
    if form.is_bound and form.is_valid():
        try:
            rule = alarms.add_rule(request.user, form.cleaned_data["domain"], **form.changes())
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Added the alarm rule {alarm_rule_text(rule)}.")
            return redirect("monitoring:alarms")
    rows = alarms.list_alarms(request.user)
    past, query = paginate(request, rows.filter(ended_at__isnull=False))
    context = {
        "form": form,
        "has_domains": domains.exists(),
        "rules": alarms.list_rules(request.user),
        "open_alarms": rows.filter(ended_at__isnull=True),
        "past_alarms": past,
        "query": query,
        "tab": "alarms",
    }
    return render(request, "monitoring/alarms.html", context)


def _owned_rule(request, rule_id: int) -> AlarmRule:
    try:
        return alarms.get_rule(request.user, rule_id)
    except AlarmRule.DoesNotExist:
        raise Http404("no such alarm rule") from None


@login_required
def alarm_rule(request, rule_id: int):
    """Change a rule (its domain stays)."""
    rule = _owned_rule(request, rule_id)
    initial = {name: getattr(rule, name) for name in alarms.RULE_FIELDS}
    form = AlarmRuleForm(request.POST if request.method == "POST" else None, initial=initial)
    if form.is_bound and form.is_valid():
        try:
            alarms.update_rule(rule, **form.changes())
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Saved the alarm rule {alarm_rule_text(rule)}.")
            return redirect("monitoring:alarms")
    return render(request, "monitoring/alarm_rule.html", {"form": form, "rule": rule, "tab": "alarms"})


@login_required
@require_POST
def alarm_rule_delete(request, rule_id: int):
    rule = _owned_rule(request, rule_id)
    text = alarm_rule_text(rule)
    alarms.delete_rule(rule)
    messages.success(request, f"Deleted the alarm rule {text}.")
    return redirect("monitoring:alarms")


def alarm_rule_text(rule: AlarmRule) -> str:
    return f"{rule.condition} on {rule.scope}"
