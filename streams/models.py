"""The event store's data: streams and their events. Appends go through streams.services only."""

from __future__ import annotations

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

    class Meta:
        indexes = [models.Index(fields=["category", "name"], name="streams_stream_category_name")]

    def __str__(self) -> str:
        return self.name


class Event(models.Model):
    position = models.BigAutoField(primary_key=True)
    stream = models.ForeignKey(Stream, on_delete=models.PROTECT, related_name="events")
    sequence = models.BigIntegerField()
    # Django reserves the attribute `id` for primary keys; the column and the API call it `id`.
    event_id = models.UUIDField(db_column="id", unique=True)
    type = models.CharField(max_length=200)
    data = models.JSONField()
    metadata = models.JSONField(default=dict)
    actor = models.CharField(max_length=200, blank=True, default="")
    recorded_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["stream", "sequence"], name="streams_event_stream_sequence"),
        ]
        indexes = [
            models.Index(fields=["type", "position"], name="streams_event_type"),
            models.Index(fields=["actor", "recorded_at"], name="streams_event_actor_recorded"),
            models.Index(fields=["recorded_at"], name="streams_event_recorded_at"),
            GinIndex(OpClass("data", name="jsonb_path_ops"), name="streams_event_data"),
            # "Everything one request did": events sharing metadata.correlation_id.
            models.Index(KT("metadata__correlation_id"), "position", name="streams_event_correlation"),
        ]

    def __str__(self) -> str:
        return f"{self.stream_id}@{self.sequence} {self.type}"
