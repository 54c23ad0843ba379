from django.core.management.base import BaseCommand, CommandError

from accounts import throttle
from accounts.models import LoginThrottle


class Command(BaseCommand):
    help = "Clear the failed-login counter and lock of an account name and/or a client address."

    def add_arguments(self, parser):
        parser.add_argument("username", nargs="?", help="the account name as users type it")
        parser.add_argument("--address", help="a client address (an IPv6 address clears its /64)")
        parser.add_argument("--list", action="store_true", help="list the names and addresses now locked")

    def handle(self, *args, username, address, list, **options):
        if list:
            for row in LoginThrottle.objects.filter(locked_until__isnull=False).order_by("scope", "key"):
                self.stdout.write(f"{row.scope}\t{row.key}\tlocked until {row.locked_until:%Y-%m-%d %H:%M:%S} UTC")
            return
        if username is None and address is None:
            raise CommandError("name an account (username) and/or --address, or give --list")
        removed = throttle.unlock(username=username, address=address)
        what = " and ".join(filter(None, [username and f"account {username}", address and f"address {address}"]))
        self.stdout.write(f"Unlocked {what} ({removed} throttle row{'s' if removed != 1 else ''} cleared)")
