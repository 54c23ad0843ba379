"""The media workers' API, under /api/v1/streams/ in the "streams-api"
namespace beside the streams' own endpoints (livecenter/urls.py joins the two,
so the URLs and their names are those of before issue 12).

Settings (GET lists ?domain=, POST adds or sets, DELETE with a body removes):
     transcode-templates/   {domain, app, template_id, width?, height?, short_side?, video_bitrate_kbps?, ...}
     template-groups/       {domain, app, group_id, template_ids}
     record-configs/        {domain, app, cycle_seconds?, on_reconnect?, format?}
     snapshot-configs/      {domain, app, interval_seconds?}
GET  jobs/                  running transcodes (with renditions), recordings, snapshot series ?domain=&all=
GET  recordings/            recorded files        ?domain=&app=&stream=;  recordings/{id}/download/ (the MP4,
                            or the HLS VOD playlist, its segments at recordings/{id}/download/{name})
GET  snapshots/             snapshots, newest first ?domain=&app=&stream=; snapshots/{id}/image/
"""

from django.urls import path

from . import api

urlpatterns = [
    path("transcode-templates/", api.TemplateListView.as_view(), name="transcode-templates"),
    path("template-groups/", api.GroupListView.as_view(), name="template-groups"),
    path("record-configs/", api.RecordConfigListView.as_view(), name="record-configs"),
    path("snapshot-configs/", api.SnapshotConfigListView.as_view(), name="snapshot-configs"),
    path("jobs/", api.JobListView.as_view(), name="jobs"),
    path("recordings/", api.RecordingListView.as_view(), name="recordings"),
    path("recordings/<int:recording_id>/download/", api.RecordingDownloadView.as_view(), name="recording-download"),
    path(
        "recordings/<int:recording_id>/download/<str:name>",
        api.RecordingSegmentView.as_view(),
        name="recording-segment",
    ),
    path("snapshots/", api.SnapshotListView.as_view(), name="snapshots"),
    path("snapshots/<int:snapshot_id>/image/", api.SnapshotImageView.as_view(), name="snapshot-image"),
]
