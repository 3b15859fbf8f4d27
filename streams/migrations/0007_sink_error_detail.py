# What a sink's receiver or connection said moves out of the errors every role reads into fields only
# operators and admins see (streams/sink_delivery.py). Errors recorded before keep their short part;
# the whole of each goes to the detail.

import re

from django.db import migrations, models

# The old forms: "…HTTP 500 from the receiver: <its body>" and "…could not reach <url>: <error text>",
# inside "N events refused in a row by …; the last: …. Check the sink's URL and secret, …" or not.
_END = r"(?=\. Check the sink's URL|$)"
_SAID = re.compile(r"(HTTP \d{3} from the receiver): .*?" + _END, re.S)
_UNREACHABLE = re.compile(r"could not reach .*?" + _END, re.S)


def short(error: str) -> str:
    return _UNREACHABLE.sub("could not connect to the receiver", _SAID.sub(r"\1", error))


def split_errors(apps, schema_editor):
    Consumer = apps.get_model("streams", "Consumer")
    ParkedEvent = apps.get_model("streams", "ParkedEvent")
    for consumer in Consumer.objects.filter(kind="sink").exclude(last_error=""):
        if short(consumer.last_error) != consumer.last_error:
            consumer.last_error_detail = consumer.last_error
            consumer.last_error = short(consumer.last_error)
            consumer.save(update_fields=["last_error", "last_error_detail"])
    for parked in ParkedEvent.objects.filter(consumer__kind="sink").iterator():
        if short(parked.error) != parked.error:
            parked.error_detail, parked.error = parked.error, short(parked.error)
            parked.save(update_fields=["error", "error_detail"])


class Migration(migrations.Migration):
    dependencies = [("streams", "0006_append_slots")]

    operations = [
        migrations.AddField(
            model_name="consumer",
            name="last_error_detail",
            field=models.TextField(blank=True, default=""),
        ),
        migrations.AddField(
            model_name="parkedevent",
            name="error_detail",
            field=models.TextField(blank=True, default=""),
        ),
        migrations.RunPython(split_errors, migrations.RunPython.noop),
    ]
