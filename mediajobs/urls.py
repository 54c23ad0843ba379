"""Console pages of the media workers, under /streams/ in the "streams"
namespace beside the streams' own pages (livecenter/urls.py joins the two, so
the URLs and their names are those of before issue 12).

streams:media      /streams/media/       transcoding templates and groups, recording and snapshot settings, running jobs
streams:recordings /streams/recordings/  recorded files (download at recordings/<id>/download/)
streams:snapshot   /streams/snapshots/<id>.jpg
"""

from django.urls import path

from . import views

urlpatterns = [
    path("media/", views.media, name="media"),
    path("media/delete/", views.media_delete, name="media-delete"),
    path("recordings/", views.recordings, name="recordings"),
    path("recordings/<int:recording_id>/download/", views.recording_download, name="recording-download"),
    path("recordings/<int:recording_id>/download/<str:name>", views.recording_download, name="recording-file"),
    path("snapshots/<int:snapshot_id>.jpg", views.snapshot_image, name="snapshot"),
]
