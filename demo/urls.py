from django.urls import path

from demo import api

api_urlpatterns = [
    path("demo/users/<str:user_id>", api.user_detail, name="api-demo-user"),
    path("demo/access", api.access_list, name="api-demo-access"),
]
