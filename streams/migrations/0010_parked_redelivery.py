# A subscription's parked event can be retried: queued for redelivery (state `queued`, who asked and
# when), delivered by the next fetch of its partition under a lease (recorded, so that only that
# lease's acknowledgement resolves it). Columns with constant defaults: no table rewrite.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('streams', '0009_subscriptions'),
    ]

    operations = [
        migrations.AddField(
            model_name='parkedevent',
            name='queued_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='parkedevent',
            name='queued_by',
            field=models.CharField(blank=True, default='', max_length=150),
        ),
        migrations.AddField(
            model_name='parkedevent',
            name='redelivered_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='parkedevent',
            name='redelivered_to',
            field=models.CharField(blank=True, default='', max_length=200),
        ),
        migrations.AddField(
            model_name='parkedevent',
            name='redelivery_lease',
            field=models.UUIDField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='parkedevent',
            name='state',
            field=models.CharField(choices=[('parked', 'Parked'), ('queued', 'Queued'), ('retried', 'Retried'), ('skipped', 'Skipped')], default='parked', max_length=20),
        ),
    ]
