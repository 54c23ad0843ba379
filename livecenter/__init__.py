# The Celery app is loaded with Django so that shared tasks bind to it and
# `.delay()` uses the configured broker, not Celery's default.
from .celery import app as celery_app

__all__ = ("celery_app",)
