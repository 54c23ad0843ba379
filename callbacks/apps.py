from django.apps import AppConfig


class CallbacksConfig(AppConfig):
    name = "callbacks"
    verbose_name = "Callbacks"

    def ready(self) -> None:
        # The media workers announce; this app tells the operator (DESIGN.md:
        # it may import them, they never import it). The node side adds
        # this app's event sink (nodes/apps.py).
        from mediajobs import signals

        from . import receivers

        signals.recording_ready.connect(receivers.recording_ready, dispatch_uid="callbacks.recording")
        signals.snapshot_taken.connect(receivers.snapshot_taken, dispatch_uid="callbacks.snapshot")
        signals.media_job_failed.connect(receivers.media_job_failed, dispatch_uid="callbacks.job_failed")
