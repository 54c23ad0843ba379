# Access lists (issue 16): a domain's IP list and Referer list.

from django.db import migrations, models

MODES = [("off", "Off"), ("allow", "Allow list"), ("deny", "Deny list")]


class Migration(migrations.Migration):
    dependencies = [
        ("domains", "0004_https"),
    ]

    operations = [
        migrations.AddField(
            model_name="domain",
            name="ip_acl_mode",
            field=models.CharField(choices=MODES, default="off", max_length=8),
        ),
        migrations.AddField(
            model_name="domain",
            name="ip_acl_entries",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="domain",
            name="referer_acl_mode",
            field=models.CharField(choices=MODES, default="off", max_length=8),
        ),
        migrations.AddField(
            model_name="domain",
            name="referer_acl_entries",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="domain",
            name="referer_acl_allow_empty",
            field=models.BooleanField(default=False),
        ),
    ]
