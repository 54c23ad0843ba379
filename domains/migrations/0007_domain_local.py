from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("domains", "0006_merge_access_lists_hls_encryption"),
    ]

    operations = [
        migrations.AddField(
            model_name="domain",
            name="local",
            field=models.BooleanField(default=False),
        ),
    ]
