"""The event store's data: streams and their events. Appends go through streams.services only."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models.fields.json import KT
from django.db.models.functions import Now


class Stream(models.Model):
    # "C" collation: byte order, so that a plain btree serves prefix search and keyset paging by name.
    name = models.CharField(max_length=200, unique=True, db_collation="C")
    category = models.CharField(max_length=200, db_collation="C")
    version = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())
    # A stream copied from a source (streams/sources/): only its follower appends to it.
    source = models.ForeignKey(
        "Source", null=True, blank=True, on_delete=models.PROTECT, related_name="streams"
    )

    class Meta:
        indexes = [models.Index(fields=["category", "name"], name="streams_stream_category_name")]

    def __str__(self) -> str:
        return self.name


class Event(models.Model):
    position = models.BigAutoField(primary_key=True)
    # No foreign key constraint and no index of its own: an event is inserted only by the statement that
    # claims (and locks) its stream's row, streams are never deleted, and the unique (stream, sequence)
    # index serves every look-up by stream. The constraint's check, one probe of the stream's row per
    # event, was 40% of a 1,000-event append (streams/migrations/0015).
    stream = models.ForeignKey(
        Stream, on_delete=models.PROTECT, related_name="events", db_constraint=False, db_index=False
    )
    sequence = models.BigIntegerField()
    # The stream's category (a function of its name, never changed), kept with each event so that what
    # follows categories (lag counts, subscriptions' reads) filters the log without a look-up of the
    # stream per event (streams/migrations/0017).
    category = models.CharField(max_length=200, db_collation="C")
    # Django reserves the attribute `id` for primary keys; the column and the API call it `id`.
    event_id = models.UUIDField(db_column="id", unique=True)
    type = models.CharField(max_length=200)
    data = models.JSONField()
    metadata = models.JSONField(default=dict)
    # Who the event says did it (metadata.actor, else the appender's name): a claim, kept as made.
    actor = models.CharField(max_length=200, blank=True, default="")
    # Who the store authenticated as appending it (core/principals.py): no request body or metadata sets
    # these. NULL, not "", for events recorded before appenders were: unknown is not a principal.
    appended_by = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    appended_via = models.CharField(max_length=20, null=True, blank=True)  # noqa: DJ001
    recorded_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["stream", "sequence"], name="streams_event_stream_sequence"),
        ]
        indexes = [
            models.Index(fields=["type", "position"], name="streams_event_type"),
            # Who did what when: the positions come from the index alone (an index-only scan).
            models.Index(
                fields=["actor", "recorded_at"], include=["position"], name="streams_event_actor_time"
            ),
            # One actor's events newest first, with no time range: the page is read from the index's end
            # (streams.audit_search.search_candidates), not picked from all of that actor's events.
            models.Index(fields=["actor", "position"], name="streams_event_actor_position"),
            models.Index(
                fields=["appended_by", "recorded_at"],
                include=["position"],
                condition=models.Q(appended_by__isnull=False),
                name="streams_event_appender_time",
            ),
            models.Index(fields=["recorded_at"], name="streams_event_recorded_at"),
            GinIndex(OpClass("data", name="jsonb_path_ops"), name="streams_event_data"),
            # "Everything one request did": events sharing metadata.correlation_id.
            models.Index(KT("metadata__correlation_id"), "position", name="streams_event_correlation"),
        ]

    def __str__(self) -> str:
        return f"{self.stream_id}@{self.sequence} {self.type}"


class Consumer(models.Model):
    """Anything that reads the log in order and keeps a checkpoint: a projection, a sink or a subscription.

    A projection's checkpoint lives in its own schema (proj_<name>.checkpoint), written with its effects;
    a sink's lives here, in `position`, because its effects happen elsewhere.
    """

    class Kind(models.TextChoices):
        PROJECTION = "projection"
        SINK = "sink"
        SUBSCRIPTION = "subscription"

    class State(models.TextChoices):
        RUNNING = "running"
        PAUSED = "paused"
        # Stopped after its last retry: an event kept failing and the policy is to stop.
        FAILED = "failed"

    name = models.CharField(max_length=60, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    state = models.CharField(max_length=20, choices=State.choices, default=State.RUNNING)
    position = models.BigIntegerField(null=True, blank=True)
    # The last time the checkpoint moved; "stalled" is measured from here.
    progressed_at = models.DateTimeField(null=True, blank=True)
    # Consecutive failed attempts at the event at `failing_position`; 0 when all is well.
    attempts = models.IntegerField(default=0)
    failing_position = models.BigIntegerField(null=True, blank=True)
    retry_at = models.DateTimeField(null=True, blank=True)
    # Short, for every role. What a sink's receiver or connection said goes in last_error_detail,
    # shown only to operators and admins: it can hold what an internal service answered.
    last_error = models.TextField(blank=True, default="")
    last_error_detail = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    # Health thresholds: over lag_threshold events behind is "lagging"; not moving for stall_seconds
    # while behind is "stalled".
    lag_threshold = models.IntegerField(default=100)
    stall_seconds = models.IntegerField(default=60)
    created_at = models.DateTimeField(db_default=Now())

    def __str__(self) -> str:
        return self.name


class ParkedEvent(models.Model):
    """An event a consumer gave up on after its last retry, set aside so that the rest could go on."""

    class State(models.TextChoices):
        PARKED = "parked"
        # A subscription's event an operator asked to retry: its readers are elsewhere, so it waits for
        # the next fetch of its partition, and is retried once a reader acknowledges it
        # (streams/subscriptions.py).
        QUEUED = "queued"
        RETRIED = "retried"
        SKIPPED = "skipped"

    consumer = models.ForeignKey(Consumer, on_delete=models.CASCADE, related_name="parked")
    event = models.ForeignKey(Event, on_delete=models.PROTECT, related_name="+")
    error = models.TextField()
    # As Consumer.last_error_detail: for operators and admins only.
    error_detail = models.TextField(blank=True, default="")
    attempts = models.IntegerField()
    state = models.CharField(max_length=20, choices=State.choices, default=State.PARKED)
    parked_at = models.DateTimeField(db_default=Now())
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True, default="")
    # Queued for redelivery (a subscription's): who asked and when; they resolve it once it is acknowledged.
    queued_by = models.CharField(max_length=150, blank=True, default="")
    queued_at = models.DateTimeField(null=True, blank=True)
    # The lease whose fetch delivered it again, the reader holding it, and when: only that lease's
    # acknowledgement resolves it (a lease never shown: it is what a reader acknowledges with).
    redelivery_lease = models.UUIDField(null=True, blank=True)
    redelivered_to = models.CharField(max_length=200, blank=True, default="")
    redelivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["consumer", "event"], name="streams_parked_once")]
        indexes = [models.Index(fields=["consumer", "state", "event"], name="streams_parked_by_state")]

    def __str__(self) -> str:
        return f"{self.consumer_id}: {self.event_id}"


class LagSample(models.Model):
    """A consumer's lag at one moment, for charts (sampled every 10 s, kept 7 days)."""

    consumer = models.ForeignKey(Consumer, on_delete=models.CASCADE, related_name="samples")
    sampled_at = models.DateTimeField(db_default=Now())
    head = models.BigIntegerField()
    checkpoint = models.BigIntegerField()
    lag_events = models.BigIntegerField()
    lag_seconds = models.FloatField()

    class Meta:
        indexes = [models.Index(fields=["consumer", "sampled_at"], name="streams_lag_sample_time")]

    def __str__(self) -> str:
        return f"{self.consumer_id}@{self.sampled_at}"


