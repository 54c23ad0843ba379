"""The callbacks API, under /api/v1/ (namespace "callbacks-api").

GET/PATCH/PUT  domains/{domain}/callbacks/              {url?, secret?, publish_hook_url?, publish_hook_timeout_ms?,
                                                         publish_hook_allow_when_unreachable?}
GET            domains/{domain}/callbacks/deliveries/   newest first, each with its attempts
POST           callbacks/deliveries/{id}/resend/        send again now (202)
"""

from django.urls import path

from . import api

app_name = "callbacks-api"

urlpatterns = [
    path("domains/<str:domain_name>/callbacks/", api.CallbackConfigView.as_view(), name="config"),
    path("domains/<str:domain_name>/callbacks/deliveries/", api.DeliveryListView.as_view(), name="deliveries"),
    path("callbacks/deliveries/<int:delivery_id>/resend/", api.ResendView.as_view(), name="resend"),
]
