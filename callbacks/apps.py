from django.apps import AppConfig


class CallbacksConfig(AppConfig):
    name = "callbacks"
    verbose_name = "Callbacks"

    def ready(self) -> None:
        # The media workers and monitoring announce; this app tells the operator
        # (DESIGN.md: it may import them, they never import it). The node side adds
        # this app's event sink (nodes/apps.py).
        from mediajobs import signals
        from monitoring import signals as monitoring_signals

        from . import receivers

        signals.recording_ready.connect(receivers.recording_ready, dispatch_uid="callbacks.recording")
        signals.snapshot_taken.connect(receivers.snapshot_taken, dispatch_uid="callbacks.snapshot")
        signals.media_job_failed.connect(receivers.media_job_failed, dispatch_uid="callbacks.job_failed")
        # Monitoring's alarms (monitoring/alarms.py) go out the same way.
        monitoring_signals.alarm_opened.connect(receivers.alarm_opened, dispatch_uid="callbacks.alarm_opened")
        monitoring_signals.alarm_closed.connect(receivers.alarm_closed, dispatch_uid="callbacks.alarm_closed")
