"""The Celery app: media workers and periodic console jobs.

Embedded (`make run`): kombu's filesystem transport under the data directory,
so the worker needs no server. Scaled: `REDIS_URL` is the broker.
"""

import functools
import os

from celery import Celery, signals
from kombu.transport import TRANSPORT_ALIASES

# The embedded broker (settings.CELERY_BROKER_URL): a folder, written atomically.
TRANSPORT_ALIASES.setdefault("livecenterfs", "livecenter.lib.fsbroker:Transport")

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "livecenter.settings")

app = Celery("livecenter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _redact_worker_logs(logger, **kwargs):
    """The worker sets up its own handlers (not the settings' LOGGING): they
    get the same auth_key redaction (livecenter/media/redact.py)."""
    from livecenter.media.redact import redact_handlers

    redact_handlers(logger)


class _QuietHousekeeping:
    """Drops the beat's "sending due task" and the worker's "received" and
    "succeeded" INFO lines for the periodic jobs (settings.CELERY_BEAT_SCHEDULE:
    some run every second), so the log shows media jobs and failures, not a
    heartbeat. A periodic job's own messages and its failures are kept."""

    @functools.cached_property
    def periodic(self) -> frozenset[str]:
        from django.conf import settings

        return frozenset(entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values())

    def filter(self, record) -> bool:
        if record.levelno > 20:
            return True
        periodic = self.periodic
        if isinstance(record.args, dict):
            return record.args.get("name") not in periodic
        if record.name == "celery.beat" and isinstance(record.args, tuple) and len(record.args) == 2:
            return record.args[1] not in periodic
        return True


@signals.after_setup_logger.connect
def _quiet_housekeeping(logger, **kwargs):
    import logging

    for name in ("celery.app.trace", "celery.worker.strategy", "celery.beat"):
        logging.getLogger(name).addFilter(_QuietHousekeeping())
