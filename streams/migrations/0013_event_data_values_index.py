"""The audit search's bare values: every string and number in an event's data, in a GIN index, so that
`issueABC` finds the events that name it under any key (streams.audit_search.data_values)."""

from django.db import migrations

# Kept equal to streams.audit_search.DATA_VALUES_PATH: PostgreSQL uses the index only for that expression.
CREATE = """
CREATE INDEX CONCURRENTLY IF NOT EXISTS streams_event_data_values ON streams_event USING gin (
    jsonb_path_query_array(data, 'strict $.** ? (@.type() == "string" || @.type() == "number")'::jsonpath)
    jsonb_path_ops
)
"""


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY: appends go on while a large log is indexed.
    atomic = False

    dependencies = [
        ("streams", "0012_source_write_back"),
    ]

    operations = [
        migrations.RunSQL(CREATE, "DROP INDEX CONCURRENTLY IF EXISTS streams_event_data_values"),
    ]
