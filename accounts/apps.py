from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Console accounts: login throttling and API tokens stored hashed."""

    name = "accounts"
    verbose_name = "Accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib import admin

        from .forms import AdminLoginForm

        # The admin's login page is throttled like the console's.
        admin.site.login_form = AdminLoginForm
