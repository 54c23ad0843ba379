"""domains 0003 adds SRT settings: a domain saved before it gets the default
latency and no passphrase, and can be given one afterwards."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from domains import services
from domains.models import Domain

BEFORE = [("domains", "0002_signing_key_set_at")]


@pytest.mark.django_db(transaction=True)
def test_it_gives_existing_domains_the_default_srt_settings():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    before = executor.loader.project_state(BEFORE).apps
    assert "srt_latency_ms" not in {f.name for f in before.get_model("domains", "Domain")._meta.get_fields()}
    user = before.get_model(*settings.AUTH_USER_MODEL.split(".")).objects.create(username="before-srt")
    before.get_model("domains", "Domain").objects.create(
        owner_id=user.pk,
        domain_name="push.example.com",
        domain_type="ingest",
        region="global",
        live_center="cn-shanghai",
        cname="push.example.com.livecenter.test",
    )

    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    domain = Domain.objects.get(domain_name="push.example.com")
    assert (domain.srt_latency_ms, domain.srt_passphrase, domain.srt_passphrase_set_at) == (120, "", None)
    services.configure_srt(domain, srt_latency_ms=300, srt_passphrase="correct horse battery")
    domain = Domain.objects.get(domain_name="push.example.com")
    assert (domain.srt_latency_ms, domain.srt_passphrase) == (300, "correct horse battery")
