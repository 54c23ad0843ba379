"""The database unreachable while streams are live (issue 11, Faults), on
SQLite: every connection attempt fails as if the file's disk were gone
(patched at the one place Django opens a cursor). Streams keep flowing,
known domains are admitted from the policy cache, unknown ones get 503
"policy unavailable", the console answers 503, and the samples and events
of the outage are written after it."""

from __future__ import annotations

import contextlib
import os
from unittest import mock

import pytest
from django.db import OperationalError
from django.db.backends.base.base import BaseDatabaseWrapper

from livecenter import outage
from tests.faultsupport import database_outage_scenario

pytestmark = [pytest.mark.media, pytest.mark.django_db(transaction=True)]

# Seconds here; bench/README.md (Faults) records a 60 s run.
OUTAGE_SECONDS = float(os.environ.get("LIVECENTER_TEST_OUTAGE_SECONDS", 4))


@contextlib.contextmanager
def sqlite_unreachable():
    failure = OperationalError("unable to open database file")
    with mock.patch.object(BaseDatabaseWrapper, "ensure_connection", side_effect=failure):
        yield


def test_it_rides_out_a_database_outage(owner, settings, tmp_path):
    figures = database_outage_scenario(owner, settings, tmp_path, sqlite_unreachable, OUTAGE_SECONDS)
    assert figures["samples_in_outage"] >= 2
    print(f"sqlite outage {figures}")
    assert outage.database.up


def test_it_drops_the_oldest_when_the_buffer_is_full():
    buffer = outage.OutageBuffer("test", max_items=3)
    for i in range(5):
        buffer.add(i)
    assert buffer.items() == [2, 3, 4] and buffer.dropped == 2


def test_it_starts_without_the_database_and_closes_the_ghosts_later(owner, settings):
    import datetime as dt

    from streams.models import PublishSession
    from tests.faultsupport import wait_until
    from tests.streamsupport import add_pair, publish
    from tests.workersupport import MediaNodeThread

    settings.LIVECENTER_DB_RETRY_SECONDS = 0.2
    push, _ = add_pair(owner, "push.ghost.test", "play.ghost.test")
    five_minutes_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ghost = publish(push.domain_name, "live", "cam1", "ghost-1", started_at=five_minutes_ago, node_id="media-test")
    assert ghost.stopped_at is None
    with sqlite_unreachable():
        node = MediaNodeThread().__enter__()
    try:
        assert node.node.rtmp_port  # the node listens though the database did not answer

        def closed():
            return PublishSession.objects.filter(pk=ghost.pk, stopped_at__isnull=False).exists()

        assert wait_until(closed, 30)
        assert PublishSession.objects.get(pk=ghost.pk).stop_reason == "node restarted"
    finally:
        node.__exit__(None, None, None)
