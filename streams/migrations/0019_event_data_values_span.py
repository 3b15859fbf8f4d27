"""The audit search's bare values again, each keyed by the span of 65,536 positions its event is in
(`{"152": ["issueABC", ...]}`), so that the search asks for a value one span at a time, newest first, and
reads only the rows of the spans it needs: `issueABC` with no time range read all 57,000 events that hold
it to pick the newest 50 (286 ms p95 at 10 million events, bench/README.md, section 9).

Built concurrently: appends go on while a big log is indexed (65 s on 10 million events there). Then the
log is analyzed, so that the planner has statistics on the index's expression: without them, it walked
the newest positions by the primary key, testing each event, rather than asking the index (45 against
0.3 ms there)."""

from django.db import migrations

# Kept equal to streams.audit_search.SPAN_VALUES: PostgreSQL uses the index only for that expression.
CREATE = """
CREATE INDEX CONCURRENTLY IF NOT EXISTS streams_event_data_values_span ON streams_event USING gin (
    jsonb_set(
        '{}'::jsonb,
        ARRAY[("position" >> 16)::text],
        jsonb_path_query_array(data, 'strict $.** ? (@.type() == "string" || @.type() == "number")'::jsonpath)
    ) jsonb_path_ops
)
"""


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("streams", "0018_event_actor_position"),
    ]

    operations = [
        migrations.RunSQL(CREATE, "DROP INDEX CONCURRENTLY IF EXISTS streams_event_data_values_span"),
        migrations.RunSQL("ANALYZE streams_event", migrations.RunSQL.noop),
    ]
