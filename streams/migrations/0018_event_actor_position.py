"""One actor's events newest first: `actor:NAME` with no time range read its page from the end of this
index instead of picking the newest 50 from all of that actor's entries in streams_event_actor_time (all
250,000 of them for an actor of the benchmark's 10-million-event store: 87 ms, against 0.07 ms here;
bench/README.md, section 9). Built concurrently: appends go on while a big log is indexed (5.7 s on 10
million events there)."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("streams", "0017_event_category"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="event",
            index=models.Index(fields=["actor", "position"], name="streams_event_actor_position"),
        ),
    ]
