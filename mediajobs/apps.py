from django.apps import AppConfig


class MediaJobsConfig(AppConfig):
    name = "mediajobs"
    verbose_name = "Media jobs"

    def ready(self) -> None:
        from streams import signals

        from . import receivers

        signals.online_streams_listed.connect(receivers.attach_latest_snapshots, dispatch_uid="mediajobs.snapshots")
