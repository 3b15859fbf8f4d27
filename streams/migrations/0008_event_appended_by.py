# Who appended each event, as the store authenticated them (core/principals.py), beside the actor the event
# claims. Events recorded before keep NULL: nobody knows, and the pages say so. The index serves the
# appended_by filter as streams_event_actor_time serves actor's; only events that have an appender are
# in it, and it is built concurrently (appends go on while a big log is indexed).

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("streams", "0007_sink_error_detail"),
    ]

    operations = [
        migrations.AddField(
            model_name="event",
            name="appended_by",
            field=models.CharField(blank=True, max_length=200, null=True),
        ),
        migrations.AddField(
            model_name="event",
            name="appended_via",
            field=models.CharField(blank=True, max_length=20, null=True),
        ),
        AddIndexConcurrently(
            model_name="event",
            index=models.Index(
                condition=models.Q(appended_by__isnull=False),
                fields=["appended_by", "recorded_at"],
                include=("position",),
                name="streams_event_appender_time",
            ),
        ),
    ]
