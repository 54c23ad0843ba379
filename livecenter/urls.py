from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from accounts.api import TokenView
from accounts.views import LoginView
from mediajobs import api_urls as media_api_urls
from mediajobs import urls as media_urls
from streams import api_urls as stream_api_urls
from streams import urls as stream_urls
from streams.views import go_live, player

from .forms import LoginForm

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="domains:list", permanent=False)),
    path("accounts/login/", LoginView.as_view(authentication_form=LoginForm), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    # Before the domains' own pages, whose `<domain_name>/` stops at the slash.
    path("domains/<str:domain_name>/callbacks/", include("callbacks.urls")),
    path("domains/<str:domain_name>/go-live/", go_live, name="go-live"),
    path("domains/", include("domains.urls")),
    path("tools/", include("domains.tool_urls")),
    # The media workers' pages and API share the streams' prefixes and URL
    # namespaces, as before the two apps split (issue 12).
    path("streams/", include((stream_urls.urlpatterns + media_urls.urlpatterns, stream_urls.app_name))),
    path("player/", player, name="player"),
    path("monitoring/", include("monitoring.urls")),
    path("nodes/", include("nodes.urls")),
    path("api/v1/auth/token/", TokenView.as_view(), name="api-token"),
    path("api/v1/", include("callbacks.api_urls")),
    path("api/v1/", include("domains.api_urls")),
    path(
        "api/v1/streams/",
        include((stream_api_urls.urlpatterns + media_api_urls.urlpatterns, stream_api_urls.app_name)),
    ),
    path("api/v1/monitoring/", include("monitoring.api_urls")),
    path("api/v1/nodes/", include("nodes.api_urls")),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]

handler500 = "livecenter.middleware.server_error"
