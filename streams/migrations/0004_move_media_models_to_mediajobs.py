"""The media workers' models move to mediajobs/ (issue 12). Their tables stay
where they are, under their old names (each model's Meta.db_table), so this
forgets them from the streams app's state only; mediajobs 0001 takes them up.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("streams", "0003_merge_bframes_media_workers"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(
                    model_name="mediajob",
                    name="domain",
                ),
                migrations.RemoveField(
                    model_name="recording",
                    name="job",
                ),
                migrations.RemoveField(
                    model_name="recordconfig",
                    name="domain",
                ),
                migrations.RemoveField(
                    model_name="recording",
                    name="domain",
                ),
                migrations.RemoveField(
                    model_name="snapshot",
                    name="domain",
                ),
                migrations.RemoveField(
                    model_name="snapshotconfig",
                    name="domain",
                ),
                migrations.RemoveField(
                    model_name="templategroup",
                    name="domain",
                ),
                migrations.RemoveField(
                    model_name="transcodetemplate",
                    name="domain",
                ),
                migrations.DeleteModel(
                    name="Rendition",
                ),
                migrations.DeleteModel(
                    name="MediaJob",
                ),
                migrations.DeleteModel(
                    name="RecordConfig",
                ),
                migrations.DeleteModel(
                    name="Recording",
                ),
                migrations.DeleteModel(
                    name="Snapshot",
                ),
                migrations.DeleteModel(
                    name="SnapshotConfig",
                ),
                migrations.DeleteModel(
                    name="TemplateGroup",
                ),
                migrations.DeleteModel(
                    name="TranscodeTemplate",
                ),
            ],
            database_operations=[],
        ),
    ]
