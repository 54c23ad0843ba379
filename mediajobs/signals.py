"""What the media workers tell the apps above them (the callbacks app
connects these in its AppConfig.ready(); streams/signals.py does the same
one layer down). Sent with `send_robust` after the row is written: a
listener's failure is logged and never fails the job's own work."""

from django.dispatch import Signal

# A recording file was closed and its row completed. Arguments: recording.
recording_ready = Signal()

# A snapshot was written. Arguments: snapshot.
snapshot_taken = Signal()

# A media job ended failed (given up, or failed for good). Arguments: job_id.
media_job_failed = Signal()

# Recording or snapshot settings were set for an app of an ingest domain: the
# node side starts the job on that app's streams live now, so a setting
# applies at once, not from the next publish (issue 19, finding 6).
# Arguments: kind (a JobKind), domain_name, app ("*" for every app).
# A receiver returns how many live streams it started the job on.
capture_settings_set = Signal()
