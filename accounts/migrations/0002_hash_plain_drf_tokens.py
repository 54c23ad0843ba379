"""DRF's authtoken table kept API keys in plain text. Each key there becomes
an ApiToken holding only its SHA-256 (so it keeps working), and the plain
row is deleted. The table itself is left (empty) to its own app's history."""

import hashlib

import datetime as dt

from django.db import migrations
from django.utils import timezone
from django.utils.dateparse import parse_datetime

PLAIN_TOKEN_TABLE = "authtoken_token"


def hash_plain_drf_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if PLAIN_TOKEN_TABLE not in connection.introspection.table_names():
        return
    ApiToken = apps.get_model("accounts", "ApiToken")
    table = connection.ops.quote_name(PLAIN_TOKEN_TABLE)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {connection.ops.quote_name('key')}, user_id, created FROM {table}")
        rows = cursor.fetchall()
    for key, user_id, created in rows:
        if isinstance(created, str):  # SQLite hands raw timestamps back as text
            created = parse_datetime(created)
        if not isinstance(created, dt.datetime):
            created = timezone.now()
        elif timezone.is_naive(created):
            created = timezone.make_aware(created, dt.UTC)
        digest = hashlib.sha256(key.encode()).hexdigest()
        if not ApiToken.objects.filter(user_id=user_id).exists():
            ApiToken.objects.create(user_id=user_id, digest=digest, created_at=created)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table}")


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [migrations.RunPython(hash_plain_drf_tokens, migrations.RunPython.noop, elidable=False)]
