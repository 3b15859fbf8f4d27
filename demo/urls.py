from django.urls import path

from demo import api, search_index

api_urlpatterns = [
    path("demo/users/<str:user_id>", api.user_detail, name="api-demo-user"),
    path("demo/access", api.access_list, name="api-demo-access"),
]

urlpatterns = [
    path("demo/search-index/events", search_index.receive, name="demo-search-index-receive"),
    path("demo/search/", search_index.search_page, name="demo-search"),
]
