"""The demo's reads of its projections, mounted under /api/v1/ when the demo is installed."""

from django.urls import path

from demo import api

urlpatterns = [
    path("demo/users/<str:user_id>", api.user_detail, name="api-demo-user"),
    path("demo/access", api.access_list, name="api-demo-access"),
]
