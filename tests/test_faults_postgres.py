"""PostgreSQL unreachable while streams are live (issue 11, Faults): the
test database is reached through a TCP relay the test controls, cut for the
outage (connections reset, new ones refused). The same checks as on SQLite
(tests/test_faults_database.py), plus: requests fail fast (connect_timeout),
so the console's 503 and the node's stale answers come within seconds."""

from __future__ import annotations

import contextlib
import os

import pytest
from django.db import connections

from tests.faultsupport import TcpRelay, database_outage_scenario

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.backends,
    pytest.mark.media,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith(("postgres", "postgresql")),
        reason="needs PostgreSQL: set DATABASE_URL (CI does)",
    ),
]

OUTAGE_SECONDS = float(os.environ.get("LIVECENTER_TEST_OUTAGE_SECONDS", 4))


@contextlib.contextmanager
def through_relay():
    """Every new connection of every thread goes through the relay."""
    shared, own = connections.settings["default"], connections["default"].settings_dict
    saved = (shared["HOST"], shared["PORT"]), (own["HOST"], own["PORT"])
    relay = TcpRelay((own["HOST"] or "localhost", int(own["PORT"] or 5432)))
    with relay:
        for settings_dict in (shared, own):
            settings_dict["HOST"], settings_dict["PORT"] = "127.0.0.1", str(relay.port)
        connections.close_all()
        try:
            yield relay
        finally:
            (shared["HOST"], shared["PORT"]), (own["HOST"], own["PORT"]) = saved
            connections.close_all()


def test_it_rides_out_a_postgres_outage(owner, settings, tmp_path):
    with through_relay() as relay:

        @contextlib.contextmanager
        def outage():
            relay.cut()
            try:
                yield
            finally:
                relay.restore()

        figures = database_outage_scenario(owner, settings, tmp_path, outage, OUTAGE_SECONDS)
    assert figures["samples_in_outage"] >= 2
    print(f"postgres outage {figures}")
