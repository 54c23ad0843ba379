"""WebSocket routes; the monitoring app adds its live charts here."""

from monitoring.routing import websocket_urlpatterns as monitoring_websockets

websocket_urlpatterns: list = [*monitoring_websockets]
