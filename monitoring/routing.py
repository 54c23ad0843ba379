"""The monitoring pages' WebSockets (consumers.py), included by livecenter/routing.py."""

from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/monitoring/stream/", consumers.StreamMonitorConsumer.as_asgi()),
    path("ws/monitoring/domain/", consumers.DomainMonitorConsumer.as_asgi()),
]
