"""Issue 12 moved the media workers' models from streams/ to mediajobs/ without
moving their tables: a database at the schema of before the split, with a row
in every table, keeps every row, found through the models of after it."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from domains.models import Domain, DomainCertificate
from mediajobs.models import (
    MediaJob,
    RecordConfig,
    Snapshot,
    SnapshotConfig,
    TemplateGroup,
    TranscodeTemplate,
)
from monitoring.models import StreamSample
from streams.models import PublishSession, StreamBlock, StreamControlEvent

# Before the split: streams at its last migration with the media models,
# no mediajobs, monitoring as it was then (its later tables did not exist);
# every other app stays at its latest.
BEFORE_SPLIT = [("streams", "0003_merge_bframes_media_workers"), ("mediajobs", None), ("monitoring", "0001_initial")]
SPLIT_APPS = {"domains", "streams", "monitoring"}


def fill_every_table(apps) -> set[str]:
    """One row in each table of the apps, through the models of before the
    split; returns the tables written."""
    now = timezone.now()
    model = apps.get_model
    user = model(*settings.AUTH_USER_MODEL.split(".")).objects.create(username="before-split")
    ingest = model("domains", "Domain").objects.create(
        owner=user,
        domain_name="push.example.com",
        domain_type="ingest",
        region="mainland",
        live_center="cn-shanghai",
        cname="push.example.com.livecenter.test",
    )
    model("domains", "DomainCertificate").objects.create(
        domain=ingest,
        name="push",
        certificate_pem="-----BEGIN CERTIFICATE-----",
        private_key="secret",
        subject="CN=push.example.com",
        issuer="CN=test",
        not_before=now,
        not_after=now + dt.timedelta(days=90),
        fingerprint_sha256="ab" * 32,
    )
    stream = {"domain_name": "push.example.com", "app": "live", "stream": "cam"}
    rows = [
        model("streams", "PublishSession").objects.create(
            domain=ingest, **stream, session_id="s-1", protocol="rtmp", started_at=now
        ),
        model("streams", "StreamBlock").objects.create(
            domain=ingest, app="live", stream="cam", resume_at=now + dt.timedelta(days=1), created_by=user
        ),
        model("streams", "StreamControlEvent").objects.create(domain=ingest, action="forbid", **stream, by=user),
        model("monitoring", "StreamSample").objects.create(at=now, **stream, session_id="s-1"),
        model("streams", "TranscodeTemplate").objects.create(domain=ingest, app="live", template_id="sd"),
        model("streams", "TemplateGroup").objects.create(domain=ingest, app="live", group_id="abr"),
        model("streams", "RecordConfig").objects.create(domain=ingest, app="live"),
        model("streams", "SnapshotConfig").objects.create(domain=ingest, app="live"),
    ]
    job = model("streams", "MediaJob").objects.create(
        kind="record",
        domain=ingest,
        **stream,
        state="running",
        node_host="127.0.0.1",
        node_rtmp_port=1935,
        node_http_port=8080,
        queued_at=now,
    )
    rows += [
        job,
        model("streams", "Rendition").objects.create(job=job, template_id="sd", last_watched_at=now),
        model("streams", "Recording").objects.create(
            domain=ingest, job=job, **stream, path="push.example.com/live/cam/1.mp4", started_at=now
        ),
        model("streams", "Snapshot").objects.create(domain=ingest, **stream, taken_at=now, path="cam/1.jpg"),
    ]
    return {"domains_domain", "domains_domaincertificate"} | {row._meta.db_table for row in rows}


@pytest.mark.django_db(transaction=True)
def test_it_keeps_every_row_when_the_media_models_move_to_mediajobs():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE_SPLIT)
    pinned = {app for app, _ in BEFORE_SPLIT}
    others = [node for node in executor.loader.graph.leaf_nodes() if node[0] not in pinned]
    before = executor.loader.project_state([*others, BEFORE_SPLIT[0], BEFORE_SPLIT[2]]).apps
    every_table = {m._meta.db_table for m in before.get_models() if m._meta.app_label in SPLIT_APPS}
    assert "streams_mediajob" in every_table
    assert fill_every_table(before) == every_table

    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    domain = Domain.objects.get(domain_name="push.example.com")
    assert DomainCertificate.objects.get().domain == domain
    assert PublishSession.objects.get(session_id="s-1").domain == domain
    assert StreamBlock.objects.get().created_by == domain.owner
    assert StreamControlEvent.objects.get().action == "forbid"
    assert StreamSample.objects.get().session_id == "s-1"
    assert TranscodeTemplate.objects.get(domain=domain).template_id == "sd"
    assert TemplateGroup.objects.get(domain=domain).group_id == "abr"
    assert RecordConfig.objects.get(domain=domain).app == "live"
    assert SnapshotConfig.objects.get(domain=domain).app == "live"
    job = MediaJob.objects.get(domain=domain, stream="cam")
    assert job.state == "running"
    assert job.renditions.get().template_id == "sd"
    assert job.recordings.get().path == "push.example.com/live/cam/1.mp4"
    assert Snapshot.objects.get(domain=domain).path == "cam/1.jpg"
    # Their content types (and so any permission granted on them) moved too.
    assert ContentType.objects.get_for_model(MediaJob).app_label == "mediajobs"
    assert not ContentType.objects.filter(app_label="streams", model="mediajob").exists()
