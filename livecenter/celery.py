"""The Celery app: media workers and periodic console jobs.

Embedded (`make run`): kombu's filesystem transport under the data directory,
so the worker needs no server. Scaled: `REDIS_URL` is the broker.
"""

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
