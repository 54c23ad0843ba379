from django.contrib import admin

from .models import PublishSession, StreamBlock, StreamControlEvent


class NoAddAdmin(admin.ModelAdmin):
    # Rows come from the engine and the console's services, which also kick
    # publishers and record history; a row added here would do neither.
    def has_add_permission(self, request) -> bool:
        return False


@admin.register(PublishSession)
class PublishSessionAdmin(NoAddAdmin):
    list_display = ("domain_name", "app", "stream", "node_id", "client_addr", "started_at", "stopped_at")
    list_filter = ("protocol", "node_id")
    search_fields = ("domain_name", "app", "stream", "session_id", "client_addr")
    date_hierarchy = "started_at"
    readonly_fields = [f.name for f in PublishSession._meta.fields]


@admin.register(StreamBlock)
class StreamBlockAdmin(NoAddAdmin):
    list_display = ("domain", "app", "stream", "resume_at", "created_at", "created_by")
    search_fields = ("domain__domain_name", "app", "stream")
    readonly_fields = ("domain", "app", "stream", "created_at", "created_by")


@admin.register(StreamControlEvent)
class StreamControlEventAdmin(NoAddAdmin):
    list_display = ("at", "action", "domain_name", "app", "stream", "by", "detail")
    list_filter = ("action",)
    search_fields = ("domain_name", "app", "stream")
    readonly_fields = [f.name for f in StreamControlEvent._meta.fields]
