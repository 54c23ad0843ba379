"""The Celery app: media workers and periodic console jobs.

Embedded (`make run`): kombu's filesystem transport under the data directory,
so the worker needs no server. Scaled: `REDIS_URL` is the broker.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "livecenter.settings")

app = Celery("livecenter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
