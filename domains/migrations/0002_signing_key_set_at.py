

from django.db import migrations, models


def date_existing_keys(apps, schema_editor):
    """A key saved before this migration was set at the domain's last change
    at the latest: the best date there is for it."""
    Domain = apps.get_model("domains", "Domain")
    for domain in Domain.objects.all():
        Domain.objects.filter(pk=domain.pk).update(
            auth_primary_key_set_at=domain.updated_at if domain.auth_primary_key else None,
            auth_secondary_key_set_at=domain.updated_at if domain.auth_secondary_key else None,
        )


class Migration(migrations.Migration):

    dependencies = [
        ('domains', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='domain',
            name='auth_primary_key_set_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='domain',
            name='auth_secondary_key_set_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(date_existing_keys, migrations.RunPython.noop),
    ]
