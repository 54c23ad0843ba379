"""WebSocket routes; the monitoring app adds its live charts here."""

websocket_urlpatterns: list = []
