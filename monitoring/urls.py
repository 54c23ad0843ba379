"""Monitoring pages, mounted at /monitoring/ (namespace "monitoring").

monitoring:stream        /monitoring/stream/?domain=&app=&stream=   live charts of one stream
monitoring:domain        /monitoring/?domain=                        a domain's online streams, bandwidth, users
monitoring:troubleshoot  /monitoring/troubleshoot/?url=              the troubleshooting tool
monitoring:statistics    /monitoring/statistics/?domain=&app=&stream= usage statistics (charts, CSV)
monitoring:alarms        /monitoring/alarms/                         open and past alarms, the rules; POST adds a rule
monitoring:alarm-rule    /monitoring/alarms/rules/<id>/              GET shows, POST saves a rule
monitoring:alarm-rule-delete  /monitoring/alarms/rules/<id>/delete/  POST
"""

from django.urls import path

from . import views

app_name = "monitoring"

urlpatterns = [
    path("", views.domain, name="domain"),
    path("stream/", views.stream, name="stream"),
    path("troubleshoot/", views.troubleshooter, name="troubleshoot"),
    path("statistics/", views.statistics, name="statistics"),
    path("alarms/", views.alarms_page, name="alarms"),
    path("alarms/rules/<int:rule_id>/", views.alarm_rule, name="alarm-rule"),
    path("alarms/rules/<int:rule_id>/delete/", views.alarm_rule_delete, name="alarm-rule-delete"),
]
