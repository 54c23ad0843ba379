"""Secrets in logs and at rest (issue 11, item 8): signed URLs are logged and
returned without their auth_key; the data directory and the SQLite database
are private to the user; a masked signing key shows none of its characters."""

from __future__ import annotations

import io
import logging
import logging.config
import os
import stat
import subprocess
import sys
import threading
import urllib.request

import pytest
import uvicorn

from domains import services
from livecenter.management.commands.runall import uvicorn_log_config
from livecenter.media.policy import StreamKey
from livecenter.media.redact import RedactAuthKeyFilter, redact_text, redact_url
from mediajobs import jobs as media_jobs
from mediajobs import tasks
from mediajobs.models import MediaJob
from tests.streamsupport import publish
from tests.test_media_transcode import PLAY, PUSH, add_domains
from tests.workersupport import ROOT, wait_until

SIGNED = "http://play.example.com/live/cam1.flv?auth_key=1767225600-0-0-0123456789abcdef0123456789abcdef&x=1"
SECRET = "0123456789abcdef0123456789abcdef"


# --- the helper -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        (SIGNED, "http://play.example.com/live/cam1.flv?auth_key=redacted&x=1"),
        ("rtmp://h/live/s?auth_key=abc", "rtmp://h/live/s?auth_key=redacted"),
        ("GET /live/s.m3u8?domain=d&auth_key=abc HTTP/1.1", "GET /live/s.m3u8?domain=d&auth_key=redacted HTTP/1.1"),
        ("open 'http://h/a.flv?auth_key=abc#t' failed", "open 'http://h/a.flv?auth_key=redacted#t' failed"),
        ("/live/s.flv?auth%5Fkey%3Dabc", "/live/s.flv?auth%5Fkey%3Dredacted"),
        ("two: ?auth_key=a and ?auth_key=b", "two: ?auth_key=redacted and ?auth_key=redacted"),
        ("no key here: /live/s.flv?domain=x", "no key here: /live/s.flv?domain=x"),
        # A media worker's capacity exemption (livecenter/media/capacity.py) is a credential too.
        (
            "/live/s.flv?auth_key=a&domain=d&lc_worker=1767225600-0123abcd",
            "/live/s.flv?auth_key=redacted&domain=d&lc_worker=redacted",
        ),
        # An SRT URL carries the stream's passphrase for libsrt and ffmpeg.
        (
            "srt://h:1105?streamid=#!::h=h,r=/live/s,m=publish&passphrase=correct%20horse%20battery&pbkeylen=16",
            "srt://h:1105?streamid=#!::h=h,r=/live/s,m=publish&passphrase=redacted&pbkeylen=16",
        ),
        ("ffmpeg -i 'srt://h:1105?passphrase=correct.horse.battery'", "ffmpeg -i 'srt://h:1105?passphrase=redacted'"),
        ("", ""),
    ],
)
def test_it_redacts_every_auth_key_and_nothing_else(text, expected):
    assert redact_text(text) == expected


def test_redact_url_is_redact_text():
    assert redact_url(SIGNED) == redact_text(SIGNED)


