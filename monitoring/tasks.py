"""Monitoring jobs on the Celery worker."""

from __future__ import annotations

import logging

from celery import shared_task

from . import playback, services

log = logging.getLogger(__name__)


@shared_task(name="monitoring.prune_samples", ignore_result=True)
def prune_samples() -> None:
    """Delete samples older than the retention period, in bounded batches
    (beat runs it every LIVECENTER_MONITORING_PRUNE_SECONDS)."""
    deleted = services.prune_samples()
    if deleted:
        log.info("pruned %d stream samples", deleted)
    refusals = services.prune_refusals()
    if refusals:
        log.info("pruned %d publish refusals", refusals)
    reports = playback.prune()
    if reports:
        log.info("pruned %d playback reports", reports)
