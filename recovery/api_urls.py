"""The job and snapshot endpoints of the API (DESIGN.md §5), mounted under /api/v1/."""

from django.urls import path

from recovery import api

api_urlpatterns: list = [
    path("jobs", api.job_list, name="api-job-list"),
    path("jobs/estimate", api.job_estimate, name="api-job-estimate"),
    path("jobs/<int:job_id>", api.job_detail, name="api-job-detail"),
    path("jobs/<int:job_id>/approve", api.job_approve, name="api-job-approve"),
    path("jobs/<int:job_id>/reject", api.job_reject, name="api-job-reject"),
    path("jobs/<int:job_id>/cancel", api.job_cancel, name="api-job-cancel"),
    path("jobs/<int:job_id>/retry", api.job_retry, name="api-job-retry"),
    path("snapshots", api.snapshot_list, name="api-snapshot-list"),
    path("snapshots/<int:snapshot_id>", api.snapshot_detail, name="api-snapshot-detail"),
    path("consumers/<str:name>/rollback", api.consumer_rollback, name="api-consumer-rollback"),
]
