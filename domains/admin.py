from django.contrib import admin

from .models import Domain, DomainCertificate


@admin.register(Domain)
class DomainAdmin(admin.ModelAdmin):
    list_display = ("domain_name", "domain_type", "owner", "live_center", "region", "enabled", "cname_status")
    list_filter = ("domain_type", "live_center", "region", "enabled", "cname_status")
    search_fields = ("domain_name", "owner__username")
    # Secrets are never shown, not even to superusers; operators change
    # them on the URL signing and SRT pages.
    exclude = ("auth_primary_key", "auth_secondary_key", "srt_passphrase")
    readonly_fields = ("domain_type", "cname", "cname_found", "cname_checked_at", "created_at", "updated_at")


@admin.register(DomainCertificate)
class DomainCertificateAdmin(admin.ModelAdmin):
    list_display = ("name", "domain", "not_after")
    exclude = ("private_key",)
    readonly_fields = ("certificate_pem", "subject", "issuer", "sans", "not_before", "not_after", "fingerprint_sha256")
