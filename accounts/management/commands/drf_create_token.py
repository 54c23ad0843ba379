from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.models import ApiToken


class Command(BaseCommand):
    """DRF's command of the same name, for hashed tokens (accounts.models.ApiToken):
    the key is printed once, when it is made."""

    help = "Create an API token for a user (shown once; -r replaces an existing one)."

    def add_arguments(self, parser):
        parser.add_argument("username", type=str)
        parser.add_argument(
            "-r", "--reset", action="store_true", dest="reset_token", default=False, help="Replace the existing token"
        )

    def handle(self, *args, username, reset_token, **options):
        user_model = get_user_model()
        try:
            user = user_model._default_manager.get_by_natural_key(username)
        except user_model.DoesNotExist:
            raise CommandError(f"Cannot create the Token: user {username} does not exist") from None
        if not reset_token and ApiToken.objects.filter(user=user).exists():
            raise CommandError(
                f"user {username} already has an API token; it is stored hashed and was shown only when it was "
                "made. Run with -r to replace it (the old one stops working)."
            )
        _, key = ApiToken.issue(user)
        self.stdout.write(f"Generated token {key} for user {username}")
