"""The streams list in natural order (user-2 before user-10): a sort key of the name with each run of
digits written as its length and its digits, and indexes of it, so that a page of a million streams is
an index range (streams.selectors.list_streams). A function rather than an ICU collation: PostgreSQL
built without ICU (the embedded server of `replaydesk up`) has none."""

from django.db import migrations

# user-10 → "user-00210" + chr(1) + "user-10": digits compare as numbers (a longer number is larger),
# the rest byte by byte, and the name itself after chr(1) makes the key unique (user-01 and user-1).
FUNCTION = r"""
CREATE OR REPLACE FUNCTION replaydesk_natural_key(name text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT string_agg(
           CASE WHEN m[1] ~ '^[0-9]'
                THEN lpad(length(ltrim(m[1], '0'))::text, 3, '0') || ltrim(m[1], '0')
                ELSE m[1] END,
           '' ORDER BY n) || chr(1) || name
    FROM regexp_matches(name, '[0-9]+|[^0-9]+', 'g') WITH ORDINALITY AS r(m, n)
$$
"""
NAME = (
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS streams_stream_natural "
    "ON streams_stream (replaydesk_natural_key(name))"
)
CATEGORY = (
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS streams_stream_category_natural "
    "ON streams_stream (category, replaydesk_natural_key(name))"
)


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY: appends go on while the streams are indexed.
    atomic = False

    dependencies = [
        ("streams", "0013_event_data_values_index"),
    ]

    operations = [
        migrations.RunSQL(FUNCTION, "DROP FUNCTION IF EXISTS replaydesk_natural_key(text)"),
        migrations.RunSQL(NAME, "DROP INDEX CONCURRENTLY IF EXISTS streams_stream_natural"),
        migrations.RunSQL(CATEGORY, "DROP INDEX CONCURRENTLY IF EXISTS streams_stream_category_natural"),
    ]
