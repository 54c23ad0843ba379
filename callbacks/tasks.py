"""Callback deliveries on the Celery workers (services.attempt_delivery).
Tasks take ids; a duplicate message claims nothing."""

from celery import shared_task

from . import services


@shared_task(name="callbacks.deliver", ignore_result=True)
def deliver_callback(delivery_id: int, attempt: int) -> None:
    services.attempt_delivery(delivery_id, attempt)


@shared_task(name="callbacks.send_overdue", ignore_result=True)
def send_overdue_callbacks() -> None:
    services.send_overdue()
