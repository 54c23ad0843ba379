from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("domains", "0004_https"),
    ]

    operations = [
        migrations.AddField(
            model_name="domain",
            name="hls_encryption",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="domain",
            name="hls_key_rotation_segments",
            field=models.PositiveIntegerField(default=10),
        ),
        migrations.AddField(
            model_name="domain",
            name="hls_encryption_apps",
            field=models.CharField(blank=True, default="", max_length=1024),
        ),
    ]