class Sink(models.Model):
    """A consumer that POSTs events to an HTTP endpoint: at-least-once, paced, behind a circuit breaker.

    The checkpoint is the consumer's `position`; this row holds the endpoint, the policy, and the state
    that must be shared by every worker: the breaker and the pacing clock.
    """

    class Breaker(models.TextChoices):
        CLOSED = "closed"
        OPEN = "open"
        # Cooled down: the next delivery is one event, a probe whose outcome closes or re-opens it.
        HALF_OPEN = "half_open"

    consumer = models.OneToOneField(Consumer, on_delete=models.CASCADE, primary_key=True, related_name="sink")
    url = models.URLField(max_length=2000)
    # Kept in clear: it signs every delivery (HMAC-SHA256), so it must be readable; never shown or audited.
    secret = models.CharField(max_length=500)
    categories = ArrayField(models.CharField(max_length=200), default=list, blank=True)
    types = ArrayField(models.CharField(max_length=200), default=list, blank=True)
    rate_per_second = models.FloatField()
    batch_size = models.IntegerField(default=100)
    timeout_seconds = models.FloatField(default=5.0)
    max_attempts = models.IntegerField(default=8)
    breaker_threshold = models.IntegerField(default=5)
    breaker_cooldown_seconds = models.FloatField(default=30.0)
    breaker_state = models.CharField(max_length=20, choices=Breaker.choices, default=Breaker.CLOSED)
    breaker_opened_at = models.DateTimeField(null=True, blank=True)
    # Failed deliveries since the last success; the breaker opens when this reaches breaker_threshold.
    breaker_failures = models.IntegerField(default=0)
    # Events refused (4xx) in a row: an endpoint that refuses everything is misconfigured, not fed bad
    # events, and the sink stops instead of parking the whole log.
    refusals = models.IntegerField(default=0)
    # After a failed batch, events up to this position go one at a time, to find the one that fails.
    single_until = models.BigIntegerField(null=True, blank=True)
    # The rate limit's state: [epoch seconds, events] of the sends claimed in the last window, and the
    # latest claimed slot (or a receiver's Retry-After): no send is sent before it.
    recent_sends = models.JSONField(default=list, blank=True)
    next_send_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(rate_per_second__gt=0), name="streams_sink_rate"),
            models.CheckConstraint(
                condition=models.Q(batch_size__gte=1, batch_size__lte=1000), name="streams_sink_batch"
            ),
            models.CheckConstraint(condition=models.Q(timeout_seconds__gt=0), name="streams_sink_timeout"),
            models.CheckConstraint(condition=models.Q(max_attempts__gte=1), name="streams_sink_attempts"),
            models.CheckConstraint(condition=models.Q(breaker_threshold__gte=1), name="streams_sink_breaker"),
        ]

    def __str__(self) -> str:
        return f"{self.consumer_id} → {self.url}"


