"""Jobs in the Django admin: read-only, with approve and reject as bulk actions that go through the same
service as the pages and the API (so the four-eyes rule holds here too: a refusal is shown and audited)."""

from __future__ import annotations

from django.contrib import admin, messages

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
    list_display = ("id", "kind", "target", "state", "requested_by", "created_at")
    list_filter = ("kind", "state")
    search_fields = ("target", "requested_by", "reason")
    inlines = (ApprovalInline,)
    actions = ("approve_selected", "reject_selected")

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Job._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Approve the selected jobs (their parameters as shown now)")
    def approve_selected(self, request, queryset) -> None:
        for job in queryset:
            self._decide(
                request,
                job,
                lambda job: approvals.approve_job(
                    job_id=job.pk, approver=request.user, params_sha256=job.params_sha256, request=request
                ),
            )

    @admin.action(description="Reject the selected jobs")
    def reject_selected(self, request, queryset) -> None:
        for job in queryset:
            self._decide(
                request,
                job,
                lambda job: approvals.reject_job(
                    job_id=job.pk, approver=request.user, comment="rejected in the admin", request=request
                ),
            )

    def _decide(self, request, job: Job, decide) -> None:
        try:
            decided = decide(job)
        except approvals.JobError as exc:
            self.message_user(request, f"job {job.pk}: {exc}", messages.ERROR)
        else:
            self.message_user(request, f"job {job.pk} is {decided.state}", messages.SUCCESS)