def test_the_filter_redacts_messages_arguments_and_tracebacks():
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactAuthKeyFilter())
    logger = logging.getLogger("tests.redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("opened %s (%d tries)", SIGNED, 3)
        logger.warning(f"inline {SIGNED}")
        try:
            raise OSError(f"Connection refused: '{SIGNED}'")
        except OSError:
            logger.exception("job failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    text = out.getvalue()
    assert SECRET not in text
    assert text.count("auth_key=redacted") == 3
    assert "(3 tries)" in text and "Traceback" in text


def test_the_console_log_handler_redacts():
    """The settings' LOGGING puts the filter on the root handler, which every
    logger of the console, the media node and the workers' tasks reaches."""
    handlers = [h for h in logging.getLogger().handlers if any(isinstance(f, RedactAuthKeyFilter) for f in h.filters)]
    assert handlers, "the root logger has no redacting handler"


# --- the console's HTTP access log --------------------------------------------------


async def _app(scope, receive, send):
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def test_the_console_access_log_has_no_auth_key():
    logging.config.dictConfig(uvicorn_log_config())
    out = io.StringIO()
    for handler in logging.getLogger("uvicorn.access").handlers:
        handler.setStream(out)
    server = uvicorn.Server(uvicorn.Config(_app, host="127.0.0.1", port=0, lifespan="off", log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started and server.servers, timeout=30)
        port = server.servers[0].sockets[0].getsockname()[1]
        with pytest.raises(urllib.request.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/live/cam1.flv?auth_key=1-0-0-{SECRET}", timeout=30)
        assert wait_until(lambda: "/live/cam1.flv" in out.getvalue(), timeout=30)
    finally:
        server.should_exit = True
        thread.join(30)
    assert "auth_key=redacted" in out.getvalue()
    assert SECRET not in out.getvalue()


# --- media jobs ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_failed_job_keeps_and_logs_its_url_without_the_auth_key(owner, monkeypatch):
    add_domains(owner)
    monkeypatch.setattr(tasks.run_media_job, "apply_async", lambda args, **kw: None)
    publish(PUSH, "live", "cam1", "session-1")
    node = media_jobs.NodeAddress("127.0.0.1", 1935, 8080)
    job, _ = media_jobs.start_job("snapshot", StreamKey(PUSH, "live", "cam1"), node)
    source = media_jobs.source_url(job)
    key = source.split("auth_key=")[1].split("&")[0]
    assert len(key) > 20

    def failing_run(run):  # what PyAV says when the node refuses: the URL whole
        raise OSError(f"[Errno 111] Connection refused: '{media_jobs.source_url(run.job)}'")

    monkeypatch.setattr(tasks, "_run", failing_run)
    root = next(h for h in logging.getLogger().handlers if any(isinstance(f, RedactAuthKeyFilter) for f in h.filters))
    out = io.StringIO()
    previous = root.setStream(out)
    try:
        tasks.run_media_job(job.pk, 1)
    finally:
        root.setStream(previous)
    job = MediaJob.objects.get(pk=job.pk)
    assert "Connection refused" in job.detail and "auth_key=redacted" in job.detail
    assert key not in job.detail
    assert "media job" in out.getvalue() and "Connection refused" in out.getvalue()
    assert key not in out.getvalue()
    assert key not in repr(list(MediaJob.objects.values()))


# --- files at rest ------------------------------------------------------------------


def _start_django(env: dict) -> None:
    script = "import django; django.setup()\nfrom django.db import connection; connection.ensure_connection()\n"
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, timeout=120)


def _env(data_dir) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LIVECENTER_SQLITE_PATH")}
    env.update(LIVECENTER_DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="livecenter.settings")
    env.pop("DJANGO_SECRET_KEY", None)
    return env


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_it_makes_the_data_directory_and_database_private(tmp_path):
    data = tmp_path / "fresh"
    _start_django(_env(data))
    assert mode(data) == 0o700
    assert mode(data / "db.sqlite3") == 0o600
    assert mode(data / "secret_key") == 0o600


def test_it_narrows_a_data_directory_and_database_made_open(tmp_path):
    data = tmp_path / "old"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "db.sqlite3").touch()
    (data / "db.sqlite3").chmod(0o644)
    _start_django(_env(data))
    assert mode(data) == 0o700
    assert mode(data / "db.sqlite3") == 0o600


# --- the masked signing key ---------------------------------------------------------


@pytest.mark.django_db
def test_the_masked_key_shows_no_character_of_the_key(owner):
    domain = services.add_domain(owner, "push.example.com", "ingest", "overseas", "ap-southeast-1")
    services.configure_url_signing(domain, primary_key="Zq9primaryKey", secondary_key="Yx8secondKey")
    assert services.mask_secret(domain.auth_primary_key) == "********"
    assert services.mask_secret(domain.auth_secondary_key) == "********"
    assert services.mask_secret("") == ""
    assert domain.auth_primary_key_set_at is not None and domain.auth_secondary_key_set_at is not None
    services.configure_url_signing(domain, secondary_key="")
    assert domain.auth_secondary_key_set_at is None


def test_a_bare_uvicorn_gets_redaction_when_it_loads_the_app():
    """`uvicorn livecenter.asgi:application` (the scaled topology) sets up its
    logging itself, before loading the app; the app adds the filter."""
    import importlib

    logging.config.dictConfig(uvicorn.config.LOGGING_CONFIG)
    handler = logging.getLogger("uvicorn.access").handlers[0]
    assert not any(isinstance(f, RedactAuthKeyFilter) for f in handler.filters)
    importlib.reload(importlib.import_module("livecenter.asgi"))
    assert any(isinstance(f, RedactAuthKeyFilter) for f in handler.filters)


def test_the_celery_worker_logs_are_redacted():
    from livecenter.celery import _redact_worker_logs

    logger = logging.getLogger("tests.celery-worker")
    handler = logging.StreamHandler(io.StringIO())
    logger.addHandler(handler)
    try:
        _redact_worker_logs(logger)
        _redact_worker_logs(logger)  # once only
        assert sum(isinstance(f, RedactAuthKeyFilter) for f in handler.filters) == 1
    finally:
        logger.removeHandler(handler)


@pytest.mark.django_db(transaction=True)
def test_the_media_node_logs_no_auth_key(owner):
    """A viewer refused by the media HTTP server (a bad signature) and one
    for a stream that is not live: the node's log lines (through the root
    handler) carry no auth_key value."""
    from tests.workersupport import MediaNodeThread

    add_domains(owner)
    root = next(h for h in logging.getLogger().handlers if any(isinstance(f, RedactAuthKeyFilter) for f in h.filters))
    out = io.StringIO()
    previous = root.setStream(out)
    try:
        with MediaNodeThread(play_wait_seconds=0.5) as node:
            port = node.node.http_port
            for query in (f"auth_key=1-0-0-{SECRET}", f"auth_key=9999999999-0-0-{SECRET}&x=1"):
                url = f"http://127.0.0.1:{port}/live/cam1.flv?{query}&domain={PLAY}"
                with pytest.raises(urllib.request.HTTPError):
                    urllib.request.urlopen(url, timeout=30)
            assert wait_until(lambda: out.getvalue().count("refused") >= 2, timeout=30)
    finally:
        root.setStream(previous)
    assert SECRET not in out.getvalue()
