from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        # The engine's events reach this app through the streams bridge.
        from nodes import bridge

        from .sink import MonitoringSink

        bridge.add_event_listener(MonitoringSink())
