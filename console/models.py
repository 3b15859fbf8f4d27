"""API tokens (console/tokens.py): the shell's, since only the shell issues, checks and lists them.

Only a token's public prefix and the sha256 of the whole token are kept: the token itself is shown once,
when it is issued, and a copy of the database opens no API.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, help_text="what the token is for")
    # The public part of `rd_<prefix>_<secret>`: how a token is found, listed and revoked.
    prefix = models.CharField(max_length=8, unique=True)
    digest = models.CharField(max_length=64, unique=True, help_text="sha256 of the whole token, hex")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="empty: never expires")
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix} ({self.name})" if self.name else self.prefix

    def state(self, now) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"
