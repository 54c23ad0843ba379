"""The media workers' models, taken over from the streams app (issue 12).

Their tables were made by streams 0002 and keep their names (each model's
Meta.db_table), so this creates the models in this app's state only. The
content types move with them, so permissions granted on them survive.
"""

import django.db.models.deletion
from django.db import migrations, models


MODELS = [
    "mediajob",
    "recordconfig",
    "recording",
    "rendition",
    "snapshot",
    "snapshotconfig",
    "templategroup",
    "transcodetemplate",
]


def move_content_types(apps, schema_editor, old="streams", new="mediajobs"):
    content_types = apps.get_model("contenttypes", "ContentType").objects.using(schema_editor.connection.alias)
    taken = set(content_types.filter(app_label=new, model__in=MODELS).values_list("model", flat=True))
    content_types.filter(app_label=old, model__in=set(MODELS) - taken).update(app_label=new)


def restore_content_types(apps, schema_editor):
    move_content_types(apps, schema_editor, old="mediajobs", new="streams")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("domains", "0001_initial"),
        ("streams", "0004_move_media_models_to_mediajobs"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="MediaJob",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        (
                            "kind",
                            models.CharField(
                                choices=[("transcode", "Transcode"), ("record", "Record"), ("snapshot", "Snapshots")],
                                max_length=16,
                            ),
                        ),
                        ("domain_name", models.CharField(max_length=253)),
                        ("app", models.CharField(max_length=255)),
                        ("stream", models.CharField(max_length=255)),
                        (
                            "state",
                            models.CharField(
                                choices=[
                                    ("queued", "Queued"),
                                    ("running", "Running"),
                                    ("finished", "Finished"),
                                    ("failed", "Failed"),
                                ],
                                default="queued",
                                max_length=16,
                            ),
                        ),
                        ("attempt", models.PositiveIntegerField(default=1)),
                        ("worker", models.CharField(blank=True, default="", max_length=255)),
                        ("node_host", models.CharField(max_length=255)),
                        ("node_rtmp_port", models.PositiveIntegerField()),
                        ("node_http_port", models.PositiveIntegerField()),
                        ("queued_at", models.DateTimeField()),
                        ("started_at", models.DateTimeField(blank=True, null=True)),
                        ("heartbeat_at", models.DateTimeField(blank=True, null=True)),
                        ("finished_at", models.DateTimeField(blank=True, null=True)),
                        ("detail", models.CharField(blank=True, default="", max_length=255)),
                        (
                            "domain",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="media_jobs",
                                to="domains.domain",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "streams_mediajob",
                        "ordering": ["-queued_at", "-id"],
                    },
                ),
                migrations.CreateModel(
                    name="RecordConfig",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("app", models.CharField(max_length=255)),
                        ("format", models.CharField(default="mp4", max_length=8)),
                        ("cycle_seconds", models.PositiveIntegerField(default=21600)),
                        (
                            "on_reconnect",
                            models.CharField(
                                choices=[("continue", "Continue the same file"), ("new_file", "Start a new file")],
                                default="continue",
                                max_length=16,
                            ),
                        ),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "domain",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="record_configs",
                                to="domains.domain",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "streams_recordconfig",
                        "ordering": ["app"],
                    },
                ),
                migrations.CreateModel(
                    name="Recording",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("domain_name", models.CharField(max_length=253)),
                        ("app", models.CharField(max_length=255)),
                        ("stream", models.CharField(max_length=255)),
                        ("path", models.CharField(max_length=1024)),
                        ("format", models.CharField(default="mp4", max_length=8)),
                        ("started_at", models.DateTimeField()),
                        ("ended_at", models.DateTimeField(blank=True, null=True)),
                        ("size_bytes", models.PositiveBigIntegerField(default=0)),
                        ("duration_seconds", models.FloatField(default=0.0)),
                        (
                            "domain",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="recordings",
                                to="domains.domain",
                            ),
                        ),
                        (
                            "job",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="recordings",
                                to="mediajobs.mediajob",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "streams_recording",
                        "ordering": ["-started_at", "-id"],
                    },
                ),
                migrations.CreateModel(
                    name="Rendition",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("template_id", models.CharField(max_length=32)),
                        ("lazy", models.BooleanField(default=True)),
                        ("last_watched_at", models.DateTimeField()),
                        ("published_at", models.DateTimeField(blank=True, null=True)),
                        ("width", models.PositiveIntegerField(default=0)),
                        ("height", models.PositiveIntegerField(default=0)),
                        ("stopped", models.BooleanField(default=False)),
                        (
                            "job",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="renditions",
                                to="mediajobs.mediajob",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "streams_rendition",
                        "ordering": ["template_id"],
                    },
                ),
                migrations.CreateModel(
                    name="Snapshot",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("domain_name", models.CharField(max_length=253)),
                        ("app", models.CharField(max_length=255)),
                        ("stream", models.CharField(max_length=255)),
                        ("taken_at", models.DateTimeField()),
                        ("path", models.CharField(max_length=1024)),
                        ("width", models.PositiveIntegerField(default=0)),
                        ("height", models.PositiveIntegerField(default=0)),
                        ("size_bytes", models.PositiveIntegerField(default=0)),
                        (
                            "domain",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="snapshots",
                                to="domains.domain",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "streams_snapshot",
                        "ordering": ["-taken_at", "-id"],
                    },
                ),
                migrations.CreateModel(
                    name="SnapshotConfig",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("app", models.CharField(max_length=255)),
                        ("interval_seconds", models.PositiveIntegerField(default=10)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "domain",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="snapshot_configs",
                                to="domains.domain",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "streams_snapshotconfig",
                        "ordering": ["app"],
                    },
                ),
                migrations.CreateModel(
                    name="TemplateGroup",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("app", models.CharField(max_length=255)),
                        ("group_id", models.CharField(max_length=10)),
                        ("template_ids", models.JSONField(default=list)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "domain",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="template_groups",
                                to="domains.domain",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "streams_templategroup",
                        "ordering": ["app", "group_id"],
                    },
                ),
                migrations.CreateModel(
                    name="TranscodeTemplate",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("app", models.CharField(max_length=255)),
                        ("template_id", models.CharField(max_length=32)),
                        ("width", models.PositiveIntegerField(default=0)),
                        ("height", models.PositiveIntegerField(default=0)),
                        ("short_side", models.PositiveIntegerField(default=0)),
                        ("video_bitrate_kbps", models.PositiveIntegerField(default=0)),
                        ("fps", models.FloatField(default=0.0)),
                        ("gop_seconds", models.FloatField(default=0.0)),
                        (
                            "profile",
                            models.CharField(
                                choices=[("baseline", "Baseline"), ("main", "Main"), ("high", "High")],
                                default="high",
                                max_length=16,
                            ),
                        ),
                        ("lazy", models.BooleanField(default=True)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "domain",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="transcode_templates",
                                to="domains.domain",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "streams_transcodetemplate",
                        "ordering": ["app", "template_id"],
                    },
                ),
                migrations.AddIndex(
                    model_name="mediajob",
                    index=models.Index(fields=["state", "heartbeat_at"], name="media_job_state_beat"),
                ),
                migrations.AddConstraint(
                    model_name="mediajob",
                    constraint=models.UniqueConstraint(
                        condition=models.Q(("state__in", ["queued", "running"])),
                        fields=("kind", "domain_name", "app", "stream"),
                        name="one_active_media_job",
                    ),
                ),
                migrations.AddConstraint(
                    model_name="recordconfig",
                    constraint=models.UniqueConstraint(fields=("domain", "app"), name="one_record_config_per_app"),
                ),
                migrations.AddIndex(
                    model_name="recording",
                    index=models.Index(fields=["domain", "started_at"], name="recording_domain_started"),
                ),
                migrations.AddConstraint(
                    model_name="rendition",
                    constraint=models.UniqueConstraint(fields=("job", "template_id"), name="one_rendition_per_job"),
                ),
                migrations.AddIndex(
                    model_name="snapshot",
                    index=models.Index(
                        fields=["domain_name", "app", "stream", "taken_at"], name="snapshot_stream_taken"
                    ),
                ),
                migrations.AddConstraint(
                    model_name="snapshotconfig",
                    constraint=models.UniqueConstraint(fields=("domain", "app"), name="one_snapshot_config_per_app"),
                ),
                migrations.AddConstraint(
                    model_name="templategroup",
                    constraint=models.UniqueConstraint(fields=("domain", "app", "group_id"), name="one_group_per_app"),
                ),
                migrations.AddConstraint(
                    model_name="transcodetemplate",
                    constraint=models.UniqueConstraint(
                        fields=("domain", "app", "template_id"), name="one_template_per_app"
                    ),
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_types, restore_content_types),
    ]
