"""Console pages for streams, mounted at /streams/ (namespace "streams").

streams:online    /streams/           live streams (?domain=&app=&stream=)
streams:history   /streams/history/   publish history (?domain=&start_time=&end_time=&app=&stream=)
streams:blocked   /streams/blocked/   forbidden streams and recent forbids and resumes (?domain=)
streams:forbid    /streams/forbid/    GET shows the form (?domain=&app=&stream= fill it), POST forbids
streams:resume    /streams/resume/    POST resumes

The media workers' pages share the prefix and the namespace (mediajobs/urls.py;
livecenter/urls.py joins the two).
"""

from django.urls import path

from . import views

app_name = "streams"

urlpatterns = [
    path("", views.online, name="online"),
    path("history/", views.history, name="history"),
    path("blocked/", views.blocked, name="blocked"),
    path("forbid/", views.forbid, name="forbid"),
    path("resume/", views.resume, name="resume"),
]
