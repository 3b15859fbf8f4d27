"""API tokens in the Django admin: who holds which, since when, until when, last used; never a token or
its hash. Nothing is edited here; a token is issued by `replaydesk token USER` (the one place it is
shown) and revoked with the action below, audited."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils import timezone

from console import tokens
from console.models import ApiToken

# The admin speaks of Replaydesk; templates/admin/base_site.html gives it the console's icon.
admin.site.site_header = "Replaydesk administration"
admin.site.site_title = "Replaydesk administration"

SHOWN = ("prefix", "user", "name", "created_at", "expires_at", "last_used_at", "revoked_at")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = (*SHOWN, "state")
    list_filter = ("revoked_at",)
    search_fields = ("prefix", "name", "user__username")
    fields = SHOWN
    readonly_fields = SHOWN
    actions = ("revoke",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # Revoked, not deleted: the row says who held the token when the audit trail names its prefix.
        return False

    def has_revoke_permission(self, request) -> bool:
        return request.user.has_perm("console.change_apitoken")

    @admin.display(description="State")
    def state(self, token: ApiToken) -> str:
        return token.state(timezone.now())

    @admin.action(description="Revoke the selected tokens", permissions=["revoke"])
    def revoke(self, request, queryset) -> None:
        actor = request.user.get_username()
        revoked = sum(
            tokens.revoke_token(token=token, actor=actor, request=request)
            for token in queryset.select_related("user")
        )
        self.message_user(request, f"{revoked} token(s) revoked.", messages.SUCCESS)
