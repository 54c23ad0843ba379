"""DRF's authtoken table kept API keys in plain text. Each key there becomes
an ApiToken holding only its SHA-256 (so it keeps working), and the plain
row is deleted. The table itself is left (empty) to its own app's history."""

import hashlib

from django.db import migrations

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
        digest = hashlib.sha256(key.encode()).hexdigest()
        if not ApiToken.objects.filter(user_id=user_id).exists():
            ApiToken.objects.create(user_id=user_id, digest=digest, created_at=created)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table}")


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [migrations.RunPython(hash_plain_drf_tokens, migrations.RunPython.noop, elidable=False)]
