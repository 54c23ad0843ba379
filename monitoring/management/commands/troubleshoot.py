"""`manage.py troubleshoot URL`: the troubleshooting tool on the command line."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from monitoring.troubleshoot import check_url

MARKS = {"pass": "PASS", "fail": "FAIL", "warn": "WARN", "skip": "SKIP"}


class Command(BaseCommand):
    help = "Check an ingest or playback URL step by step and say what to fix; exits 1 when a step fails."

    def add_arguments(self, parser):
        parser.add_argument("url", help="rtmp://…, http://….flv, .m3u8, .whep or .whip, artc://…, srt://…")
        parser.add_argument("--operator", help="check as this operator (only their domains); default: any domain")

    def handle(self, *args, url, operator=None, **options):
        owner = None
        if operator:
            owner = get_user_model().objects.filter(username=operator).first()
            if owner is None:
                raise CommandError(f"operator {operator!r} does not exist")
        report = check_url(owner, url)
        for step in report.steps:
            self.stdout.write(f"{MARKS[step.status]}  {step.title}: {step.reason}")
            if step.advice and step.status in ("fail", "warn"):
                self.stdout.write(f"      → {step.advice}")
        self.stdout.write("No problem found." if report.ok else "Problems found.")
        if not report.ok:
            raise SystemExit(1)