class Subscription(models.Model):
    """A consumer in another service that reads over HTTP (a consumer group): streams are hashed to
    `partitions` (fixed at creation, so a stream's partition never changes), each partition is leased to
    one reader at a time and keeps its own checkpoint (streams/subscriptions.py)."""

    consumer = models.OneToOneField(
        Consumer, on_delete=models.CASCADE, primary_key=True, related_name="subscription"
    )
    categories = ArrayField(models.CharField(max_length=200), default=list, blank=True)
    types = ArrayField(models.CharField(max_length=200), default=list, blank=True)
    partitions = models.IntegerField()
    # A lease not renewed (by a fetch or an acknowledgement of its holder) for this long expires, and
    # what it delivered without acknowledgement goes to the next reader.
    lease_seconds = models.IntegerField(default=30)
    # An event negatively acknowledged this many times in a row is parked.
    max_nacks = models.IntegerField(default=5)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(partitions__gte=1, partitions__lte=64),
                name="streams_subscription_partitions",
            ),
            models.CheckConstraint(
                condition=models.Q(lease_seconds__gte=1, lease_seconds__lte=3600),
                name="streams_subscription_lease",
            ),
            models.CheckConstraint(
                condition=models.Q(max_nacks__gte=1, max_nacks__lte=100), name="streams_subscription_nacks"
            ),
        ]

    def __str__(self) -> str:
        return self.consumer_id


