from django.urls import path

from demo import search_index

urlpatterns = [
    path("demo/search-index/events", search_index.receive, name="demo-search-index-receive"),
    path("demo/search/", search_index.search_page, name="demo-search"),
]
