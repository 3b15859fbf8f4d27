from csp.decorators import csp_update
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from console import dashboard, login, metrics, oidc, views
from recovery.api_urls import api_urlpatterns as recovery_api
from streams import api_consumers
from streams.urls import api_urlpatterns as streams_api
from streams.urls import audit_api_urlpatterns as streams_audit_api

api_v1 = [
    *streams_api,
    *streams_audit_api,
    *recovery_api,
    path("consumers", api_consumers.consumer_list, name="api-consumer-list"),
    path("consumers/<str:name>", api_consumers.consumer_detail, name="api-consumer-detail"),
    path("consumers/<str:name>/lagging-streams", api_consumers.lagging_streams, name="api-consumer-lagging"),
    path("consumers/<str:name>/pause", api_consumers.pause, name="api-consumer-pause"),
    path("consumers/<str:name>/resume", api_consumers.resume, name="api-consumer-resume"),
    path("consumers/<str:name>/parked", api_consumers.parked_list, name="api-consumer-parked"),
    path(
        "consumers/<str:name>/parked/<int:parked_id>/retry",
        api_consumers.parked_retry,
        name="api-consumer-parked-retry",
    ),
    path(
        "consumers/<str:name>/parked/<int:parked_id>/skip",
        api_consumers.parked_skip,
        name="api-consumer-parked-skip",
    ),
]

if apps.is_installed("demo"):
    api_v1.append(path("", include("demo.api_urls")))

READ_ONLY = ["get", "head", "options"]

# The admin's own login page counts failed logins against the same limits as the console's.
admin.site.login = login.limit_failed_logins(admin.site.login)

urlpatterns = [
    path(
        "",
        RedirectView.as_view(pattern_name="dashboard", permanent=False, http_method_names=READ_ONLY),
        name="home",
    ),
    path("dashboard/", dashboard.dashboard, name="dashboard"),
    path("login/", login.LoginView.as_view(), name="login"),
    path("oidc/authenticate/", oidc.SignIn.as_view(), name="oidc_authentication_init"),
    path("oidc/callback/", oidc.Callback.as_view(), name="oidc_authentication_callback"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("api/v1/", include((api_v1, "api"))),
    # Read-only, whatever the library's views would otherwise accept.
    path("api/schema/", SpectacularAPIView.as_view(http_method_names=READ_ONLY), name="schema"),
    path(
        "api/docs/",
        # The split view serves Swagger UI's start-up script as a file: no inline script (CSP). Swagger
        # UI styles some elements inline, so this page alone allows inline style (never script).
        csp_update({"style-src": ["'unsafe-inline'"]})(
            SpectacularSwaggerSplitView.as_view(
                url_name="schema", template_name="console/api_docs.html", http_method_names=READ_ONLY
            )
        ),
        name="api-docs",
    ),
    path("admin/", admin.site.urls),
    path("", include("streams.urls")),
    path("", include("recovery.urls")),
]
if apps.is_installed("demo"):
    # Mounted by name: the product imports nothing of the optional demo.
    urlpatterns.append(path("", include("demo.urls")))

handler403 = "console.views.forbidden"
handler404 = "console.views.not_found"
