"""Monitoring pages, mounted at /monitoring/ (namespace "monitoring").

monitoring:stream        /monitoring/stream/?domain=&app=&stream=   live charts of one stream
monitoring:domain        /monitoring/?domain=                        a domain's online streams, bandwidth, users
monitoring:troubleshoot  /monitoring/troubleshoot/?url=              the troubleshooting tool
monitoring:statistics    /monitoring/statistics/?domain=&app=&stream= usage statistics (charts, CSV)
"""

from django.urls import path

from . import views

app_name = "monitoring"

urlpatterns = [
    path("", views.domain, name="domain"),
    path("stream/", views.stream, name="stream"),
    path("troubleshoot/", views.troubleshooter, name="troubleshoot"),
    path("statistics/", views.statistics, name="statistics"),
]
