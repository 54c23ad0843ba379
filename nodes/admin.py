from django.contrib import admin

from .models import Node


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    # Rows are the nodes' own (nodes/registry.py); an operator only deletes
    # one that is gone for good.
    list_display = ("node_id", "role", "region", "host", "started_at")
    list_filter = ("role", "region")
    search_fields = ("node_id", "host")
    readonly_fields = [f.name for f in Node._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
