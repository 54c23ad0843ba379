"""The streams API, mounted at /api/v1/streams/ (namespace "streams-api").

GET  online/            live streams           ?domain=&app=&stream=&query_type=
GET  history/           publish sessions       ?domain=&start_time=&end_time=&app=&stream=&query_type=&order_by=
POST forbid/            forbid or interrupt    {domain, app, stream, resume_time?, oneshot?}
POST resume/            resume                 {domain, app, stream}
GET  blocked/           forbidden streams      ?domain=
GET  control-history/   forbids and resumes    ?domain=

The media workers' endpoints share the prefix and the namespace
(mediajobs/api_urls.py; livecenter/urls.py joins the two).
"""

from django.urls import path

from . import api

app_name = "streams-api"

urlpatterns = [
    path("online/", api.OnlineStreamListView.as_view(), name="online"),
    path("history/", api.PublishHistoryView.as_view(), name="history"),
    path("forbid/", api.ForbidView.as_view(), name="forbid"),
    path("resume/", api.ResumeView.as_view(), name="resume"),
    path("blocked/", api.BlockedStreamListView.as_view(), name="blocked"),
    path("control-history/", api.ControlHistoryView.as_view(), name="control-history"),
]
