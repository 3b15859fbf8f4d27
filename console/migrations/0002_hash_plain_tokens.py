"""Tokens issued before tokens were hashed (the `authtoken_token` table of Django REST framework's
authtoken app: 40 hex digits kept in plain text) become hashed API tokens, so that the clients holding
them keep working, and the plain rows are deleted. Each lasts REPLAYDESK_TOKEN_DAYS from this migration
(for ever when that is 0): long enough to hand out new ones. The table itself is left, empty; the app is
no longer installed."""

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import migrations
from django.utils import timezone

LEGACY_NAME = "issued before tokens were hashed"


def hash_plain_tokens(apps, schema_editor) -> None:
    connection = schema_editor.connection
    if "authtoken_token" not in connection.introspection.table_names():
        return  # a database created after the change
    ApiToken = apps.get_model("console", "ApiToken")
    days = settings.REPLAYDESK_TOKEN_DAYS
    expires_at = timezone.now() + timedelta(days=days) if days else None
    with connection.cursor() as cursor:
        cursor.execute("SELECT key, user_id, created FROM authtoken_token")
        rows = cursor.fetchall()
        prefixes = set()
        for key, user_id, created in rows:
            # A fresh prefix: none of the old secret is shown anywhere.
            prefix = secrets.token_hex(4)
            while prefix in prefixes:
                prefix = secrets.token_hex(4)
            prefixes.add(prefix)
            ApiToken.objects.create(
                user_id=user_id,
                name=LEGACY_NAME,
                prefix=prefix,
                digest=hashlib.sha256(key.encode()).hexdigest(),
                created_at=created,
                expires_at=expires_at,
            )
        cursor.execute("DELETE FROM authtoken_token")


class Migration(migrations.Migration):
    dependencies = [("console", "0001_api_tokens")]

    # Backwards there is nothing to put back: the plain tokens are gone for good.
    operations = [migrations.RunPython(hash_plain_tokens, migrations.RunPython.noop)]
