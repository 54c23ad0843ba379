"""Console jobs that run on the Celery worker."""

from __future__ import annotations

import logging

from celery import shared_task

from . import services
from .models import CnameStatus, Domain

log = logging.getLogger(__name__)

# Bounded per run so a large installation's beat tick stays short.
RECHECK_BATCH_DOMAINS = 200


@shared_task(name="domains.verify_cname", ignore_result=True)
def verify_cname(domain_id: int) -> None:
    domain = Domain.objects.filter(pk=domain_id).first()
    if domain is None:
        return
    result = services.verify_cname(domain)
    log.info("cname check %s: %s", domain.domain_name, result.detail)


@shared_task(name="domains.recheck_pending_cnames", ignore_result=True)
def recheck_pending_cnames() -> None:
    """DNS changes take minutes to spread: look again at every enabled domain
    whose CNAME is still pending, oldest check first."""
    pending = (
        Domain.objects.filter(enabled=True, cname_status=CnameStatus.PENDING)
        .order_by("cname_checked_at", "pk")
        .values_list("pk", flat=True)[:RECHECK_BATCH_DOMAINS]
    )
    for domain_id in pending:
        verify_cname(domain_id)
