# The actor + time index carries the position, so an audit look-up picks its page from the index alone.
# Built concurrently: appends go on while a big log is indexed.

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("streams", "0004_sinks"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="event",
            index=models.Index(
                fields=["actor", "recorded_at"], include=("position",), name="streams_event_actor_time"
            ),
        ),
        RemoveIndexConcurrently(model_name="event", name="streams_event_actor_recorded"),
    ]
