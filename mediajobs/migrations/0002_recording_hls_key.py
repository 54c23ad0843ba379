from django.db import migrations

import domains.fields


class Migration(migrations.Migration):
    dependencies = [
        ("mediajobs", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="recording",
            name="hls_key",
            field=domains.fields.EncryptedTextField(blank=True, default=""),
        ),
    ]
