"""The demo's downstream "search index": a separate system in spirit, fed only by a webhook sink."""

from django.db import models


class SearchDocument(models.Model):
    user_id = models.CharField(max_length=100, primary_key=True)
    username = models.CharField(max_length=200)
    name = models.CharField(max_length=200)
    email = models.CharField(max_length=300)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.username


class SearchDelivery(models.Model):
    """Event ids the index has taken in: a redelivered event takes effect once."""

    event_id = models.UUIDField(primary_key=True)
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return str(self.event_id)
