"""The monitoring API, mounted at /api/v1/monitoring/ (namespace "monitoring-api").

GET  frame-rate-and-bitrate/  every stream of a domain at a time   ?domain=&query_time=
GET  stream-bitrate/          one stream over a range              ?domain=&app=&stream=&start_time=&end_time=
GET  online-users/            viewers per stream at a time         ?domain=&query_time=
GET  playback-quality/      viewers' playback quality (beacons)  ?domain=&app=&stream=&start_time=&end_time=
GET  metrics/                 Prometheus text exposition of the newest samples
POST troubleshoot/            check a URL                          {url}
"""

from django.urls import path

from . import api

app_name = "monitoring-api"

urlpatterns = [
    path("frame-rate-and-bitrate/", api.DomainFrameRatesView.as_view(), name="frame-rates"),
    path("stream-bitrate/", api.StreamSeriesView.as_view(), name="stream-bitrate"),
    path("online-users/", api.OnlineUsersView.as_view(), name="online-users"),
    path("playback-quality/", api.PlaybackQualityView.as_view(), name="playback-quality"),
    path("metrics/", api.MetricsView.as_view(), name="metrics"),
    path("troubleshoot/", api.TroubleshootView.as_view(), name="troubleshoot"),
]
