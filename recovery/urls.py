"""The recovery pages: jobs, a job, the new-job form, approvals, snapshots, drills."""

from django.urls import path

from recovery import approval_views, drill_views, views

app_name = "recovery"

urlpatterns = [
    path("jobs/", views.job_list, name="jobs"),
    path("jobs/new", views.job_new, name="job-new"),
    path("jobs/new/dry-run", views.job_estimate, name="job-estimate"),
    path("jobs/new/kinds.css", views.job_kinds_css, name="job-kinds-css"),
    path("jobs/running", views.running_jobs, name="running-jobs"),
    path("jobs/<int:job_id>/", views.job_detail, name="job"),
    path("jobs/<int:job_id>/progress", views.job_progress, name="job-progress"),
    path("jobs/<int:job_id>/cancel", views.job_cancel, name="job-cancel"),
    path("jobs/<int:job_id>/retry", views.job_retry, name="job-retry"),
    path("jobs/<int:job_id>/approvals", approval_views.job_approvals, name="job-approvals"),
    path("approvals/", approval_views.inbox, name="approvals"),
    path("approvals/waiting", approval_views.waiting_summary, name="approvals-waiting"),
    path("approvals/count", approval_views.nav_count, name="approvals-count"),
    path("approvals/<int:job_id>/", approval_views.review, name="approval"),
    path("approvals/<int:job_id>/approve", approval_views.approve, name="approve"),
    path("approvals/<int:job_id>/reject", approval_views.reject, name="reject"),
    path("drills/", drill_views.drill_list, name="drills"),
    path("drills/start", drill_views.drill_start, name="drill-start"),
    path("snapshots/", views.snapshot_list, name="snapshots"),
    path("snapshots/<int:snapshot_id>/", views.snapshot_detail, name="snapshot"),
    path("consumers/<str:name>/jobs", views.consumer_recovery, name="consumer-recovery"),
    path("consumers/<str:name>/rollback", views.rollback, name="rollback"),
]
