"""Monitoring jobs on the Celery worker."""

from __future__ import annotations

import logging

from celery import shared_task

from . import alarms, playback, services, usage

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


@shared_task(name="monitoring.roll_up_usage", ignore_result=True)
def roll_up_usage() -> None:
    """Roll up the samples written since the last run into the usage
    statistics, and prune rollups past their retention (usage.py)."""
    read = usage.roll_up()
    if read:
        log.debug("rolled up %d stream samples", read)
    pruned = usage.prune()
    if pruned:
        log.info("pruned %d usage rollups", pruned)


@shared_task(name="monitoring.evaluate_alarms", ignore_result=True)
def evaluate_alarms() -> None:
    """Open and close alarms from the recent samples (beat runs it every
    LIVECENTER_ALARMS_EVALUATE_SECONDS); a repeated or overlapping run changes nothing twice."""
    opened, closed = alarms.evaluate()
    if opened or closed:
        log.info("alarms: %d opened, %d closed", opened, closed)
