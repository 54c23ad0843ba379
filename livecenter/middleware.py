"""The console while its database is unreachable (issue 11, Faults): a clear
503 — a page for people, JSON for the API — instead of a traceback or a
generic 500. Rendered without templates or the session, both of which may
need the database."""

from __future__ import annotations

import html
import logging
import sys

from django.http import HttpRequest, HttpResponse, JsonResponse

from .outage import UNREACHABLE

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 10
MESSAGE = "The database is unreachable; the console is unavailable for now. Live streams are not affected."

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>503 Service unavailable · LiveCenter</title></head>
<body style="font-family: sans-serif; margin: 3rem auto; max-width: 40rem">
<h1>Service unavailable</h1>
<p>{message}</p>
<p>Try again in a few seconds.</p>
</body></html>
"""


def unavailable_response(request: HttpRequest) -> HttpResponse:
    wants_json = request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")
    if wants_json:
        response = JsonResponse({"detail": MESSAGE, "code": "database_unavailable"}, status=503)
    else:
        response = HttpResponse(PAGE.format(message=html.escape(MESSAGE)), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


class DatabaseUnavailableMiddleware:
    """Turns an unreachable database in a view into a 503; `server_error`
    (the 500 handler) does the same for middleware that touched it."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, UNREACHABLE):
            log.warning("console %s %s: database unreachable: %s", request.method, request.path, exception)
            return unavailable_response(request)
        return None


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: Django calls it inside the `except` that caught the error."""
    exc = sys.exc_info()[1]
    if isinstance(exc, UNREACHABLE):
        return unavailable_response(request)
    from django.views.defaults import server_error as default

    return default(request)
