"""Dates as every app reads them."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone


def aware(value: dt.datetime) -> dt.datetime:
    """`value` with a time zone; a naive one is read as UTC."""
    return value if timezone.is_aware(value) else timezone.make_aware(value, dt.UTC)
