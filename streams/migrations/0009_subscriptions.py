# Subscriptions: consumers in other services that read over HTTP, their partitions, checkpoints and
# leases. A stream's partition is the first 32 bits of the md5 of its name, modulo the subscription's
# partitions: md5 is the same on every server and version (hashtext() is not promised to be), and a
# client can compute it too.

import django.contrib.postgres.fields
import django.db.models.deletion
import django.db.models.functions.datetime
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('streams', '0008_event_appended_by'),
    ]

    operations = [
        migrations.RunSQL(
            sql="""
            CREATE FUNCTION replaydesk_stream_partition(name text, partitions integer) RETURNS integer
            LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
            AS $$ SELECT (('x' || substr(md5(name), 1, 8))::bit(32)::bigint % partitions)::integer $$
            """,
            reverse_sql="DROP FUNCTION replaydesk_stream_partition(text, integer)",
        ),
        migrations.AlterField(
            model_name='consumer',
            name='kind',
            field=models.CharField(choices=[('projection', 'Projection'), ('sink', 'Sink'), ('subscription', 'Subscription')], max_length=20),
        ),
        migrations.CreateModel(
            name='Subscription',
            fields=[
                ('consumer', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='subscription', serialize=False, to='streams.consumer')),
                ('categories', django.contrib.postgres.fields.ArrayField(base_field=models.CharField(max_length=200), blank=True, default=list, size=None)),
                ('types', django.contrib.postgres.fields.ArrayField(base_field=models.CharField(max_length=200), blank=True, default=list, size=None)),
                ('partitions', models.IntegerField()),
                ('lease_seconds', models.IntegerField(default=30)),
                ('max_nacks', models.IntegerField(default=5)),
                ('created_at', models.DateTimeField(db_default=django.db.models.functions.datetime.Now())),
            ],
            options={
                'constraints': [models.CheckConstraint(condition=models.Q(('partitions__gte', 1), ('partitions__lte', 64)), name='streams_subscription_partitions'), models.CheckConstraint(condition=models.Q(('lease_seconds__gte', 1), ('lease_seconds__lte', 3600)), name='streams_subscription_lease'), models.CheckConstraint(condition=models.Q(('max_nacks__gte', 1), ('max_nacks__lte', 100)), name='streams_subscription_nacks')],
            },
        ),
        migrations.CreateModel(
            name='SubscriptionPartition',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('number', models.IntegerField()),
                ('checkpoint', models.BigIntegerField(default=0)),
                ('delivered_up_to', models.BigIntegerField(default=0)),
                ('lease', models.UUIDField(blank=True, null=True, unique=True)),
                ('reader', models.CharField(blank=True, default='', max_length=200)),
                ('lease_expires_at', models.DateTimeField(blank=True, null=True)),
                ('failing_position', models.BigIntegerField(blank=True, null=True)),
                ('nacks', models.IntegerField(default=0)),
                ('progressed_at', models.DateTimeField(blank=True, null=True)),
                ('rate', models.FloatField(blank=True, null=True)),
                ('rate_window_at', models.DateTimeField(blank=True, null=True)),
                ('rate_window_checkpoint', models.BigIntegerField(default=0)),
                ('subscription', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='partition_rows', to='streams.subscription')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('subscription', 'number'), name='streams_subscription_partition')],
            },
        ),
    ]
