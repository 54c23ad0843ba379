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
