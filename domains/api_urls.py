from django.urls import path

from . import api

app_name = "api"

# `str` stops only at "/", so names with dots and Unicode (IDNA) names fit.
urlpatterns = [
    path("domains/", api.DomainListView.as_view(), name="domain-list"),
    path("domains/<str:domain_name>/", api.DomainDetailView.as_view(), name="domain-detail"),
    path("domains/<str:domain_name>/cname-check/", api.CnameCheckView.as_view(), name="domain-cname-check"),
    path("domains/<str:domain_name>/mapping/", api.MappingView.as_view(), name="domain-mapping"),
    path("domains/<str:domain_name>/certificate/", api.CertificateView.as_view(), name="domain-certificate"),
    path("domains/<str:domain_name>/url-signing/", api.UrlSigningView.as_view(), name="domain-url-signing"),
    path("domains/<str:domain_name>/access-control/", api.AccessControlView.as_view(), name="domain-access-control"),
    path("urls/", api.UrlGeneratorView.as_view(), name="urls"),
]
