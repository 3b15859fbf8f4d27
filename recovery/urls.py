"""The recovery pages: jobs, a job, the new-job form, snapshots."""

app_name = "recovery"

urlpatterns: list = []
