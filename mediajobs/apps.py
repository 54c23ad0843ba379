from django.apps import AppConfig


class MediaJobsConfig(AppConfig):
    name = "mediajobs"
    verbose_name = "Media jobs"
