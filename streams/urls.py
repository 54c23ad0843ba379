"""Console pages for streams, mounted at /streams/ (namespace "streams").

streams:online    /streams/           live streams (?domain=&app=&stream=)
streams:history   /streams/history/   publish history (?domain=&start_time=&end_time=&app=&stream=)
streams:blocked   /streams/blocked/   forbidden streams and recent forbids and resumes (?domain=)
streams:forbid    /streams/forbid/    GET shows the form (?domain=&app=&stream= fill it), POST forbids
streams:resume    /streams/resume/    POST resumes
streams:media     /streams/media/     transcoding templates and groups, recording and snapshot settings, running jobs
streams:recordings /streams/recordings/ recorded files (download at recordings/<id>/download/)
"""

from django.urls import path

from mediajobs import views as media_views

from . import views

app_name = "streams"

urlpatterns = [
    path("", views.online, name="online"),
    path("history/", views.history, name="history"),
    path("blocked/", views.blocked, name="blocked"),
    path("forbid/", views.forbid, name="forbid"),
    path("resume/", views.resume, name="resume"),
    path("media/", media_views.media, name="media"),
    path("media/delete/", media_views.media_delete, name="media-delete"),
    path("recordings/", media_views.recordings, name="recordings"),
    path("recordings/<int:recording_id>/download/", media_views.recording_download, name="recording-download"),
    path("recordings/<int:recording_id>/download/<str:name>", media_views.recording_download, name="recording-file"),
    path("snapshots/<int:snapshot_id>.jpg", media_views.snapshot_image, name="snapshot"),
]
