"""The monitoring API, mounted at /api/v1/monitoring/ (namespace "monitoring-api").

GET  frame-rate-and-bitrate/  every stream of a domain at a time   ?domain=&query_time=
GET  stream-bitrate/          one stream over a range              ?domain=&app=&stream=&start_time=&end_time=
GET  online-users/            viewers per stream at a time         ?domain=&query_time=
GET  playback-quality/      viewers' playback quality (beacons)  ?domain=&app=&stream=&start_time=&end_time=
GET  metrics/                 Prometheus text exposition of the newest samples
GET  usage/                   bandwidth, traffic, viewers over a range
                                  ?domain=&app=&stream=&start_time=&end_time=&interval=
GET  usage/csv/               the same as CSV
POST troubleshoot/            check a URL                          {url}
GET/POST          alarm-rules/        alarm rules ?domain=; POST {domain, app?, metric, comparison?, threshold,
                                      duration_seconds?, enabled?}
GET/PATCH/DELETE  alarm-rules/{id}/   one rule; PATCH changes the fields it names
GET               alarms/             open and past alarms, newest first ?domain=&state=open|closed
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
    path("usage/", api.UsageView.as_view(), name="usage"),
    path("usage/csv/", api.UsageCsvView.as_view(), name="usage-csv"),
    path("alarm-rules/", api.AlarmRuleListView.as_view(), name="alarm-rules"),
    path("alarm-rules/<int:rule_id>/", api.AlarmRuleView.as_view(), name="alarm-rule"),
    path("alarms/", api.AlarmListView.as_view(), name="alarms"),
]
