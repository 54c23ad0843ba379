import domains.fields
from django.db import migrations


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
