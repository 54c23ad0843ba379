from django.apps import AppConfig


class LivecenterConfig(AppConfig):
    # Installed as an app only for its management commands (the runner).
    name = "livecenter"
    verbose_name = "LiveCenter"
