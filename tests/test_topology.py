"""The same code on both topologies: settings follow DATABASE_URL and REDIS_URL,
a real Celery worker process runs the console's jobs, and the channel layer
carries messages (in memory, or through Redis when REDIS_URL is set)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from channels.layers import get_channel_layer

from domains import services
from domains.tasks import verify_cname
from tests.workersupport import database_env

ROOT = Path(__file__).resolve().parent.parent
WORKER_WAIT_SECONDS = 60

# The channel layer and the broker are this module's subject.
pytestmark = pytest.mark.backends


def settings_under(env: dict) -> dict:
    code = (
        "import json, django; django.setup(); from django.conf import settings as s;"
        "print(json.dumps({'engine': s.DATABASES['default']['ENGINE'], 'name': str(s.DATABASES['default']['NAME']),"
        "'broker': s.CELERY_BROKER_URL, 'layer': s.CHANNEL_LAYERS['default']['BACKEND']}))"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "DJANGO_SETTINGS_MODULE": "livecenter.settings", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_it_runs_embedded_without_environment():
    s = settings_under({})
    assert s["engine"] == "django.db.backends.sqlite3"
    assert s["broker"] == "livecenterfs://"  # kombu's filesystem transport, written atomically
    assert s["layer"] == "channels.layers.InMemoryChannelLayer"


def test_it_uses_postgres_and_redis_from_the_environment():
    s = settings_under({"DATABASE_URL": "postgres://lc@db.internal:5432/live", "REDIS_URL": "redis://cache:6379/3"})
    assert s["engine"] == "django.db.backends.postgresql"
    assert s["name"] == "live"
    assert s["broker"] == "redis://cache:6379/3"
    assert s["layer"] == "channels_redis.core.RedisChannelLayer"


def test_it_carries_messages_on_the_channel_layer():
    layer = get_channel_layer()

    async def roundtrip():
        channel = await layer.new_channel()
        await layer.group_add("domains-test", channel)
        await layer.group_send("domains-test", {"type": "cname.checked", "domain": "play.example.com"})
        message = await asyncio.wait_for(layer.receive(channel), timeout=5)
        await layer.group_discard("domains-test", channel)
        return message

    assert asyncio.run(roundtrip()) == {"type": "cname.checked", "domain": "play.example.com"}


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_it_runs_the_cname_check_on_a_real_worker(owner, loopback_dns):
    domain = services.add_domain(owner, "play.example.com", "streaming", "overseas", "ap-southeast-1")
    loopback_dns.set_cname("play.example.com", domain.cname)
    # A queue of its own, so no other worker on this machine takes the job.
    queue = f"test-{uuid.uuid4().hex[:12]}"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "livecenter", "worker", "-Q", queue, "--pool", "solo",
         "--without-mingle", "--without-gossip", "--loglevel", "INFO", "--hostname", f"{queue}@%h"],
        env=database_env(LIVECENTER_DNS_RESOLVER=loopback_dns.address),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        verify_cname.apply_async((domain.pk,), queue=queue)
        deadline = time.monotonic() + WORKER_WAIT_SECONDS
        while time.monotonic() < deadline and worker.poll() is None:
            domain.refresh_from_db()
            if domain.cname_checked_at is not None:
                break
            time.sleep(0.2)
    finally:
        worker.terminate()
        output = worker.communicate(timeout=30)[0]
    assert domain.cname_checked_at is not None, output[-3000:]
    assert domain.cname_status == "configured"
    assert domain.status == "online"


def test_it_reaches_redis_over_a_unix_socket(unix_redis):
    # redis-py's unix:// URL names the socket for all three users of REDIS_URL:
    # kombu calls it redis+socket://, and a TCP keepalive has no place on it.
    code = (
        "import asyncio, json, django; django.setup(); from django.conf import settings as s;"
        "from channels.layers import get_channel_layer; from livecenter.celery import app;"
        "layer = get_channel_layer()\n"
        "async def roundtrip():\n"
        "    channel = await layer.new_channel(); await layer.send(channel, {'type': 'unix.checked'})\n"
        "    return await asyncio.wait_for(layer.receive(channel), 5)\n"
        "message = asyncio.run(roundtrip())\n"
        "with app.connection_for_write() as conn:\n"
        "    queue = conn.SimpleQueue('unix-socket-test'); queue.put({'n': 1}); got = queue.get(timeout=5); got.ack()\n"
        "print(json.dumps({'broker': s.CELERY_BROKER_URL, 'message': message, 'task': got.payload}))"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "DJANGO_SETTINGS_MODULE": "livecenter.settings", "REDIS_URL": unix_redis.url},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["broker"] == f"redis+socket://{unix_redis.socket}?virtual_host=2"
    assert result["message"] == {"type": "unix.checked"}
    assert result["task"] == {"n": 1}
    # In the URL's database, not the default one.
    assert unix_redis.client().exists("_kombu.binding.unix-socket-test")
