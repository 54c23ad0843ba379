"""Signed URLs without their signature, for logs and for what the API returns.

A signed playback URL is valid for as long as the domain's validity period (a
day by default): one in a log line or a job's `detail` is a credential handed
to whoever reads it, and so is a media worker's capacity exemption
(`lc_worker`, capacity.py) and an SRT URL's `passphrase` (libsrt and ffmpeg
take it as a URL parameter). `redact_text` replaces the value of every
`auth_key`, `lc_worker` and `passphrase` query parameter in a string (a URL, an error message, a traceback, an access
log line) and leaves everything else as it was; `RedactAuthKeyFilter` does
that to log records, on a handler, so every line through it is covered.
"""

from __future__ import annotations

import logging
import re

REDACTED = "redacted"
# `auth_key=` up to the end of its value: another parameter, a fragment, a
# quote, whitespace or the end of the text. Percent-encoded forms of the
# name (as some clients log them) are covered too.
_AUTH_KEY_RE = re.compile(r"((?:auth(?:_|%5[fF])key|lc(?:_|%5[fF])worker|passphrase)(?:=|%3[dD]))[^&\s\"'#<>]+")


def redact_text(text: str) -> str:
    """`text` with the value of every auth_key, lc_worker and passphrase
    replaced by `redacted`."""
    if "auth" not in text and "worker" not in text and "passphrase" not in text:
        return text
    return _AUTH_KEY_RE.sub(lambda m: m.group(1) + REDACTED, text)


def redact_url(url: str) -> str:
    """A URL as it may be logged or shown: its auth_key's value replaced."""
    return redact_text(url)


class RedactAuthKeyFilter(logging.Filter):
    """Redacts auth_key values in a record's message, arguments and
    traceback. Put it on handlers: a handler's filters see every record that
    reaches it, including those propagated from child loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Arguments are redacted one by one, not merged into the message:
        # formatters such as uvicorn's access formatter read record.args.
        if isinstance(record.msg, str):
            record.msg = redact_text(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def _redact_arg(value):
    if isinstance(value, (int, float)) or value is None:
        return value  # numbers keep their %d / %.1f formats
    text = value if isinstance(value, str) else str(value)
    redacted = redact_text(text)
    return value if redacted == text else redacted


def redact_handlers(logger: logging.Logger) -> None:
    """Puts the filter on the handlers `logger` has now, once each."""
    for handler in logger.handlers:
        if not any(isinstance(f, RedactAuthKeyFilter) for f in handler.filters):
            handler.addFilter(RedactAuthKeyFilter())


def redact_handlers_of(*logger_names: str) -> None:
    """redact_handlers for named loggers: for servers that set up their own
    logging before loading the app, such as uvicorn started on its own
    (`uvicorn livecenter.asgi:application`)."""
    for name in logger_names:
        redact_handlers(logging.getLogger(name))
