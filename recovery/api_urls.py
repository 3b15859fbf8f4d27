"""The job and snapshot endpoints of the API, mounted under /api/v1/ (README, The API)."""

from django.urls import path

from recovery.api import approvals, jobs, snapshots

api_urlpatterns: list = [
    path("jobs", jobs.job_list, name="api-job-list"),
    path("jobs/estimate", jobs.job_estimate, name="api-job-estimate"),
    path("jobs/<int:job_id>", jobs.job_detail, name="api-job-detail"),
    path("jobs/<int:job_id>/approve", approvals.job_approve, name="api-job-approve"),
    path("jobs/<int:job_id>/reject", approvals.job_reject, name="api-job-reject"),
    path("jobs/<int:job_id>/cancel", jobs.job_cancel, name="api-job-cancel"),
    path("jobs/<int:job_id>/retry", jobs.job_retry, name="api-job-retry"),
    path("snapshots", snapshots.snapshot_list, name="api-snapshot-list"),
    path("snapshots/<int:snapshot_id>", snapshots.snapshot_detail, name="api-snapshot-detail"),
    path("consumers/<str:name>/rollback", snapshots.consumer_rollback, name="api-consumer-rollback"),
]
