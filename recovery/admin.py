"""Jobs in the Django admin: read-only. Approving and rejecting happen on the review page (linked from
the list), the one path that shows what will run and asks for the password again when it is due."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from recovery import approvals
from recovery.models import Approval, Job


class ApprovalInline(admin.TabularInline):
    model = Approval
    extra = 0
    can_delete = False
    fields = ("approver", "decision", "params_sha256", "comment", "created_at", "expires_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "target", "state", "requested_by", "created_at", "review")
    list_filter = ("kind", "state")
    search_fields = ("target", "requested_by", "reason")
    inlines = (ApprovalInline,)
    # No bulk approve or reject here: a decision is made on the review page, which shows the parameters
    # (and their sha256) that it binds, and asks for the password again when it is due.
    actions = None

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Job._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Review")
    def review(self, job: Job) -> str:
        if job.state not in approvals.WAITING:
            return "—"
        return format_html('<a href="{}">approve or reject</a>', reverse("recovery:approval", args=[job.pk]))
