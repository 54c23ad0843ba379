from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"
    # The engine's events reach this app's sink (sink.py) through the node's
    # event sink; nodes/apps.py adds it, since monitoring imports no node code.
