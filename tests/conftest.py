from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.dnsserver import LoopbackDnsServer
from tests.netns import netns  # noqa: F401 (the fixture)
from tests.nodesupport import redis_node_id, redis_url, registry_clock  # noqa: F401 (fixtures)
from tests.redissupport import unix_redis  # noqa: F401 (the fixture)

# Media nodes the tests start through the settings (runall, medianode) listen
# for SRT on a free UDP port, not all on 1105 at once (pytest-xdist); the
# URLs the console hands out still name LIVECENTER_SRT_PORT.
os.environ.setdefault("LIVECENTER_MEDIA_SRT_PORT", "0")
# Nor do they refuse viewers because the test machine is loaded
# (tests/mediasupport.py, TEST_MAX_LOOP_LAG_MS).
os.environ.setdefault("LIVECENTER_MEDIA_MAX_LOOP_LAG_MS", "0")

# CI runs the suite twice (Makefile, `make test`): everything on the embedded
# defaults, then again on PostgreSQL and Redis only what depends on the
# database engine, the channel layer or the broker, marked `backends`. A test
# that uses the test database is one unless its subject is the browser or the
# media engine; media and worker tests whose subject is the data layer under
# the engine (job claim and recovery, control over the layer, the scaled
# topology) carry the mark in their module.
DATABASE_FIXTURES = {"db", "transactional_db", "live_server"}
ENGINE_MARKS = ("media", "worker", "browser")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("backends"):
            continue
        uses_database = item.get_closest_marker("django_db") or DATABASE_FIXTURES & set(item.fixturenames)
        if uses_database and not any(item.get_closest_marker(mark) for mark in ENGINE_MARKS):
            item.add_marker(pytest.mark.backends)


def pytest_configure(config):
    # A SQLite write-ahead log left by a test database a killed run did not
    # drop would be replayed into the next run's new database of that name.
    if not hasattr(config, "workerinput"):
        from django.conf import settings

        test_name = settings.DATABASES["default"].get("TEST", {}).get("NAME")
        if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3") and test_name:
            for stale in Path(test_name).parent.glob(Path(test_name).name + "*-[ws][ah][lm]"):
                stale.unlink(missing_ok=True)


def pytest_sessionstart(session):
    # CI sets REDIS_URL to this machine's Redis; it must be there, not skipped.
    url = os.environ.get("REDIS_URL")
    if url:
        import redis

        try:
            redis.Redis.from_url(url, socket_connect_timeout=3).ping()
        except redis.RedisError as exc:
            pytest.exit(f"REDIS_URL is set but Redis is unreachable: {exc}", returncode=3)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    # Persistent connections would outlive the live server's threads and keep
    # PostgreSQL from dropping the test database at the end.
    from django.db import connections

    connections.settings["default"]["CONN_MAX_AGE"] = 0  # for connections other threads open
    connections["default"].settings_dict["CONN_MAX_AGE"] = 0


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    # Hashing with the production hasher costs ~0.3 s per user; tests make many.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user("owner", password="owner-pass-123")


@pytest.fixture
def outsider(django_user_model):
    return django_user_model.objects.create_user("outsider", password="outsider-pass-123")


@pytest.fixture
def engine():
    """A FakeEngine (tests/streamsupport.py) that nodes.control kicks, for this test."""
    from nodes import control
    from tests.streamsupport import FakeEngine

    engine = FakeEngine()
    control.register_engine(engine)
    yield engine
    control.register_engine(None)


@pytest.fixture(scope="session")
def dns_server():
    server = LoopbackDnsServer().start()
    yield server
    server.stop()


@pytest.fixture
def loopback_dns(dns_server, settings):
    """The CNAME check resolves through the loopback DNS server."""
    dns_server.clear()
    settings.LIVECENTER_DNS_RESOLVER = dns_server.address
    settings.LIVECENTER_DNS_TIMEOUT_SECONDS = 2
    return dns_server


def make_certificate(
    names: list[str],
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    key=None,
) -> tuple[str, str]:
    """A self-signed certificate and its private key, in PEM, made in the test."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(days=1))
        .not_valid_after(not_after or now + dt.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return cert_pem, key_pem


@pytest.fixture
def certificate_factory():
    return make_certificate
