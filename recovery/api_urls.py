"""The job and snapshot endpoints of the API (DESIGN.md §5), mounted under /api/v1/."""

api_urlpatterns: list = []
