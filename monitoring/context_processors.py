"""The open-alarm banner every console page shows (templates/base.html):
one indexed query per page for a signed-in operator, and only when the
template reads it."""

from __future__ import annotations

from django.utils.functional import SimpleLazyObject

from . import alarms

BANNER_ALARMS = 3  # named in the banner; past that it says there are more


def open_alarms(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    def banner() -> dict:
        rows = alarms.open_alarms(user, BANNER_ALARMS + 1)
        return {"shown": rows[:BANNER_ALARMS], "more": len(rows) > BANNER_ALARMS}

    return {"alarm_banner": SimpleLazyObject(banner)}
