"""Callback deliveries on the Celery workers (services.attempt_delivery).
Tasks take ids; a duplicate message claims nothing."""

from celery import shared_task

from . import services


@shared_task(name="callbacks.deliver", ignore_result=True)
def deliver_callback(delivery_id: int, attempt: int) -> None:
    services.attempt_delivery(delivery_id, attempt)


@shared_task(name="callbacks.sweep", ignore_result=True)
def sweep_callbacks() -> None:
    """Send again what a lost message left pending; drop old finished deliveries."""
    services.send_overdue()
    services.prune_deliveries()
