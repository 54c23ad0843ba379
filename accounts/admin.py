from django.contrib import admin

from .models import ApiToken, LoginThrottle


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    # Only the digest is stored; keys are made with `manage.py drf_create_token`.
    list_display = ("user", "created_at")
    readonly_fields = ("user", "digest", "created_at")

    def has_add_permission(self, request):
        return False


@admin.register(LoginThrottle)
class LoginThrottleAdmin(admin.ModelAdmin):
    list_display = ("scope", "key", "failures", "lockouts", "locked_until", "last_attempt_at")
    list_filter = ("scope",)
    search_fields = ("key",)
