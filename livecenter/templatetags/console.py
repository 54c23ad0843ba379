"""Template filters every console page uses (registered as builtins in
settings.TEMPLATES, so no `{% load %}`).

`utc` is the console's one way of showing a moment (issue 19, finding 5): UTC,
`2026-12-05 05:03:12 UTC`, in a `<time>` element whose ISO `datetime`
static/js/console.js reads to add the viewer's local time as a title."""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils.html import format_html

register = template.Library()

UTC_FORMAT = "%Y-%m-%d %H:%M:%S UTC"


def as_utc(value: dt.datetime | dt.date | int | float) -> dt.datetime | None:
    """An aware datetime in UTC from a datetime (a naive one is taken as UTC,
    as USE_TZ stores them), a date, or Unix seconds."""
    if isinstance(value, bool) or value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    return None


def utc_text(value) -> str:
    """The same moment as plain text, for messages: `2026-12-05 05:03:12 UTC`."""
    moment = as_utc(value)
    return moment.strftime(UTC_FORMAT) if moment is not None else ""


@register.filter
def utc(value):
    """`{{ when|utc }}`: the moment in UTC inside `<time datetime="…">`;
    empty for no moment (so `|utc|default:"—"` works)."""
    moment = as_utc(value)
    if moment is None:
        return ""
    shown = utc_text(moment)
    iso = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    return format_html('<time datetime="{}" class="utc">{}</time>', iso, shown)


@register.filter
def duration(seconds) -> str:
    """Seconds as `1:02:03` (or `2:03` under an hour)."""
    if seconds is None or seconds == "":
        return ""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
