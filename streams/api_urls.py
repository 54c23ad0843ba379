"""The streams API, mounted at /api/v1/streams/ (namespace "streams-api").

GET  online/            live streams           ?domain=&app=&stream=&query_type=
GET  history/           publish sessions       ?domain=&start_time=&end_time=&app=&stream=&query_type=&order_by=
POST forbid/            forbid or interrupt    {domain, app, stream, resume_time?, oneshot?}
POST resume/            resume                 {domain, app, stream}
GET  blocked/           forbidden streams      ?domain=
GET  control-history/   forbids and resumes    ?domain=

Media workers (media_api.py; GET lists ?domain=, POST adds or sets, DELETE with a body removes):
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

from mediajobs import api as media_api

from . import api

app_name = "streams-api"

urlpatterns = [
    path("online/", api.OnlineStreamListView.as_view(), name="online"),
    path("history/", api.PublishHistoryView.as_view(), name="history"),
    path("forbid/", api.ForbidView.as_view(), name="forbid"),
    path("resume/", api.ResumeView.as_view(), name="resume"),
    path("blocked/", api.BlockedStreamListView.as_view(), name="blocked"),
    path("control-history/", api.ControlHistoryView.as_view(), name="control-history"),
    path("transcode-templates/", media_api.TemplateListView.as_view(), name="transcode-templates"),
    path("template-groups/", media_api.GroupListView.as_view(), name="template-groups"),
    path("record-configs/", media_api.RecordConfigListView.as_view(), name="record-configs"),
    path("snapshot-configs/", media_api.SnapshotConfigListView.as_view(), name="snapshot-configs"),
    path("jobs/", media_api.JobListView.as_view(), name="jobs"),
    path("recordings/", media_api.RecordingListView.as_view(), name="recordings"),
    path(
        "recordings/<int:recording_id>/download/", media_api.RecordingDownloadView.as_view(), name="recording-download"
    ),
    path(
        "recordings/<int:recording_id>/download/<str:name>",
        media_api.RecordingSegmentView.as_view(),
        name="recording-segment",
    ),
    path("snapshots/", media_api.SnapshotListView.as_view(), name="snapshots"),
    path("snapshots/<int:snapshot_id>/image/", media_api.SnapshotImageView.as_view(), name="snapshot-image"),
]
