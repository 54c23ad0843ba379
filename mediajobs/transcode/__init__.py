"""Media work done by the Celery workers with PyAV (issue 7): transcoding a
live stream into renditions, recording it to files, taking snapshots.

`pipeline.py` is Django-free: it reads a source URL and writes outputs, and
asks a small control object what to do; `mediajobs/tasks.py` runs it for a job
row, and `bench/transcode/` runs it alone.
"""
