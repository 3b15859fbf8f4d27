"""Each event carries its stream's category.

A lag count or a subscription's read that follows categories looked up the stream of every event it read
(about 1,000 probes of streams_stream for a 2,000-position lag window, half a count's time). A stream's
category is a function of its name and never changes, so it is copied onto its events when they are
written (streams/services.py) and filtered there.

On a store that already holds events the column is filled a range of positions at a time up to the
settled head, each range committed on its own, so that no transaction holds millions of row locks and
appends go on meanwhile; what was appended since is filled under a lock that holds appends for that long.
Only then is it made NOT NULL: a CHECK added NOT VALID (in that same brief lock) and validated (appends
go on), which SET NOT NULL then takes as proof instead of scanning the table under an exclusive lock.
Writers of the code before this migration may run until that CHECK is in place; after it, their
appends are refused until they run this code. Every event is written once more: on a store of a million
events here it took 35 s and the table grew from 775 to 1,285 MB, the old versions' space reused by later
appends once vacuumed (README, Upgrading)."""

from django.db import migrations, models, transaction

BATCH = 100_000

ADD = 'ALTER TABLE streams_event ADD COLUMN category varchar(200) COLLATE "C"'
FILL = """
    UPDATE streams_event e SET category = s.category
      FROM streams_stream s
     WHERE s.id = e.stream_id AND e.category IS NULL AND e.position > %s AND e.position <= %s
"""


def fill(apps, schema_editor) -> None:
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        # Every position at or below the settled head is committed or never will be (streams/services.py):
        # the ranges below it are filled for good. Anything above is filled under the lock below.
        cursor.execute("SELECT replaydesk_settled_head()")
        settled = cursor.fetchone()[0]
    for start in range(0, settled, BATCH):
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute(FILL, [start, min(start + BATCH, settled)])
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        # Waits for the appends under way and holds the next ones until the CHECK is in place.
        cursor.execute("LOCK TABLE streams_event IN SHARE ROW EXCLUSIVE MODE")
        cursor.execute(FILL, [settled, 2**62])
        cursor.execute(
            "ALTER TABLE streams_event ADD CONSTRAINT streams_event_category_filled "
            "CHECK (category IS NOT NULL) NOT VALID"
        )
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE streams_event VALIDATE CONSTRAINT streams_event_category_filled")
        cursor.execute("ALTER TABLE streams_event ALTER COLUMN category SET NOT NULL")
        cursor.execute("ALTER TABLE streams_event DROP CONSTRAINT streams_event_category_filled")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("streams", "0016_stream_fillfactor"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="event",
                    name="category",
                    field=models.CharField(db_collation="C", max_length=200),
                    preserve_default=False,
                ),
            ],
            database_operations=[
                migrations.RunSQL(ADD, "ALTER TABLE streams_event DROP COLUMN category"),
                migrations.RunPython(fill, migrations.RunPython.noop),
            ],
        ),
    ]