class SubscriptionPartition(models.Model):
    """One partition of a subscription: its checkpoint, and the lease of the reader that holds it."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="partition_rows")
    number = models.IntegerField()
    # Every event of the partition at or before this position is acknowledged.
    checkpoint = models.BigIntegerField(default=0)
    # What the current lease delivered, up to here; an acknowledgement may not pass it.
    delivered_up_to = models.BigIntegerField(default=0)
    lease = models.UUIDField(null=True, blank=True, unique=True)
    reader = models.CharField(max_length=200, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Negative acknowledgements in a row of the event at failing_position.
    failing_position = models.BigIntegerField(null=True, blank=True)
    nacks = models.IntegerField(default=0)
    progressed_at = models.DateTimeField(null=True, blank=True)
    # Events acknowledged per second over the last window of about a minute, counted once a window from
    # the checkpoint at its start (rate_window_at, rate_window_checkpoint): no write per event.
    rate = models.FloatField(null=True, blank=True)
    rate_window_at = models.DateTimeField(null=True, blank=True)
    rate_window_checkpoint = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subscription", "number"], name="streams_subscription_partition"),
        ]

    def __str__(self) -> str:
        return f"{self.subscription_id}/{self.number}"


class Source(models.Model):
    """An external event store Replaydesk follows into its own log, exactly once (streams/sources/).

    `position` is how far in the source's own order the copy has got; it is written in the transaction
    that records the copied events, so a follower that dies copies nothing twice and skips nothing.
    """

    class State(models.TextChoices):
        RUNNING = "running"
        PAUSED = "paused"
        # Stopped on an error that needs a person (the source's table went away, its access was taken).
        FAILED = "failed"

    name = models.CharField(max_length=60, unique=True)
    kind = models.CharField(max_length=30)
    # How to reach it: encrypted (streams/sources/secrets.py), or the name of an environment variable
    # that holds the DSN. Never shown back.
    dsn_encrypted = models.TextField(blank=True, default="")
    dsn_env = models.CharField(max_length=100, blank=True, default="")
    options = models.JSONField(default=dict)
    # How a write-back reaches it with a role that may write (recovery/kinds/write_back.py), kept as the
    # DSN is; empty until an admin gives one. Never shown back.
    write_dsn_encrypted = models.TextField(blank=True, default="")
    write_dsn_env = models.CharField(max_length=100, blank=True, default="")
    state = models.CharField(max_length=20, choices=State.choices, default=State.RUNNING)
    position = models.BigIntegerField(default=0)
    # The stream and sequence of the source's event at `position`, as it was copied: a source whose
    # event there is another (or none) was restored from an old backup, and following it on would skip
    # what it writes again at the positions it hands out anew (streams/source_follow.py).
    position_stream = models.CharField(max_length=500, blank=True, default="")
    position_sequence = models.BigIntegerField(null=True, blank=True)
    events_copied = models.BigIntegerField(default=0)
    events_parked = models.BigIntegerField(default=0)
    # Events copied per second over the last window of about a minute, counted once a window from
    # events_copied at its start (no write per event).
    rate = models.FloatField(null=True, blank=True)
    rate_window_at = models.DateTimeField(null=True, blank=True)
    rate_window_copied = models.BigIntegerField(default=0)
    # The source's last position, when the follower last looked.
    head = models.BigIntegerField(null=True, blank=True)
    head_at = models.DateTimeField(null=True, blank=True)
    progressed_at = models.DateTimeField(null=True, blank=True)
    # Every position at or below this is final in the source: committed or never to be
    # (streams/sources/horizon.py). Holes above it wait for a settle round: `settle_through` is the
    # highest position seen when a hole stopped the copy, `settle_xmax` the source's transaction horizon
    # that must pass before the holes up to there are final.
    final_through = models.BigIntegerField(default=0)
    settle_through = models.BigIntegerField(null=True, blank=True)
    settle_seen_at = models.DateTimeField(null=True, blank=True)
    settle_xmax = models.BigIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())
    created_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(dsn_encrypted="", dsn_env=""), name="streams_source_reachable"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class SourceParkedEvent(models.Model):
    """An event of a source that could not be copied as it is (its id is in the log with other content,
    its stream has a hole, its state cannot be decoded): set aside with the reason, for a person."""

    class State(models.TextChoices):
        PARKED = "parked"
        RETRIED = "retried"
        SKIPPED = "skipped"

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="parked")
    # Where it is in the source, and what the source held, as far as it could be read.
    position = models.BigIntegerField()
    stream = models.CharField(max_length=500, blank=True, default="")
    sequence = models.BigIntegerField(null=True, blank=True)
    event_id = models.UUIDField(null=True, blank=True)
    type = models.CharField(max_length=500, blank=True, default="")
    payload = models.JSONField(default=dict)
    reason = models.TextField()
    state = models.CharField(max_length=20, choices=State.choices, default=State.PARKED)
    attempts = models.IntegerField(default=1)
    parked_at = models.DateTimeField(db_default=Now())
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "position"], name="streams_source_parked_once"),
        ]

    def __str__(self) -> str:
        return f"{self.source_id}@{self.position}"
