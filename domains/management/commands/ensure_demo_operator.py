"""Create the demo operator on a fresh install and print its login."""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

DEMO_USERNAME = "demo"


class Command(BaseCommand):
    help = "Create a demo operator if there is no operator yet, and print its login."

    def handle(self, *args, **options):
        User = get_user_model()
        if User.objects.exists():
            self.stdout.write(
                f"Operators exist; log in as one of them (the demo operator is '{DEMO_USERNAME}' if it was"
                f" created here; `python manage.py changepassword {DEMO_USERNAME}` sets a new password)."
            )
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_user(DEMO_USERNAME, password=password)
        self.stdout.write(self.style.SUCCESS(f"Demo operator created. Log in with: {DEMO_USERNAME} / {password}"))
