"""The callbacks page of an ingest domain: its settings and its recent
deliveries with every attempt, each of which can be sent again. An operator
sees only their own domains (another's is a 404, like a missing one)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from domains import services as domain_services
from domains.models import Domain
from livecenter.lib.pages import save_settings

from . import services
from .forms import CallbacksForm
from .models import Delivery


def _owned_domain(request, domain_name: str) -> Domain:
    try:
        return domain_services.get_owned_domain(request.user, domain_name)
    except Domain.DoesNotExist:
        raise Http404("no such domain") from None


@login_required
def callbacks(request, domain_name: str):
    domain = _owned_domain(request, domain_name)
    config = services.config_of(domain)
    initial = {
        "url": config.url,
        "publish_hook_url": config.publish_hook_url,
        "publish_hook_timeout_ms": config.publish_hook_timeout_ms,
        "publish_hook_allow_when_unreachable": config.publish_hook_allow_when_unreachable,
    }
    form = CallbacksForm(request.POST if request.method == "POST" else None, initial=initial)
    if save_settings(
        request, form, domain.display_name, lambda: services.configure_callbacks(domain, **form.changes())
    ):
        return redirect("callbacks:page", domain.domain_name)
    deliveries = list(services.list_deliveries(request.user, domain.domain_name)[: services.RECENT_DELIVERIES])
    attempts = services.attempts_of(deliveries)
    return render(
        request,
        "callbacks/page.html",
        {
            "domain": domain,
            "config": config,
            "form": form,
            "secret_masked": domain_services.mask_secret(config.secret),
            "deliveries": [(d, attempts.get(d.pk, [])) for d in deliveries],
            "events": services.EVENTS,
            "retry_hours": settings.LIVECENTER_CALLBACKS_RETRY_HOURS,
            "tab": "callbacks",
        },
    )


@login_required
@require_POST
def resend(request, domain_name: str, delivery_id: int):
    domain = _owned_domain(request, domain_name)
    try:
        delivery = services.list_deliveries(request.user, domain.domain_name).get(pk=delivery_id)
    except Delivery.DoesNotExist:
        raise Http404("no such delivery") from None
    try:
        services.resend(delivery)
    except ValidationError as exc:
        messages.error(request, "; ".join(exc.messages))
    else:
        messages.info(request, f"Sending {delivery.event} {delivery.event_id} again.")
    return redirect("callbacks:page", domain.domain_name)
