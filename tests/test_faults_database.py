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
