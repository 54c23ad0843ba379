from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from accounts.api import TokenView
from accounts.views import LoginView
from streams.views import player

from .forms import LoginForm

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="domains:list", permanent=False)),
    path("accounts/login/", LoginView.as_view(authentication_form=LoginForm), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("domains/", include("domains.urls")),
    path("tools/", include("domains.tool_urls")),
    path("streams/", include("streams.urls")),
    path("player/", player, name="player"),
    path("monitoring/", include("monitoring.urls")),
    path("api/v1/auth/token/", TokenView.as_view(), name="api-token"),
    path("api/v1/", include("domains.api_urls")),
    path("api/v1/streams/", include("streams.api_urls")),
    path("api/v1/monitoring/", include("monitoring.api_urls")),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]

handler500 = "livecenter.middleware.server_error"
