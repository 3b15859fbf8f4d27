"""The streams list in natural order (user-2 before user-10): an ICU collation that reads digits as
numbers, and indexes of the names in it, so that a page of a million streams is an index range
(streams.selectors.list_streams)."""

from django.db import migrations

COLLATION = "CREATE COLLATION IF NOT EXISTS replaydesk_natural (provider = icu, locale = 'und-u-kn-true')"
NAME = (
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS streams_stream_natural "
    'ON streams_stream ((name COLLATE "replaydesk_natural"))'
)
CATEGORY = (
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS streams_stream_category_natural "
    'ON streams_stream (category, (name COLLATE "replaydesk_natural"))'
)


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY: appends go on while the streams are indexed.
    atomic = False

    dependencies = [
        ("streams", "0013_event_data_values_index"),
    ]

    operations = [
        migrations.RunSQL(COLLATION, "DROP COLLATION IF EXISTS replaydesk_natural"),
        migrations.RunSQL(NAME, "DROP INDEX CONCURRENTLY IF EXISTS streams_stream_natural"),
        migrations.RunSQL(CATEGORY, "DROP INDEX CONCURRENTLY IF EXISTS streams_stream_category_natural"),
    ]
